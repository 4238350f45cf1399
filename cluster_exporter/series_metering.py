"""One meter's amounts per namespace for one window, from the answers queries.py defines.

For each meter (or shard of one): the samples around both boundaries and one scan of the window
are folded, series by series as the answers arrive, into a few numbers per series; a series the
boundary rules decide is metered there, every other one is irregular and its whole unit is
metered again from raw samples, a bounded number of units per query. Only per-series numbers
are held, never an answer, and only while this meter is measured.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import queries as q
from .accounting import (
    GaugeEnd,
    GaugeStart,
    UnitTotals,
    counter_at_boundary,
    counter_usage,
    gauge_closed_form,
    gauge_end,
    gauge_start,
    gauge_usage,
    series_id,
    unit_key,
)
from .errors import PrometheusError
from .prometheus import PrometheusClient

RAW_UNITS_PER_QUERY = 1000
Labels = Mapping[str, str]


@dataclass
class MeterResult:
    """One meter's raw amounts per namespace, and what its answers said about the data itself."""

    amounts: dict[str, float] = field(default_factory=dict)
    series: int = 0  # series with samples in the window or around its boundaries
    after_end: int = 0  # series with a sample after the window end (the window can be closed)


async def meter_amounts(prometheus: PrometheusClient, meter: q.Meter, w: q.Window) -> MeterResult:
    """{namespace: raw amount} of one selector meter over window ``w``, with its series counts."""
    totals = UnitTotals(meter)
    result = MeterResult()
    if meter.kind == "counter":
        await _counters(prometheus, meter, w, totals, result)
    else:
        await _gauges(prometheus, meter, w, totals, result)
    result.amounts = totals.amounts()
    for namespace, value in (await _irregular_amounts(prometheus, meter, totals.irregular_units, w)).items():
        result.amounts[namespace] = result.amounts.get(namespace, 0.0) + value
    return result


def _fold_boundary(
    into: dict[int, Any], rule: Callable[[list[tuple[float, float]]], Any]
) -> Callable[[dict[str, str], list[tuple[float, float]]], None]:
    def on_series(labels: dict[str, str], samples: list[tuple[float, float]]) -> None:
        into[series_id(labels)] = rule(samples)

    return on_series


def _fold_end(
    into: dict[int, Any], rule: Callable[[list[tuple[float, float]]], Any], w: q.Window, result: MeterResult
) -> Callable[[dict[str, str], list[tuple[float, float]]], None]:
    """As _fold_boundary at T1, also counting the series with a sample after T1."""

    def on_series(labels: dict[str, str], samples: list[tuple[float, float]]) -> None:
        into[series_id(labels)] = rule(samples)
        if samples and samples[-1][0] > w.end:
            result.after_end += 1

    return on_series


async def _counters(
    prometheus: PrometheusClient, meter: q.Meter, w: q.Window, totals: UnitTotals, result: MeterResult
) -> None:
    """A counter without resets used B(T1) - B(T0), each from the samples around its boundary."""
    b0_query, b1_query, resets_query = q.meter_queries(meter, w)
    at_start: dict[int, float | None] = {}
    at_end: dict[int, float | None] = {}
    async with asyncio.TaskGroup() as group:
        fold0 = _fold_boundary(at_start, lambda s: counter_at_boundary(s, w.start, w))
        fold1 = _fold_end(at_end, lambda s: counter_at_boundary(s, w.end, w), w, result)
        group.create_task(prometheus.fold_matrix(b0_query.name, b0_query.expr, b0_query.at, fold0))
        group.create_task(prometheus.fold_matrix(b1_query.name, b1_query.expr, b1_query.at, fold1))

    def on_sample(labels: dict[str, str], resets: float) -> None:
        key = series_id(labels)
        start, end = at_start.pop(key, None), at_end.pop(key, None)
        if resets == 0 and start is not None and end is not None:
            totals.add(labels, end - start)
        else:
            totals.irregular(labels)

    result.series += await prometheus.fold_vector(resets_query.name, resets_query.expr, resets_query.at, on_sample)
    _all_scanned(meter, at_start, at_end)


