"""The metering rules on raw samples, table-driven with hand-computed expectations."""

from __future__ import annotations

import itertools
import random

import pytest

from cluster_exporter.metering.ownership import Field, WindowOwners, customer_usage
from cluster_exporter.metering.plan import Meter, Window
from cluster_exporter.metering.rules import counter_usage, gauge_usage
from cluster_exporter.metering.tables import raw_amounts

# Window (1000, 1060], bridge gaps up to 20 s, read 15 s on each side of a boundary, counters
# remembered for 500 s.
W = Window(start=1000.0, end=1060.0, max_gap=20.0, search=15.0, lookback=500.0)


@pytest.mark.parametrize(
    ("samples", "expected", "why"),
    [
        # steady counter, samples 10 s apart: B(1060) = 75 (between 70 and 80), B(1000) = 15
        (
            [(995, 10), (1005, 20), (1015, 30), (1025, 40), (1035, 50), (1045, 60), (1055, 70), (1065, 80)],
            60.0,
            "1 unit/s for 60 s, boundaries interpolated",
        ),
        # starts inside the window from zero: first sample 12 (used before it), then +1/s
        ([(1012, 12), (1022, 22), (1032, 32)], 32.0, "new series counts from zero, ends at its last sample"),
        # reset with unchanged labels at 1035 (30 -> 5): pieces 5 + 10 + 10 + 5 + 10 + 10 + 5
        (
            [(995, 0), (1005, 10), (1015, 20), (1025, 30), (1035, 5), (1045, 15), (1055, 25), (1065, 35)],
            55.0,
            "reset: the new value is the increase over that step",
        ),
        # a gap (1015 -> 1045, 30 s > max_gap 20 s) inside the window does not change a counter's total
        (
            [(995, 0), (1005, 10), (1015, 20), (1045, 50), (1055, 60), (1065, 70)],
            60.0,
            "counter increments across a long gap still count, once",
        ),
        # series ended before the window: nothing
        ([(900, 5), (910, 15)], 0.0, "ended before the window"),
        # seen last beyond the lookback: treated as new (counts from zero)
        ([(400, 100), (1030, 130)], 130.0, "silent longer than the lookback: new series"),
        # sample exactly on the window end belongs to this window
        ([(995, 0), (1000, 5), (1060, 65), (1070, 75)], 60.0, "samples exactly on boundaries"),
    ],
)
def test_counter_usage(samples: list[tuple[float, float]], expected: float, why: str) -> None:
    assert counter_usage(samples, W) == pytest.approx(expected, rel=1e-12, abs=1e-9), why


def test_counter_windows_split_every_increment_exactly() -> None:
    samples = [(990 + 7 * i, 3.5 * i + (100 if i > 20 else 0)) for i in range(40)]  # one reset-free jump up
    total = sum(counter_usage(samples, Window(s, s + 60, 20, 10, 500)) for s in range(960, 1260, 60))
    whole = counter_usage(samples, Window(960, 1260, 20, 10, 500))
    assert total == pytest.approx(whole, rel=1e-12)


@pytest.mark.parametrize(
    ("samples", "expected", "why"),
    [
        # constant 2 from 995 to 1065, window (1000, 1060] -> 60 s x 2
        ([(995 + 10 * i, 2.0) for i in range(8)], 120.0, "constant across the whole window"),
        # ramp 0..6 over 1005..1065 (1/10 s): integral over [1005,1060] of (t-1005)/10 = 55^2/20
        ([(1005 + 10 * i, float(i)) for i in range(7)], 55**2 / 20, "series starting inside the window"),
        # a 15 s scrape gap (<= max_gap) is bridged by the line between its neighbours
        # pieces: [1000,1005] at 1, [1005,1020] from 1 to 4, [1020,1060] at 4
        (
            [(995, 1.0), (1005, 1.0), (1020, 4.0), (1030, 4.0), (1040, 4.0), (1050, 4.0), (1060, 4.0)],
            5 + 37.5 + 40 * 4,
            "short gap",
        ),
        # a 40 s gap (> max_gap) is two lives: nothing is integrated across it
        ([(1005, 3.0), (1015, 3.0), (1055, 3.0), (1065, 3.0)], 30.0 + 15.0, "long gap"),
        # a 90-second pod: 1010..1100 at 15 s; only 1010..1060 is in the window
        ([(1010 + 15 * i, 10.0) for i in range(7)], 500.0, "short-lived pod crossing the window end"),
    ],
)
def test_gauge_usage(samples: list[tuple[float, float]], expected: float, why: str) -> None:
    assert gauge_usage(samples, W) == pytest.approx(expected, rel=1e-12), why


