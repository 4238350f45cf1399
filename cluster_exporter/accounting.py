"""Pure accounting: samples in, usage per namespace and per customer out. No I/O.

``counter_usage`` and ``gauge_usage`` are the metering rules written out on a series' raw
samples: the reference. Most series are metered without all their samples, from what the
queries in queries.py answer: the samples around each boundary and, for gauges, the sum and
count of the samples inside the window. ``counter_at_boundary``, ``gauge_start``, ``gauge_end``
and ``gauge_closed_form`` apply the same rules to those, and say when they cannot (the series
is then irregular and metered from its raw samples). ``UnitTotals`` turns per-series usage into
per-namespace amounts, counting copies of a series once and one view per unit.
"""

from __future__ import annotations

import bisect
import itertools
import math
from array import array
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from .queries import Meter, Window
from .report import CustomerUsage, round_amount

Samples = Sequence[tuple[float, float]]
RawSeries = tuple[Mapping[str, str], Samples]


def _counter_at(samples: Samples, times: list[float], at: float, w: Window) -> float:
    """B(at): the counter's value at ``at``, by the same rule as queries.counter_boundary.

    Interpolated (reset-aware) between the last sample at or before ``at`` and the first after
    it, when K >= 1 samples follow within the horizon, the one before is at most max_gap old and
    the spacing (tk - tb) / K is at most max_gap; else the last value within the lookback; else 0.
    """
    i = bisect.bisect_right(times, at)  # samples[:i] are at or before `at`
    lookback = w.lookback + (w.length if at == w.end else 0.0)  # as queries._prims
    if i == 0 or times[i - 1] < at - lookback:
        return 0.0
    tb, vb = samples[i - 1]
    j = bisect.bisect_right(times, at + w.horizon)  # samples[i:j] are in (at, at + horizon]
    if j > i and tb >= at - w.max_gap:
        spacing = (times[j - 1] - tb) / (j - i)
        if spacing <= w.max_gap:
            va = samples[i][1]
            increase = va - vb if va >= vb else va
            return vb + increase * (at - tb) / spacing
    return vb


def counter_usage(samples: Samples, w: Window) -> float:
    """Exact counter usage in (T0, T1]: B(T1) - B(T0) plus the value lost at each reset.

    A reset (a sample lower than the one before) means the counter restarted from zero, so the
    increase over that step is the new value; the drop is added back for resets whose new sample
    lies in the window. A series unseen for ``lookback`` before a boundary counts from zero.
    """
    if not samples:
        return 0.0
    times = [t for t, _ in samples]
    total = _counter_at(samples, times, w.end, w) - _counter_at(samples, times, w.start, w)
    for (tp, vp), (tc, vc) in itertools.pairwise(samples):
        if vc < vp and w.start < tc <= w.end and tp >= w.start - w.lookback:
            total += vp
    return total


def gauge_usage(samples: Samples, w: Window) -> float:
    """Exact integral (value-seconds) of a gauge over [T0, T1].

    The line through consecutive samples is integrated; samples further apart than max_gap are
    two lives of the series, not bridged. Before its first and after its last sample a series
    does not exist.
    """
    total = 0.0
    for (ta, va), (tb, vb) in itertools.pairwise(samples):
        if tb - ta > w.max_gap:
            continue
        lo, hi = max(ta, w.start), min(tb, w.end)
        if hi <= lo:
            continue
        slope = (vb - va) / (tb - ta)
        v_lo, v_hi = va + slope * (lo - ta), va + slope * (hi - ta)
        total += (hi - lo) * (v_lo + v_hi) / 2
    return total


def counter_at_boundary(samples: Samples, at: float, w: Window) -> float | None:
    """B(at), from a series' samples in [at - max_gap, at + horizon]; None when these do not
    decide it (no sample in [at - max_gap, at]: B would be read further back)."""
    times = [t for t, _ in samples]
    i = bisect.bisect_right(times, at)
    if i == 0 or times[i - 1] < at - w.max_gap:
        return None
    return _counter_at(samples, times, at, w)


