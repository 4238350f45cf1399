"""The billing API failing in every way: each window still arrives, every attempt identical, 4xx dead-lettered.

In-process (run_service with an injected registry) against a real Prometheus over the demo history,
the Kubernetes API stand-in and the scripted receiver, all on loopback.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from cluster_exporter.delivery.service import RunOptions, run_service
from cluster_exporter.delivery.state import DirectoryStore
from cluster_exporter.devtools.kubeapi_standin import KubeApiStandIn, write_kubeconfig
from cluster_exporter.devtools.prometheus_server import PrometheusServer
from cluster_exporter.devtools.synthetic_cluster import CUSTOMER_LABEL
from cluster_exporter.metering.window import parse_time
from cluster_exporter.settings import Settings, load_settings

from .conftest import AS_OF, BACKFILL_FROM, TOKEN, WINDOW_ENDS, window_ids
from .receiver import Receiver

CLUSTER = "k8s-failures"


def make_settings(prometheus: PrometheusServer, kube: KubeApiStandIn, tmp_path: Path, **delivery: Any) -> Settings:
    """Directory state, no Lease, short timeouts: everything a test needs to fail fast."""
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    return load_settings(
        {
            "cluster_id": CLUSTER,
            "prometheus": {"url": prometheus.url},
            "kubernetes": {
                "kubeconfig": str(write_kubeconfig(tmp_path / "kubeconfig", kube.url)),
                "customer_label": CUSTOMER_LABEL,
            },
            "billing_api": {"url": delivery.pop("url"), "token_file": str(token_file), "timeout": "1s"},
            "delivery": {
                "state_dir": str(tmp_path / "state"),
                "leader_election": False,
                "backfill_from": BACKFILL_FROM,
                "backoff_initial": "50ms",
                "backoff_max": "200ms",
                "retry_budget": "15s",
                **delivery,
            },
        }
    )


async def run_once(settings: Settings, registry: CollectorRegistry) -> int:
    return await run_service(
        settings, RunOptions(once=True, as_of=parse_time(AS_OF)), registry=registry, install_signal_handlers=False
    )


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_every_failure_mode_ends_delivered_or_dead_lettered(
    prometheus: PrometheusServer, kube: KubeApiStandIn, tmp_path: Path
) -> None:
    first, second, third = window_ids(CLUSTER)
    script = {
        first: [
            ("status", 503),
            ("status", 429, {"Retry-After": "1"}),
            ("cut",),  # body read, connection closed without an answer
            ("slow", 2.0),  # answers after the client's 1s timeout
            ("ok",),
        ],
        second: [("status", 400)],
    }
    with Receiver(token=TOKEN, script=script) as receiver:
        settings = make_settings(prometheus, kube, tmp_path, url=receiver.url)
        registry = CollectorRegistry()
        code = await run_once(settings, registry)
        attempts = receiver.by_key()

    assert code == 0  # the refused window is dead-lettered, not left spooled
    assert list(attempts) == [first, second, third]  # oldest first, one key per window
    assert [a.behaviour[0] for a in attempts[first]] == ["status", "status", "cut", "slow", "ok"]
    assert len(attempts[second]) == 1  # a 400 is final: never retried
    assert len(attempts[third]) == 1
    for key, tries in attempts.items():
        assert {a.digest for a in tries} == {tries[0].digest}, f"{key}: attempts with different bodies"
        assert all(a.authorization == f"Bearer {TOKEN}" for a in tries)
        assert tries[0].report()["report_id"] == key
    # Retry-After: 1 was honoured although the backoff alone would have waited under 0.3s
    gap = attempts[first][2].at - attempts[first][1].at
    assert 1.0 <= gap < 3.0, gap
    # the slow answer was given up after the 1s timeout, not awaited
    assert attempts[first][4].at - attempts[first][3].at < 1.9

    store = DirectoryStore(tmp_path / "state")
    letters = store.dead_letters()
    assert [(x.idempotency_key, x.status) for x in letters] == [(second, 400)]
    assert letters[0].body is not None and letters[0].body.encode() == attempts[second][0].body
    assert "HTTP 400" in letters[0].reason
    state = store.load(CLUSTER, 3600)
    assert state.spool == []
    assert state.watermark == WINDOW_ENDS[-1]
    assert state.last_delivered == WINDOW_ENDS[-1]

    assert sample(registry, "cluster_exporter_delivery_windows_delivered_total") == 2
    assert sample(registry, "cluster_exporter_delivery_windows_dead_lettered_total") == 1
    assert sample(registry, "cluster_exporter_delivery_windows_failed_total") == 0
    outcomes = {
        o: sample(registry, "cluster_exporter_delivery_attempts_total", outcome=o)
        for o in ("success", "http_5xx", "http_429", "connection_error", "timeout", "http_4xx")
    }
    assert outcomes == {
        "success": 2,
        "http_5xx": 1,
        "http_429": 1,
        "connection_error": 1,
        "timeout": 1,
        "http_4xx": 1,
    }
    assert sample(registry, "cluster_exporter_delivery_request_duration_seconds_count") == 7
    assert sample(registry, "cluster_exporter_delivery_last_delivered_window_end_timestamp_seconds") == (
        WINDOW_ENDS[-1].timestamp()
    )
    assert sample(registry, "cluster_exporter_spool_depth_reports") == 0
    assert sample(registry, "cluster_exporter_report_customers") == 4  # 02:00-03:00: umbrella's namespace is gone
    assert sample(registry, "cluster_exporter_report_namespaces") == 5
    assert sample(registry, "cluster_exporter_metering_window_duration_seconds_count") == 3
    query_counts = {
        s.labels["query"]: s.value
        for family in registry.collect()
        for s in family.samples
        if s.name == "cluster_exporter_prometheus_query_duration_seconds_count"
    }
    assert len(query_counts) >= 6 and max(query_counts.values()) == 3  # the on_query hook saw the queries
    assert sample(registry, "cluster_exporter_delivery_cycles_total", result="ok") == 1
    assert sample(registry, "cluster_exporter_leader_is_leader") == 1  # no election: always reports


async def test_budget_spent_keeps_report_spooled_and_resends_it_unchanged(
    prometheus: PrometheusServer, kube: KubeApiStandIn, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """--once gives up after its retry budget (non-zero exit); the next run resends the spooled bytes."""
    first, second, third = window_ids(CLUSTER)
    with Receiver(token=TOKEN, chaos=lambda key: ("status", 503)) as receiver:
        settings = make_settings(prometheus, kube, tmp_path, url=receiver.url, retry_budget="1s")
        registry = CollectorRegistry()
        with caplog.at_level(logging.INFO):
            code = await run_once(settings, registry)
        assert "window 2025-11-20T01:00:00Z..02:00:00Z spooled: 5 customers" in caplog.text
        assert "delivery of 2025-11-20T00:00:00Z..01:00:00Z" in caplog.text  # "attempt N failed ...; will retry"
        failed = receiver.by_key()
        assert code == 5
        assert list(failed) == [first]  # later windows are built, but not sent before the oldest
        assert len(failed[first]) >= 3
        store = DirectoryStore(tmp_path / "state")
        state = store.load(CLUSTER, 3600)
        assert [e.report_id for e in state.spool] == [first, second, third]  # built and kept while the API is down
        assert sample(registry, "cluster_exporter_delivery_windows_failed_total") == 1
        assert sample(registry, "cluster_exporter_spool_depth_reports") == 3
        assert sample(registry, "cluster_exporter_spool_bytes") > 1000

        # The cluster changes: a rebuilt report would differ. The spooled one must be sent as it was.
        kube.state.namespaces["newco"] = {CUSTOMER_LABEL: "cust_newco"}
        receiver.chaos = None
        code = await run_once(settings, CollectorRegistry())
        assert code == 0
        delivered = receiver.by_key()
    assert list(delivered) == [first, second, third]
    for key in (first, second, third):
        assert len({a.digest for a in delivered[key]}) == 1
        assert "cust_newco" not in json.dumps(delivered[key][-1].report())
    assert store.load(CLUSTER, 3600).spool == []


async def test_split_report_parts_share_id_and_window(
    prometheus: PrometheusServer, kube: KubeApiStandIn, tmp_path: Path
) -> None:
    """A report over max_customers_per_part travels as parts keyed report_id/part with disjoint customers."""
    with Receiver(token=TOKEN) as receiver:
        settings = make_settings(prometheus, kube, tmp_path, url=receiver.url, max_customers_per_part=2)
        assert await run_once(settings, CollectorRegistry()) == 0
        attempts = receiver.snapshot()
    first = window_ids(CLUSTER)[0]
    parts = [a.report() for a in attempts if a.key.startswith(first)]
    assert [a.key for a in attempts if a.key.startswith(first)] == [f"{first}/1", f"{first}/2", f"{first}/3"]
    assert [(p["part"], p["parts"]) for p in parts] == [(1, 3), (2, 3), (3, 3)]
    assert {(p["report_id"], p["window_start"], p["window_end"]) for p in parts} == {
        (first, "2025-11-20T00:00:00Z", "2025-11-20T01:00:00Z")
    }
    customers = [u["customer_id"] for p in parts for u in p["usage"]]
    assert customers == ["cust_acme", "cust_globex", "cust_hooli", "cust_initech", "cust_umbrella"]


async def test_sigterm_like_stop_mid_retry_keeps_spool_and_exits_zero(
    prometheus: PrometheusServer, kube: KubeApiStandIn, tmp_path: Path
) -> None:
    """A stop request during backoff ends the run with exit 0 and the window still spooled, intact."""
    first = window_ids(CLUSTER)[0]
    with Receiver(token=TOKEN, chaos=lambda key: ("status", 503)) as receiver:
        settings = make_settings(prometheus, kube, tmp_path, url=receiver.url, backoff_initial="2s", backoff_max="2s")
        stop = asyncio.Event()
        task = asyncio.create_task(
            run_service(
                settings,
                RunOptions(once=True, as_of=parse_time(AS_OF)),
                registry=CollectorRegistry(),
                install_signal_handlers=False,
                stop=stop,
            )
        )
        for _ in range(400):  # the first attempt arrives once window 1 is measured
            if receiver.snapshot():
                break
            await asyncio.sleep(0.05)
        stop.set()
        code = await asyncio.wait_for(task, 5)  # the 2s backoff is cut short
        attempts = receiver.snapshot()
    assert code == 0
    assert [a.key for a in attempts] == [first]
    state = DirectoryStore(tmp_path / "state").load(CLUSTER, 3600)
    assert [e.report_id for e in state.spool] == [first]
    assert state.spool[0].bodies[0].encode() == attempts[0].body
