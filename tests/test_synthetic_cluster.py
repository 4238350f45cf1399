"""The generator checks itself: sample times, outages, and that every copy's samples show the truth.

The end-to-end layout tests (test_layouts.py) trust Cluster.truth; these tests are why. A small
reference computation reads each series' samples the way the metering's rules say (the line
between samples, a counter interpolated at the boundaries, zero before a new counter's first
sample) and must give the analytic truth of that series exactly, for every copy.
"""

from __future__ import annotations

import functools
import itertools
import math
import random
from collections import defaultdict
from collections.abc import Callable

import pytest

from cluster_exporter.devtools import layouts as L
from cluster_exporter.devtools.synthetic_cluster import (
    MAX_BRIDGED_GAP,
    Clock,
    Cluster,
    Counter,
    Level,
    Series,
    Target,
    common_times,
    counter_for,
    level_for,
    sample_times,
    with_outage,
)

NAMES = list(L.LAYOUTS)


@functools.cache
def built(name: str) -> L.Layout:
    return L.layout(name)


def _window_bounds() -> list[tuple[float, float]]:
    return [(a.timestamp(), b.timestamp()) for a, b in L.WINDOWS]


def _from_samples(s: Series, lo: float, hi: float) -> float:
    """What the samples of one series show in [lo, hi)."""
    pts = list(s.samples())
    if isinstance(s.fn, Counter):

        def at(t: float) -> float:
            if t < pts[0][0]:
                return 0.0 if s.fn.offset == 0 else math.nan
            if t >= pts[-1][0]:
                return pts[-1][1]
            i = next(i for i in range(1, len(pts)) if pts[i][0] > t)
            (t0, v0), (t1, v1) = pts[i - 1], pts[i]
            return v0 + (v1 - v0) * (t - t0) / (t1 - t0)

        return at(hi) - at(lo)
    total = 0.0
    for (t0, v0), (t1, v1) in itertools.pairwise(pts):
        a, b = max(t0, lo), min(t1, hi)
        if b > a:
            va = v0 + (v1 - v0) * (a - t0) / (t1 - t0)
            vb = v0 + (v1 - v0) * (b - t0) / (t1 - t0)
            total += (b - a) * (va + vb) / 2
    return total


# ---------------------------------------------------------------------------------------------
# The parts


def test_clock_stamps_are_jittered_per_cgroup_and_deterministic() -> None:
    a = Clock(seed=1, start=1000.0, end=5000.0)
    spacing = [y - x for x, y in itertools.pairwise(a.stamps)]
    assert all(10.0 <= d < 20.0 + 1e-3 for d in spacing)
    assert max(spacing) - min(spacing) > 5.0, "uneven"
    assert Clock(seed=1, start=1000.0, end=5000.0).stamps == a.stamps
    assert Clock(seed=2, start=1000.0, end=5000.0).stamps != a.stamps


def test_a_scrape_stores_the_latest_stamp_once() -> None:
    clock = Clock(seed=3, start=0.0, end=3600.0)
    fast = sample_times(Target("t", 1.0, 5.0), clock, 0.0, 3600.0)  # scraped faster than housekeeping
    assert fast == sorted(set(fast)) and set(fast) <= set(clock.stamps)
    assert len(fast) >= len(clock.stamps) - 1, "every stamp is read at least once"
    slow = sample_times(Target("t", 2.0, 30.0), clock, 0.0, 3600.0)
    assert 110 <= len(slow) <= 121 and set(slow) <= set(fast)


@pytest.mark.parametrize(("lost", "gap"), [(1, 30.0), (6, 105.0), (19, 300.0)])
def test_outages_of_1_6_19_scrapes_at_15s(lost: int, gap: float) -> None:
    target = with_outage(Target("t", 3.0, 15.0), 10_000.0, lost)
    times = sample_times(target, None, 9_000.0, 11_000.0)
    assert max(b - a for a, b in itertools.pairwise(times)) == pytest.approx(gap)


def test_copies_without_common_times_get_straight_levels_and_guarded_rate_changes() -> None:
    rng = random.Random(5)
    copies = [(Target("a", 1.234, 15.0), None), (Target("b", 8.765, 15.0), None)]
    assert common_times(copies, 0.0, 14_400.0) == []
    level = level_for(rng, copies, 0.0, 14_400.0, 100.0)
    assert len(level.knots) == 2
    counter = counter_for(rng, copies, 0.0, 14_400.0, 5.0, offset=10.0)
    for t, _ in counter.rates[1:-1]:
        assert min(t % 3600, 3600 - t % 3600) >= 300.0


