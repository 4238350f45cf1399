"""LeaseElector against the Kubernetes API stand-in, with a hand-driven monotonic clock."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from cluster_exporter.delivery.leader import LeaseElector
from cluster_exporter.devtools.kubeapi_standin import KubeApiStandIn, write_kubeconfig
from cluster_exporter.observability.metrics import ExporterMetrics
from cluster_exporter.settings import KubernetesSettings
from cluster_exporter.sources.kube.discovery import make_api_client

from .conftest import EXPORTER_NAMESPACE


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def elector(kube: KubeApiStandIn, tmp_path: Path, identity: str, clock: Clock, **kw: Any) -> LeaseElector:
    settings = KubernetesSettings(kubeconfig=write_kubeconfig(tmp_path / "kubeconfig", kube.url))  # type: ignore[call-arg]
    return LeaseElector(
        lambda: make_api_client(settings),
        EXPORTER_NAMESPACE,
        "cluster-exporter",
        identity,
        lease_duration=15,
        renew_deadline=10,
        retry_period=2,
        monotonic=clock,
        **kw,
    )


def spec(kube: KubeApiStandIn) -> dict[str, Any]:
    lease = kube.state.get("leases", EXPORTER_NAMESPACE, "cluster-exporter")
    assert lease is not None
    return dict(lease["spec"])


def test_one_holder_then_takeover_after_the_record_stands_still(kube_thread: KubeApiStandIn, tmp_path: Path) -> None:
    clock_a, clock_b = Clock(), Clock()
    a = elector(kube_thread, tmp_path, "a", clock_a)
    b = elector(kube_thread, tmp_path, "b", clock_b)
    assert a.try_acquire_or_renew() is True  # creates the Lease
    assert b.try_acquire_or_renew() is False
    assert spec(kube_thread)["holderIdentity"] == "a"
    assert spec(kube_thread)["leaseDurationSeconds"] == 15

    clock_b.now += 14.9  # a stopped renewing, but b has not seen it stand still for 15s yet
    assert b.try_acquire_or_renew() is False
    clock_a.now += 5
    assert a.try_acquire_or_renew() is True  # a renews: the record moves, b starts counting again
    clock_b.now += 14.9
    assert b.try_acquire_or_renew() is False
    clock_b.now += 15.1
    assert b.try_acquire_or_renew() is True
    after = spec(kube_thread)
    assert after["holderIdentity"] == "b" and after["leaseTransitions"] == 1

    # a comes back: it sees b's fresh record, does not take it, and stops counting itself leader
    assert a.try_acquire_or_renew() is False
    clock_a.now += 10.1
    assert a.is_leader() is False
    assert spec(kube_thread)["holderIdentity"] == "b"


def test_leader_stops_reporting_when_it_cannot_renew(kube_thread: KubeApiStandIn, tmp_path: Path) -> None:
    clock = Clock()
    registry = CollectorRegistry()
    a = elector(kube_thread, tmp_path, "a", clock, metrics=ExporterMetrics(registry))

    async def scenario() -> None:
        await a.step()
        assert a.is_leader() and registry.get_sample_value("cluster_exporter_leader_is_leader") == 1
        kube_thread.state.fail_status = 500
        clock.now += 9.9
        await a.step()  # renewal fails; still within the renew deadline
        assert a.is_leader()
        clock.now += 0.2
        await a.step()
        assert not a.is_leader()  # 10s without a renewal: stop before anyone else may start (15s)
        assert registry.get_sample_value("cluster_exporter_leader_is_leader") == 0
        failures = registry.get_sample_value("cluster_exporter_kubernetes_api_errors_total", {"operation": "get_lease"})
        assert failures == 2
        assert registry.get_sample_value("cluster_exporter_leader_transitions_total") == 1

    asyncio.run(scenario())


def test_release_hands_over_without_waiting_a_lease_duration(kube_thread: KubeApiStandIn, tmp_path: Path) -> None:
    clock_a, clock_b = Clock(), Clock()
    a = elector(kube_thread, tmp_path, "a", clock_a)
    b = elector(kube_thread, tmp_path, "b", clock_b)

    async def scenario() -> None:
        await a.step()
        await b.step()
        assert a.is_leader() and not b.is_leader()
        await a.release()
        assert not a.is_leader()
        assert spec(kube_thread)["holderIdentity"] == ""
        await b.step()  # no clock advance needed: an empty holder is free
        assert b.is_leader()

    asyncio.run(scenario())


def test_racing_writers_one_wins_by_resource_version(kube_thread: KubeApiStandIn, tmp_path: Path) -> None:
    """The stand-in answers like the API server: a replace with a stale resourceVersion is a 409."""
    clock = Clock()
    a = elector(kube_thread, tmp_path, "a", clock)
    b = elector(kube_thread, tmp_path, "b", clock)
    assert a.try_acquire_or_renew() is True
    stale = a._request("get_lease", "GET", a._url("cluster-exporter"))
    assert a.try_acquire_or_renew() is True  # bumps the resourceVersion
    assert isinstance(stale, dict)
    stale["spec"]["holderIdentity"] = "b"
    answer = b._request("update_lease", "PUT", b._url("cluster-exporter"), stale)
    assert answer == 409
    assert spec(kube_thread)["holderIdentity"] == "a"
