"""Catch-up after downtime bills each backlog window with the owners seen closest to it, not today's.

In-process ``run --once`` twice against the real Prometheus over the demo history, the Kubernetes
API stand-in and the billing receiver, with kube-state-metrics' namespace labels off (the path
without them): a first run as of 01:07 sees hooli owned by cust_hooli; hooli then moves to
cust_globex while the exporter is down; the run as of 03:07 builds 01:00-02:00 and 02:00-03:00.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from cluster_exporter.delivery.service import RunOptions, run_service
from cluster_exporter.delivery.state import DirectoryStore
from cluster_exporter.devtools.demo import demo_namespaces
from cluster_exporter.devtools.kubeapi_standin import KubeApiStandIn
from cluster_exporter.devtools.prometheus_server import PrometheusServer
from cluster_exporter.devtools.synthetic_cluster import CUSTOMER_LABEL, Cluster
from cluster_exporter.metering.window import parse_time
from cluster_exporter.meters import ALWAYS

from .conftest import WINDOW_ENDS, window_ids
from .receiver import Receiver
from .test_delivery_failures import CLUSTER, TOKEN, make_settings, sample

CHANGES = "cluster_exporter_metering_owner_changes_inside_window_total"
RECORDED = "cluster_exporter_metering_windows_billed_with_recorded_owners_total"


async def run_once_as_of(settings: Any, as_of: str, registry: CollectorRegistry) -> int:
    options = RunOptions(once=True, as_of=parse_time(as_of))
    return await run_service(settings, options, registry=registry, install_signal_handlers=False)


def billed(receiver: Receiver, key: str) -> dict[str, dict[str, Any]]:
    """{customer: its record} of the report delivered under ``key``."""
    attempts = receiver.by_key()[key]
    return {u["customer_id"]: u for u in attempts[-1].report()["usage"]}


def assert_billed(got: dict[str, dict[str, Any]], truth: dict[str, dict[str, float]]) -> None:
    assert set(got) == set(truth)
    for customer, expected in truth.items():
        for meter in ALWAYS:
            value, want = got[customer][meter], expected[meter]
            if isinstance(value, int):
                assert abs(value - want) <= 1.0, f"{customer}.{meter}: {value} vs {want}"
            else:
                assert value == pytest.approx(want, rel=1e-4, abs=1e-9), f"{customer}.{meter}: {value} vs {want}"


def owned(cluster: Cluster, start: datetime, end: datetime, moved: bool) -> dict[str, dict[str, float]]:
    """The truth of [start, end) with hooli owned by cust_hooli, or moved to cust_globex; namespaces
    deleted before the run are not billed (no kube-state-metrics)."""
    namespaces = {**cluster.namespaces, "hooli": "cust_globex"} if moved else cluster.namespaces
    truth = dataclasses.replace(cluster, namespaces=namespaces, deleted={}).truth(start, end)
    owners = {c for c in namespaces.values() if c}
    return {customer: amounts for customer, amounts in truth.items() if customer in owners}


async def test_catch_up_bills_each_backlog_window_with_the_owners_seen_closest_to_it(
    prometheus: PrometheusServer,
    kube: KubeApiStandIn,
    cluster: Cluster,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, second, third = window_ids(CLUSTER)
    with Receiver(token=TOKEN) as receiver:
        settings = make_settings(prometheus, kube, tmp_path, url=receiver.url)
        settings = settings.model_copy(
            update={"metering": settings.metering.model_copy(update={"namespace_labels_metric": False})}
        )
        registry = CollectorRegistry()
        assert await run_once_as_of(settings, "2025-11-20T01:07:00Z", registry) == 0
        # the exporter is down; hooli moves to cust_globex (a new dict: the stand-in caches by identity)
        namespaces = demo_namespaces(cluster)
        namespaces["hooli"] = {**namespaces["hooli"], CUSTOMER_LABEL: "cust_globex"}
        kube.state.namespaces = namespaces
        registry = CollectorRegistry()
        with caplog.at_level(logging.INFO):
            assert await run_once_as_of(settings, "2025-11-20T03:07:00Z", registry) == 0
        assert list(receiver.by_key()) == [first, second, third]
        reports = [billed(receiver, key) for key in (first, second, third)]

    starts = [end - timedelta(hours=1) for end in WINDOW_ENDS]
    # 00:00-01:00, built before the downtime; 01:00-02:00 ends 53 minutes after the owners seen at
    # 01:07 and 67 minutes before those seen at 03:07: still cust_hooli's, not today's owner's
    assert_billed(reports[0], owned(cluster, starts[0], WINDOW_ENDS[0], moved=False))
    assert_billed(reports[1], owned(cluster, starts[1], WINDOW_ENDS[1], moved=False))
    assert reports[1]["cust_hooli"]["namespaces"] == ["hooli"]
    # 02:00-03:00 ends 7 minutes before the owners seen at 03:07: cust_globex's, wholly
    assert_billed(reports[2], owned(cluster, starts[2], WINDOW_ENDS[2], moved=True))
    assert "cust_hooli" not in reports[2] and reports[2]["cust_globex"]["namespaces"] == ["globex", "hooli"]
    assert reports[2]["cust_globex"]["cpu_hours"] == pytest.approx(
        sum(cluster.truth(starts[2], WINDOW_ENDS[2])[c]["cpu_hours"] for c in ("cust_globex", "cust_hooli")), rel=1e-4
    )

    # the move was seen between 01:07 and 03:07: placed halfway, at about 02:07, inside 02:00-03:00
    assert sample(registry, CHANGES) == 1
    assert sample(registry, RECORDED) == 1  # 01:00-02:00; 02:00-03:00 was billed with the live owners
    changed = [r.getMessage() for r in caplog.records if "changed owner" in r.getMessage()]
    assert len(changed) == 1
    assert changed[0].startswith(
        "namespace hooli changed owner cust_hooli -> cust_globex during window 2025-11-20T02:00:00Z..03:00:00Z"
    )
    assert "billed wholly to cust_globex (enable kube-state-metrics' kube_namespace_labels" in changed[0]

    # the state keeps what the next windows need: the owners seen at 03:07 and the run before them
    state = DirectoryStore(tmp_path / "state").load(CLUSTER, 3600)
    assert state.owners.current["hooli"] == "cust_globex"
    assert len(state.owners.runs) == 1  # the next window ends at 04:00: the 01:07 run can no longer be nearest
