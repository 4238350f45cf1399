"""One meter's answers folded, as they stream in, into amounts per namespace.

The Prometheus client streams every answer into a sink (``sources.prometheus.MatrixSink`` and
``VectorSink``); the sinks here are metering's side of that interface, one per kind of answer in
the meter's plan: the samples around a boundary (``_Boundary``), a gauge's sums (``_Sums``), the
window scan that decides which series the boundaries give exactly (``_CounterScan``,
``_GaugeScan``), and the raw samples of the series they cannot (``_Before``, ``_RawSeries``). Only a
few numbers per series are held, in the tables, never an answer, and only while this meter is
measured; the amounts go into the window's AmountTable once every answer of the meter is in.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from ..errors import LayoutError, PrometheusError
from ..sources.prometheus import PrometheusClient
from . import plan as q
from .checks import MeterCheck
from .ownership import Piece
from .rules import counter_at_boundary, gate_key, gauge_closed_form, gauge_end, gauge_start, with_value_before
from .tables import AmountTable, Names, RawUnits, SeriesIndex, UnitTotals, series_id

Pieces = Mapping[str, Sequence[Piece]]  # namespace -> its owners' pieces of the window

# Units per raw-sample fetch: their samples are held while the fetch streams in (16 bytes a
# sample; 2,000 units of a 10 s scrape are about 15 MiB at most).
RAW_UNITS_PER_QUERY = 2000

Samples = list[tuple[float, float]]
Rule = Callable[[Samples], Sequence[float] | None]


@dataclass
class MeterResult:
    """What one meter's answers said about the data itself (its amounts go into the table)."""

    check: MeterCheck  # series seen, unattributed ones, sample spacing, copies
    after_end: int = 0  # series with a sample after the window end (the window can be closed)
    gate_rows: int = 0  # gated meters: pods the gate answered for (0: the cluster lacks the source)


async def _no_cuts() -> Pieces:
    return {}


async def meter_amounts(
    prometheus: PrometheusClient,
    meter: q.Meter,
    w: q.Window,
    table: AmountTable,
    names: Names,
    max_query_length: int,
    pieces: Awaitable[Pieces] | None = None,
) -> MeterResult:
    """Add one selector meter's raw amounts per namespace over window ``w`` into ``table``; what
    the answers showed of the data comes back. Usage of series attributed to no namespace is
    added under namespace ""; raw fetches stay within ``max_query_length`` bytes of PromQL.
    ``pieces`` (awaited before the window's scans) are the namespaces whose owner changed inside
    the window: their usage is cut at each change and added per owner (``AmountTable.pieces``)."""
    plan = q.meter_plan(meter, w)
    totals = UnitTotals(meter, names)
    result = MeterResult(MeterCheck(meter.name, meter.namespace_labels))
    cuts = pieces if pieces is not None else _no_cuts()
    if isinstance(plan, q.CounterPlan):
        cut = await _counters(prometheus, plan, meter, w, totals, result, cuts)
    elif isinstance(plan, q.GaugePlan):
        cut = await _gauges(prometheus, plan, meter, w, totals, result, cuts)
    else:
        raise TypeError(f"meter {meter.name} is a PromQL template: the window folds its one answer")
    irregular = totals.irregular_units
    for field, namespace, amount in totals.amounts():
        table.add(field, namespace, amount)
    result.check.copies += totals.copies
    del totals  # its per-series arrays are freed before the raw fetches

    def add(field: str, namespace: str, customer: str | None, amount: float) -> None:
        # the window's one string per namespace: nothing of a fetch's answer outlives the fetch
        if customer is None:
            table.add(field, names.get(namespace), amount)
        else:
            table.add_piece(field, names.get(namespace), customer, amount)

    await _irregular_units(prometheus, meter, irregular, w, result.check, max_query_length, cut, add)
    return result


def _saw_samples(check: MeterCheck, samples: Samples) -> None:
    """Note a series' sample spacing: its first one for the median, its longest for gaps."""
    if len(samples) > 1:
        check.saw_spacing(samples[1][0] - samples[0][0])
        check.longest_gap = max(check.longest_gap, max(b[0] - a[0] for a, b in itertools.pairwise(samples)))


class _Boundary:
    """The samples around one boundary: rule(samples) stored per series; with ``after`` (the
    window end), the series sampled after it are counted (the window can be closed)."""

    def __init__(self, index: SeriesIndex, rule: Rule, result: MeterResult, after: float | None = None) -> None:
        self.index, self.rule, self.result, self.after = index, rule, result, after

    def series(self, labels: dict[str, str], samples: Samples) -> None:
        self.index.put(series_id(labels), self.rule(samples))
        _saw_samples(self.result.check, samples)
        if self.after is not None and samples and samples[-1][0] > self.after:
            self.result.after_end += 1


class _Sums:
    """A gauge's sum of samples in the window, per series."""

    def __init__(self, index: SeriesIndex) -> None:
        self.index = index

    def sample(self, labels: dict[str, str], value: float) -> None:
        self.index.put(series_id(labels), (value,))