# What a regular gauge's boundaries contribute, from its samples around them:
# at T0 (ta, va, spacing, left): the first sample after T0, its distance from the one before, and
# the integral over [T0, ta]; at T1 (tb, vb, right): the last sample at or before T1 and the
# integral over [tb, T1].
GaugeStart = tuple[float, float, float, float]
GaugeEnd = tuple[float, float, float]


def _around(samples: Samples, at: float, w: Window) -> tuple[float, float, float, float, float] | None:
    """(tb, vb, ta, va, v): the samples just before (or at) and just after ``at`` and the value
    interpolated at ``at``, when both exist within max_gap of ``at`` and of each other; else None."""
    times = [t for t, _ in samples]
    i = bisect.bisect_right(times, at)
    if i == 0 or i == len(samples):
        return None
    (tb, vb), (ta, va) = samples[i - 1], samples[i]
    if tb < at - w.max_gap or ta > at + w.horizon or ta - tb > w.max_gap:
        return None
    return tb, vb, ta, va, vb + (va - vb) * (at - tb) / (ta - tb)


def gauge_start(samples: Samples, w: Window) -> GaugeStart | None:
    """A gauge's piece at T0 from its samples around T0, or None (not alive across T0)."""
    pair = _around(samples, w.start, w)
    if pair is None:
        return None
    tb, _, ta, va, at_t0 = pair
    return ta, va, ta - tb, (ta - w.start) * (at_t0 + va) / 2


def gauge_end(samples: Samples, w: Window) -> GaugeEnd | None:
    """A gauge's piece at T1 from its samples around T1, or None (not alive across T1)."""
    pair = _around(samples, w.end, w)
    return None if pair is None else (pair[0], pair[1], (w.end - pair[0]) * (pair[1] + pair[4]) / 2)


def gauge_closed_form(start: Sequence[float], end: Sequence[float], total: float, count: float) -> float | None:
    """Integral over [T0, T1] of a gauge alive across both boundaries (``start`` and ``end`` as
    gauge_start and gauge_end give them), from the sum and count of its samples in (T0, T1];
    None unless those samples are evenly spaced with none missing.

    With a, va the first sample in the window and b, vb the last, N samples summing to S at even
    spacing, the trapezoids between them are (b - a) / (N - 1) * (S - (va + vb) / 2).
    """
    a, va, spacing, left = start
    b, vb, right = end
    if count < 1 or b < a:
        return None
    if abs((b - a) / spacing - (count - 1)) >= 0.5:
        return None  # samples missing (or extra): only the sample-by-sample rule is exact
    interior = (b - a) / (count - 1) * (total - (va + vb) / 2) if count > 1 else 0.0
    return left + interior + right


def unit_key(meter: Meter, labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """What one countable thing is for this meter: its unit labels, or all but the copy labels."""
    if meter.unit is not None:
        return tuple((name, labels.get(name, "")) for name in meter.unit)
    return _copy_key(meter, labels)


def _copy_key(meter: Meter, labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in labels.items() if k != "__name__" and k not in meter.dedup))


def _id(items: tuple[tuple[str, str], ...]) -> tuple[int, int]:
    """128 bits identifying a label set, as two 64-bit halves: the hashes of the sorted labels
    forwards and backwards (stored in arrays, matched on both)."""
    return hash(items), hash(items[::-1])


def series_id(labels: Mapping[str, str]) -> tuple[int, int]:
    """The identity of one series (``__name__`` aside), to match it across answers without
    keeping its labels."""
    if "__name__" in labels:
        labels = {k: v for k, v in labels.items() if k != "__name__"}
    return _id(tuple(sorted(labels.items())))


