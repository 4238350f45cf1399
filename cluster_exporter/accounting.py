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
from dataclasses import dataclass, replace

from .queries import Meter, Window
from .report import CustomerUsage, round_amount

Samples = Sequence[tuple[float, float]]
RawSeries = tuple[Mapping[str, str], Samples]


def _counter_at(samples: Samples, times: list[float], at: float, w: Window) -> float:
    """B(at): the counter's value at ``at``.

    Interpolated (reset-aware) between the last sample at or before ``at`` and the first after
    it, wherever they are, when they are at most max_gap apart (a scrape gap up to max_gap is the
    same series still alive); else the last value within the lookback (the series stopped, or was
    silent longer than max_gap); else 0 (it had not started).
    """
    i = bisect.bisect_right(times, at)  # samples[:i] are at or before `at`
    lookback = w.lookback + (w.length if at == w.end else 0.0)
    if i == 0 or times[i - 1] < at - lookback:
        return 0.0
    tb, vb = samples[i - 1]
    if i < len(samples) and times[i] - tb <= w.max_gap:
        ta, va = samples[i]
        return _between(tb, vb, ta, va, at)
    return vb


def _between(tb: float, vb: float, ta: float, va: float, at: float) -> float:
    """A counter's value at ``at`` on the line from (tb, vb) to (ta, va); a drop is a reset, so
    the increase over that step is the new value."""
    increase = va - vb if va >= vb else va
    return vb + increase * (at - tb) / (ta - tb)


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


def usage(kind: str, samples: Samples, w: Window) -> float:
    """A series' usage in the window by the rule of its kind."""
    return counter_usage(samples, w) if kind == "counter" else gauge_usage(samples, w)


def _split(samples: Samples, at: float, w: Window) -> int | None:
    """i such that samples[i - 1] is the last at or before ``at`` and samples[i] the first after
    it, when both are in ``samples`` and at most max_gap apart (the series alive across ``at``)."""
    times = [t for t, _ in samples]
    i = bisect.bisect_right(times, at)
    if i == 0 or i == len(samples) or times[i] - times[i - 1] > w.max_gap:
        return None
    return i


def _around(samples: Samples, at: float, w: Window) -> tuple[float, float, float, float] | None:
    """(tb, vb, ta, va): the samples just before (or at) and just after ``at`` (``_split``)."""
    i = _split(samples, at, w)
    if i is None:
        return None
    (tb, vb), (ta, va) = samples[i - 1], samples[i]
    return tb, vb, ta, va


def counter_at_boundary(samples: Samples, at: float, w: Window) -> float | None:
    """B(at) of a series alive across ``at``, from its samples in [at - search, at + search];
    None when these do not show it alive across ``at`` (it started or stopped near ``at``, or a
    gap straddles it: the series is metered from its raw samples)."""
    pair = _around(samples, at, w)
    return None if pair is None else _between(*pair, at)


# Two sample spacings differing by at most this (seconds) are equal: Prometheus stores
# timestamps in whole milliseconds.
EVEN = 0.0015


def _spacing_spread(samples: Samples) -> tuple[float, float]:
    """The shortest and longest spacing between consecutive samples (0, 0 with fewer than two)."""
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(samples)]
    return (min(gaps), max(gaps)) if gaps else (0.0, 0.0)


# What a regular gauge's boundaries contribute, from its samples around them:
# at T0 (ta, va, spacing, left, even): the first sample after T0, its distance from the one
# before, the integral over [T0, ta], and 1.0 if every spacing in the answer is that spacing;
# at T1 (tb, vb, right, spacing, even): the last sample at or before T1, the integral over
# [tb, T1], its distance to the next sample, and the same evenness flag.
GaugeStart = tuple[float, float, float, float, float]
GaugeEnd = tuple[float, float, float, float, float]


def _even(samples: Samples, spacing: float) -> float:
    shortest, longest = _spacing_spread(samples)
    return 1.0 if spacing - shortest <= EVEN and longest - spacing <= EVEN else 0.0


def gauge_start(samples: Samples, w: Window) -> GaugeStart | None:
    """A gauge's piece at T0 from its samples around T0, or None (not alive across T0). Evenness
    is read on the samples from the one before T0 on."""
    i = _split(samples, w.start, w)
    if i is None:
        return None
    (tb, vb), (ta, va) = samples[i - 1], samples[i]
    at_t0 = vb + (va - vb) * (w.start - tb) / (ta - tb)
    return ta, va, ta - tb, (ta - w.start) * (at_t0 + va) / 2, _even(samples[i - 1 :], ta - tb)


