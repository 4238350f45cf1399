"""The report against the generator's exact ground truth, through a real Prometheus and the stand-in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cluster_exporter.devtools.clusters import hour_windows
from cluster_exporter.devtools.kubeapi_standin import KubeApiStandIn
from cluster_exporter.devtools.synthetic_cluster import CUSTOMER_LABEL, Cluster
from cluster_exporter.metering import plan as q
from cluster_exporter.metering.window import all_meters, make_window, measure_window
from cluster_exporter.meters import ALWAYS as BUILTIN_METERS
from cluster_exporter.report import UsageReport, report_id
from cluster_exporter.settings import Settings
from cluster_exporter.sources.prometheus import PrometheusClient

from .conftest import LATER

TOLERANCE = 1e-4  # the method is exact: every customer and meter within 0.01% (integers within 1)
METERS = (*BUILTIN_METERS, "pg_commits", "mqtt_client_hours")  # the demo's two custom meters


async def _report(settings: Settings, end: datetime, names: list[str] | None = None) -> tuple[UsageReport, int]:
    """The window's report and the PromQL requests it took (their names appended to ``names``)."""
    on_query = None if names is None else (lambda name, seconds, ok: names.append(name))
    async with PrometheusClient(settings.prometheus, on_query) as prom:
        report = await measure_window(settings, end, LATER, prom)
        return report, prom.requests_sent


def _assert_matches_truth(report: UsageReport, truth: dict[str, dict[str, float]], meters: tuple[str, ...]) -> None:
    got = {r.customer_id: r.amounts() for r in report.usage}
    assert set(got) == set(truth), "every customer with a labeled namespace, and no one else"
    for customer, expected in truth.items():
        for meter in meters:
            value, want = got[customer][meter], expected[meter]
            if want == 0:
                assert value == 0, f"{customer}.{meter}: expected exactly 0, got {value}"
            elif meter in ("network_bytes_sent", "network_bytes_received", "http_requests", "pg_commits"):
                assert isinstance(value, int)
                assert abs(value - want) <= 1.0, f"{customer}.{meter}: {value} vs {want}"
            else:
                assert value == pytest.approx(want, rel=TOLERANCE), f"{customer}.{meter}: {value} vs {want}"


@pytest.mark.parametrize("hour", [0, 1, 2])
async def test_report_matches_ground_truth(settings: Settings, cluster: Cluster, hour: int) -> None:
    start, end = hour_windows(cluster)[hour]
    report, _ = await _report(settings, end)
    assert report.window_start == start and report.window_end == end
    assert report.report_id == report_id("k8s-demo-1", start, end)
    truth = {c: v for c, v in cluster.truth(start, end).items() if c != "cust_umbrella" or hour < 2}
    _assert_matches_truth(report, truth, METERS)
    # no kube-state-metrics pod series in the demo: the request and GPU meters are not measured,
    # so not reported (absent, never a zero standing in for a missing source)
    optional = {"cpu_request_hours", "memory_request_gb_hours", "gpu_hours"}
    assert all(not set(r.amounts()) & optional for r in report.usage)


async def test_report_records_namespaces_idle_and_deleted_customers(settings: Settings, cluster: Cluster) -> None:
    report, _ = await _report(settings, hour_windows(cluster)[1][1])
    by_customer = {r.customer_id: r for r in report.usage}
    assert by_customer["cust_acme"].namespaces == ["acme-dev", "acme-prod"]
    # labeled but no workload: reported, with zeros
    idle = by_customer["cust_initech"]
    assert idle.namespaces == ["initech"] and all(v == 0 for v in idle.amounts().values())
    # deleted at 01:30: no longer in the API, billed to its owner from kube-state-metrics' history
    assert by_customer["cust_umbrella"].namespaces == ["umbrella-tmp"]
    assert by_customer["cust_umbrella"].cpu_hours > 0.4
    # unlabeled system namespaces never appear
    all_namespaces = {ns for r in report.usage for ns in r.namespaces}
    assert not all_namespaces & {"kube-system", "monitoring", "ingress-nginx", "istio-system"}


