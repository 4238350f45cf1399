"""What platforms sell, metered end to end on a real Prometheus and on VictoriaMetrics: ownership
over time (a namespace relabeled 20 minutes into a window, one unlabeled and one labeled
mid-window), GPU-hours gated by the pod's phase (a three-minute job, a Pending pod, a Succeeded
pod whose requests go on, a MIG slice), GPU utilization from dcgm-exporter, and requests above and
below usage. Every customer, meter and window against the platform cluster's exact truth."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path

import pytest

from cluster_exporter.devtools.clusters import hour_windows
from cluster_exporter.devtools.demo import demo_namespaces, prepare
from cluster_exporter.devtools.kubeapi_standin import KubeApiStandIn, KubeState, write_kubeconfig
from cluster_exporter.devtools.platform_cluster import platform_cluster
from cluster_exporter.devtools.prometheus_server import (
    PrometheusServer,
    VictoriaMetricsServer,
    import_into_victoriametrics,
)
from cluster_exporter.devtools.synthetic_cluster import CUSTOMER_LABEL, Cluster
from cluster_exporter.errors import LayoutError
from cluster_exporter.metering.window import measure_window
from cluster_exporter.report import UsageReport, build_report
from cluster_exporter.settings import Settings, load_settings
from cluster_exporter.sources.prometheus import PrometheusClient

from .conftest import LATER

TOLERANCE = 1e-4  # the method is exact: 0.01%, integers within 1
INTEGER = {"network_bytes_sent", "network_bytes_received", "http_requests"}
METERS = (
    *("cpu_hours", "memory_gb_hours", "network_bytes_sent", "network_bytes_received", "storage_gb_hours"),
    *("gpu_hours", "gpu_utilized_hours", "cpu_request_hours", "memory_request_gb_hours"),
)


@pytest.fixture(scope="module")
def platform() -> Cluster:
    return platform_cluster()


@pytest.fixture(scope="module")
def platform_prometheus(tmp_path_factory: pytest.TempPathFactory, platform: Cluster) -> Iterator[PrometheusServer]:
    with PrometheusServer(prepare(tmp_path_factory.mktemp("platform"), platform)) as prom:
        yield prom


@pytest.fixture(scope="module")
def platform_vm(tmp_path_factory: pytest.TempPathFactory, platform: Cluster) -> Iterator[VictoriaMetricsServer]:
    with VictoriaMetricsServer(tmp_path_factory.mktemp("platform-vm") / "data") as vm:
        import_into_victoriametrics(vm.url, platform)
        time.sleep(1)  # let the freshly flushed parts become searchable
        yield vm


@pytest.fixture
async def platform_kube(platform: Cluster) -> AsyncIterator[KubeApiStandIn]:
    """The Kubernetes API as it is after the history: shop is cust_b's, lab unlabeled, newbie cust_d's."""
    standin = await KubeApiStandIn(KubeState(namespaces=demo_namespaces(platform))).start()
    yield standin
    await standin.stop()


def platform_settings(url: str, kubeconfig: Path, **metering: object) -> Settings:
    return load_settings(
        {
            "cluster_id": "k8s-platform-1",
            "prometheus": {"url": url},
            "kubernetes": {"kubeconfig": str(kubeconfig), "customer_label": CUSTOMER_LABEL},
            "metering": {"http_source": "none", "gpu_utilization": "DCGM_FI_PROF_GR_ENGINE_ACTIVE", **metering},
        }
    )


async def _report(settings: Settings, end: datetime) -> UsageReport:
    async with PrometheusClient(settings.prometheus) as client:
        return await measure_window(settings, end, LATER, client)


def assert_matches_truth(report: UsageReport, platform: Cluster) -> None:
    """Every customer that owned a namespace during the window, each namespace it owned listed,
    every meter within 0.01% of the truth (integers within 1)."""
    lo, hi = report.window_start.timestamp(), report.window_end.timestamp()
    owned = platform.namespaces_of(lo, hi)
    truth = platform.truth(report.window_start, report.window_end)
    got = {r.customer_id: r for r in report.usage}
    assert set(got) == set(owned), "a record for every customer owning a namespace in the window, no one else"
    for customer, record in got.items():
        assert record.namespaces == sorted(owned[customer]), customer
        amounts = record.amounts()
        for meter in METERS:
            value, want = amounts[meter], truth[customer].get(meter, 0.0)
            if want == 0:
                assert value == 0, f"{customer}.{meter}: expected exactly 0, got {value}"
            elif meter in INTEGER:
                assert abs(value - want) <= 1.0, f"{customer}.{meter}: {value} vs {want}"
            else:
                assert value == pytest.approx(want, rel=TOLERANCE), f"{customer}.{meter}: {value} vs {want}"


@pytest.mark.parametrize("engine", ["platform_prometheus", "platform_vm"])
@pytest.mark.parametrize("hour", [0, 1, 2])
async def test_each_part_billed_to_its_owner_and_running_requests_only(
    engine: str,
    platform_kube: KubeApiStandIn,
    platform: Cluster,
    tmp_path: Path,
    hour: int,
    request: pytest.FixtureRequest,
) -> None:
    """On Prometheus and on VictoriaMetrics (loaded through its import API): the same exact report."""
    url = request.getfixturevalue(engine).url
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", platform_kube.url)
    end = hour_windows(platform)[hour][1]
    report = await _report(platform_settings(url, kubeconfig), end)
    assert_matches_truth(report, platform)


async def test_gpu_util_percent_gives_the_same_gpu_utilized_hours(
    platform_prometheus: PrometheusServer, platform_kube: KubeApiStandIn, platform: Cluster, tmp_path: Path
) -> None:
    """Where profiling metrics are off, DCGM_FI_DEV_GPU_UTIL / 100 is read instead."""
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", platform_kube.url)
    settings = platform_settings(platform_prometheus.url, kubeconfig, gpu_utilization="DCGM_FI_DEV_GPU_UTIL")
    report = await _report(settings, hour_windows(platform)[1][1])
    assert_matches_truth(report, platform)


async def test_the_relabel_window_cuts_shop_at_the_first_sample_showing_cust_b(
    platform_prometheus: PrometheusServer, platform_kube: KubeApiStandIn, platform: Cluster, tmp_path: Path
) -> None:
    """shop moved from cust_a to cust_b 20 minutes into 01:00-02:00: both records list it, and its
    GPU (held all along) splits 20:08 / 39:52 between them, to the second of the change."""
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", platform_kube.url)
    start, end = hour_windows(platform)[1]
    report = await _report(platform_settings(platform_prometheus.url, kubeconfig), end)
    records = {r.customer_id: r for r in report.usage}
    assert "shop" in records["cust_a"].namespaces and "shop" in records["cust_b"].namespaces
    (change, _), *_ = [(t, c) for t, c in platform.owners["shop"] if start.timestamp() < t < end.timestamp()]
    owned_by_a = change - start.timestamp()
    shop_gpu_a = records["cust_a"].amounts()["gpu_hours"]  # cust_a's only GPU is shop's
    assert shop_gpu_a == pytest.approx(owned_by_a / 3600, rel=1e-9)
    assert records["cust_b"].amounts()["gpu_hours"] == pytest.approx(1 - owned_by_a / 3600, rel=1e-9)


async def test_without_kube_state_metrics_the_window_goes_to_the_owners_observed(
    platform_prometheus: PrometheusServer, platform_kube: KubeApiStandIn, platform: Cluster, tmp_path: Path
) -> None:
    """With metering.namespace_labels_metric off, owners are those observed: shop wholly to cust_b,
    lab (unlabeled now) to nobody; the request and GPU meters are the same per namespace."""
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", platform_kube.url)
    start, end = hour_windows(platform)[1]
    settings = platform_settings(platform_prometheus.url, kubeconfig, namespace_labels_metric=False)
    report = await _report(settings, end)
    records = {r.customer_id: r for r in report.usage}
    assert set(records) == {"cust_a", "cust_b", "cust_d", "cust_e"}
    assert records["cust_b"].namespaces == ["shop"] and records["cust_a"].namespaces == ["shop-dev"]
    truth = platform.truth(start, end)
    shop_gpu = truth["cust_a"]["gpu_hours"] + truth["cust_b"]["gpu_hours"]  # shop's GPU, both owners' parts
    assert records["cust_b"].amounts()["gpu_hours"] == pytest.approx(shop_gpu, rel=TOLERANCE)


async def test_requests_without_phase_series_fail_the_window(
    platform_prometheus: PrometheusServer,
    platform_kube: KubeApiStandIn,
    platform: Cluster,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A requests series whose pod has no kube_pod_status_phase (a denylist dropped it) is never
    billed as if the pod ran, nor as zero: the window fails with what kube-state-metrics must export."""
    from dataclasses import replace

    from cluster_exporter.metering import plan

    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", platform_kube.url)
    settings = platform_settings(platform_prometheus.url, kubeconfig)
    missing = 'kube_pod_status_phase{phase="Running",pod="no-such-pod"}'
    original = plan.requests_meter

    def without_gates(metering: object) -> plan.Meter | None:
        meter = original(metering)  # type: ignore[arg-type]
        return None if meter is None else replace(meter, gate=missing)

    monkeypatch.setattr(plan, "requests_meter", without_gates)
    with pytest.raises(LayoutError, match="kube-state-metrics must export both"):
        await _report(settings, hour_windows(platform)[1][1])


