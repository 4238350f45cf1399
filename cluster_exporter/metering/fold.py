"""One meter's amounts per namespace for one window, from the answers queries.py defines.

For each meter (or shard of one): the samples around both boundaries and one scan of the window
are folded, series by series as the answers arrive, into a few numbers per series; a series the
boundary rules decide is metered there, every other one is irregular and its whole unit is
metered again from raw samples, a bounded number of units per query. Only per-series numbers
are held, never an answer, and only while this meter is measured.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import PrometheusError
from ..sources.prometheus import PrometheusClient
from . import plan as q
from .checks import MeterCheck
from .rules import counter_at_boundary, gauge_closed_form, gauge_end, gauge_start, namespace_of, with_value_before
from .tables import AmountTable, RawUnits, SeriesIndex, UnitTotals, series_id

# Units per raw-sample fetch: their samples are held while the fetch streams in (16 bytes a
# sample; 2,000 units of a 10 s scrape are about 15 MiB at most).
RAW_UNITS_PER_QUERY = 2000


@dataclass
class MeterResult:
    """What one meter's answers said about the data itself (its amounts go into the table)."""

    check: MeterCheck  # series seen, unattributed ones, sample spacing
    after_end: int = 0  # series with a sample after the window end (the window can be closed)


async def meter_amounts(prometheus: PrometheusClient, meter: q.Meter, w: q.Window, into: AmountTable) -> MeterResult:
    """Add one selector meter's raw amounts per namespace over window ``w`` into ``into``; what
    the answers showed of the data comes back. Amounts are added only once every answer of the
    meter is in; usage of series attributed to no namespace is added under namespace ""."""
    totals = UnitTotals(meter, into.intern)
    result = MeterResult(MeterCheck(meter.name, meter.namespace_labels))

    if meter.kind == "counter":
        await _counters(prometheus, meter, w, totals, result)
    else:
        await _gauges(prometheus, meter, w, totals, result)
    raw = await _irregular_units(prometheus, meter, totals.irregular_units, w, result.check)
    totals.add_to(lambda namespace, amount: into.add(meter.name, namespace, amount))
    result.check.copies += totals.copies
    for namespace, amount in raw:
        into.add(meter.name, into.intern(namespace), amount)
    return result


def _saw_series(check: MeterCheck, meter: q.Meter, labels: dict[str, str]) -> None:
    """Count one series of the window scan, and what it carries if no namespace can be read."""
    check.series += 1
    if namespace_of(meter, labels):
        check.label_used[next(name for name in meter.namespace_labels if labels.get(name))] += 1
    else:
        check.unattributed_series += 1
        check.labels_found.update(name for name in labels if name != "__name__")


def _saw_samples(check: MeterCheck, samples: list[tuple[float, float]]) -> None:
    """Note a series' sample spacing: its first one for the median, its longest for gaps."""
    if len(samples) > 1:
        check.saw_spacing(samples[1][0] - samples[0][0])
        check.longest_gap = max(check.longest_gap, max(b[0] - a[0] for a, b in itertools.pairwise(samples)))


Rule = Callable[[list[tuple[float, float]]], Sequence[float] | None]


def _fold_boundary(
    into: SeriesIndex, rule: Rule, result: MeterResult, after: float | None = None
) -> Callable[[dict[str, str], list[tuple[float, float]]], None]:
    """Store rule(samples) per series; with ``after``, count the series sampled after it."""

    def on_series(labels: dict[str, str], samples: list[tuple[float, float]]) -> None:
        into.put(series_id(labels), rule(samples))
        _saw_samples(result.check, samples)
        if after is not None and samples and samples[-1][0] > after:
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
        group.create_task(prometheus.fold_matrix(b0.name, b0.expr, b0.at, _fold_boundary(starts, start_rule, result)))
        group.create_task(
            prometheus.fold_matrix(b1.name, b1.expr, b1.at, _fold_boundary(ends, end_rule, result, w.end))
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
        _saw_series(result.check, meter, labels)
        key = series_id(labels)
        start, end = starts.take(key), ends.take(key)
        if resets == 0 and start is not None and end is not None:
            totals.add(labels, end[0] - start[0])
        else:  # a reset, a start or stop inside the window, or another view (no boundary answers)
            totals.irregular(labels)

    await prometheus.fold_vector(resets_query.name, resets_query.expr, resets_query.at, on_sample)
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
    starts, ends, sums = SeriesIndex(5), SeriesIndex(5), SeriesIndex(1)

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
        _saw_series(result.check, meter, labels)
        key = series_id(labels)
        start, end, total = starts.take(key), ends.take(key), sums.take(key)
        usage = None
        if start is not None and end is not None and total is not None:
            usage = gauge_closed_form(start, end, total[0], count)
        if usage is None:
            totals.irregular(labels)
        else:
            totals.add(labels, usage)

    await prometheus.fold_vector(count_query.name, count_query.expr, count_query.at, on_count)
    if sums.left():
        raise PrometheusError(f"meter {meter.name}: the sum and count of one window disagree; answers changed")
    # a gauge seen only around a boundary, with no sample inside the window, used nothing in it
    result.check.series += max(starts.left(), ends.left())


async def _irregular_units(
    prometheus: PrometheusClient,
    meter: q.Meter,
    units: dict[int, tuple[tuple[str, str], ...]],
    w: q.Window,
    check: MeterCheck,
) -> list[tuple[str, float]]:
    """Meter irregular units from their raw samples, a bounded number of units per query; each
    fetch's series are merged per unit once it is in. (namespace, usage) per unit."""
    if not units:
        return []
    ordered = sorted(units.values())
    raw = RawUnits(meter, set(ordered), w)
    max_length = prometheus.settings.max_query_length
    out: list[tuple[str, float]] = []

    before: dict[tuple[int, int], float] = {}  # counters: each series' last value before the window span

    def on_before(labels: dict[str, str], value: float) -> None:
        before[series_id(labels)] = value

    def on_series(labels: dict[str, str], samples: list[tuple[float, float]]) -> None:
        _saw_samples(check, samples)
        if meter.kind == "counter":
            samples = list(with_value_before(samples, before.get(series_id(labels)), w))
        raw.add(labels, samples)

    for _, by_label in q.raw_chunks(ordered, max_length, RAW_UNITS_PER_QUERY):
        before.clear()
        if meter.kind == "counter":
            lookback = q.raw_lookback_query(meter, w, by_label)
            await prometheus.fold_vector(lookback.name, lookback.expr, lookback.at, on_before)
        query = q.raw_samples_query(meter, w, by_label)
        await prometheus.fold_matrix(query.name, query.expr, query.at, on_series)
        raw.flush(lambda namespace, amount: out.append((namespace, amount)))
    # every irregular unit was seen in or around the window: if its raw samples did not come
    # back, it would be billed zero for a failed fetch
    if missing := set(ordered) - raw.found:
        raise PrometheusError(
            f"meter {meter.name}: the raw samples of {len(missing)} irregular series did not come back "
            f"(e.g. {dict(min(missing))}); refusing to bill them zero"
        )
    check.copies += raw.copies
    return out
