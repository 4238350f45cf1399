"""The same report from VictoriaMetrics (single node, loaded through its import API: the demo
cluster streamed series by series as JSON lines, as the 100,000-namespace benchmark loads it;
the pause-only cluster as Prometheus text)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster_exporter.devtools.clusters import hour_windows
from cluster_exporter.devtools.demo import demo_settings
from cluster_exporter.devtools.kubeapi_standin import KubeApiStandIn, write_kubeconfig
from cluster_exporter.devtools.prometheus_server import VictoriaMetricsServer, import_into_victoriametrics
from cluster_exporter.devtools.synthetic_cluster import Cluster
from cluster_exporter.devtools.vm_import import stream_import
from cluster_exporter.metering.window import measure_window
from cluster_exporter.sources.prometheus import PrometheusClient

from .conftest import LATER
from .test_report_e2e import METERS, _assert_matches_truth, pause_only


@pytest.fixture(scope="module")
def victoriametrics(tmp_path_factory: pytest.TempPathFactory, cluster: Cluster) -> Iterator[VictoriaMetricsServer]:
    with VictoriaMetricsServer(tmp_path_factory.mktemp("vm") / "data") as vm:
        stream_import(vm.url, cluster, series_per_request=50)  # several requests, as at scale
        time.sleep(1)  # let the freshly flushed parts become searchable
        yield vm


@pytest.mark.parametrize("hour", [0, 1, 2])
async def test_victoriametrics_gives_the_same_report(
    victoriametrics: VictoriaMetricsServer, kube: KubeApiStandIn, cluster: Cluster, tmp_path: Path, hour: int
) -> None:
    settings = demo_settings(victoriametrics.url, write_kubeconfig(tmp_path / "kubeconfig", kube.url))
    start, end = hour_windows(cluster)[hour]
    async with PrometheusClient(settings.prometheus) as client:
        report = await measure_window(settings, end, LATER, client)
    truth = {c: v for c, v in cluster.truth(start, end).items() if c != "cust_umbrella" or hour < 2}
    _assert_matches_truth(report, truth, METERS)


async def test_raw_fetches_split_to_a_short_query_length(
    victoriametrics: VictoriaMetricsServer, kube: KubeApiStandIn, cluster: Cluster, tmp_path: Path
) -> None:
    """VictoriaMetrics refuses queries over -search.maxQueryLen: prometheus.max_query_length keeps
    every raw-sample fetch under it, and the report stays the same."""
    settings = demo_settings(victoriametrics.url, write_kubeconfig(tmp_path / "kubeconfig", kube.url))
    # shorter than the setting allows (1 KiB), so that the demo's few irregular units need several fetches
    short = settings.model_copy(update={"prometheus": settings.prometheus.model_copy(update={"max_query_length": 700})})
    start, end = hour_windows(cluster)[1]
    raw: list[str] = []
    async with PrometheusClient(short.prometheus, lambda name, seconds, ok: raw.append(name)) as client:
        report = await measure_window(short, end, LATER, client)
    _assert_matches_truth(report, cluster.truth(start, end), METERS)
    fetches = [n for n in raw if n.endswith("_raw")]
    assert len(fetches) > len(set(fetches)), "some meter's irregular series took more than one fetch"


async def test_a_pod_whose_network_shows_only_on_the_pause_container(
    kube: KubeApiStandIn, cluster: Cluster, tmp_path: Path
) -> None:
    """The window scan's ``or on(namespace, pod, interface)`` finds the pause-only pod on
    VictoriaMetrics too (MetricsQL's ``or`` with ``on``), and it is billed from raw samples."""
    paused = pause_only(cluster)
    start, end = hour_windows(paused)[1]
    with VictoriaMetricsServer(tmp_path / "vm") as vm:
        import_into_victoriametrics(vm.url, paused)
        await asyncio.sleep(1)  # let the freshly flushed parts become searchable
        settings = demo_settings(vm.url, write_kubeconfig(tmp_path / "kubeconfig", kube.url))
        raw: list[str] = []
        async with PrometheusClient(settings.prometheus, lambda name, seconds, ok: raw.append(name)) as client:
            report = await measure_window(settings, end, LATER, client)
    truth = paused.truth(start, end)
    _assert_matches_truth(report, truth, ("network_bytes_sent", "network_bytes_received"))
    assert truth["cust_globex"]["network_bytes_sent"] > 0
    assert "network_bytes_sent_raw" in raw, "the pause-only pod is metered raw"