async def _gauges(
    prometheus: PrometheusClient, meter: q.Meter, w: q.Window, totals: UnitTotals, result: MeterResult
) -> None:
    """A gauge alive across both boundaries with evenly spaced samples: its edge pieces from the
    samples around each boundary, the trapezoids in between from the sum and count."""
    b0_query, b1_query, sum_query, count_query = q.meter_queries(meter, w)
    starts: dict[int, GaugeStart | None] = {}
    ends: dict[int, GaugeEnd | None] = {}
    sums: dict[int, float] = {}

    def on_sum(labels: dict[str, str], value: float) -> None:
        sums[series_id(labels)] = value

    async with asyncio.TaskGroup() as group:
        fold0 = _fold_boundary(starts, lambda s: gauge_start(s, w))
        fold1 = _fold_end(ends, lambda s: gauge_end(s, w), w, result)
        group.create_task(prometheus.fold_matrix(b0_query.name, b0_query.expr, b0_query.at, fold0))
        group.create_task(prometheus.fold_matrix(b1_query.name, b1_query.expr, b1_query.at, fold1))
        group.create_task(prometheus.fold_vector(sum_query.name, sum_query.expr, sum_query.at, on_sum))

    def on_count(labels: dict[str, str], count: float) -> None:
        key = series_id(labels)
        start, end, total = starts.pop(key, None), ends.pop(key, None), sums.pop(key, None)
        usage = None
        if start is not None and end is not None and total is not None:
            usage = gauge_closed_form(start, end, total, count)
        if usage is None:
            totals.irregular(labels)
        else:
            totals.add(labels, usage)

    result.series += await prometheus.fold_vector(count_query.name, count_query.expr, count_query.at, on_count)
    if sums:
        raise PrometheusError(f"meter {meter.name}: the sum and count of one window disagree; answers changed")
    # a gauge seen only around a boundary, with no sample inside the window, used nothing in it
    result.series += len(starts.keys() | ends.keys())


def _all_scanned(meter: q.Meter, *boundaries: dict[int, Any]) -> None:
    """Every series seen around a boundary is in the window scan (its range covers both): if
    not, the answers changed while they were read, and nothing can be reported."""
    if any(boundaries):
        raise PrometheusError(
            f"meter {meter.name}: series seen around a window boundary are missing from the window's "
            "scan; Prometheus' answers changed while the window was read"
        )


async def _irregular_amounts(
    prometheus: PrometheusClient, meter: q.Meter, units: dict[int, tuple[tuple[str, str], ...]], w: q.Window
) -> dict[str, float]:
    """Meter irregular units from their raw samples, a bounded number of units per query, each
    series metered as it arrives."""
    if not units:
        return {}
    ordered = sorted(units.values())
    wanted = set(ordered)
    totals = UnitTotals(meter)

    def on_series(labels: dict[str, str], samples: list[tuple[float, float]]) -> None:
        if unit_key(meter, labels) in wanted:  # the matchers also select other combinations
            totals.add(labels, counter_usage(samples, w) if meter.kind == "counter" else gauge_usage(samples, w))

    for i in range(0, len(ordered), RAW_UNITS_PER_QUERY):
        chunk = ordered[i : i + RAW_UNITS_PER_QUERY]
        matchers: dict[str, set[str]] = {}
        for key in chunk:
            for label, value in key:
                matchers.setdefault(label, set()).add(value)
        for label, values in matchers.items():
            if any(label not in dict(key) for key in chunk):
                values.add("")  # a unit without this label must still match (absent == "")
        query = q.raw_samples_query(meter, w, {k: sorted(v) for k, v in matchers.items()})
        await prometheus.fold_matrix(query.name, query.expr, query.at, on_series)
    return totals.amounts()
