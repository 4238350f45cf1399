"""Bounds of catch-up: a full ConfigMap spool, the maximum age, and `report` delivering without state."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import logging
from datetime import datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from cluster_exporter.commands import run_report
from cluster_exporter.delivery.leader import AlwaysLeader
from cluster_exporter.delivery.owner_history import OwnerHistory
from cluster_exporter.delivery.runner import Runner
from cluster_exporter.delivery.sender import Deliverer
from cluster_exporter.delivery.service import make_clock
from cluster_exporter.delivery.state import SpoolEntry, State
from cluster_exporter.delivery.state_configmap import INDEX_KEY, ConfigMapStore, configmap_size
from cluster_exporter.devtools.kubeapi_standin import KubeApiStandIn
from cluster_exporter.devtools.prometheus_server import PrometheusServer
from cluster_exporter.metering.window import measure_window, parse_time
from cluster_exporter.observability.metrics import ExporterMetrics
from cluster_exporter.progress import Progress
from cluster_exporter.report import UsageReport
from cluster_exporter.sources.kube.discovery import make_api_client
from cluster_exporter.sources.prometheus import PrometheusClient

from .conftest import AS_OF, EXPORTER_NAMESPACE, TOKEN, WINDOW_ENDS, window_ids
from .receiver import Receiver
from .test_delivery_failures import CLUSTER, make_settings, run_once, sample


def spooled_size(entries: list[SpoolEntry]) -> int:
    """What the ConfigMap backend stores for these spooled windows (index plus gzipped blobs)."""
    state = State(cluster_id=CLUSTER, window_seconds=3600, watermark=entries[-1].window_end, spool=entries)
    blobs = {
        f"spool.{e.blob_name()}.json.gz": base64.b64encode(
            gzip.compress(json.dumps({"parts": e.bodies}).encode(), mtime=0)
        ).decode()
        for e in entries
    }
    return configmap_size({INDEX_KEY: state.index_json()}, blobs)


async def test_full_configmap_spool_stops_building_until_it_drains(
    prometheus: PrometheusServer, kube: KubeApiStandIn, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with Receiver(token=TOKEN, chaos=lambda key: ("status", 503)) as receiver:
        settings = make_settings(prometheus, kube, tmp_path, url=receiver.url, retry_budget="300ms")
        now = parse_time(AS_OF)
        async with PrometheusClient(settings.prometheus) as prom:

            async def build(end: datetime, at: datetime, history: OwnerHistory | None = None) -> UsageReport:
                return await measure_window(settings, end, at, prom)  # no owner history: live owners

            reports = [await build(end, now) for end in WINDOW_ENDS]
            entries = [SpoolEntry.from_report(r, 2000, now) for r in reports]
            budget = (spooled_size(entries[:2]) + spooled_size(entries)) // 2  # two windows fit, three do not
            store = ConfigMapStore(
                lambda: make_api_client(settings.kubernetes), EXPORTER_NAMESPACE, "exporter-state", budget
            )
            registry = CollectorRegistry()
            stop = asyncio.Event()
            async with Deliverer(settings.billing_api, settings.delivery, stop=stop) as deliverer:
                runner = Runner(
                    settings,
                    store,
                    deliverer,
                    build,
                    AlwaysLeader(),
                    ExporterMetrics(registry),
                    make_clock(now),
                    stop,
                    Progress("lines"),
                )
                with caplog.at_level(logging.WARNING):
                    down = await runner.cycle()
                assert (down.built, down.pending, down.error) == (2, 3, None)
                assert (
                    "spool full" in caplog.text and "02:00:00Z..03:00:00Z is built once the spool drains" in caplog.text
                )
                assert sample(registry, "cluster_exporter_spool_depth_reports") == 2

                receiver.chaos = None
                back = await runner.cycle()
    assert (back.delivered, back.built, back.pending, back.error) == (3, 1, 0, None)
    assert [k for k in receiver.by_key() if receiver.by_key()[k][-1].accepted] == window_ids(CLUSTER)
    for key, tries in receiver.by_key().items():
        assert len({a.digest for a in tries}) == 1, key


async def test_windows_older_than_max_age_are_skipped_and_counted(
    prometheus: PrometheusServer, kube: KubeApiStandIn, tmp_path: Path
) -> None:
    with Receiver(token=TOKEN) as receiver:
        settings = make_settings(prometheus, kube, tmp_path, url=receiver.url, max_age="2h")
        registry = CollectorRegistry()
        assert await run_once(settings, registry) == 0
        keys = list(receiver.by_key())
    # as of 03:07, 2h back is 01:07: the first window starting after it is 02:00-03:00
    assert keys == window_ids(CLUSTER)[2:]
    assert sample(registry, "cluster_exporter_delivery_windows_skipped_total") == 2
    assert sample(registry, "cluster_exporter_delivery_windows_delivered_total") == 1


async def test_report_command_sends_with_retries_and_no_state(
    prometheus: PrometheusServer, kube: KubeApiStandIn, tmp_path: Path
) -> None:
    first = window_ids(CLUSTER)[0]
    with Receiver(token=TOKEN, script={first: [("status", 502), ("cut",), ("ok",)]}) as receiver:
        settings = make_settings(prometheus, kube, tmp_path, url=receiver.url)
        report = await run_report(settings, WINDOW_ENDS[0], parse_time(AS_OF), dry_run=False)
        attempts = receiver.by_key()[first]
    assert report.report_id == first
    assert [a.behaviour[0] for a in attempts] == ["status", "cut", "ok"]
    assert {a.body for a in attempts} == {report.to_json().encode()}
    assert not (tmp_path / "state").exists()
