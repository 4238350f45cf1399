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