async def test_consecutive_windows_add_up_to_the_whole(settings: Settings, cluster: Cluster) -> None:
    """No increment is lost or counted twice at a window boundary."""
    windows = hour_windows(cluster)
    reports = [(await _report(settings, end))[0] for _, end in windows]
    truth = cluster.truth(windows[0][0], windows[-1][1])
    for meter in ("cpu_hours", "network_bytes_received", "http_requests"):
        for customer in ("cust_acme", "cust_globex", "cust_hooli"):
            total = sum(r.amounts()[meter] for rep in reports for r in rep.usage if r.customer_id == customer)
            assert total == pytest.approx(truth[customer][meter], rel=1e-4), f"{customer}.{meter}"


async def test_istio_source_counts_each_request_once(settings: Settings, cluster: Cluster) -> None:
    istio = settings.model_copy(update={"metering": settings.metering.model_copy(update={"http_source": "istio"})})
    start, end = hour_windows(cluster)[1]
    report, _ = await _report(istio, end)
    truth = cluster.truth(start, end)
    got = {r.customer_id: r.http_requests for r in report.usage}
    for customer in ("cust_acme", "cust_globex"):
        want = truth[customer]["http_requests_istio"]
        assert abs(got[customer] - want) <= 1.0
    assert got["cust_hooli"] == 0


async def test_query_count_does_not_grow_with_namespaces(
    settings: Settings, cluster: Cluster, kube: KubeApiStandIn
) -> None:
    end = hour_windows(cluster)[1][1]
    _, few = await _report(settings, end)
    for i in range(2000):  # onboard 2,000 more (idle) customers
        kube.state.namespaces[f"tenant-{i:04d}"] = {CUSTOMER_LABEL: f"cust_{i:04d}"}
    report, many = await _report(
        settings.model_copy(update={"kubernetes": settings.kubernetes.model_copy(update={"page_size": 250})}), end
    )
    assert len(report.usage) == 5 + 2000
    assert many == few, "PromQL requests per window must not depend on the number of namespaces"
    list_calls = [r for r in kube.state.requests if r.startswith("/api/v1/namespaces")]
    assert any("continue=" in r for r in list_calls), "the namespace list is paged"


async def test_window_end_must_be_settled(settings: Settings, cluster: Cluster) -> None:
    from cluster_exporter.errors import WindowNotReadyError

    end = hour_windows(cluster)[1][1]
    async with PrometheusClient(settings.prometheus) as prom:
        with pytest.raises(WindowNotReadyError, match="in the future"):
            await measure_window(settings, end, end - timedelta(minutes=1), prom)
        with pytest.raises(WindowNotReadyError, match="settle delay"):
            await measure_window(settings, end, end + timedelta(seconds=30), prom)
        with pytest.raises(WindowNotReadyError, match="after the window end"):
            # settled by the clock, but Prometheus has nothing after the window end yet (end of the demo data)
            await measure_window(settings, datetime(2025, 11, 20, 4, tzinfo=UTC), LATER, prom)


async def test_query_split_gives_the_same_report(settings: Settings, cluster: Cluster) -> None:
    """Engines with a per-query limit: the namespace space in shards, answers summed."""
    end = hour_windows(cluster)[1][1]
    whole_names: list[str] = []
    shard_names: list[str] = []
    whole, _ = await _report(settings, end, whole_names)
    split = settings.model_copy(update={"prometheus": settings.prometheus.model_copy(update={"query_split": 3})})
    shards, _ = await _report(split, end, shard_names)
    assert shards.model_dump() == whole.model_dump()
    w = make_window(settings, end - timedelta(hours=1), end)
    meter_queries = sum(len(q.meter_queries(m, w)) for m in all_meters(settings))
    # raw-sample fetches are made per shard, for the irregular series each shard found
    whole_aggregate = [n for n in whole_names if not n.endswith(("_raw", "_raw_before"))]
    shard_aggregate = [n for n in shard_names if not n.endswith(("_raw", "_raw_before"))]
    not_split = len(whole_aggregate) - meter_queries  # checks, namespace owners
    assert len(shard_aggregate) == not_split + 3 * meter_queries


async def test_a_missing_source_fails_the_window_instead_of_billing_zero(settings: Settings, cluster: Cluster) -> None:
    from cluster_exporter.errors import NoDataError
    from cluster_exporter.settings import CustomMeter

    missing = CustomMeter(name="mqtt_messages", type="counter", selector="mqtt_messages_received_total")
    metering = settings.metering.model_copy(update={"custom_meters": [*settings.metering.custom_meters, missing]})
    with pytest.raises(NoDataError, match=r"meter mqtt_messages: .* source is missing"):
        await _report(settings.model_copy(update={"metering": metering}), hour_windows(cluster)[1][1])
    # no ingress at all is said explicitly, and then http_requests is simply not metered
    no_http = settings.metering.model_copy(update={"http_source": "none"})
    report, _ = await _report(settings.model_copy(update={"metering": no_http}), hour_windows(cluster)[1][1])
    assert all(r.http_requests == 0 for r in report.usage)