def test_gauge_lives_up_to_300s_apart_are_bridged() -> None:
    target = Target("t", 0.0, 15.0)
    cluster = Cluster(start=0.0, end=7200.0, namespaces={"ns": "c"})
    labels = (("namespace", "ns"),)
    for gap in (300.0, 315.0):
        cluster.series = [
            Series("g", labels, target, 0.0, 1500.0, Level([(0.0, 10.0)]), "memory", "ns"),
            Series("g", labels, target, 1500.0 + gap, 3600.0, Level([(0.0, 10.0)]), "memory", "ns"),
        ]
        bridged = list(cluster._bridges(0.0, 7200.0))
        assert bool(bridged) == (gap <= MAX_BRIDGED_GAP)


# ---------------------------------------------------------------------------------------------
# Every layout


@pytest.mark.parametrize("name", NAMES)
def test_sample_times_strictly_increase_inside_the_history(name: str) -> None:
    cluster = built(name).cluster
    for s in cluster.series:
        assert all(a < b for a, b in itertools.pairwise(s.times)), s.labels
        assert cluster.start - 60 <= s.times[0] and s.times[-1] <= cluster.end + 60


@pytest.mark.parametrize("name", NAMES)
def test_no_gap_inside_a_life_is_longer_than_bridged(name: str) -> None:
    for s in built(name).cluster.series:
        longest = max((b - a for a, b in itertools.pairwise(s.times)), default=0.0)
        assert longest <= MAX_BRIDGED_GAP, f"{s.name}{dict(s.labels)}: {longest}s"


@pytest.mark.parametrize("name", NAMES)
def test_cadvisor_samples_carry_jittered_stamps_unless_the_layout_drops_them(name: str) -> None:
    lay = built(name)
    cadvisor = [s for s in lay.cluster.series if s.name == "container_cpu_usage_seconds_total"]
    stamped = [s for s in cadvisor if s.clock is not None]
    if name == "gmp":
        assert not stamped, "GMP's scrape configs have honor_timestamps: false"
        return
    assert stamped and len(stamped) == len(cadvisor)
    for s in stamped[:20]:
        spacing = [b - a for a, b in itertools.pairwise(s.times)]
        if len(spacing) < 5:
            continue
        assert max(spacing) - min(spacing) > 2.0, "uneven"
        phases = {round(t % s.target.interval, 3) for t in s.times}
        assert len(phases) > len(s.times) // 2, "off any scrape grid"


@pytest.mark.parametrize("name", NAMES)
def test_outages_are_there_with_the_promised_gaps(name: str) -> None:
    lay = built(name)
    for outage in lay.spec.outages:
        hits = [s for s in lay.cluster.series if outage.endpoint in s.target.name and s.target.gaps]
        assert hits, outage
        target = hits[0].target
        expected = (outage.lost + 1) * target.interval
        lo, hi = target.gaps[-1]
        assert hi - lo == pytest.approx(expected)
        across = []
        for s in hits:
            if s.first < lo and s.last > hi:
                across.append(max(b - a for a, b in itertools.pairwise(s.times) if a <= lo < b))
        assert across, f"no series lives across {outage}"
        if hits[0].clock is None:
            assert all(g == pytest.approx(expected) for g in across)
        else:
            assert max(across) >= expected - L.STAMP_LAG and max(across) <= MAX_BRIDGED_GAP
    sizes = {o.lost for o in lay.spec.outages}
    assert 1 in sizes and len(sizes) >= 3


@pytest.mark.parametrize("name", NAMES)
def test_every_copys_samples_show_the_truth(name: str) -> None:
    """The convention the truth rests on: for every series (and every copy of it), what its
    samples show in a window is exactly its analytic truth."""
    for s in built(name).cluster.series:
        if s.meter is None:
            continue
        for lo, hi in _window_bounds():
            want = s.truth(lo, hi)
            got = _from_samples(s, lo, hi)
            assert got == pytest.approx(want, rel=1e-9, abs=1e-6), f"{s.name}{dict(s.labels)} [{lo}, {hi})"


