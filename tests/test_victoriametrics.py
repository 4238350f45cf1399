"""The same report from VictoriaMetrics (single node, loaded through its import API)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster_exporter.devtools.clusters import hour_windows
from cluster_exporter.devtools.demo import demo_settings
from cluster_exporter.devtools.kubeapi_standin import KubeApiStandIn, write_kubeconfig
from cluster_exporter.devtools.prometheus_server import VictoriaMetricsServer, import_into_victoriametrics
from cluster_exporter.devtools.synthetic_cluster import Cluster
from cluster_exporter.metering import measure_window
from cluster_exporter.prometheus import PrometheusClient

from .conftest import LATER
from .test_report_e2e import METERS, _assert_matches_truth


@pytest.fixture(scope="module")
def victoriametrics(tmp_path_factory: pytest.TempPathFactory, cluster: Cluster) -> Iterator[VictoriaMetricsServer]:
    with VictoriaMetricsServer(tmp_path_factory.mktemp("vm") / "data") as vm:
        import_into_victoriametrics(vm.url, cluster)
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
    short = settings.model_copy(
        update={"prometheus": settings.prometheus.model_copy(update={"max_query_length": 1024})}
    )
    start, end = hour_windows(cluster)[1]
    raw: list[str] = []
    async with PrometheusClient(short.prometheus, lambda name, seconds, ok: raw.append(name)) as client:
        report = await measure_window(short, end, LATER, client)
    _assert_matches_truth(report, cluster.truth(start, end), METERS)
    fetches = [n for n in raw if n.endswith("_raw")]
    assert len(fetches) > len(set(fetches)), "some meter's irregular series took more than one fetch"