NETWORK = ("container_network_transmit_bytes_total", "container_network_receive_bytes_total")


def pause_only(cluster: Cluster) -> Cluster:
    """``cluster`` with one globex pod whose network shows only on the pause container, as some
    runtimes report it: its pod-level network series removed, the pause container's billed."""
    import dataclasses

    target = next(s for s in cluster.series if s.name == NETWORK[0] and dict(s.labels).get("namespace") == "globex")
    pod = dict(target.labels)["pod"]
    series = []
    for s in cluster.series:
        labels = dict(s.labels)
        if s.name in NETWORK and labels.get("namespace") == "globex" and labels.get("pod") == pod:
            if labels.get("container") == "":
                continue  # no pod-level view for this pod
            if labels.get("container") == "POD":
                s = dataclasses.replace(s, counts=True)  # its only view is billed
        series.append(s)
    return dataclasses.replace(cluster, series=series)


async def test_a_pod_whose_network_shows_only_on_the_pause_container(
    cluster: Cluster, kube: KubeApiStandIn, tmp_path: Path
) -> None:
    """Some runtimes report a pod's network only on the pause container: it is billed from there
    (the boundary queries read only pod-level series; the window scan also answers for units
    without one, and the pod is metered from raw samples)."""
    from cluster_exporter.devtools.demo import demo_settings, prepare
    from cluster_exporter.devtools.kubeapi_standin import write_kubeconfig
    from cluster_exporter.devtools.prometheus_server import PrometheusServer

    paused = pause_only(cluster)
    end = hour_windows(paused)[1][1]
    truth = paused.truth(end - timedelta(hours=1), end)
    with PrometheusServer(prepare(tmp_path, paused)) as prom:
        settings = demo_settings(prom.url, write_kubeconfig(tmp_path / "kubeconfig", kube.url))
        names: list[str] = []
        report, _ = await _report(settings, end, names)
    _assert_matches_truth(report, truth, ("network_bytes_sent", "network_bytes_received"))
    assert truth["cust_globex"]["network_bytes_sent"] > 0
    assert any(n.startswith("network_bytes_sent_raw") for n in names), "the pause-only pod is metered raw"