def _rows_by(keys: array[int]) -> array[int]:
    """Row numbers sorted by 64-bit ``keys``, as an array.

    Rows are first dealt into buckets by their key's top bits (a few thousand rows each), then
    each bucket is sorted as ints packing key and row together. Sorting all rows at once with a
    key function would hold a list of rows and a list of keys, about 70 bytes a row (14 MB at
    200,000 series); this holds 16 bytes a row and one bucket.
    """
    n = len(keys)
    bits = max(1, n.bit_length())
    mask = (1 << bits) - 1
    shift = 64 - (n // 4096).bit_length()
    buckets = [array("q") for _ in range(1 << (64 - shift))]
    for row, key in enumerate(keys):
        buckets[(key + 2**63) >> shift].append(row)
    buckets.reverse()
    order = array("q")
    while buckets:
        bucket = buckets.pop()  # lowest keys first; each bucket is dropped once sorted
        packed = sorted(((keys[row] + 2**63) << bits) | row for row in bucket)
        order.extend(p & mask for p in packed)
    return order


def _unique_order(hi: array[int], lo: array[int]) -> array[int]:
    """Row numbers sorted by ``hi``, without the rows whose (hi, lo) occurs more than once."""
    order = _rows_by(hi)
    n = len(order)
    if all(hi[order[k]] != hi[order[k - 1]] for k in range(1, n)):
        return order  # no two rows share a 64-bit half: the usual case

    def twice(k: int) -> bool:  # another row among equal hi has the same lo
        i, j = order[k], k - 1
        while j >= 0 and hi[order[j]] == hi[i]:
            if lo[order[j]] == lo[i]:
                return True
            j -= 1
        j = k + 1
        while j < n and hi[order[j]] == hi[i]:
            if lo[order[j]] == lo[i]:
                return True
            j += 1
        return False

    return array("q", (order[k] for k in range(n) if not twice(k)))


class SeriesIndex:
    """Per-series numbers by series identity, in flat arrays: a few dozen bytes a series.

    Filled while an answer streams in (``put``), then sorted (``freeze``); ``take`` hands a
    series' numbers out once, and ``left`` counts the series never taken. An identity stored
    twice (two series of one answer colliding in 128 bits: never seen) is dropped, so those
    series are metered from raw samples.
    """

    def __init__(self, width: int) -> None:
        self._width = width
        self._hi, self._lo = array("q"), array("q")
        self._values = [array("d") for _ in range(width)]
        self._taken = bytearray()

    def put(self, key: tuple[int, int], values: Sequence[float] | None) -> None:
        """Store a series' numbers (None: the series is there but nothing could be decided)."""
        self._hi.append(key[0])
        self._lo.append(key[1])
        for column, value in zip(self._values, values or (math.nan,) * self._width, strict=True):
            column.append(value)

    def freeze(self) -> None:
        """Sort by identity and drop identities stored twice, one column rebuilt at a time (the
        sort costs the order and one column on top of the index)."""
        order = _unique_order(self._hi, self._lo)
        self._hi = array("q", map(self._hi.__getitem__, order))
        self._lo = array("q", map(self._lo.__getitem__, order))
        for c, column in enumerate(self._values):  # each old column is freed before the next is built
            self._values[c] = array("d", map(column.__getitem__, order))
        self._taken = bytearray(len(order))

    def take(self, key: tuple[int, int]) -> list[float] | None:
        """The numbers stored for ``key``; None if absent, undecided, or already taken."""
        hi, lo = self._hi, self._lo
        i = bisect.bisect_left(hi, key[0])
        while i < len(hi) and hi[i] == key[0]:
            if lo[i] == key[1] and not self._taken[i]:
                self._taken[i] = 1
                values = [column[i] for column in self._values]
                return None if math.isnan(values[0]) else values
            i += 1
        return None

    def left(self) -> int:
        """How many stored series were never taken."""
        return len(self._taken) - sum(self._taken)


class UnitTotals:
    """Per-series usage in, per-namespace amounts out, with copies and views merged.

    Copies of a series (differing only in ``meter.dedup`` labels) count once (their max); where
    ``meter.prefer`` is set, a unit counts its first preferred view only (network: pod-level
    series, else the pause container's). A unit with any series that could not be metered here
    (``irregular``) is left out entirely and listed in ``irregular_units``, for its raw samples.
    A series costs a few dozen bytes: ids and usage in flat arrays (unit id and view rank too,
    for meters with views), and its namespace as a reference to one shared string (``intern``,
    e.g. AmountTable.intern).
    """

    def __init__(self, meter: Meter, intern: Callable[[str], str] | None = None) -> None:
        self.meter = meter
        names: dict[str, str] = {}
        self._intern = intern or (lambda name: names.setdefault(name, name))
        self._views = meter.prefer is not None and meter.unit is not None  # else unit = copy, rank 0
        self._copy_hi, self._copy_lo, self._unit = array("q"), array("q"), array("q")
        self._rank = array("b")
        self._usage = array("d")
        self._namespace: list[str] = []
        self.irregular_units: dict[int, tuple[tuple[str, str], ...]] = {}

    def _ids(self, labels: Mapping[str, str]) -> tuple[tuple[int, int], int, int]:
        """(copy id, unit id, rank of the view) of a series."""
        meter = self.meter
        copy_id = _id(_copy_key(meter, labels))
        if not self._views:
            return copy_id, copy_id[0], 0
        assert meter.prefer is not None
        label, order = meter.prefer
        value = labels.get(label, "")
        return copy_id, hash(unit_key(meter, labels)), order.index(value) if value in order else len(order)

    def add(self, labels: Mapping[str, str], usage: float) -> None:
        """One series' usage."""
        (hi, lo), unit_id, rank = self._ids(labels)
        self._copy_hi.append(hi)
        self._copy_lo.append(lo)
        if self._views:
            self._unit.append(unit_id)
            self._rank.append(rank)
        self._usage.append(usage)
        self._namespace.append(self._intern(labels.get(self.meter.namespace_label, "")))

    def irregular(self, labels: Mapping[str, str]) -> None:
        """A series that must be metered from its raw samples, with everything of its unit."""
        self.irregular_units[self._ids(labels)[1]] = unit_key(self.meter, labels)

    def amounts(self) -> dict[str, float]:
        """{namespace: amount} over the units with no irregular series."""
        out: dict[str, float] = {}
        self.add_to(lambda namespace, amount: out.__setitem__(namespace, out.get(namespace, 0.0) + amount))
        return out

    def add_to(self, add: Callable[[str, float], None]) -> None:
        """``add(namespace, usage)`` for every counted series of the units with no irregular
        series (the caller sums), building no per-namespace table of its own."""
        hi, lo, usage = self._copy_hi, self._copy_lo, self._usage
        units, ranks = (self._unit, self._rank) if self._views else (hi, None)
        order = _rows_by(hi)  # copies are adjacent (equal hi)
        copies = array("q")  # one row per copy, holding the max usage of its duplicates
        group: dict[int, int] = {}  # lo -> row, among the rows of the current hi
        for i in order:
            if copies and hi[copies[-1]] != hi[i]:
                group = {}
            row = group.get(lo[i])
            if row is not None:
                usage[row] = max(usage[row], usage[i])
                continue
            group[lo[i]] = i
            copies.append(i)
        del order
        best_rank: dict[int, int] = {}  # unit -> its preferred view present (only views have ranks)
        if ranks is not None:
            for i in copies:
                unit, rank = units[i], ranks[i]
                if rank < best_rank.get(unit, rank + 1):
                    best_rank[unit] = rank
        for i in copies:
            unit = units[i]
            if unit not in self.irregular_units and (ranks is None or best_rank[unit] == ranks[i]):
                add(self._namespace[i], usage[i])


def with_value_before(samples: Samples, before: float | None, w: Window) -> Samples:
    """A counter's samples in [T0 - max_gap, T1 + horizon], led by its last value in the
    lookback before them, placed just before T0 - max_gap: for the rules the same as all its
    samples back to T0 - lookback (B(T0) reads only that last value; a reset is only counted
    inside the window)."""
    if before is None:
        return samples
    return [(w.start - w.max_gap - 0.001, before), *samples]


def add_raw_series(
    totals: UnitTotals,
    units: set[tuple[tuple[str, str], ...]],
    labels: Mapping[str, str],
    samples: Samples,
    w: Window,
) -> None:
    """Meter one series from its raw samples into ``totals`` if it belongs to one of ``units``
    (a raw fetch's matchers may also select other combinations of label values)."""
    meter = totals.meter
    if unit_key(meter, labels) in units:
        totals.add(labels, counter_usage(samples, w) if meter.kind == "counter" else gauge_usage(samples, w))


def raw_amounts(
    meter: Meter, series: Iterable[RawSeries], units: set[tuple[tuple[str, str], ...]], w: Window
) -> dict[str, float]:
    """Per-namespace usage of the given units from raw samples, with copies and views merged
    (as UnitTotals)."""
    totals = UnitTotals(meter)
    for labels, samples in series:
        add_raw_series(totals, units, labels, samples, w)
    return totals.amounts()


class AmountTable:
    """Raw amounts per namespace and meter, stored by column: one array('d') per meter.

    Each namespace gets a row number once; its amounts live at that index of every meter's
    array, 8 bytes each. At 100,000 namespaces this is a few MiB, where a dict or an array per
    namespace costs tens.
    """

    def __init__(self, meters: Sequence[str]) -> None:
        self._index = {name: i for i, name in enumerate(meters)}
        self._row: dict[str, int] = {}
        self._names: list[str] = []
        self._columns: list[array[float]] = [array("d") for _ in meters]

    def add(self, meter: str, namespace: str, value: float) -> None:
        """Add ``value`` to the namespace's amount of ``meter``."""
        self._columns[self._index[meter]][self._row_of(namespace)] += value

    def _row_of(self, namespace: str) -> int:
        row = self._row.get(namespace)
        if row is None:
            row = self._row[namespace] = len(self._names)
            self._names.append(namespace)
            for column in self._columns:
                column.append(0.0)
        return row

    def intern(self, namespace: str) -> str:
        """The table's own string for ``namespace`` (its row made if needed): one string per
        namespace however many series and meters refer to it."""
        return self._names[self._row_of(namespace)]

    def columns(self) -> dict[str, Mapping[str, float]]:
        """{meter: {namespace: amount}} as views over the columns (nothing is copied)."""
        return {meter: _Column(self._row, self._columns[i]) for meter, i in self._index.items()}


class _Column(Mapping[str, float]):
    """One meter's amounts, read through AmountTable's row numbers."""

    def __init__(self, rows: dict[str, int], column: array[float]) -> None:
        self._rows, self._column = rows, column

    def __getitem__(self, namespace: str) -> float:
        return self._column[self._rows[namespace]]

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)