def _series(ns: str, pod: str, container: str, job: str, samples: list[tuple[float, float]]):  # type: ignore[no-untyped-def]
    labels = {"__name__": "m", "namespace": ns, "pod": pod, "container": container, "interface": "eth0", "job": job}
    return labels, samples


def test_raw_amounts_merges_copies_and_prefers_the_pod_view() -> None:
    meter = Meter(
        "net", "counter", "m", dedup=("job",), prefer=("container", ("", "POD")), unit=("namespace", "pod", "interface")
    )
    a = [(1005.0, 0.0), (1055.0, 50.0)]  # 50 bytes, new series
    series = [
        _series("ns1", "p1", "", "kubelet", a),
        _series("ns1", "p1", "", "cadvisor", a),  # a copy from a second scrape job
        _series("ns1", "p1", "POD", "kubelet", a),  # the same netns seen on the pause container
        _series("ns1", "p2", "POD", "kubelet", [(1005.0, 0.0), (1055.0, 7.0)]),  # only a pause view
        _series("ns2", "p3", "", "kubelet", [(1005.0, 0.0), (1055.0, 99.0)]),  # not an irregular unit
    ]
    units = {
        (("namespace", "ns1"), ("pod", "p1"), ("interface", "eth0")),
        (("namespace", "ns1"), ("pod", "p2"), ("interface", "eth0")),
    }
    assert raw_amounts(meter, series, units, W) == {"ns1": 57.0}


def test_customer_usage_sums_namespaces_scales_and_keeps_idle_customers() -> None:
    fields = [Field("cpu_hours", 3600.0), Field("http_requests", integer=True)]
    owners = WindowOwners(
        observed={"a-prod": "cust_a", "a-dev": "cust_a", "idle": "cust_i", "moved": "cust_now"},
        # kube-state-metrics' record of the window wins over what is observed now
        recorded={"gone": "cust_g", "moved": "cust_then", "a-prod": "cust_a"},
    )
    amounts = {
        "cpu_hours": {"a-prod": 3600.0, "a-dev": 1800.0, "gone": 360.0, "kube-system": 99999.0, "moved": 720.0},
        "http_requests": {"a-prod": 10.4, "a-dev": 0.3},
    }
    keys = ("namespaces", "cpu_hours", "http_requests")
    out = {r.customer_id: {k: r.to_dict()[k] for k in keys} for r in customer_usage(fields, amounts, {}, owners)}
    assert out == {
        "cust_a": {"namespaces": ["a-dev", "a-prod"], "cpu_hours": 1.5, "http_requests": 11},
        "cust_g": {"namespaces": ["gone"], "cpu_hours": 0.1, "http_requests": 0},
        "cust_i": {"namespaces": ["idle"], "cpu_hours": 0.0, "http_requests": 0},
        "cust_then": {"namespaces": ["moved"], "cpu_hours": 0.2, "http_requests": 0},
    }


def test_customer_usage_gives_each_owner_its_piece_of_a_cut_namespace() -> None:
    fields = [Field("cpu_hours", 3600.0), Field("pg_commits", integer=True)]
    owners = WindowOwners(
        observed={"shop": "cust_b", "shop-dev": "cust_a"},
        recorded={"shop": "cust_b", "shop-dev": "cust_a"},
        pieces={"shop": [(0.0, 1200.0, "cust_a"), (1200.0, 3000.0, "cust_b"), (3000.0, 3600.0, "")]},
    )
    amounts = {"cpu_hours": {"shop": 3600.0 + 7200.0 + 360.0, "shop-dev": 1800.0}, "pg_commits": {"shop": 40.0}}
    pieces = {
        ("cpu_hours", "shop", "cust_a"): 3600.0,
        ("cpu_hours", "shop", "cust_b"): 7200.0,
        ("cpu_hours", "shop", ""): 360.0,  # owned by nobody at the end: billed to none
    }
    keys = ("namespaces", "cpu_hours", "pg_commits")
    out = {r.customer_id: {k: r.to_dict()[k] for k in keys} for r in customer_usage(fields, amounts, pieces, owners)}
    # pg_commits (a custom PromQL template's answer: no pieces) goes to the owner at the end: nobody
    assert out == {
        "cust_a": {"namespaces": ["shop", "shop-dev"], "cpu_hours": 1.5, "pg_commits": 0},
        "cust_b": {"namespaces": ["shop"], "cpu_hours": 2.0, "pg_commits": 0},
    }


