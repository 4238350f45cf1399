"""One meter's amounts per namespace for one window, from the answers queries.py defines.

For each meter (or shard of one): the samples around both boundaries and one scan of the window
are folded, series by series as the answers arrive, into a few numbers per series; a series the
boundary rules decide is metered there, every other one is irregular and its whole unit is
metered again from raw samples, a bounded number of units per query. Only per-series numbers
are held, never an answer, and only while this meter is measured.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from . import queries as q
from .accounting import (
    AmountTable,
    SeriesIndex,
    UnitTotals,
    add_raw_series,
    counter_at_boundary,
    gauge_closed_form,
    gauge_end,
    gauge_start,
    series_id,
    unit_key,
    with_value_before,
)
from .errors import PrometheusError
from .prometheus import PrometheusClient

RAW_UNITS_PER_QUERY = 5000


@dataclass
class MeterResult:
    """What one meter's answers said about the data itself (its amounts go into the table)."""

    series: int = 0  # series with samples in the window or around its boundaries
    after_end: int = 0  # series with a sample after the window end (the window can be closed)


async def meter_amounts(prometheus: PrometheusClient, meter: q.Meter, w: q.Window, into: AmountTable) -> MeterResult:
    """Add one selector meter's raw amounts per namespace over window ``w`` into ``into``; its
    series counts come back. Amounts are added only once every answer of the meter is in."""
    totals = UnitTotals(meter, into.intern)
    result = MeterResult()

    if meter.kind == "counter":
        await _counters(prometheus, meter, w, totals, result)
    else:
        await _gauges(prometheus, meter, w, totals, result)
    irregular = await _irregular_amounts(prometheus, meter, totals.irregular_units, w)
    totals.add_to(lambda namespace, amount: into.add(meter.name, namespace, amount))
    for namespace, amount in irregular.items():
        into.add(meter.name, namespace, amount)
    return result


Rule = Callable[[list[tuple[float, float]]], Sequence[float] | None]


def _fold_boundary(
    into: SeriesIndex, rule: Rule, after: float | None = None, result: MeterResult | None = None
) -> Callable[[dict[str, str], list[tuple[float, float]]], None]:
    """Store rule(samples) per series; with ``after``, count the series sampled after it."""

    def on_series(labels: dict[str, str], samples: list[tuple[float, float]]) -> None:
        into.put(series_id(labels), rule(samples))
        if result is not None and after is not None and samples and samples[-1][0] > after:
            result.after_end += 1

    return on_series


async def _boundaries(
    prometheus: PrometheusClient,
    queries: Sequence[q.Query],
    starts: SeriesIndex,
    start_rule: Rule,
    ends: SeriesIndex,
    end_rule: Rule,
    w: q.Window,
    result: MeterResult,
    also: Sequence[Coroutine[Any, Any, int]] = (),
) -> None:
    """Fold both boundary answers (and any other answers given) at once, then index them."""
    b0, b1 = queries
    async with asyncio.TaskGroup() as group:
        group.create_task(prometheus.fold_matrix(b0.name, b0.expr, b0.at, _fold_boundary(starts, start_rule)))
        group.create_task(
            prometheus.fold_matrix(b1.name, b1.expr, b1.at, _fold_boundary(ends, end_rule, w.end, result))
        )
        for other in also:
            group.create_task(other)
    starts.freeze()
    ends.freeze()


def _one(value: float | None) -> tuple[float] | None:
    return None if value is None else (value,)


async def _counters(
    prometheus: PrometheusClient, meter: q.Meter, w: q.Window, totals: UnitTotals, result: MeterResult
) -> None:
    """A counter without resets used B(T1) - B(T0), each from the samples around its boundary."""
    b0_query, b1_query, resets_query = q.meter_queries(meter, w)[:3]
    starts, ends = SeriesIndex(1), SeriesIndex(1)
    await _boundaries(
        prometheus,
        (b0_query, b1_query),
        starts,
        lambda s: _one(counter_at_boundary(s, w.start, w)),
        ends,
        lambda s: _one(counter_at_boundary(s, w.end, w)),
        w,
        result,
    )

    def on_sample(labels: dict[str, str], resets: float) -> None:
        key = series_id(labels)
        start, end = starts.take(key), ends.take(key)
        if resets == 0 and start is not None and end is not None:
            totals.add(labels, end[0] - start[0])
        else:  # a reset, a start or stop inside the window, or another view (no boundary answers)
            totals.irregular(labels)

    result.series += await prometheus.fold_vector(resets_query.name, resets_query.expr, resets_query.at, on_sample)
    if starts.left() or ends.left():
        raise PrometheusError(
            f"meter {meter.name}: series seen around a window boundary are missing from the window's "
            "scan; Prometheus' answers changed while the window was read"
        )