def gauge_end(samples: Samples, w: Window) -> GaugeEnd | None:
    """A gauge's piece at T1 from its samples around T1, or None (not alive across T1). Evenness
    is read on the samples up to the one after T1."""
    i = _split(samples, w.end, w)
    if i is None:
        return None
    (tb, vb), (ta, va) = samples[i - 1], samples[i]
    at_t1 = vb + (va - vb) * (w.end - tb) / (ta - tb)
    return tb, vb, (w.end - tb) * (vb + at_t1) / 2, ta - tb, _even(samples[: i + 1], ta - tb)


def gauge_closed_form(start: Sequence[float], end: Sequence[float], total: float, count: float) -> float | None:
    """Integral over [T0, T1] of a gauge alive across both boundaries (``start`` and ``end`` as
    gauge_start and gauge_end give them), from the sum and count of its samples in (T0, T1];
    None unless those samples are evenly spaced with none missing.

    With a, va the first sample in the window and b, vb the last, N samples summing to S at even
    spacing, the trapezoids between them are (b - a) / (N - 1) * (S - (va + vb) / 2). Even
    spacing is checked on every sample the boundary answers show (the same spacing around both
    boundaries, to the millisecond) and on the count (b - a = spacing * (N - 1)); samples stamped
    by their exporter off any grid (cAdvisor's) fail it and are metered from raw samples.
    """
    a, va, spacing, left, even_start = start
    b, vb, right, spacing_end, even_end = end
    if count < 1 or b < a or not (even_start and even_end) or abs(spacing - spacing_end) > EVEN:
        return None
    if abs((b - a) - spacing * (count - 1)) > EVEN:
        return None  # samples missing (or extra): only the sample-by-sample rule is exact
    interior = (b - a) / (count - 1) * (total - (va + vb) / 2) if count > 1 else 0.0
    return left + interior + right


def namespace_of(meter: Meter, labels: Mapping[str, str]) -> str:
    """The tenant namespace a series is attributed to: the first of the meter's namespace labels
    set on it, or "" (unattributed)."""
    for name in meter.namespace_labels:
        value = labels.get(name)
        if value:
            return value
    return ""