class _CounterScan:
    """resets() per series: a counter alive across both boundaries without a reset used
    B(T1) - B(T0); every other series is irregular (a reset, a start or stop, a gap near a
    boundary, another view with no boundary answer)."""

    def __init__(self, starts: SeriesIndex, ends: SeriesIndex, totals: UnitTotals, check: MeterCheck) -> None:
        self.starts, self.ends, self.totals, self.check = starts, ends, totals, check

    def sample(self, labels: dict[str, str], resets: float) -> None:
        self.check.saw_series(labels)
        key = series_id(labels)
        start, end = self.starts.take(key), self.ends.take(key)
        if resets == 0 and start is not None and end is not None:
            self.totals.add(labels, end[0] - start[0])
        else:
            self.totals.irregular(labels)


class _GaugeScan:
    """count_over_time() per series: a gauge alive across both boundaries with evenly spaced
    samples is integrated in closed form; every other series is irregular. A gated meter's series
    counts as it is where its pod's gate was 1 all along, zero where it was never 1, and is
    irregular where the gate changed (metered from raw samples times the gate's)."""

    def __init__(
        self,
        starts: SeriesIndex,
        ends: SeriesIndex,
        sums: SeriesIndex,
        totals: UnitTotals,
        check: MeterCheck,
        gates: SeriesIndex | None = None,
    ):
        self.starts, self.ends, self.sums, self.totals, self.check = starts, ends, sums, totals, check
        self.gates = gates
        self.ungated = 0  # series whose pod has no gate at all

    def sample(self, labels: dict[str, str], count: float) -> None:
        self.check.saw_series(labels)
        key = series_id(labels)
        start, end, total = self.starts.take(key), self.ends.take(key), self.sums.take(key)
        if self.gates is not None:
            gate = self.gates.get(gate_id(self.totals.meter, labels))
            if gate is None:
                self.ungated += 1
                return
            if gate[0] == q.GATE_NEVER:
                self.totals.add(labels, 0.0)
                return
            if gate[0] != q.GATE_ALWAYS:
                self.totals.irregular(labels)
                return
        usage = None
        if start is not None and end is not None and total is not None:
            usage = gauge_closed_form(start, end, total[0], count)
        if usage is None:
            self.totals.irregular(labels)
        else:
            self.totals.add(labels, usage)


def gate_id(meter: q.Meter, labels: Mapping[str, str]) -> tuple[int, int]:
    """The identity of a series' pod gate (its gate labels' values)."""
    return series_id(dict(gate_key(meter, labels)))


class _Gates:
    """Each pod's gate code (plan.gate_query), by gate identity."""

    def __init__(self, index: SeriesIndex, meter: q.Meter, result: MeterResult) -> None:
        self.index, self.meter, self.result = index, meter, result

    def sample(self, labels: dict[str, str], code: float) -> None:
        self.index.put(gate_id(self.meter, labels), (code,))
        self.result.gate_rows += 1


def _one(value: float | None) -> tuple[float] | None:
    return None if value is None else (value,)


def _freeze(index: SeriesIndex, query: q.Query) -> None:
    """Index an answer's numbers; one label set twice in one answer breaks what Prometheus
    guarantees (one series per label set), and the window fails."""
    index.freeze()
    if index.duplicates:
        raise PrometheusError(f"query {query.name}: the same series twice in one answer; refusing to meter it")


async def _counters(
    prometheus: PrometheusClient,
    plan: q.CounterPlan,
    meter: q.Meter,
    w: q.Window,
    totals: UnitTotals,
    r: MeterResult,
    cuts: Awaitable[Pieces],
) -> Pieces:
    """A counter without resets used B(T1) - B(T0), each from the samples around its boundary."""
    starts, ends = SeriesIndex(1), SeriesIndex(1)
    at_start = _Boundary(starts, lambda s: _one(counter_at_boundary(s, w.start, w)), r)
    at_end = _Boundary(ends, lambda s: _one(counter_at_boundary(s, w.end, w)), r, w.end)
    async with asyncio.TaskGroup() as group:
        group.create_task(prometheus.stream_matrix(plan.boundary0, at_start))
        group.create_task(prometheus.stream_matrix(plan.boundary1, at_end))
    _freeze(starts, plan.boundary0)
    _freeze(ends, plan.boundary1)
    pieces = await cuts
    totals.cut = pieces.keys()
    await prometheus.stream_vector(plan.resets, _CounterScan(starts, ends, totals, r.check))
    if starts.left() or ends.left():
        raise PrometheusError(
            f"meter {meter.name}: series seen around a window boundary are missing from the window's "
            "scan; Prometheus' answers changed while the window was read"
        )
    return pieces