async def test_irregular_series_whose_raw_samples_do_not_come_back_fail_the_window(
    settings: Settings, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A raw-sample fetch that answers without some irregular series (an engine dropping them, a
    matcher gone wrong) must not bill them zero."""
    from dataclasses import astuple

    from cluster_exporter.errors import PrometheusError

    real = q.raw_samples_query

    def missing_one(meter: q.Meter, w: q.Window, matchers: dict[str, list[str]]) -> q.Query:
        query = real(meter, w, matchers)
        return q.Query(query.name, query.expr.replace("}[", ',namespace!="acme-prod"}[', 1), *astuple(query)[2:])

    monkeypatch.setattr(q, "raw_samples_query", missing_one)
    with pytest.raises(PrometheusError, match="did not come back"):
        await _report(settings, hour_windows(cluster)[1][1])


@pytest.mark.parametrize(("namespaces", "expected"), [(10, 3), (50_001, 1)])
async def test_meters_at_once_auto_measures_one_meter_at_a_time_on_large_clusters(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, namespaces: int, expected: int
) -> None:
    """meters_at_once "auto" holds one meter's per-series numbers at a time above 50,000 labeled
    namespaces (the 128 MiB limit at 100,000), three below."""
    import asyncio

    from cluster_exporter.metering import window as metering
    from cluster_exporter.metering.checks import MeterCheck
    from cluster_exporter.metering.fold import MeterResult

    assert settings.prometheus.meters_at_once == "auto"
    running, most = 0, 0

    async def fake_meter(prometheus: object, meter: q.Meter, w: q.Window, *into: object) -> MeterResult:
        nonlocal running, most
        running += 1
        most = max(most, running)
        for _ in range(5):
            await asyncio.sleep(0.01)
        running -= 1
        return MeterResult(MeterCheck(meter.name, meter.namespace_labels, series=1), after_end=1)

    async def discover(_: object) -> dict[str, str]:
        return {f"tenant-{i}": f"c{i}" for i in range(namespaces)}

    monkeypatch.setattr(metering, "meter_amounts", fake_meter)
    async with PrometheusClient(settings.prometheus) as prom:
        report = await measure_window(settings, datetime(2025, 11, 20, 2, tzinfo=UTC), LATER, prom, discover)
    assert len(report.usage) == namespaces
    assert most == expected


async def test_the_demo_attributes_everything_and_its_data_shows_its_scrape_interval(
    settings: Settings, cluster: Cluster
) -> None:
    """What the answers said about the demo's data: every series attributed, the Ingress'
    namespace read from exported_namespace (nginx scraped without honorLabels), 15 s scrapes."""
    from cluster_exporter.metering.checks import MeterCheck

    seen: list[MeterCheck] = []
    async with PrometheusClient(settings.prometheus) as prom:
        await measure_window(settings, hour_windows(cluster)[1][1], LATER, prom, on_checks=seen.extend)
    checks = {c.meter: c for c in seen}
    # the demo has no kube-state-metrics pod series: requests are looked for, and not reported
    assert set(checks) == {*METERS, "requests"}
    assert checks["requests"].series == 0
    for check in seen:
        if check.meter == "requests":
            continue
        assert check.series > 0 and check.unattributed_series == 0 and check.unattributed_amount == 0, check.meter
        assert check.attributed_amount > 0, check.meter
    for meter in ("cpu_hours", "memory_gb_hours", "network_bytes_sent", "storage_gb_hours", "http_requests"):
        assert checks[meter].scrape_interval == 15.0, meter
    assert set(checks["http_requests"].label_used) == {"exported_namespace"}
    # node C is scraped by two jobs: the acme web pod's two containers are copied once each
    assert checks["cpu_hours"].copies == 2 and checks["memory_gb_hours"].copies == 2
    assert set(checks["cpu_hours"].label_used) == {"namespace"}
    # node_b scrapes nothing from 01:25:00 to 01:26:00: four 15 s scrapes lost, 75 s between two
    # samples of its irregular series (metered raw), bridged
    node_b = next(t for s in cluster.series if (t := s.target).name == "10.0.0.2:10250")
    lo, hi = node_b.gaps[0]
    assert checks["memory_gb_hours"].longest_gap == pytest.approx(
        node_b.time_at(node_b.index_at_or_after(hi)) - node_b.time_at(node_b.index_at_or_before(lo))
    )
    assert checks["memory_gb_hours"].longest_gap == 75.0


async def test_a_namespace_label_the_series_do_not_carry_fails_the_window_naming_the_setting(
    settings: Settings, cluster: Cluster
) -> None:
    from cluster_exporter.errors import LayoutError

    wrong = settings.metering.model_copy(update={"nginx_namespace_label": "ingress_namespace"})
    with pytest.raises(LayoutError) as failure:
        await _report(settings.model_copy(update={"metering": wrong}), hour_windows(cluster)[1][1])
    message = str(failure.value)
    assert message.startswith("http_requests: 30 nginx_ingress_controller_requests series, none with label ")
    assert message.endswith(
        '; they carry exported_namespace, namespace (set metering.nginx_namespace_label = "exported_namespace")'
    ), message
    assert "\n" not in message


async def test_cpu_without_memory_fails_the_window(cluster: Cluster, kube: KubeApiStandIn, tmp_path: Path) -> None:
    """A labeled namespace whose memory series are gone (a relabeling dropped them) is a broken
    pipeline: the window fails instead of billing it no memory."""
    import dataclasses

    from cluster_exporter.devtools.demo import demo_settings, prepare
    from cluster_exporter.devtools.kubeapi_standin import write_kubeconfig
    from cluster_exporter.devtools.prometheus_server import PrometheusServer
    from cluster_exporter.errors import LayoutError

    series = [
        s
        for s in cluster.series
        if not (s.name == "container_memory_working_set_bytes" and dict(s.labels).get("namespace") == "hooli")
    ]
    broken = dataclasses.replace(cluster, series=series)
    with PrometheusServer(prepare(tmp_path, broken)) as prom:
        settings = demo_settings(prom.url, write_kubeconfig(tmp_path / "kubeconfig", kube.url))
        with pytest.raises(LayoutError, match=r"memory_gb_hours: 1 labeled namespace\(s\) used CPU .*e\.g\. hooli"):
            await _report(settings, hour_windows(broken)[1][1])