async def test_run_catching_up_across_a_relabel_bills_each_window_to_its_owners_of_the_time(
    platform_prometheus: PrometheusServer, platform_kube: KubeApiStandIn, platform: Cluster, tmp_path: Path
) -> None:
    """`run` after downtime: three backlog windows in one cycle, the Kubernetes API saying shop is
    cust_b's now. Each delivered report bills each window to the owners of its time: 00:00-01:00
    wholly to cust_a, 01:00-02:00 cut at the relabel, 02:00-03:00 to cust_b."""
    from prometheus_client import CollectorRegistry

    from cluster_exporter.delivery.service import RunOptions, run_service
    from cluster_exporter.metering.window import parse_time

    from .delivery.receiver import Receiver

    token = tmp_path / "token"
    token.write_text("platform-token")
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", platform_kube.url)
    base = platform_settings(platform_prometheus.url, kubeconfig)
    windows = hour_windows(platform)
    with Receiver(token="platform-token") as receiver:
        settings = base.model_copy(
            update={
                "billing_api": base.billing_api.model_copy(update={"url": receiver.url, "token_file": token}),
                "delivery": base.delivery.model_copy(
                    update={
                        "state_dir": tmp_path / "state",
                        "leader_election": False,
                        "backfill_from": windows[0][0],
                    }
                ),
            }
        )
        options = RunOptions(once=True, as_of=parse_time("2025-11-20T03:07:00Z"))
        code = await run_service(settings, options, registry=CollectorRegistry(), install_signal_handlers=False)
        delivered = [attempts[-1].report() for attempts in receiver.by_key().values()]
    assert code == 0
    assert [r["window_start"] for r in delivered] == [f"2025-11-20T0{h}:00:00Z" for h in range(3)]
    for body, (start, end) in zip(delivered, windows, strict=True):
        records = {r["customer_id"]: {k: v for k, v in r.items() if k != "customer_id"} for r in body["usage"]}
        report = build_report(body["cluster_id"], start, end, records)
        assert body["report_id"] == report.report_id
        assert_matches_truth(report, platform)
    shop = [{r["customer_id"] for r in body["usage"] if "shop" in r["namespaces"]} for body in delivered]
    assert shop == [{"cust_a"}, {"cust_a", "cust_b"}, {"cust_b"}]