@pytest.mark.parametrize("name", NAMES)
def test_copies_of_one_thing_have_equal_truth(name: str) -> None:
    groups: dict[int, list[Series]] = defaultdict(list)
    for s in built(name).cluster.series:
        if s.meter is not None:
            groups[id(s.fn)].append(s)
    copied = [g for g in groups.values() if len(g) > 1]
    if name in ("thanos-ha-no-dedup", "cadvisor-two-jobs"):
        assert len(copied) > 50
    for group in copied:
        for lo, hi in _window_bounds():
            amounts = [s.truth(lo, hi) for s in group]
            assert max(amounts) == pytest.approx(min(amounts), rel=1e-12, abs=1e-9), [dict(s.labels) for s in group]
    assert sum(1 for g in groups.values() for s in g if s.counts and s.meter) == len(
        [g for g in groups.values() if any(s.counts for s in g)]
    ), "one counting copy per function"


def _kind(s: Series) -> str | None:
    labels = dict(s.labels)
    if s.name == "container_cpu_usage_seconds_total":
        if labels["id"].endswith(".slice"):
            return "pod cgroup"
        return "container" if labels.get("container", "POD") != "POD" else None
    if s.name == "container_network_receive_bytes_total":
        return "sandbox network"
    return {
        "kubelet_volume_stats_used_bytes": "volume",
        "nginx_ingress_controller_requests": "ingress",
        "istio_requests_total": "mesh",
    }.get(s.name)


@pytest.mark.parametrize("name", NAMES)
def test_label_sets_are_as_documented(name: str) -> None:
    lay = built(name)
    seen: dict[str, set[frozenset[str]]] = defaultdict(set)
    for s in lay.cluster.series:
        kind = _kind(s)
        if kind is not None:
            seen[kind].add(frozenset(k for k, _ in s.labels))
    assert dict(seen) == {kind: set(sets) for kind, sets in lay.spec.label_sets}


@pytest.mark.parametrize("name", NAMES)
def test_every_customer_uses_every_meter(name: str) -> None:
    lay = built(name)
    for start, end in lay.windows():
        truth = lay.truth(start, end)
        assert set(truth) == {"cust_acme", "cust_globex", "cust_initech"}
        for customer, amounts in truth.items():
            for meter in ("cpu_hours", "memory_gb_hours", "network_bytes_sent", "storage_gb_hours", "http_requests"):
                assert amounts[meter] > 0, f"{customer}.{meter}"


def test_prometheus_chart_rwx_copies_differ_in_node_labels_and_the_rwo_claim_moves() -> None:
    series = [
        s for s in built("prometheus-community-chart").cluster.series if s.name == "kubelet_volume_stats_used_bytes"
    ]
    rwx = [dict(s.labels) for s in series if dict(s.labels)["persistentvolumeclaim"] == "shared-files"]
    assert len(rwx) == 2 and rwx[0]["kubernetes_io_hostname"] != rwx[1]["kubernetes_io_hostname"]
    rwo = sorted((s for s in series if dict(s.labels)["persistentvolumeclaim"] == "data-app-0"), key=lambda s: s.first)
    assert (
        len(rwo) == 2
        and rwo[0].last < rwo[1].first
        and dict(rwo[0].labels)["instance"] != dict(rwo[1].labels)["instance"]
    )
    assert rwo[1].first - rwo[0].last > MAX_BRIDGED_GAP, "not one life to any meter"


def test_thanos_replicas_scrape_at_their_own_phases() -> None:
    series = [s for s in built("thanos-ha-no-dedup").cluster.series if s.name == "nginx_ingress_controller_requests"]
    by_replica = defaultdict(set)
    for s in series:
        by_replica[dict(s.labels)["prometheus_replica"]].add(s.target.phase)
    assert len(by_replica) == 2
    assert not set.intersection(*by_replica.values())


@pytest.mark.parametrize(
    ("build", "interval"),
    [(L.kube_prometheus_stack, 60.0), (L.gmp, 15.0), (L.k3s, 10.0), (L.thanos_ha_no_dedup, 30.0)],
)
def test_interval_override(build: Callable[..., L.Layout], interval: float) -> None:
    lay = build(interval=interval)
    cadvisor = [s for s in lay.cluster.series if s.name == "container_cpu_usage_seconds_total"]
    assert {s.target.interval for s in cadvisor} == {interval}
    for s in lay.cluster.series:
        assert max((b - a for a, b in itertools.pairwise(s.times)), default=0.0) <= MAX_BRIDGED_GAP
        if s.counts and s.meter is not None:
            for lo, hi in _window_bounds():
                assert _from_samples(s, lo, hi) == pytest.approx(s.truth(lo, hi), rel=1e-9, abs=1e-6)
