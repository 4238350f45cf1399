"""Ownership over time and gated meters: the pure rules, table-driven and property-checked."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cluster_exporter.metering.ownership import owner_pieces
from cluster_exporter.metering.plan import Meter, Route, Window
from cluster_exporter.metering.rules import gated, merged_usage, route_of
from cluster_exporter.metering.tables import RawUnits

W = Window(start=3600.0, end=7200.0, max_gap=300.0, search=90.0, lookback=7200.0 + 600.0)


def _every(step: float, lo: float, hi: float, value: float = 1.0) -> list[tuple[float, float]]:
    out, t = [], lo
    while t <= hi:
        out.append((t, value))
        t += step
    return out


@pytest.mark.parametrize(
    ("series", "expected"),
    [
        # one owner all along
        ([("cust_a", _every(30, 3300, 7500))], [(3600.0, 7200.0, "cust_a")]),
        # relabeled 20 minutes in: the first sample showing cust_b is the change instant
        (
            [("cust_a", _every(30, 3300, 4770)), ("cust_b", _every(30, 4800, 7500))],
            [(3600.0, 4800.0, "cust_a"), (4800.0, 7200.0, "cust_b")],
        ),
        # unlabeled at 02:35 (a series without the customer label: "")
        (
            [("cust_c", _every(30, 3300, 5670)), ("", _every(30, 5700, 7500))],
            [(3600.0, 5700.0, "cust_c"), (5700.0, 7200.0, "")],
        ),
        # a change before the window (in the raw span) or after its end is no cut
        ([("cust_a", _every(30, 3300, 3570)), ("cust_b", _every(30, 3600, 7500))], [(3600.0, 7200.0, "cust_b")]),
        ([("cust_a", _every(30, 3300, 7170)), ("cust_b", _every(30, 7200, 7500))], [(3600.0, 7200.0, "cust_a")]),
        # created mid-window: before its first sample it is the first sample's owner (no usage then)
        ([("cust_d", _every(30, 5000, 7500))], [(3600.0, 7200.0, "cust_d")]),
        # a -> b -> a, b lasting one minute
        (
            [("cust_a", [*_every(30, 3300, 4770), *_every(30, 4860, 7500)]), ("cust_b", _every(30, 4800, 4830))],
            [(3600.0, 4800.0, "cust_a"), (4800.0, 4860.0, "cust_b"), (4860.0, 7200.0, "cust_a")],
        ),
        # two copies of kube-state-metrics disagreeing at one instant: the non-empty value, then the larger
        ([("cust_a", _every(30, 3300, 7500)), ("", [(4800.0, 1.0)])], [(3600.0, 7200.0, "cust_a")]),
    ],
)
def test_owner_pieces(
    series: list[tuple[str, list[tuple[float, float]]]], expected: list[tuple[float, float, str]]
) -> None:
    assert owner_pieces(series, W) == expected


def test_gated_samples_count_only_while_the_gate_is_one() -> None:
    requests = [(t, 2.0) for t in (3600.0, 3630.0, 3660.0, 3690.0, 3720.0)]
    running = [(3600.0, 0.0), (3630.0, 1.0), (3660.0, 1.0), (3690.0, 0.0), (3720.0, 0.0)]
    assert gated(requests, running, W) == [(3600.0, 0.0), (3630.0, 2.0), (3660.0, 2.0), (3690.0, 0.0), (3720.0, 0.0)]
    # another job's gate stamped 5 s earlier: its last sample before counts; none within max_gap: 0
    assert gated([(3635.0, 2.0), (4200.0, 2.0)], running, W) == [(3635.0, 2.0), (4200.0, 0.0)]


def test_a_three_minute_job_counts_three_minutes() -> None:
    """Running from 3605 s for exactly 180 s, scraped every 30 s off its start: six Running samples,
    and the trapezoids through the 0/1 samples are exactly 180 s of its 2 GPUs."""
    times = [3600.0 + 30 * k for k in range(12)]
    running = [(t, 1.0 if 3605.0 <= t < 3785.0 else 0.0) for t in times]
    product = gated([(t, 2.0) for t in times], running, W)
    assert sum(1 for _, v in running if v) == 6
    assert merged_usage("gauge", [product], W) == pytest.approx(2 * 180.0, rel=1e-12)


def test_routes_send_each_resource_to_its_field_with_its_weight() -> None:
    meter = Meter(
        "requests",
        "gauge",
        "x",
        routes=(Route("cpu_request_hours", "cpu", 1.0), Route("gpu_hours", "nvidia_com_mig_1g_.*", 1 / 7)),
    )
    assert route_of(meter, {"resource": "cpu"}) == ("cpu_request_hours", 1.0)
    assert route_of(meter, {"resource": "nvidia_com_mig_1g_5gb"}) == ("gpu_hours", 1 / 7)
    assert route_of(meter, {"resource": "nvidia_com_mig_1g_5gbX2"}) == ("gpu_hours", 1 / 7)
    assert route_of(meter, {"resource": "xcpu"}) is None, "fully anchored"


samples_strategy = st.lists(
    st.tuples(st.floats(3300.0, 7500.0), st.floats(0.0, 1e6)), min_size=1, max_size=60, unique_by=lambda s: s[0]
).map(sorted)


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(["counter", "gauge"]),
    samples=samples_strategy,
    jobs=st.integers(1, 3),
    cuts=st.lists(st.floats(3600.0, 7200.0), max_size=4),
)
def test_owners_pieces_add_up_to_the_whole_window(
    kind: str, samples: list[tuple[float, float]], jobs: int, cuts: list[float]
) -> None:
    """Cutting a unit's usage at owner changes never loses or adds any: the pieces (each metered
    with the window's rules on [lo, hi)) sum to the whole window's usage, for counters
    (interpolated at the cut, resets and gaps anywhere) and gauges (the integral cut there), one
    series or its copies from several jobs. (Where two different series of one unit overlap
    with gaps longer than max_gap between them, a cut is a boundary like a window's: the
    pieces add up as consecutive windows do.)"""
    copies = [samples] * jobs
    bounds = sorted({W.start, W.end, *cuts})
    pieces = [merged_usage(kind, copies, replace(W, start=lo, end=hi)) for lo, hi in itertools.pairwise(bounds)]
    whole = merged_usage(kind, copies, W)
    assert sum(pieces) == pytest.approx(whole, rel=1e-9, abs=1e-6)


def test_raw_units_hand_each_owner_its_piece() -> None:
    meter = Meter("cpu_hours", "counter", "c", namespace_labels=("namespace",), unit=("namespace", "pod", "container"))
    labels = {"namespace": "shop", "pod": "p", "container": "c"}
    key = tuple((k, labels[k]) for k in ("namespace", "pod", "container"))
    raw = RawUnits(meter, {key}, W, {"shop": [(3600.0, 4800.0, "cust_a"), (4800.0, 7200.0, "cust_b")]})
    raw.add(labels, [(t, t - 3000.0) for t in _every(30, 3300, 7500, 0.0) for t in [t[0]]])  # 1 core all along
    assert sorted(raw.take()) == [
        ("cpu_hours", "shop", "cust_a", pytest.approx(1200.0)),
        ("cpu_hours", "shop", "cust_b", pytest.approx(2400.0)),
    ]