@pytest.mark.parametrize(
    ("selector", "expected"),
    [("x", 'x{a="b"}'), ("x{}", 'x{a="b"}'), ('x{c!=""}', 'x{c!="",a="b"}')],
)
def test_matchers_are_added_inside_the_braces(selector: str, expected: str) -> None:
    from cluster_exporter.metering.plan import with_matchers

    assert with_matchers(selector, 'a="b"') == expected


def test_usage_records_validate_and_serialise_like_the_report_schema() -> None:
    from datetime import UTC, datetime

    from cluster_exporter.report import CustomerUsage, build_report

    record = CustomerUsage("cust_a", ["a-dev"], cpu_hours=1.5, mqtt_messages=7)
    assert record.to_dict() == {
        "customer_id": "cust_a",
        "namespaces": ["a-dev"],
        "cpu_hours": 1.5,
        "memory_gb_hours": 0.0,
        "network_bytes_sent": 0,
        "network_bytes_received": 0,
        "storage_gb_hours": 0.0,
        "http_requests": 0,
        "mqtt_messages": 7,
    }
    assert record.cpu_hours == 1.5 and record.mqtt_messages == 7
    for bad in ({"cpu_hours": float("nan")}, {"cpu_hours": -1.0}, {"http_requests": 2.5}, {"cpu_hours": True}):
        with pytest.raises(ValueError):
            CustomerUsage("cust_a", ["a-dev"], **bad)
    with pytest.raises(AttributeError):
        record.cpu_hours = 2.0  # type: ignore[misc]
    start, end = datetime(2025, 11, 20, 1, tzinfo=UTC), datetime(2025, 11, 20, 2, tzinfo=UTC)
    report = build_report("k8s-1", start, end, [record])
    # the streamed JSON is byte for byte pydantic's own serialisation of the whole model
    assert report.to_json() == report.model_dump_json()
    assert '"usage":[{"customer_id":"cust_a","namespaces":["a-dev"],"cpu_hours":1.5,' in report.to_json()


def _neighbourhood(samples: list[tuple[float, float]], at: float, w: Window) -> list[tuple[float, float]]:
    """What a boundary query answers: the samples in [at - search, at + search]."""
    return [(t, v) for t, v in samples if at - w.search <= t <= at + w.search]


def _alive_across(samples: list[tuple[float, float]], at: float, w: Window) -> bool:
    """Independently of the rules: the boundary answer holds a sample at or before ``at`` and
    one after it, at most max_gap apart."""
    near = _neighbourhood(samples, at, w)
    before = [t for t, _ in near if t <= at]
    after = [t for t, _ in near if t > at]
    return bool(before and after) and after[0] - before[-1] <= w.max_gap


def _random_series(rng: random.Random) -> tuple[list[tuple[float, float]], float, float]:
    """A counter-like series as real clusters show them: a scrape interval, timestamps on the
    grid or stamped by the exporter off it, missed scrapes and longer gaps, resets, a start or
    stop anywhere. Returns (samples, interval, jitter)."""
    spacing = rng.choice([2.0, 3.0, 5.0, 7.5, 10.0])
    jitter = rng.choice([0.0, 0.0, 0.4 * spacing])
    phase = rng.uniform(0, spacing)
    first = rng.choice([900.0, 990.0, 1000.0 + rng.uniform(0, 50)])
    last = rng.choice([1100.0, 1061.0, 1000.0 + rng.uniform(0, 70)])
    times = []
    for k in range(120):
        t = round(900.0 + phase + k * spacing + rng.uniform(-jitter, jitter) / 2, 3)
        if first <= t <= last and (not times or t > times[-1]):
            times.append(t)
    while rng.random() < 0.3 and len(times) > 4:
        del times[rng.randrange(1, len(times) - 1)]  # missed scrapes, some in a row
    value, samples = 1e6 * rng.random(), []
    for t in times:
        value += rng.uniform(0, 50)
        if rng.random() < 0.03:
            value = rng.uniform(0, 10)  # a reset
        samples.append((t, value))
    return samples, spacing, jitter


