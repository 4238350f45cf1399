"""The platform cluster's truth against its samples, read the way the metering's rules say.

The truth (Cluster.truth) is computed from the underlying functions and the ownership instants;
here the same amounts are computed from nothing but the OpenMetrics text Prometheus loads: the
owners from kube_namespace_labels' runs, counters interpolated at the cuts, gauges and the
requests x Running products integrated as trapezoids between samples. They must agree exactly.
"""

from __future__ import annotations

import io
import itertools
import re
import shutil
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import pytest

from cluster_exporter.devtools.clusters import demo_cluster, hour_windows
from cluster_exporter.devtools.platform_cluster import NAMESPACES_AT_END, TRAINING_RUN, platform_cluster
from cluster_exporter.devtools.prometheus_server import backfill
from cluster_exporter.devtools.synthetic_cluster import GIB, KSM_CUSTOMER_LABEL, MAX_BRIDGED_GAP, Cluster

Key = tuple[str, tuple[tuple[str, str], ...]]
Points = list[tuple[float, float]]
WEIGHTS = {"nvidia_com_gpu": 1.0, "amd_com_gpu": 1.0, "nvidia_com_mig_1g_5gb": 1.0 / 7.0}
NEW_METERS = ("gpu_hours", "gpu_utilized_hours", "cpu_request_hours", "memory_request_gb_hours")
USAGE_METERS = ("cpu_hours", "memory_gb_hours", "network_bytes_sent", "network_bytes_received")
LINE = re.compile(r"^(\w+)\{(.*)\} (\S+) (\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@pytest.fixture(scope="module")
def cluster() -> Cluster:
    return platform_cluster()


@pytest.fixture(scope="module")
def history(cluster: Cluster) -> dict[Key, Points]:
    """Every series' samples, parsed back from the OpenMetrics text."""
    text = io.StringIO()
    cluster.write_openmetrics(text)
    out: dict[Key, Points] = defaultdict(list)
    for line in text.getvalue().splitlines():
        if line == "# EOF":
            break
        m = LINE.match(line)
        assert m, line
        labels = tuple(sorted(LABEL.findall(m.group(2))))
        out[(m.group(1), labels)].append((float(m.group(4)), float(m.group(3))))
    return dict(out)


def _windows(cluster: Cluster) -> list[tuple[datetime, datetime]]:
    return hour_windows(cluster)


# ---------------------------------------------------------------------------------------------
# The rules, written out on the samples


def runs(points: Points) -> list[Points]:
    """Consecutive samples at most MAX_BRIDGED_GAP apart."""
    out: list[Points] = [[points[0]]]
    for a, b in itertools.pairwise(points):
        if b[0] - a[0] > MAX_BRIDGED_GAP:
            out.append([])
        out[-1].append(b)
    return out


def owners_from_samples(history: dict[Key, Points]) -> dict[str, list[tuple[float, str | None]]]:
    """Per namespace, (sample time, its customer label or None) where the value differs from the
    sample before: the owner at t is the value of the latest sample at or before t."""
    samples: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for (name, labels), points in history.items():
        if name != "kube_namespace_labels":
            continue
        d = dict(labels)
        samples[d["namespace"]] += [(t, d.get(KSM_CUSTOMER_LABEL) or "") for t, _ in points]
    out: dict[str, list[tuple[float, str | None]]] = {}
    for ns, timeline in samples.items():
        changes = out[ns] = []
        for t, customer in sorted(timeline):
            if not changes or (changes[-1][1] or "") != customer:
                changes.append((t, customer or None))
    return out


def pieces(owners: list[tuple[float, str | None]], lo: float, hi: float) -> list[tuple[float, float, str | None]]:
    """[lo, hi) cut at the changes: the owner of each piece is the latest change at or before it."""
    cuts = sorted({lo, hi, *(t for t, _ in owners if lo < t < hi)})
    out = []
    for a, b in itertools.pairwise(cuts):
        started = [c for t, c in owners if t <= a]
        out.append((a, b, started[-1] if started else None))
    return out


def counter_at(points: Points, t: float) -> float:
    """A counter's value at t: zero before its first sample, the line between samples."""
    if t < points[0][0]:
        return 0.0
    if t >= points[-1][0]:
        return points[-1][1]
    for (t0, v0), (t1, v1) in itertools.pairwise(points):
        if t0 <= t < t1:
            return v0 + (v1 - v0) * (t - t0) / (t1 - t0)
    raise AssertionError


def trapezoids(points: Points, lo: float, hi: float) -> float:
    """A gauge's integral over [lo, hi): the line between samples at most MAX_BRIDGED_GAP apart."""
    total = 0.0
    for (t0, v0), (t1, v1) in itertools.pairwise(points):
        a, b = max(t0, lo), min(t1, hi)
        if b > a and t1 - t0 <= MAX_BRIDGED_GAP:
            va = v0 + (v1 - v0) * (a - t0) / (t1 - t0)
            vb = v0 + (v1 - v0) * (b - t0) / (t1 - t0)
            total += (b - a) * (va + vb) / 2
    return total


def running_samples(history: dict[Key, Points]) -> dict[tuple[str, str, str], dict[float, float]]:
    """kube_pod_status_phase{phase="Running"} per (namespace, pod, uid): time -> value."""
    out = {}
    for (name, labels), points in history.items():
        d = dict(labels)
        if name == "kube_pod_status_phase" and d["phase"] == "Running":
            out[(d["namespace"], d["pod"], d["uid"])] = dict(points)
    return out


def gated(history: dict[Key, Points], labels: dict[str, str], points: Points) -> Points:
    """The requests x Running products at the requests' sample times (same scrape, same stamp)."""
    running = running_samples(history)[(labels["namespace"], labels["pod"], labels["uid"])]
    return [(t, v * running[t]) for t, v in points]


def from_samples(history: dict[Key, Points], lo: float, hi: float, util_source: str) -> dict[str, dict[str, float]]:
    """Every meter per customer in [lo, hi), from the samples alone."""
    owners = owners_from_samples(history)
    raw: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for (name, labels), points in history.items():
        d = dict(labels)
        ns = d.get("exported_namespace") or d.get("namespace", "")
        container = d.get("container")
        meter, kind, scale = None, "gauge", 1.0
        if name == "container_cpu_usage_seconds_total" and container not in ("", "POD"):
            meter, kind = "cpu", "counter"
        elif name == "container_memory_working_set_bytes" and container not in ("", "POD"):
            meter = "memory"
        elif name == "container_network_transmit_bytes_total" and container == "":
            meter, kind = "net_tx", "counter"
        elif name == "container_network_receive_bytes_total" and container == "":
            meter, kind = "net_rx", "counter"
        elif name == "kube_pod_container_resource_requests":
            points = gated(history, d, points)
            resource = d["resource"]
            meter = {"cpu": "cpu_request", "memory": "memory_request"}.get(resource, "gpu")
            scale = WEIGHTS.get(resource, 1.0)
        elif name == util_source and "exported_namespace" in d:
            meter, scale = "gpu_busy", (0.01 if name == "DCGM_FI_DEV_GPU_UTIL" else 1.0)
        if meter is None:
            continue
        for a, b, customer in pieces(owners.get(ns, []), lo, hi):
            if customer is None:
                continue
            if kind == "counter":
                amount = counter_at(points, b) - counter_at(points, a)
            else:
                amount = sum(trapezoids(run, a, b) for run in runs(points))
            raw[customer][meter] += scale * amount
    return {
        c: {
            "cpu_hours": m["cpu"] / 3600,
            "memory_gb_hours": m["memory"] / GIB / 3600,
            "network_bytes_sent": m["net_tx"],
            "network_bytes_received": m["net_rx"],
            "gpu_hours": m["gpu"] / 3600,
            "gpu_utilized_hours": m["gpu_busy"] / 3600,
            "cpu_request_hours": m["cpu_request"] / 3600,
            "memory_request_gb_hours": m["memory_request"] / GIB / 3600,
        }
        for c, m in raw.items()
    }


# ---------------------------------------------------------------------------------------------
# The truth against the samples


@pytest.mark.parametrize("util_source", ["DCGM_FI_PROF_GR_ENGINE_ACTIVE", "DCGM_FI_DEV_GPU_UTIL"])
@pytest.mark.parametrize("hour", [0, 1, 2])
def test_truth_is_what_the_samples_show(
    cluster: Cluster, history: dict[Key, Points], hour: int, util_source: str
) -> None:
    start, end = _windows(cluster)[hour]
    truth = cluster.truth(start, end)
    got = from_samples(history, start.timestamp(), end.timestamp(), util_source)
    assert set(truth) == {"cust_a", "cust_b", "cust_c", "cust_d", "cust_e"}
    assert set(got) <= set(truth)
    for customer, amounts in truth.items():
        for meter in (*USAGE_METERS, *NEW_METERS):
            want = amounts[meter]
            value = got.get(customer, {}).get(meter, 0.0)
            assert value == pytest.approx(want, rel=1e-9, abs=1e-9), f"{customer}.{meter}"


def test_owners_change_at_kube_state_metrics_scrapes(cluster: Cluster, history: dict[Key, Points]) -> None:
    seen = owners_from_samples(history)
    for ns, changes in cluster.owners.items():
        assert seen[ns] == changes
    h = _windows(cluster)[0][0].timestamp()
    instants = {ns: changes[1] for ns, changes in cluster.owners.items()}
    assert instants["newbie"][1] == "cust_d" and 2400 <= instants["newbie"][0] - h < 2430
    assert instants["shop"][1] == "cust_b" and 4800 <= instants["shop"][0] - h < 4830
    assert instants["lab"][1] is None and 9300 <= instants["lab"][0] - h < 9330
    (ksm,) = {s.target for s in cluster.series if s.name == "kube_namespace_labels"}
    assert all(ksm.time_at(ksm.index_at_or_before(t)) == t for t, _ in instants.values()), "scrape times"
    for ns in set(NAMESPACES_AT_END) - set(cluster.owners):
        assert len(seen[ns]) == 1, "never changes"


def test_owners_at_the_end(cluster: Cluster) -> None:
    assert cluster.namespaces["shop"] == "cust_b"
    assert cluster.namespaces["lab"] is None
    assert cluster.namespaces["newbie"] == "cust_d"
    assert cluster.namespaces["shop-dev"] == "cust_a" and cluster.namespaces["ml"] == "cust_e"


def test_each_customer_owned_these_namespaces(cluster: Cluster) -> None:
    w0, w1, w2 = [(a.timestamp(), b.timestamp()) for a, b in _windows(cluster)]
    assert cluster.namespaces_of(*w0) == {
        "cust_a": ["shop", "shop-dev"],
        "cust_c": ["lab"],
        "cust_d": ["newbie"],
        "cust_e": ["ml"],
    }
    assert cluster.namespaces_of(*w1)["cust_a"] == ["shop", "shop-dev"]
    assert cluster.namespaces_of(*w1)["cust_b"] == ["shop"]
    assert cluster.namespaces_of(*w2)["cust_a"] == ["shop-dev"] and cluster.namespaces_of(*w2)["cust_c"] == ["lab"]


def test_the_relabel_splits_the_window(cluster: Cluster) -> None:
    start, end = _windows(cluster)[1]
    truth = cluster.truth(start, end)
    # shop's one GPU, all hour: cust_a's before 01:20, cust_b's after, nothing lost or doubled
    t_c = cluster.owners["shop"][1][0]
    assert truth["cust_a"]["gpu_hours"] == pytest.approx((t_c - start.timestamp()) / 3600, rel=1e-12)
    assert truth["cust_a"]["gpu_hours"] + truth["cust_b"]["gpu_hours"] == pytest.approx(1.0, rel=1e-12)
    assert 0 < truth["cust_a"]["gpu_utilized_hours"] and 0 < truth["cust_b"]["gpu_utilized_hours"]


# ---------------------------------------------------------------------------------------------
# The pods


def _series(history: dict[Key, Points], name: str, **match: str) -> dict[tuple[tuple[str, str], ...], Points]:
    return {
        labels: points
        for (n, labels), points in history.items()
        if n == name and all(dict(labels).get(k) == v for k, v in match.items())
    }


def test_the_training_job_runs_exactly_180_seconds(cluster: Cluster, history: dict[Key, Points]) -> None:
    (running,) = _series(history, "kube_pod_status_phase", pod="train-0", phase="Running").values()
    ones = [t for t, v in running if v == 1.0]
    assert len(ones) == 6
    assert trapezoids(running, -float("inf"), float("inf")) == pytest.approx(TRAINING_RUN, rel=1e-12)
    (pending,) = _series(history, "kube_pod_status_phase", pod="train-0", phase="Pending").values()
    assert [v for _, v in pending[:2]] == [1.0, 1.0] and pending[2][1] == 0.0, "Pending for a minute"
    (succeeded,) = _series(history, "kube_pod_status_phase", pod="train-0", phase="Succeeded").values()
    assert succeeded[-1] == (running[-1][0], 1.0) and running[-1][1] == 0.0
    requests = _series(history, "kube_pod_container_resource_requests", pod="train-0", resource="nvidia_com_gpu")
    (gpus,) = requests.values()
    assert gpus[-1][0] > ones[-1] + 3000, "the requests series goes on after the job succeeded"
    windows = _windows(cluster)
    amounts = [cluster.truth(a, b)["cust_e"]["gpu_hours"] for a, b in windows]
    assert amounts[0] == 0 and amounts[1] > 0 and amounts[2] > 0, "runs across 02:00"
    assert sum(amounts) == pytest.approx(2 * TRAINING_RUN / 3600, rel=1e-12)


@pytest.mark.parametrize("pod", ["prep-data-0", "train-queued-0"])
def test_succeeded_and_pending_pods_count_zero(cluster: Cluster, history: dict[Key, Points], pod: str) -> None:
    requests = _series(history, "kube_pod_container_resource_requests", pod=pod)
    assert requests
    (running,) = _series(history, "kube_pod_status_phase", pod=pod, phase="Running").values()
    assert all(v == 0.0 for _, v in running)
    for labels, points in requests.items():
        assert points[-1][0] - points[0][0] > 2 * 3600, "exposed across the windows"
        assert all(v == 0 for _, v in gated(history, dict(labels), points))
    for s in cluster.series:
        if s.name == "kube_pod_container_resource_requests" and dict(s.labels)["pod"] == pod:
            assert all(s.truth(a.timestamp(), b.timestamp()) == 0 for a, b in _windows(cluster))
    if pod == "train-queued-0":
        assert all("node" not in dict(labels) for labels in requests), "unscheduled: node is empty, so absent"


def test_requests_above_and_below_usage(cluster: Cluster) -> None:
    start, end = _windows(cluster)[2]
    truth = cluster.truth(start, end)
    # cust_d's etl-0 requests 2 cores and 1 GiB and uses less CPU, more memory
    assert truth["cust_d"]["cpu_hours"] < truth["cust_d"]["cpu_request_hours"] == pytest.approx(2.0)
    assert truth["cust_d"]["memory_gb_hours"] > truth["cust_d"]["memory_request_gb_hours"] == pytest.approx(1.0)


def test_label_sets_are_kube_state_metrics_and_dcgm_exporters(history: dict[Key, Points]) -> None:
    names: dict[str, set[frozenset[str]]] = defaultdict(set)
    for name, labels in history:
        names[name].add(frozenset(k for k, _ in labels))
    ident = {"namespace", "pod", "uid", "instance", "job"}
    assert names["kube_pod_status_phase"] == {frozenset(ident | {"phase"})}
    assert names["kube_pod_container_resource_requests"] == {
        frozenset(ident | {"container", "node", "resource", "unit"}),
        frozenset(ident | {"container", "resource", "unit"}),  # the unscheduled pod
    }
    requests = [dict(lb) for n, lb in history if n == "kube_pod_container_resource_requests"]
    units = {(d["resource"], d["unit"]) for d in requests}
    assert units == {
        ("cpu", "core"),
        ("memory", "byte"),
        ("nvidia_com_gpu", "integer"),
        ("nvidia_com_mig_1g_5gb", "integer"),
    }
    gpu = {"gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname", "DCGM_FI_DRIVER_VERSION"}
    target = {"instance", "job", "namespace", "pod", "container"}
    held = {"exported_namespace", "exported_pod", "exported_container"}
    for name in ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "DCGM_FI_DEV_GPU_UTIL"):
        assert names[name] == {frozenset(gpu | target | held), frozenset(gpu | target)}
    phases = {dict(lb)["phase"] for n, lb in history if n == "kube_pod_status_phase"}
    assert phases == {"Pending", "Running", "Succeeded", "Failed", "Unknown"}


def test_both_dcgm_metrics_describe_the_same_utilization(history: dict[Key, Points]) -> None:
    for labels, active in _series(history, "DCGM_FI_PROF_GR_ENGINE_ACTIVE").items():
        util = history[("DCGM_FI_DEV_GPU_UTIL", labels)]
        assert [t for t, _ in util] == [t for t, _ in active]
        assert all(u / 100 == a and 0 <= a <= 1 for (_, u), (_, a) in zip(util, active, strict=True))


# ---------------------------------------------------------------------------------------------
# The old behaviour, and Prometheus


def test_the_demo_cluster_keeps_constant_owners_and_its_meters() -> None:
    demo = demo_cluster()
    assert demo.owners == {}
    start, end = hour_windows(demo)[1]
    assert not set(NEW_METERS) & set(demo.truth(start, end)["cust_acme"])


def test_the_history_loads_into_prometheus(cluster: Cluster, tmp_path: Path) -> None:
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed (Debian's prometheus package)")
    history = tmp_path / "history.om"
    assert cluster.write_openmetrics_file(history) > 10_000
    backfill(history, tmp_path / "data")
    assert any((tmp_path / "data").iterdir()), "promtool wrote blocks"
