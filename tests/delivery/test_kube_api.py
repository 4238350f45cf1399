"""kube_api.request against the Kubernetes API stand-in: typed errors, what is retried, how long it waits.

The real ``kubernetes`` client talks HTTP to the stand-in; sleeps and jitter are injected, so the
waits are read, not slept.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from cluster_exporter.devtools.kubeapi_standin import KubeApiStandIn, write_kubeconfig
from cluster_exporter.devtools.prometheus_server import free_port
from cluster_exporter.devtools.synthetic_cluster import CUSTOMER_LABEL
from cluster_exporter.errors import (
    KubernetesConflict,
    KubernetesNotFound,
    KubernetesRefused,
    KubernetesUnavailable,
)
from cluster_exporter.settings import KubernetesSettings
from cluster_exporter.sources.kube import api as kube_api
from cluster_exporter.sources.kube.discovery import list_customer_namespaces, make_api_client

from .conftest import EXPORTER_NAMESPACE

NAMESPACES = "/api/v1/namespaces"


def client_for(url: str, tmp_path: Path) -> Any:
    settings = KubernetesSettings(kubeconfig=write_kubeconfig(tmp_path / "kubeconfig", url))  # type: ignore[call-arg]
    return make_api_client(settings)


class Sleeps(list[float]):
    """An injected sleep that only records how long it was asked to wait."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def get(api: Any, sleeps: Sleeps, resource_path: str = NAMESPACES, **kw: Any) -> dict[str, Any]:
    return kube_api.request(api, "GET", resource_path, timeout=5, sleep=sleeps, jitter=lambda: 0.0, **kw)


def test_503_then_success_is_retried(kube_thread: KubeApiStandIn, tmp_path: Path, caplog: Any) -> None:
    kube_thread.state.fail_next = [(503, {})]
    sleeps = Sleeps()
    before = len(kube_thread.state.requests)
    with caplog.at_level(logging.INFO, logger="cluster_exporter.sources.kube.api"):
        answer = get(client_for(kube_thread.url, tmp_path), sleeps, what="listing namespaces")
    assert answer["kind"] == "NamespaceList" and answer["items"]
    assert len(kube_thread.state.requests) - before == 2
    assert sleeps == [0.2]  # the first backoff step, no jitter
    line = "listing namespaces: attempt 1/3 failed (HTTP 503 ServiceUnavailable: injected failure); will retry in 0.2s"
    assert line in caplog.messages


def test_429_waits_as_long_as_retry_after_says(kube_thread: KubeApiStandIn, tmp_path: Path) -> None:
    kube_thread.state.fail_next = [(429, {"Retry-After": "3"}), (429, {"Retry-After": "60"})]
    sleeps = Sleeps()
    assert get(client_for(kube_thread.url, tmp_path), sleeps)["kind"] == "NamespaceList"
    assert sleeps == [3.0, 10.0]  # Retry-After honoured, up to the 10s the Kubernetes policy allows


def test_a_wait_past_the_budget_gives_up_at_once(kube_thread: KubeApiStandIn, tmp_path: Path) -> None:
    kube_thread.state.fail_next = [(429, {"Retry-After": "5"})]
    sleeps = Sleeps()
    with pytest.raises(KubernetesUnavailable, match=r"HTTP 429 TooManyRequests.*gave up after 1 attempt") as caught:
        get(client_for(kube_thread.url, tmp_path), sleeps, budget=2.0)
    assert caught.value.status == 429
    assert sleeps == []


def test_403_is_final_and_names_the_status(kube_thread: KubeApiStandIn, tmp_path: Path) -> None:
    kube_thread.state.fail_next = [(403, {})]
    sleeps = Sleeps()
    before = len(kube_thread.state.requests)
    with pytest.raises(KubernetesRefused, match=r"^get_lease: HTTP 403 Forbidden: injected failure$") as caught:
        get(client_for(kube_thread.url, tmp_path), sleeps, what="get_lease")
    assert caught.value.status == 403 and caught.value.body == "injected failure"
    assert len(kube_thread.state.requests) - before == 1
    assert sleeps == []


def test_404_and_409_are_typed(kube_thread: KubeApiStandIn, tmp_path: Path) -> None:
    api = client_for(kube_thread.url, tmp_path)
    url = kube_api.path("/api/v1/namespaces", EXPORTER_NAMESPACE, "configmaps")
    with pytest.raises(KubernetesNotFound) as missing:
        get(api, Sleeps(), f"{url}/nope")
    assert missing.value.status == 404
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "twice"}, "data": {}}
    kube_api.request(api, "POST", url, body=body, timeout=5)
    with pytest.raises(KubernetesConflict, match="HTTP 409 AlreadyExists"):
        kube_api.request(api, "POST", url, body=body, timeout=5)


def test_connection_refused_ends_unavailable_after_the_attempts(tmp_path: Path) -> None:
    sleeps = Sleeps()
    api = client_for(f"http://127.0.0.1:{free_port()}", tmp_path)
    message = r"^GET /api/v1/namespaces: cannot reach the Kubernetes API: .*\(gave up after 4 attempts\)$"
    with pytest.raises(KubernetesUnavailable, match=message) as caught:
        get(api, sleeps, attempts=4)
    assert caught.value.status is None
    assert sleeps == [0.2, 0.4, 0.8]  # one wait between each two of the 4 attempts (no urllib3 retries besides)


def test_discovery_rides_out_a_503(kube_thread: KubeApiStandIn, tmp_path: Path) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube_thread.url)
    settings = KubernetesSettings(kubeconfig=kubeconfig, customer_label=CUSTOMER_LABEL, page_size=2)  # type: ignore[call-arg]
    api = make_api_client(settings)
    expected = list_customer_namespaces(api, settings)
    kube_thread.state.fail_next = [(503, {}), (503, {})]  # the first page, then again
    assert list_customer_namespaces(api, settings) == expected