@pytest.mark.parametrize("seed", range(300))
def test_boundary_rules_give_what_the_raw_rules_give(seed: int) -> None:
    """Random series: in every case the boundary answers decide a series exactly when it is alive
    across the boundary (checked here independently), and where they decide it they give the
    sample-by-sample rule's amount; a gauge's closed form refuses exactly the series whose samples
    are not evenly spaced with none missing."""
    from cluster_exporter.metering.rules import EVEN, counter_at_boundary, gauge_closed_form, gauge_end, gauge_start

    rng = random.Random(seed)
    samples, _, _ = _random_series(rng)
    if not samples:
        samples = [(1030.0, 5.0)]
    alive0, alive1 = _alive_across(samples, W.start, W), _alive_across(samples, W.end, W)

    # counters: decided at a boundary exactly when alive across it; regular without a reset
    b0 = counter_at_boundary(_neighbourhood(samples, W.start, W), W.start, W)
    b1 = counter_at_boundary(_neighbourhood(samples, W.end, W), W.end, W)
    assert (b0 is not None, b1 is not None) == (alive0, alive1)
    scanned = [v for t, v in samples if W.start - W.search <= t <= W.end + W.search]
    resets = sum(1 for a, b in itertools.pairwise(scanned) if b < a)
    if b0 is not None and b1 is not None and resets == 0:
        assert b1 - b0 == pytest.approx(counter_usage(samples, W), rel=1e-12, abs=1e-6)

    # gauges: the closed form answers exactly for series alive across both boundaries whose
    # samples from the one before T0 to the one after T1 are evenly spaced, and then it is exact
    start = gauge_start(_neighbourhood(samples, W.start, W), W)
    end = gauge_end(_neighbourhood(samples, W.end, W), W)
    assert (start is not None, end is not None) == (alive0, alive1)
    inside = [(t, v) for t, v in samples if W.start < t <= W.end]
    closed = None if start is None or end is None else gauge_closed_form(start, end, *_sum_count(inside))
    if start is not None and end is not None:
        lo = max(t for t, _ in samples if t <= W.start)
        hi = min(t for t, _ in samples if t > W.end)
        spacings = [b - a for (a, _), (b, _) in itertools.pairwise(samples) if lo <= a and b <= hi]
        even = max(spacings) - min(spacings) <= EVEN
        assert (closed is not None) == even, f"even={even} spacings={sorted(set(spacings))[:5]}"
    if closed is not None:
        assert closed == pytest.approx(gauge_usage(samples, W), rel=1e-9, abs=1e-6)


def _sum_count(samples: list[tuple[float, float]]) -> tuple[float, float]:
    return sum(v for _, v in samples), float(len(samples))


def test_a_boundary_is_interpolated_between_the_two_samples_around_it_whatever_their_spacing() -> None:
    """cAdvisor stamps samples with its own housekeeping times: the value at T0 lies on the line
    between the two samples around it, not on one drawn with the average spacing."""
    from cluster_exporter.metering.rules import counter_at_boundary

    # 1 unit/s, samples at 988, 997 (3 s before T0), 1011 (11 s after), 1013, 1014
    samples = [(t, t - 900.0) for t in (988.0, 997.0, 1011.0, 1013.0, 1014.0)]
    assert counter_at_boundary(samples, 1000.0, W) == pytest.approx(100.0, rel=1e-12)
    # a sample further than search after T0 is not in the answer: undecided, metered raw
    assert counter_at_boundary([(990.0, 1.0), (1016.0, 2.0)], 1000.0, W) is None


def test_copies_and_lives_of_one_unit_are_told_apart_in_time() -> None:
    """Series of one unit (a container, a claim) alive together are copies, one after another
    are lives: each piece of the window counts the largest usage any series shows in it."""
    from cluster_exporter.metering.rules import merged_usage

    w = Window(start=1000.0, end=1060.0, max_gap=20.0, search=15.0, lookback=500.0)
    steady = [(990.0 + 5 * i, 1000.0 + 5 * i) for i in range(17)]  # 1/s from 990 to 1070
    shifted = [(992.5 + 5 * i, 1002.5 + 5 * i) for i in range(16)]  # the same counter, another phase
    assert merged_usage("counter", [steady, shifted], w) == pytest.approx(60.0)
    # a copy that appears mid-window (a second scrape job added) is not a new life counted from zero
    late_copy = [(t, v) for t, v in shifted if t > 1031]
    assert merged_usage("counter", [steady, late_copy], w) == pytest.approx(60.0)
    # a restart: the old container stops at 1020, the new one counts from zero from 1025
    old = [(990.0 + 5 * i, 500.0 + 5 * i) for i in range(7)]  # 990..1020
    new = [(1025.0 + 5 * i, 5.0 + 5 * i) for i in range(9)]  # 1025..1065, 5 used before its first sample
    assert merged_usage("counter", [old, new], w) == pytest.approx(20.0 + 40.0)
    # gauges: an RWX volume reported by two kubelets (equal values) counts once; an RWO volume
    # whose pod moved at 1030 from one node to the other adds up
    level = [(985.0 + 5 * i, 7.0) for i in range(19)]
    assert merged_usage("gauge", [level, level[1:]], w) == pytest.approx(7.0 * 60)
    node_a, node_b = [s for s in level if s[0] <= 1030], [s for s in level if s[0] >= 1035]
    assert merged_usage("gauge", [node_a, node_b], w) == pytest.approx(7.0 * 30 + 7.0 * 25)