@dataclass(frozen=True)
class NamespaceOwners:
    """Which customer owns each namespace, from the Kubernetes API and, for namespaces deleted
    since, from kube-state-metrics' history."""

    live: Mapping[str, str]
    historical: Mapping[str, str]

    def owner(self, namespace: str) -> str | None:
        """The customer billed for a namespace's usage, or None (never billed)."""
        owner = self.live.get(namespace) or self.historical.get(namespace)
        return owner or None


def customer_usage(
    meters: Sequence[Meter],
    amounts: Mapping[str, Mapping[str, float]],
    owners: NamespaceOwners,
) -> Iterator[CustomerUsage]:
    """Fold per-namespace amounts (``{meter: {namespace: raw amount}}``) into report records,
    yielded in customer order.

    Every customer with a live labeled namespace gets a record (zeros when idle); a namespace
    deleted during the window joins its customer's record when it had usage. Amounts are scaled
    to report units and rounded once, per customer. Each customer's amounts are summed when its
    record is made, so nothing per customer is held but the list of its namespaces.
    """
    namespaces: dict[str, list[str]] = defaultdict(list)
    for namespace, customer in owners.live.items():
        namespaces[customer].append(namespace)
    columns = [amounts.get(meter.name, {}) for meter in meters]
    for column in columns:
        for namespace, value in column.items():
            if value != 0 and namespace not in owners.live:
                owner = owners.owner(namespace)
                if owner is not None and namespace not in namespaces[owner]:
                    namespaces[owner].append(namespace)
    for customer in sorted(namespaces):
        names = sorted(namespaces.pop(customer))
        fields = {
            meter.name: round_amount(
                meter.name, max(sum(column.get(ns, 0.0) for ns in names), 0.0) / meter.scale, meter.integer
            )
            for meter, column in zip(meters, columns, strict=True)
        }
        yield CustomerUsage(customer, names, **fields)