async def _gauges(
    prometheus: PrometheusClient,
    plan: q.GaugePlan,
    meter: q.Meter,
    w: q.Window,
    totals: UnitTotals,
    r: MeterResult,
    cuts: Awaitable[Pieces],
) -> Pieces:
    """A gauge alive across both boundaries with evenly spaced samples: its edge pieces from the
    samples around each boundary, the trapezoids in between from the sum and count."""
    starts, ends, sums = SeriesIndex(5), SeriesIndex(5), SeriesIndex(1)
    gates = SeriesIndex(1) if plan.gate is not None else None
    at_start = _Boundary(starts, lambda s: gauge_start(s, w), r)
    at_end = _Boundary(ends, lambda s: gauge_end(s, w), r, w.end)
    async with asyncio.TaskGroup() as group:
        group.create_task(prometheus.stream_matrix(plan.boundary0, at_start))
        group.create_task(prometheus.stream_matrix(plan.boundary1, at_end))
        group.create_task(prometheus.stream_vector(plan.sum, _Sums(sums)))
        if plan.gate is not None and gates is not None:
            group.create_task(prometheus.stream_vector(plan.gate, _Gates(gates, meter, r)))
    _freeze(starts, plan.boundary0)
    _freeze(ends, plan.boundary1)
    _freeze(sums, plan.sum)
    if plan.gate is not None and gates is not None:
        _freeze(gates, plan.gate)
    pieces = await cuts
    totals.cut = pieces.keys()
    scan = _GaugeScan(starts, ends, sums, totals, r.check, gates)
    await prometheus.stream_vector(plan.count, scan)
    if sums.left():
        raise PrometheusError(f"meter {meter.name}: the sum and count of one window disagree; answers changed")
    if scan.ungated:
        raise LayoutError(
            f"meter {meter.name}: {scan.ungated} series of {meter.selector} have no {meter.gate} series for "
            f"their pod (by {', '.join(meter.gate_labels)}): kube-state-metrics must export both (check its "
            "--metric-denylist and --resources)"
        )
    # a gauge seen only around a boundary, with no sample inside the window, used nothing in it
    r.check.series += max(starts.left(), ends.left())
    return pieces


class _Before:
    """Counters: each raw series' last value in the lookback before the raw span."""

    def __init__(self) -> None:
        self.values: dict[tuple[int, int], float] = {}

    def sample(self, labels: dict[str, str], value: float) -> None:
        self.values[series_id(labels)] = value


class _RawSeries:
    """The raw samples of irregular units, into RawUnits (a counter's led by its value before)."""

    def __init__(
        self, query: q.Query, meter: q.Meter, raw: RawUnits, before: _Before, w: q.Window, check: MeterCheck
    ) -> None:
        self.query, self.meter, self.raw, self.before, self.w, self.check = query, meter, raw, before, w, check
        self.seen: set[tuple[int, int]] = set()

    def series(self, labels: dict[str, str], samples: Samples) -> None:
        key = series_id(labels)
        if key in self.seen:
            raise PrometheusError(f"query {self.query.name}: the same series twice in one answer; refusing to meter it")
        self.seen.add(key)
        _saw_samples(self.check, samples)
        if self.meter.kind == "counter":
            samples = list(with_value_before(samples, self.before.values.get(key), self.w))
        self.raw.add(labels, samples)


class _RawGates:
    """A gated meter's raw gate samples, merged in time per pod into RawUnits.gates."""

    def __init__(self, meter: q.Meter, raw: RawUnits) -> None:
        self.meter, self.raw = meter, raw

    def series(self, labels: dict[str, str], samples: Samples) -> None:
        key = gate_key(self.meter, labels)
        self.raw.gates[key] = sorted([*self.raw.gates.get(key, []), *samples])


async def _irregular_units(
    prometheus: PrometheusClient,
    meter: q.Meter,
    units: dict[int, tuple[tuple[str, str], ...]],
    w: q.Window,
    check: MeterCheck,
    max_query_length: int,
    pieces: Pieces,
    add: Callable[[str, str, str | None, float], None],
) -> None:
    """Meter irregular units from their raw samples, a bounded number of units per query; each
    fetch's series are merged per unit once it is in, and handed to ``add`` as (field, namespace,
    customer, usage) per unit, or per owner's piece of a namespace whose owner changed
    (``RawUnits.take``). Nothing is kept from one fetch to the next."""
    if not units:
        return
    ordered = sorted(units.values())
    raw = RawUnits(meter, set(ordered), w, pieces)
    for run, by_label in q.raw_fetches(meter, w, ordered, max_query_length, RAW_UNITS_PER_QUERY):
        raw.expect(run)
        before = _Before()
        if meter.kind == "counter":
            await prometheus.stream_vector(q.raw_lookback_query(meter, w, by_label), before)
        if meter.gate is not None:
            raw.gates = {}
            await prometheus.stream_matrix(q.raw_gate_query(meter, w, by_label), _RawGates(meter, raw))
        query = q.raw_samples_query(meter, w, by_label)
        await prometheus.stream_matrix(query, _RawSeries(query, meter, raw, before, w, check))
        # every irregular unit was seen in or around the window: if its raw samples did not
        # come back, it would be billed zero for a failed fetch
        if raw.pending:
            raise PrometheusError(
                f"meter {meter.name}: the raw samples of {len(raw.pending)} irregular series did not come back "
                f"(e.g. {dict(min(raw.pending))}); refusing to bill them zero"
            )
        for row in raw.take():
            add(*row)
    check.copies += raw.copies
