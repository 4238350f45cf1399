"""Shared fixtures: the demo cluster's history in a real Prometheus, and the Kubernetes API stand-in."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cluster_exporter.devtools.clusters import demo_cluster
from cluster_exporter.devtools.demo import demo_namespaces, demo_settings, prepare
from cluster_exporter.devtools.kubeapi_standin import KubeApiStandIn, KubeState, write_kubeconfig
from cluster_exporter.devtools.prometheus_server import PrometheusServer
from cluster_exporter.devtools.synthetic_cluster import Cluster
from cluster_exporter.settings import Settings

# Long after the demo's data: every demo window counts as closed and settled.
LATER = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    """The built-in demo cluster (history + exact ground truth)."""
    return demo_cluster()


@pytest.fixture(scope="session")
def demo_tsdb(tmp_path_factory: pytest.TempPathFactory, cluster: Cluster) -> Path:
    """The demo history backfilled into TSDB blocks, once per test session."""
    return prepare(tmp_path_factory.mktemp("demo"), cluster)


@pytest.fixture(scope="session")
def prometheus(demo_tsdb: Path) -> Iterator[PrometheusServer]:
    """A real Prometheus over the demo history, on a free port."""
    with PrometheusServer(demo_tsdb) as prom:
        yield prom


@pytest.fixture
async def kube(cluster: Cluster) -> AsyncIterator[KubeApiStandIn]:
    """The Kubernetes API stand-in serving the demo cluster's live namespaces."""
    standin = await KubeApiStandIn(KubeState(namespaces=demo_namespaces(cluster))).start()
    yield standin
    await standin.stop()


@pytest.fixture
def settings(prometheus: PrometheusServer, kube: KubeApiStandIn, tmp_path: Path) -> Settings:
    """Settings metering the demo cluster through the real Prometheus and the stand-in."""
    return demo_settings(prometheus.url, write_kubeconfig(tmp_path / "kubeconfig", kube.url))


@pytest.fixture(scope="module")
def demo_kubeconfig(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The Kubernetes API stand-in over the demo namespaces, served from a thread (for the
    processes and containers a test starts, which the test's own event loop cannot serve while it
    waits for them); its kubeconfig."""
    standin = KubeApiStandIn(KubeState(namespaces=demo_namespaces(cluster))).start_in_thread()
    try:
        yield write_kubeconfig(tmp_path_factory.mktemp("kube") / "kubeconfig", standin.url)
    finally:
        standin.stop_thread()