def test_series_index_hands_each_series_out_once_and_drops_colliding_identities() -> None:
    from cluster_exporter.metering.tables import SeriesIndex

    index = SeriesIndex(2)
    index.put((5, 1), (1.0, 2.0))
    index.put((3, 9), None)  # known, undecided
    index.put((5, 2), (3.0, 4.0))  # same first half, other second half: a different series
    index.put((7, 7), (5.0, 6.0))
    index.put((7, 7), (8.0, 9.0))  # stored twice: dropped (metered raw)
    index.freeze()
    assert index.left() == 3
    assert index.take((5, 2)) == [3.0, 4.0] and index.take((5, 1)) == [1.0, 2.0]
    assert index.take((5, 1)) is None, "handed out once"
    assert index.take((3, 9)) is None and index.take((7, 7)) is None and index.take((1, 1)) is None
    assert index.left() == 0


def test_series_index_sorts_in_buckets_at_scale_and_still_finds_every_series() -> None:
    """50,000 random identities (13 sort buckets), a few sharing a first half and one stored twice:
    every other series comes back with its own numbers, exactly once."""

    from cluster_exporter.metering.tables import SeriesIndex

    rng = random.Random(7)
    keys = [(rng.randrange(-(2**63), 2**63), rng.randrange(-(2**63), 2**63)) for _ in range(50_000)]
    keys += [(keys[i][0], rng.randrange(-(2**63), 2**63)) for i in range(0, 50, 10)]  # same hi, other lo
    keys.append(keys[123])  # one identity stored twice: dropped
    index = SeriesIndex(1)
    for n, key in enumerate(keys):
        index.put(key, (float(n),))
    index.freeze()
    assert index.left() == len(keys) - 2
    for n, key in enumerate(keys):
        if key == keys[123]:
            assert index.take(key) is None
        else:
            assert index.take(key) == [float(n)], n
    assert index.left() == 0


@pytest.mark.parametrize("seed", range(100))
def test_a_counter_read_from_the_window_span_and_one_value_before_meters_as_from_all_its_samples(seed: int) -> None:
    """The raw path reads a counter in [T0 - max_gap, T1 + max_gap] plus its last value in the
    lookback before that: the same amount as from every sample back to T0 - lookback."""

    from cluster_exporter.metering.rules import with_value_before

    rng = random.Random(seed)
    spacing = rng.choice([2.0, 5.0, 10.0])
    t, value, samples = W.start - W.lookback - rng.uniform(0, 100), rng.uniform(0, 1e6), []
    while t <= W.end + W.max_gap:
        if rng.random() < 0.08:
            t += rng.uniform(10, 200)  # a gap, possibly across T0
        if rng.random() < 0.04:
            value = rng.uniform(0, 5)  # a reset
        samples.append((round(t, 3), value))
        value += rng.uniform(0, 20)
        t += spacing
    samples = [(t, v) for t, v in samples if rng.random() > 0.1 or t > W.start]  # some lost scrapes
    span = [(t, v) for t, v in samples if W.start - W.max_gap <= t <= W.end + W.max_gap]
    earlier = [v for t, v in samples if W.start - W.lookback <= t <= W.start - W.max_gap]
    before = earlier[-1] if earlier else None
    assert counter_usage(list(with_value_before(span, before, W)), W) == pytest.approx(
        counter_usage(samples, W), rel=1e-12, abs=1e-9
    )