def unit_key(meter: Meter, labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """What one measured thing is for this meter: its unit labels, or all but the copy labels."""
    if meter.unit is not None:
        return tuple((name, labels.get(name, "")) for name in meter.unit)
    return tuple(sorted((k, v) for k, v in labels.items() if k != "__name__" and k not in meter.dedup))


def view_rank(meter: Meter, labels: Mapping[str, str]) -> int:
    """Which view of its unit a series is (0 the preferred one; always 0 for meters without views)."""
    if meter.prefer is None:
        return 0
    label, order = meter.prefer
    value = labels.get(label, "")
    return order.index(value) if value in order else len(order)


def _copy_key(meter: Meter, labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """Series with the same key are copies of one series: the same unit, the same view."""
    key = unit_key(meter, labels)
    return (*key, ("", str(view_rank(meter, labels)))) if meter.prefer is not None else key


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

    The series here are regular: alive across the whole window. Series of one unit and view
    alive together are copies of one measured thing and count once (their max); where
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
        self.copies = 0  # series merged into another as a copy of the same thing (add_to counts them)

    def _ids(self, labels: Mapping[str, str]) -> tuple[tuple[int, int], int, int]:
        """(copy id, unit id, rank of the view) of a series."""
        meter = self.meter
        copy_id = _id(_copy_key(meter, labels))
        if not self._views:
            return copy_id, copy_id[0], 0
        return copy_id, hash(unit_key(meter, labels)), view_rank(meter, labels)

    def add(self, labels: Mapping[str, str], usage: float) -> None:
        """One series' usage."""
        (hi, lo), unit_id, rank = self._ids(labels)
        self._copy_hi.append(hi)
        self._copy_lo.append(lo)
        if self._views:
            self._unit.append(unit_id)
            self._rank.append(rank)
        self._usage.append(usage)
        self._namespace.append(self._intern(namespace_of(self.meter, labels)))

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
                self.copies += 1
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
    """A counter's samples in [T0 - max_gap, T1 + max_gap], led by its last value in the
    lookback before them, placed just before T0 - max_gap: for the rules the same as all its
    samples back to T0 - lookback (B(T0) reads only that last value; a reset is only counted
    inside the window)."""
    if before is None:
        return samples
    return [(w.start - w.max_gap - 0.001, before), *samples]


def _alive(samples: Samples, at: float, w: Window) -> bool:
    """Whether a series shows a value at ``at`` from its own samples: one at ``at``, or one on
    each side at most max_gap apart (not a value held over a longer gap, nor before its start)."""
    times = [t for t, _ in samples]
    i = bisect.bisect_right(times, at)
    if i and times[i - 1] == at:
        return True
    return 0 < i < len(times) and times[i] - times[i - 1] <= w.max_gap


def merged_usage(kind: str, series: Sequence[Samples], w: Window) -> float:
    """Usage of one measured thing (one view of one unit) from the raw samples of its series.

    One series: its usage by the rules. Several: copies alive together (two scrape jobs, HA
    replicas, two kubelets reporting one RWX volume) and lives one after another (a restart, a
    volume whose pod moved to another node) are told apart in time. The window is cut at every
    series' first and last sample, and each piece counts the largest usage any series shows in
    it: copies count once, lives add up. For counters a piece counts the series alive at both of
    its ends; only where none is does a series count from zero before its first sample (a new
    life, where a copy that appears while another is alive would count its whole value again).
    """
    series = [s for s in series if s]
    if len(series) <= 1:
        return usage(kind, series[0], w) if series else 0.0
    ends = {t for s in series for t in (s[0][0], s[-1][0]) if w.start < t < w.end}
    cuts = sorted({w.start, w.end, *ends})
    total = 0.0
    for lo, hi in itertools.pairwise(cuts):
        piece = replace(w, start=lo, end=hi)
        if kind == "gauge":
            total += max(gauge_usage(s, piece) for s in series)
            continue
        alive = [s for s in series if _alive(s, lo, w) and _alive(s, hi, w)]
        total += max(counter_usage(s, piece) for s in (alive or series))
    return total


UnitKey = tuple[tuple[str, str], ...]


def _overlapping(series: Sequence[Samples]) -> int:
    """How many of ``series`` begin before an earlier-starting one has ended (copies, not lives)."""
    spans = sorted((s[0][0], s[-1][0]) for s in series if s)
    count, last_end = 0, -math.inf
    for first, last in spans:
        count += first < last_end
        last_end = max(last_end, last)
    return count


class RawUnits:
    """Irregular units metered from their raw samples: each series is kept (as a flat array of
    times and values, 16 bytes a sample) under its unit and view while one raw fetch streams in;
    ``flush`` then merges each unit's preferred view in time (``merged_usage``) and hands out
    ``(namespace, usage)`` per unit. A fetch's matchers may select other combinations of label
    values than the units asked for: those series are ignored."""

    def __init__(self, meter: Meter, units: set[UnitKey], w: Window) -> None:
        self.meter, self.w = meter, w
        self._wanted = units
        self._series: dict[UnitKey, dict[int, list[array[float]]]] = {}
        self.found: set[UnitKey] = set()
        self.copies = 0  # series alive at the same time as another of their unit and view

    def add(self, labels: Mapping[str, str], samples: Samples) -> None:
        """One raw series (a counter's already led by its value before, ``with_value_before``)."""
        key = unit_key(self.meter, labels)
        if key not in self._wanted:
            return
        self.found.add(key)
        flat = array("d", (x for sample in samples for x in sample))
        self._series.setdefault(key, {}).setdefault(view_rank(self.meter, labels), []).append(flat)

    def flush(self, add: Callable[[str, float], None]) -> None:
        """``add(namespace, usage)`` for every unit collected since the last flush, then forget them."""
        meter = self.meter
        for key, views in self._series.items():
            series = [list(zip(flat[::2], flat[1::2], strict=True)) for flat in views[min(views)]]
            self.copies += _overlapping(series)
            add(namespace_of(meter, dict(key)), merged_usage(meter.kind, series, self.w))
        self._series = {}


def raw_amounts(meter: Meter, series: Iterable[RawSeries], units: set[UnitKey], w: Window) -> dict[str, float]:
    """Per-namespace usage of the given units from raw samples, copies, lives and views merged."""
    raw = RawUnits(meter, units, w)
    for labels, samples in series:
        raw.add(labels, samples)
    out: dict[str, float] = {}
    raw.flush(lambda namespace, amount: out.__setitem__(namespace, out.get(namespace, 0.0) + amount))
    return out


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
            if value != 0 and namespace and namespace not in owners.live:  # "": attributed to none
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