async def _gauges(
    prometheus: PrometheusClient, meter: q.Meter, w: q.Window, totals: UnitTotals, result: MeterResult
) -> None:
    """A gauge alive across both boundaries with evenly spaced samples: its edge pieces from the
    samples around each boundary, the trapezoids in between from the sum and count."""
    b0_query, b1_query, sum_query, count_query = q.meter_queries(meter, w)[:4]
    starts, ends, sums = SeriesIndex(4), SeriesIndex(3), SeriesIndex(1)

    def on_sum(labels: dict[str, str], value: float) -> None:
        sums.put(series_id(labels), (value,))

    await _boundaries(
        prometheus,
        (b0_query, b1_query),
        starts,
        lambda s: gauge_start(s, w),
        ends,
        lambda s: gauge_end(s, w),
        w,
        result,
        also=[prometheus.fold_vector(sum_query.name, sum_query.expr, sum_query.at, on_sum)],
    )
    sums.freeze()

    def on_count(labels: dict[str, str], count: float) -> None:
        key = series_id(labels)
        start, end, total = starts.take(key), ends.take(key), sums.take(key)
        usage = None
        if start is not None and end is not None and total is not None:
            usage = gauge_closed_form(start, end, total[0], count)
        if usage is None:
            totals.irregular(labels)
        else:
            totals.add(labels, usage)

    result.series += await prometheus.fold_vector(count_query.name, count_query.expr, count_query.at, on_count)
    if sums.left():
        raise PrometheusError(f"meter {meter.name}: the sum and count of one window disagree; answers changed")
    # a gauge seen only around a boundary, with no sample inside the window, used nothing in it
    result.series += max(starts.left(), ends.left())


async def _irregular_amounts(
    prometheus: PrometheusClient, meter: q.Meter, units: dict[int, tuple[tuple[str, str], ...]], w: q.Window
) -> dict[str, float]:
    """Meter irregular units from their raw samples, a bounded number of units per query, each
    series metered as it arrives."""
    if not units:
        return {}
    max_length = prometheus.settings.max_query_length
    ordered = sorted(units.values())
    wanted = set(ordered)
    totals = UnitTotals(meter)

    before: dict[tuple[int, int], float] = {}  # counters: each series' last value before the window span

    def on_before(labels: dict[str, str], value: float) -> None:
        before[series_id(labels)] = value

    found: set[tuple[tuple[str, str], ...]] = set()

    def on_series(labels: dict[str, str], samples: list[tuple[float, float]]) -> None:
        if meter.kind == "counter":
            samples = list(with_value_before(samples, before.get(series_id(labels)), w))
        add_raw_series(totals, wanted, labels, samples, w)
        found.add(unit_key(meter, labels))

    for _, by_label in q.raw_chunks(ordered, max_length, RAW_UNITS_PER_QUERY):
        before.clear()
        if meter.kind == "counter":
            lookback = q.raw_lookback_query(meter, w, by_label)
            await prometheus.fold_vector(lookback.name, lookback.expr, lookback.at, on_before)
        query = q.raw_samples_query(meter, w, by_label)
        await prometheus.fold_matrix(query.name, query.expr, query.at, on_series)
    # every irregular unit was seen in or around the window: if its raw samples did not come
    # back, it would be billed zero for a failed fetch
    if missing := wanted - found:
        raise PrometheusError(
            f"meter {meter.name}: the raw samples of {len(missing)} irregular series did not come back "
            f"(e.g. {dict(min(missing))}); refusing to bill them zero"
        )
    return totals.amounts()