def test_raw_fetches_are_split_to_fit_the_query_length_and_match_values_literally() -> None:
    import re

    from cluster_exporter.metering.plan import Meter, _regex_union, raw_chunks, raw_samples_query

    values = ["10.0.0.1:10250", 'quote"d', "back\\slash", "a|b", "(x)*[y]{2}^$+?.", "plain"]
    regex = _regex_union(values)
    unescaped = regex.replace('\\"', '"').replace("\\\\", "\\")  # the PromQL string's own escapes
    for value in values:
        assert re.fullmatch(unescaped, value), value
    assert not re.fullmatch(unescaped, "10a0a0a1:10250"), "dots are literal"

    meter = Meter("cpu_hours", "counter", 'container_cpu_usage_seconds_total{container!=""}')
    units = [(("namespace", f"ns-{i % 50}"), ("pod", f"pod-{i:05d}-{'x' * (i % 40)}")) for i in range(3000)]
    chunks = raw_chunks(units, 4096, 1000)
    assert [u for chunk, _ in chunks for u in chunk] == units
    for chunk, matchers in chunks:
        assert len(chunk) <= 1000
        assert matchers == {label: sorted({dict(u)[label] for u in chunk}) for label in ("namespace", "pod")}
        assert len(raw_samples_query(meter, W, matchers).expr) <= 4096
    mixed = raw_chunks([(("namespace", "a"), ("pod", "p")), (("namespace", "b"),)], 4096, 1000)
    assert mixed[0][1] == {"namespace": ["a", "b"], "pod": ["", "p"]}, "a unit without a label matches it absent"
    assert len(raw_chunks(units, 16 * 1024 * 1024, 1000)) == 3


@pytest.mark.parametrize(
    "names",
    [
        [f"tenant-{i:06d}" for i in range(10_000)],  # a common prefix: the first character never varies
        [f"cust{i}-prod" for i in range(3_000)],  # a common suffix as well
        ["acme-prod", "acme-staging", "initech", "globex-eu", "globex-us", "umbrella", "x"],
    ],
)
def test_namespace_shards_are_balanced_disjoint_and_cover_every_value(names: list[str]) -> None:
    """query_split cuts the namespaces in use into even shards whatever their naming, and the
    shards' regexes (as Prometheus reads them: fully anchored) match every string exactly once."""
    import re

    from cluster_exporter.metering.plan import namespace_shards

    patterns = namespace_shards(names, 4)
    regexes = [re.compile(re.sub(r"\\(.)", r"\1", p)) for p in patterns]  # the PromQL string's escapes
    assert 2 <= len(regexes) <= 4
    others = ["", "a", "-", "x]y", 'q"x', "back\\slash", "é", "UPPER", "tenant-", "a-b-c-d-e-f-g-h-i-j-k-l-m-n-o-p-q"]
    for value in names + others:
        assert sum(bool(r.fullmatch(value)) for r in regexes) == 1, value
    sizes = [sum(bool(r.fullmatch(n)) for n in names) for r in regexes]
    if len(names) > 100:
        assert len(regexes) == 4 and max(sizes) <= 0.3 * len(names), sizes


def test_namespace_shards_of_names_with_nothing_to_split_on() -> None:
    from cluster_exporter.metering.plan import namespace_shards

    assert namespace_shards(["aaa"] * 5, 4) == []
    assert namespace_shards([], 4) == []
    assert namespace_shards(["a", "b"], 1) == []


def test_raw_fetches_stay_within_the_query_length_whatever_the_label_values() -> None:
    """Long label values (and a long selector) never make a raw fetch longer than
    prometheus.max_query_length: runs are split, and a unit too long alone is selected by fewer
    labels (a superset of its series, which the fold ignores); if not even one label fits, the
    window fails naming the setting."""
    from cluster_exporter.errors import LayoutError
    from cluster_exporter.metering.plan import raw_fetches, raw_lookback_query, raw_samples_query

    meter = Meter("cpu_hours", "counter", 'container_cpu_usage_seconds_total{container!="",' + 'x="y",' * 60 + 'z=""}')
    long_pod = "p" * 3000
    units = [(("namespace", f"ns-{i}"), ("pod", long_pod + str(i) if i % 7 == 0 else f"pod-{i}")) for i in range(300)]
    fetches = raw_fetches(meter, W, units, 2048, 1000)
    assert [u for run, _ in fetches for u in run] == units, "every unit fetched, once, in order"
    for run, matchers in fetches:
        for query in (raw_samples_query(meter, W, matchers), raw_lookback_query(meter, W, matchers)):
            assert len(query.expr) <= 2048
        if len(run) == 1 and "pod" not in matchers:  # narrowed: still selects its namespace
            assert matchers == {"namespace": [dict(run[0])["namespace"]]}
    assert any("pod" not in matchers for _, matchers in fetches), "the long pods were narrowed"
    with pytest.raises(LayoutError, match=r"prometheus\.max_query_length"):
        raw_fetches(meter, W, [(("namespace", "n" * 3000),)], 2048, 1000)
