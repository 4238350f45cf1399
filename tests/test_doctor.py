"""`cluster-exporter doctor` on the real Prometheus with the demo history, and on a broken layout.

Expected values come from the generator (its series, targets and namespaces), never from the
program's output. The CLI runs as a subprocess for the exit code and the table (with this tree on
PYTHONPATH), in-process for the JSON's details.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest

from cluster_exporter.devtools.demo import CUSTOM_METERS, demo_namespaces, prepare
from cluster_exporter.devtools.kubeapi_standin import KubeApiStandIn, KubeState, write_kubeconfig
from cluster_exporter.devtools.prometheus_server import PrometheusServer, free_port
from cluster_exporter.devtools.synthetic_cluster import CUSTOMER_LABEL, Cluster, Series
from cluster_exporter.doctor import Diagnosis, KsmFinding, MeterFinding, diagnose, recommendations, to_json, warnings
from cluster_exporter.metering import plan as q
from cluster_exporter.metering.checks import MeterCheck
from cluster_exporter.metering.window import all_meters
from cluster_exporter.settings import Settings, load_settings
from cluster_exporter.sources.prometheus import PrometheusClient

from .conftest import LATER

ROOT = Path(__file__).resolve().parents[1]
START, END = datetime(2025, 11, 20, 1, tzinfo=UTC), datetime(2025, 11, 20, 2, tzinfo=UTC)
# 01:00 .. 02:00: a restart, a reset, a scrape gap, a deletion
AS_OF = "2025-11-20T02:10:00Z"  # its newest closed and settled window is [START, END)
SEARCH, MAX_GAP = 90.0, 300.0  # the demo's metering.boundary_search and max_gap (the defaults)

# ---------------------------------------------------------------------------------------------
# What the generator says each meter's series are


def _labels(s: Series) -> dict[str, str]:
    return dict(s.labels)


def _containers(name: str) -> Callable[[Series], bool]:
    return lambda s: s.name == name and _labels(s)["container"] not in ("", "POD")


def _network(name: str, views: tuple[str, ...]) -> Callable[[Series], bool]:
    return lambda s: s.name == name and _labels(s)["container"] in views


def meter_series(all_views: bool) -> dict[str, Callable[[Series], bool]]:
    """Per meter, the series it reads: the pod-level network view only (every demo pod has one),
    or with ``all_views`` every series its selector matches (the pause container too)."""
    views = ("", "POD") if all_views else ("",)
    return {
        "cpu_hours": _containers("container_cpu_usage_seconds_total"),
        "memory_gb_hours": _containers("container_memory_working_set_bytes"),
        "network_bytes_sent": _network("container_network_transmit_bytes_total", views),
        "network_bytes_received": _network("container_network_receive_bytes_total", views),
        "storage_gb_hours": lambda s: s.name == "kubelet_volume_stats_used_bytes",
        "http_requests": lambda s: s.name == "nginx_ingress_controller_requests",
        "requests": lambda s: s.name == "kube_pod_container_resource_requests",  # none in the demo
        "pg_commits": lambda s: s.name == "pg_stat_database_xact_commit",
        "mqtt_client_hours": lambda s: s.name == "mqtt_connected_clients",
    }


def sampled(s: Series, lo: float, hi: float) -> bool:
    return any(lo < t <= hi for t, _ in s.samples())


def expected_series(cluster: Cluster) -> dict[str, int]:
    """Series (distinct label sets) with a sample in or around the window (boundary_search either side)."""
    lo, hi = START.timestamp() - SEARCH, END.timestamp() + SEARCH
    return {
        meter: len({s.labels for s in cluster.series if match(s) and sampled(s, lo, hi)})
        for meter, match in meter_series(all_views=False).items()
    }


def expected_namespaces(cluster: Cluster, namespace_label: str = "namespace") -> dict[str, set[str]]:
    """Per meter, the namespaces with a sample of any of its series in the window."""
    lo, hi = START.timestamp(), END.timestamp()
    out = {}
    for meter, match in meter_series(all_views=True).items():
        label = "exported_namespace" if meter == "http_requests" else namespace_label
        out[meter] = {_labels(s)[label] for s in cluster.series if match(s) and sampled(s, lo, hi)}
    return out


def longest_gap(series: list[Series]) -> float:
    """The longest spacing of samples of these series in what the raw fetches read."""
    lo, hi = START.timestamp() - MAX_GAP, END.timestamp() + MAX_GAP
    times = [[t for t, _ in s.samples() if lo <= t <= hi] for s in series]
    return max(b - a for ts in times for a, b in itertools.pairwise(ts))


def labeled(cluster: Cluster) -> set[str]:
    """Namespaces billed in the window: labeled now, or deleted in it (kube-state-metrics' record)."""
    live = {ns for ns, customer in cluster.namespaces.items() if customer}
    return live | {ns for ns, (_, deleted) in cluster.deleted.items() if deleted > START.timestamp()}


# ---------------------------------------------------------------------------------------------
# Running it


@pytest.fixture(scope="module")
def kube_thread(cluster: Cluster) -> Iterator[KubeApiStandIn]:
    """The stand-in in its own thread: reachable while a test blocks on a subprocess."""
    standin = KubeApiStandIn(KubeState(namespaces=demo_namespaces(cluster))).start_in_thread()
    yield standin
    standin.stop_thread()


def doctor_cli(
    prometheus_url: str, kube_url: str, tmp_path: Path, *extra: str, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """`cluster-exporter doctor` with the demo's settings (its custom meters from a config file)."""
    config = tmp_path / "config.toml"
    config.write_text(
        "".join(
            "[[metering.custom_meters]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in meter.items())
            for meter in cast(list[dict[str, Any]], CUSTOM_METERS)
        )
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PROMETHEUS_", "KUBERNETES_", "METERING_"))}
    env = {**clean, **(env or {}), "PYTHONPATH": str(ROOT)}  # this tree's package, not the venv's
    args = [
        *("doctor", "--config", str(config), "--prometheus-url", prometheus_url),
        *("--kubeconfig", str(write_kubeconfig(tmp_path / "kubeconfig", kube_url))),
        *("--customer-label", CUSTOMER_LABEL, *extra),
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "cluster_exporter.cli", *args], capture_output=True, text=True, env=env, timeout=120
    )
    return proc.returncode, proc.stdout, proc.stderr


async def diagnosis_json(settings: Settings, end: datetime = END) -> dict[str, Any]:
    async with PrometheusClient(settings.prometheus) as prometheus:
        found = await diagnose(settings, end, LATER, prometheus)
    return json.loads(json.dumps(to_json(found)))  # what a script reads


DEMO_COPIES = {
    "cpu_hours": 2,
    "memory_gb_hours": 2,
    "network_bytes_sent": 1,
    "network_bytes_received": 1,
    "storage_gb_hours": 1,
}


def rows(table: str) -> dict[str, list[str]]:
    """The meter table's rows by meter name, cells split on runs of two spaces."""
    out = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.split("  ") if c.strip()]
        if cells and cells[0] in meter_series(True):
            out[cells[0]] = cells
    return out


# ---------------------------------------------------------------------------------------------
# The demo cluster: everything attributed, nothing to change


def test_demo_cluster_table(
    prometheus: PrometheusServer, kube_thread: KubeApiStandIn, cluster: Cluster, tmp_path: Path
) -> None:
    code, out, err = doctor_cli(prometheus.url, kube_thread.url, tmp_path, "--as-of", AS_OF)
    assert (code, err) == (0, ""), err
    lines = out.splitlines()
    assert lines[0].startswith("window 2025-11-20T01:00:00Z .. 2025-11-20T02:00:00Z"), "the newest settled window"
    table = rows(out)
    assert list(table) == list(meter_series(True)), "a row per meter, in report order"
    assert table["requests"][1:3] == ["0", "0"], "kube-state-metrics' pod series: none in the demo"
    for meter, count in expected_series(cluster).items():
        if meter == "requests":
            continue
        _, series, copies, unattributed, label, interval, *_ = table[meter]
        assert (series, unattributed, interval) == (str(count), "0", "15s"), table[meter]
        # node C scraped by two jobs copies acme's web pod (two containers, one pod network); two
        # kubelets report globex's RWX volume
        assert copies == str(DEMO_COPIES.get(meter, 0)), (meter, copies)
        assert label.split()[0] == ("exported_namespace" if meter == "http_requests" else "namespace")
    assert "  labeled, no data in any meter: initech" in lines
    assert "  data but no customer label (not billed): kube-system, monitoring" in lines
    assert "  billed from kube-state-metrics' record (deleted or unlabeled): umbrella-tmp" in lines
    assert "recommended: nothing" in lines
    assert lines[-1] == "ok: the window can be metered as configured"


async def test_demo_cluster_json(settings: Settings, cluster: Cluster) -> None:
    found = await diagnosis_json(settings)
    assert (found["schema_version"], found["ok"], found["exit_code"], found["error"]) == (1, True, 0, None)
    assert (found["window_start"], found["window_end"]) == ("2025-11-20T01:00:00Z", "2025-11-20T02:00:00Z")
    meters = {m["name"]: m for m in found["meters"]}
    assert list(meters) == [m.name for m in all_meters(settings)]
    series, namespaces = expected_series(cluster), expected_namespaces(cluster)
    billed = labeled(cluster)
    intervals = {s.target.interval for s in cluster.series}
    gapped = [s for s in cluster.series if s.target.gaps]  # node 10.0.0.2 lost scrapes at 01:25
    assert meters.pop("requests")["series"] == series["requests"] == 0
    for name, meter in meters.items():
        assert meter["measured"] is True
        assert meter["series"] == series[name] > 0, name
        assert (meter["unattributed_series"], meter["unattributed_amount"], meter["labels_found"]) == (0, 0.0, {})
        assert meter["attributed_share"] == 1.0
        label = "exported_namespace" if name == "http_requests" else "namespace"
        assert set(meter["label_used"]) == {label} and sum(meter["label_used"].values()) <= series[name], name
        assert {meter["scrape_interval_s"]} == intervals == {15.0}
        assert meter["jitter_s"] == 0.0
        assert meter["within_max_gap"] is True
        assert meter["namespaces_with_data"] == len(namespaces[name]), name
        assert meter["labeled_namespaces_with_data"] == len(namespaces[name] & billed), name
        assert meter["candidate_labels"] == []
    # a reset under unchanged labels on the node with the gap: its raw samples span the gap
    reset_series = [s for s in gapped if _labels(s).get("pod") == "api-0" and _containers(s.name)(s)]
    assert meters["cpu_hours"]["longest_gap_s"] == longest_gap(reset_series) == 75.0
    for name in ("http_requests", "pg_commits", "mqtt_client_hours"):  # targets without gaps
        assert meters[name]["longest_gap_s"] == 15.0
    # cpu usage attributed to a namespace: every container's, labeled or not (truth before rounding)
    cpu = sum(s.truth(START.timestamp(), END.timestamp()) for s in cluster.series if s.counts and s.meter == "cpu")
    assert meters["cpu_hours"]["attributed_amount"] == pytest.approx(cpu / 3600, rel=1e-4)

    live = {ns: c for ns, c in cluster.namespaces.items() if c}
    with_data = set().union(*namespaces.values())
    assert found["namespaces"] == {
        "labeled": len(live),
        "customers": len(set(live.values())),
        "with_data": len(with_data),
        "labeled_without_data": sorted(set(live) - with_data),
        "unlabeled_with_data": sorted(with_data - billed),
        "billed_from_history": sorted(with_data & set(cluster.deleted)),
    }
    assert found["namespaces"]["labeled_without_data"] == ["initech"]
    every = set(cluster.namespaces) | set(cluster.deleted)
    assert found["kube_state_metrics"] == {
        "label": "label_billing_example_com_customer_id",
        "used_by_metering": True,
        "namespaces": len(every),
        "with_customer_label": len(live) + len(cluster.deleted),
        "labeled_without_customer_label": [],
        "namespace_in_exported_namespace": False,
    }
    assert found["recommendations"] == []
    assert found["warnings"] == [
        "kube-state-metrics is scraped but has no kube_pod_container_resource_requests series: cpu_request_hours, "
        "memory_request_gb_hours, gpu_hours are not reported (kube-state-metrics --resources must include pods)"
    ]
    assert found["ownership"]["source"] == "kube-state-metrics", "the demo's kube_namespace_labels has the label"
    assert found["dcgm_exporter"] == {}


def test_demo_cluster_json_from_the_cli(
    prometheus: PrometheusServer, kube_thread: KubeApiStandIn, cluster: Cluster, tmp_path: Path
) -> None:
    code, out, err = doctor_cli(
        prometheus.url, kube_thread.url, tmp_path, "--format", "json", "--window-end", "2025-11-20T03:00:00Z"
    )
    assert (code, err) == (0, ""), err
    found = json.loads(out)
    assert set(found) == {
        *("schema_version", "window_start", "window_end", "ok", "exit_code", "error", "configured"),
        *("meters", "namespaces", "kube_state_metrics", "recommendations", "warnings", "ownership"),
        "dcgm_exporter",
    }
    assert found["window_start"] == "2025-11-20T02:00:00Z" and found["ok"] is True
    assert found["configured"] == {
        "scrape_interval_s": 30.0,
        "max_gap_s": 300.0,
        "boundary_search_s": 90.0,
        "min_attributed_share": 0.5,
        "http_source": "nginx",
        "customer_label": CUSTOMER_LABEL,
    }
    # no scrape gap after 02:00: every meter's longest gap is one scrape interval
    assert {m["longest_gap_s"] for m in found["meters"] if m["name"] != "requests"} == {15.0}
    # umbrella-tmp was deleted at 01:30: gone from this window
    assert found["namespaces"]["billed_from_history"] == []


async def test_a_customer_label_kube_state_metrics_does_not_carry(settings: Settings) -> None:
    other = "billing.example.com/tenant"
    relabeled = settings.model_copy(
        update={"kubernetes": settings.kubernetes.model_copy(update={"customer_label": other})}
    )
    found = await diagnosis_json(relabeled)
    assert found["ok"] is True  # no namespace carries it: nobody is billed, which is not an error
    ksm = found["kube_state_metrics"]
    assert ksm["label"] == "label_billing_example_com_tenant" and ksm["with_customer_label"] == 0
    assert found["recommendations"] == [
        {
            "kind": "kube-state-metrics",
            "setting": "--metric-labels-allowlist",
            "value": f"namespaces=[{other}]",
            "reason": "namespaces deleted or unlabeled during a window are billed from kube-state-metrics' record "
            f"of the label; kube_namespace_labels does not carry {other}",
        }
    ]


# ---------------------------------------------------------------------------------------------
# A broken layout: the Ingress' namespace in a label the meter does not read

RENAMED = {"exported_namespace": "ingress_namespace", "namespace": "kubernetes_namespace"}


def nginx_relabeled(cluster: Cluster) -> Cluster:
    """``cluster`` with nginx's series as a scrape job that relabels them would store them: the
    Ingress' namespace in ``ingress_namespace``, the controller pod's in ``kubernetes_namespace``."""

    def relabel(s: Series) -> Series:
        if s.name != "nginx_ingress_controller_requests":
            return s
        return dataclasses.replace(s, labels=tuple(sorted((RENAMED.get(k, k), v) for k, v in s.labels)))

    return dataclasses.replace(cluster, series=[relabel(s) for s in cluster.series])


@pytest.fixture(scope="module")
def broken_prometheus(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    with PrometheusServer(prepare(tmp_path_factory.mktemp("nginx-relabeled"), nginx_relabeled(cluster))) as prom:
        yield prom


def test_broken_layout_fails_naming_the_meter_labels_and_setting(
    broken_prometheus: PrometheusServer, kube_thread: KubeApiStandIn, cluster: Cluster, tmp_path: Path
) -> None:
    code, out, err = doctor_cli(broken_prometheus.url, kube_thread.url, tmp_path, "--as-of", AS_OF)
    assert code == 6, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert err.startswith("cluster-exporter: error: http_requests: ") and "metering.nginx_namespace_label" in err
    http = expected_series(cluster)["http_requests"]
    assert rows(out)["http_requests"][1:5] == [str(http), "0", str(http), "-"]
    lines = out.splitlines()
    carried = next(line for line in lines if line.startswith("http_requests: series without"))
    assert f"ingress_namespace {http}" in carried and f"kubernetes_namespace {http}" in carried
    assert '  metering.nginx_namespace_label = "ingress_namespace"' in lines
    assert lines[-1].startswith("FAILED (exit 6): http_requests: ")
    # everything else was still measured and printed
    assert rows(out)["cpu_hours"][1] == str(expected_series(cluster)["cpu_hours"])


def test_broken_layout_json(
    broken_prometheus: PrometheusServer, kube_thread: KubeApiStandIn, cluster: Cluster, tmp_path: Path
) -> None:
    code, out, err = doctor_cli(broken_prometheus.url, kube_thread.url, tmp_path, "--as-of", AS_OF, "--format", "json")
    found = json.loads(out)
    assert code == found["exit_code"] == 6 and found["ok"] is False
    assert err.strip() == f"cluster-exporter: error: {found['error']}"
    http = next(m for m in found["meters"] if m["name"] == "http_requests")
    count = expected_series(cluster)["http_requests"]
    assert (http["series"], http["unattributed_series"], http["label_used"]) == (count, count, {})
    assert http["labels_found"]["ingress_namespace"] == http["labels_found"]["kubernetes_namespace"] == count
    assert http["attributed_share"] == 0.0
    ingresses = expected_namespaces(cluster)["http_requests"]  # the Ingress' namespaces with requests in the window
    assert http["candidate_labels"] == [
        {
            "label": "ingress_namespace",
            "values": len(ingresses),
            "labeled_namespaces": len(ingresses & labeled(cluster)),
        },
        {"label": "kubernetes_namespace", "values": 1, "labeled_namespaces": 0},
    ]
    assert [(r["kind"], r["setting"], r["value"]) for r in found["recommendations"]] == [
        ("setting", "metering.nginx_namespace_label", "ingress_namespace")
    ]


# ---------------------------------------------------------------------------------------------
# Windows that cannot be read, bad flags


def test_a_window_without_data_prints_what_it_found_then_fails(
    prometheus: PrometheusServer, kube_thread: KubeApiStandIn, tmp_path: Path
) -> None:
    code, out, err = doctor_cli(prometheus.url, kube_thread.url, tmp_path, "--window-end", "2025-11-19T10:00:00Z")
    assert code == 4 and err.startswith("cluster-exporter: error: Prometheus has no container samples"), err
    assert all(row[1:4] == ["0", "0", "0"] for row in rows(out).values())
    lines = out.splitlines()
    assert "recommended: nothing" in lines, "no metering.http_source = none when nothing at all is scraped"
    assert "  labeled, no data in any meter: acme-dev, acme-prod, globex, hooli, initech" in lines
    assert lines[-1].startswith("FAILED (exit 4): Prometheus has no container samples")


def test_a_window_not_settled_yet_is_not_read(
    prometheus: PrometheusServer, kube_thread: KubeApiStandIn, tmp_path: Path
) -> None:
    code, out, err = doctor_cli(
        prometheus.url,
        kube_thread.url,
        tmp_path,
        "--window-end",
        "2025-11-20T02:00:00Z",
        "--as-of",
        "2025-11-20T02:03Z",
    )
    assert code == 3 and "settle delay" in err and len(err.strip().splitlines()) == 1
    assert all(row[4] == "not measured" for row in rows(out).values())


def test_prometheus_unreachable(kube_thread: KubeApiStandIn, tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    code, out, err = doctor_cli(closed, kube_thread.url, tmp_path, "--as-of", AS_OF, env={"PROMETHEUS_ATTEMPTS": "1"})
    assert code == 1 and len(err.strip().splitlines()) == 1 and "cannot reach" in err and "Traceback" not in err
    assert all(row[4] == "not measured" for row in rows(out).values())
    assert any(line.startswith("warning: query doctor_namespaces_with_data failed") for line in out.splitlines())
    assert "namespaces: 5 labeled (4 customers) in the Kubernetes API" in out  # the API was still read


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--format", "yaml"), "invalid choice"),
        (("--window-end", "2025-11-20T02:30:00Z"), "whole hour"),
        (("--as-of", "yesterday"), "not a time"),
        (("--frobnicate",), "unrecognized arguments"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    code, out, err = doctor_cli("http://127.0.0.1:9", "http://127.0.0.1:9", tmp_path, *args)
    assert (code, out) == (2, "")
    assert len(err.strip().splitlines()) == 1 and message in err and "Traceback" not in err


# ---------------------------------------------------------------------------------------------
# Recommendations from what the data showed (hand-made findings)


def _settings(**metering: object) -> Settings:
    return load_settings({"metering": {"custom_meters": CUSTOM_METERS, **metering}})


def _diagnosis(settings: Settings, checks: dict[str, MeterCheck], ksm: KsmFinding | None = None) -> Diagnosis:
    findings = [
        MeterFinding(m, checks.get(m.name, MeterCheck(m.name, m.namespace_labels, series=1)))
        for m in all_meters(settings)
    ]
    live = {"acme-prod": "cust_acme"}
    ksm = ksm or KsmFinding("label_billing_example_com_customer_id", {"acme-prod"}, {"acme-prod": "cust_acme"})
    return Diagnosis(settings, START, END, findings, live=live, ksm=ksm)


def _spaced(name: str, spacings: list[float], longest: float | None = None) -> MeterCheck:
    check = MeterCheck(name, ("namespace",), series=len(spacings))
    for spacing in spacings:
        check.saw_spacing(spacing)
    check.longest_gap = max(check.longest_gap, longest or 0.0)
    return check


@pytest.mark.parametrize(
    ("metering", "checks", "expected"),
    [
        pytest.param({}, {}, [], id="nothing-to-change"),
        pytest.param(
            {},
            {"cpu_hours": _spaced("cpu_hours", [60.0] * 100)},
            [],
            id="scraped-every-minute-within-the-default-settle-delay",
        ),
        pytest.param(
            {"settle_delay": "5m"},
            {"cpu_hours": _spaced("cpu_hours", [60.0] * 100)},
            [("metering.settle_delay", "330s")],
            id="settle-delay-shorter-than-max-gap-and-room",
        ),
        pytest.param(
            {},
            {"cpu_hours": _spaced("cpu_hours", [80.0] * 95 + [110.0] * 5)},
            [("metering.boundary_search", "110s")],
            id="jitter-beyond-the-boundary-search",
        ),
        pytest.param(
            {"max_gap": "1m", "boundary_search": "45s"},
            {"cpu_hours": _spaced("cpu_hours", [15.0] * 100, longest=200.0)},
            [("metering.max_gap", "200s")],
            id="gaps-longer-than-max-gap",
        ),
        pytest.param(
            {},
            {"cpu_hours": _spaced("cpu_hours", [15.0] * 100, longest=400.0)},
            [],
            id="gap-beyond-the-lookback-is-a-warning",
        ),
        pytest.param(
            {},
            {"http_requests": MeterCheck("http_requests", ("exported_namespace", "namespace"))},
            [("metering.http_source", "none")],
            id="no-ingress",
        ),
    ],
)
def test_recommendations(
    metering: dict[str, object], checks: dict[str, MeterCheck], expected: list[tuple[str, str]]
) -> None:
    got = [(r.setting, r.value) for r in recommendations(_diagnosis(_settings(**metering), checks))]
    assert got == expected


def test_nothing_scraped_recommends_no_http_source() -> None:
    settings = _settings()
    empty = {m.name: MeterCheck(m.name, m.namespace_labels) for m in all_meters(settings)}
    assert recommendations(_diagnosis(settings, empty)) == []


def test_a_gap_beyond_the_lookback_is_a_warning() -> None:
    d = _diagnosis(_settings(), {"cpu_hours": _spaced("cpu_hours", [15.0] * 10, longest=400.0)})
    assert [w for w in warnings(d) if "400s" in w and "5m" in w]


def test_unattributed_series_without_a_namespace_like_label() -> None:
    settings = _settings()
    cpu = MeterCheck("cpu_hours", ("exported_namespace", "namespace"), series=4, unattributed_series=4)
    cpu.labels_found.update({"pod": 4, "container": 4})
    mqtt = MeterCheck("mqtt_client_hours", ("namespace",), series=2, unattributed_series=2)
    mqtt.labels_found.update({"broker": 2})
    got = recommendations(_diagnosis(settings, {"cpu_hours": cpu, "mqtt_client_hours": mqtt}))
    assert [(r.kind, r.setting, r.value) for r in got] == [
        ("scrape", None, None),  # cAdvisor's namespace is dropped before Prometheus: no setting can help
        ("setting", "namespace_label of custom meter mqtt_client_hours", None),
    ]
    assert "they carry pod, container" in got[0].reason and "they carry broker" in got[1].reason


def test_kube_state_metrics_findings() -> None:
    settings = _settings()
    no_label = KsmFinding("label_billing_example_com_customer_id", {"acme-prod", "kube-system"}, {})
    assert [r.kind for r in recommendations(_diagnosis(settings, {}, no_label))] == ["kube-state-metrics"]
    renamed = KsmFinding("label_billing_example_com_customer_id", {"acme-prod"}, {"acme-prod": "cust_acme"}, renamed=1)
    # metering reads kube-state-metrics' namespace from exported_namespace as well: nothing to change
    assert recommendations(_diagnosis(settings, {}, renamed)) == []
    absent = KsmFinding("label_billing_example_com_customer_id")
    off = _settings(namespace_labels_metric=False)
    assert [r.kind for r in recommendations(_diagnosis(settings, {}, absent))] == ["kube-state-metrics"]
    assert recommendations(_diagnosis(off, {}, absent)) == []


def test_the_namespaces_query_is_one_query_for_every_selector_meter() -> None:
    settings = _settings()
    meters = all_meters(settings)
    w = q.Window(START.timestamp(), END.timestamp(), MAX_GAP, SEARCH, 7200.0)
    query = q.doctor_namespaces_with_data(meters, w)
    assert query is not None and query.at == END.timestamp()
    assert query.expr.count("last_over_time(") == len(meters)  # each meter's series selected once
    cpu = meters[0]
    assert query.expr.startswith(
        "count by (cluster_exporter_meter, cluster_exporter_namespace) (label_replace(label_replace(label_replace("
        f'last_over_time({cpu.selector}[3599999ms]), "cluster_exporter_namespace", "$1", "namespace", "(.+)"), '
        '"cluster_exporter_namespace", "$1", "exported_namespace", "(.+)"), "cluster_exporter_meter", "cpu_hours", '
        '"", "") or '
    )
    assert q.doctor_namespaces_with_data([], w) is None
