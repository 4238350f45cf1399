"""The memory-lean stores a window's fold writes into: a few dozen bytes a series, a few a namespace.

``SeriesIndex`` holds per-series numbers by identity while the answers of one meter stream in;
``UnitTotals`` turns per-series usage into per-namespace amounts with copies and views merged;
``RawUnits`` holds one raw fetch's samples per unit until they are merged; ``AmountTable`` holds
the window's amounts per namespace and meter, by column; ``Names`` keeps one string per namespace
however many series and meters name it. Flat arrays and bucketed sorts keep 100,000 namespaces
within the exporter's 128 MiB.
"""

from __future__ import annotations

import bisect
import math
from array import array
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace

from .ownership import Piece
from .plan import Meter, Window
from .rules import (
    RawSeries,
    Samples,
    UnitKey,
    copy_key,
    gate_key,
    gated,
    merged_usage,
    namespace_of,
    route_of,
    unit_key,
    view_rank,
)


def _id(items: tuple[tuple[str, str], ...]) -> tuple[int, int]:
    """128 bits identifying a label set, as two 64-bit halves: the hashes of the sorted labels
    forwards and backwards (stored in arrays, matched on both)."""
    return hash(items), hash(items[::-1])


def series_id(labels: Mapping[str, str]) -> tuple[int, int]:
    """The identity of one series (``__name__`` aside), to match it across answers without
    keeping its labels."""
    items = sorted(labels.items())
    if "__name__" in labels:  # removed from the sorted list: half the time of a copy without it
        items.remove(("__name__", labels["__name__"]))
    return _id(tuple(items))


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
        self.duplicates = 0

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
        self.duplicates = len(self._hi) - len(order)  # series stored twice (dropped)
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

    def get(self, key: tuple[int, int]) -> list[float] | None:
        """The numbers stored for ``key`` (None if absent or undecided), without taking them."""
        hi, lo = self._hi, self._lo
        i = bisect.bisect_left(hi, key[0])
        while i < len(hi) and hi[i] == key[0]:
            if lo[i] == key[1]:
                values = [column[i] for column in self._values]
                return None if math.isnan(values[0]) else values
            i += 1
        return None

    def __len__(self) -> int:
        return len(self._hi)

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
    for meters with views), and its namespace as a reference to the window's one string for it
    (``Names``).
    """

    def __init__(self, meter: Meter, names: Names | None = None, cut: Collection[str] = ()) -> None:
        self.meter = meter
        self._names = names or Names()
        self._views = meter.prefer is not None and meter.unit is not None  # else unit = copy, rank 0
        self._copy_hi, self._copy_lo, self._unit = array("q"), array("q"), array("q")
        self._rank = array("b")
        self._usage = array("d")
        self._field = array("b")  # index into meter.fields (routed meters)
        self._namespace: list[str] = []
        self.irregular_units: dict[int, tuple[tuple[str, str], ...]] = {}
        self.copies = 0  # series merged into another as a copy of the same thing (amounts() counts them)
        # Namespaces whose owner changed inside the window: their series are all metered from raw
        # samples, cut at the change (``RawUnits``).
        self.cut = cut

    def _ids(self, labels: Mapping[str, str]) -> tuple[tuple[int, int], int, int]:
        """(copy id, unit id, rank of the view) of a series."""
        meter = self.meter
        copy_id = _id(copy_key(meter, labels))
        if not self._views:
            return copy_id, copy_id[0], 0
        return copy_id, hash(unit_key(meter, labels)), view_rank(meter, labels)

    def add(self, labels: Mapping[str, str], usage: float) -> None:
        """One series' usage (times its route's factor; a series no route takes is dropped)."""
        namespace = namespace_of(self.meter, labels)
        if namespace in self.cut:
            self.irregular(labels)
            return
        route = route_of(self.meter, labels)
        if route is None:
            return
        (hi, lo), unit_id, rank = self._ids(labels)
        self._copy_hi.append(hi)
        self._copy_lo.append(lo)
        if self._views:
            self._unit.append(unit_id)
            self._rank.append(rank)
        self._usage.append(usage * route[1])
        if self.meter.routes:
            self._field.append(self.meter.fields.index(route[0]))
        self._namespace.append(self._names.get(namespace))

    def irregular(self, labels: Mapping[str, str]) -> None:
        """A series that must be metered from its raw samples, with everything of its unit."""
        self.irregular_units[self._ids(labels)[1]] = unit_key(self.meter, labels)

    def amounts(self) -> Iterator[tuple[str, str, float]]:
        """(report field, namespace, usage) for every counted series of the units with no
        irregular series (the caller sums), building no per-namespace table of its own."""
        fields, routed = self.meter.fields, bool(self.meter.routes)
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
                yield fields[self._field[i]] if routed else fields[0], self._namespace[i], usage[i]


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

    def __init__(
        self, meter: Meter, units: set[UnitKey], w: Window, pieces: Mapping[str, Sequence[Piece]] | None = None
    ) -> None:
        self.meter, self.w = meter, w
        self._wanted = units
        # the units of the fetch streaming in (``expect``): a fetch's matchers select the cross
        # product of its units' label values, which can hold units of another fetch; each unit
        # is taken from its own fetch only, or it would be counted twice
        self._run: set[UnitKey] = units
        self._pieces = pieces or {}
        self._series: dict[UnitKey, dict[int, list[array[float]]]] = {}
        self.pending: set[UnitKey] = set(units)  # units of the current fetch not seen yet
        self.copies = 0  # series alive at the same time as another of their unit and view
        self.gates: dict[UnitKey, Samples] = {}  # gated meters: each pod's gate samples, by gate labels

    def add(self, labels: Mapping[str, str], samples: Samples) -> None:
        """One raw series (a counter's already led by its value before, ``with_value_before``);
        a gated meter's gates must be in ``gates`` first."""
        key = unit_key(self.meter, labels)
        if key not in self._run:
            return
        self.pending.discard(key)
        if self.meter.gate is not None:
            gate = self.gates.get(gate_key(self.meter, labels), [])
            samples = gated(samples, gate, self.w)
        flat = array("d", (x for sample in samples for x in sample))
        self._series.setdefault(key, {}).setdefault(view_rank(self.meter, labels), []).append(flat)

    def expect(self, units: Iterable[UnitKey]) -> None:
        """The next fetch's units: only their series are kept until the next ``expect``."""
        self._run = set(units) & self._wanted
        self.pending = set(self._run)

    def take(self) -> Iterator[tuple[str, str, str | None, float]]:
        """(report field, namespace, customer, usage) for every unit collected since the last
        take; they are forgotten. The customer is None (the namespace's owner) except in a
        namespace whose owner changed inside the window: one row per owner's piece of it."""
        meter, collected = self.meter, self._series
        self._series = {}
        for key, views in collected.items():
            labels = dict(key)
            route = route_of(meter, labels)
            if route is None:
                continue
            field, factor = route
            series = [list(zip(flat[::2], flat[1::2], strict=True)) for flat in views[min(views)]]
            self.copies += _overlapping(series)
            namespace = namespace_of(meter, labels)
            pieces = self._pieces.get(namespace)
            if pieces is None:
                yield field, namespace, None, merged_usage(meter.kind, series, self.w) * factor
                continue
            for lo, hi, customer in pieces:
                part = merged_usage(meter.kind, series, replace(self.w, start=lo, end=hi))
                yield field, namespace, customer, part * factor


def raw_amounts(meter: Meter, series: Iterable[RawSeries], units: set[UnitKey], w: Window) -> dict[str, float]:
    """Per-namespace usage of the given units from raw samples, copies, lives and views merged."""
    raw = RawUnits(meter, units, w)
    for labels, samples in series:
        raw.add(labels, samples)
    out: dict[str, float] = {}
    for _, namespace, _, amount in raw.take():
        out[namespace] = out.get(namespace, 0.0) + amount
    return out


class Names:
    """The window's one string per namespace, and its row number in the AmountTable.

    Every series and every meter that names a namespace refers to this one string: at 100,000
    namespaces and a dozen series each, a copy per series would cost tens of MiB.
    """

    def __init__(self) -> None:
        self._row: dict[str, int] = {}
        self._names: list[str] = []

    def get(self, name: str) -> str:
        """The pool's own string for ``name`` (added if new)."""
        return self._names[self.row(name)]

    def row(self, name: str) -> int:
        """``name``'s row number (added if new)."""
        row = self._row.get(name)
        if row is None:
            row = self._row[name] = len(self._names)
            self._names.append(name)
        return row

    def rows(self) -> Mapping[str, int]:
        """{name: row} of every name in the pool."""
        return self._row


class AmountTable:
    """Raw amounts per namespace and meter, stored by column: one array('d') per meter.

    Each namespace gets a row number once (``Names``); its amounts live at that index of every
    meter's array, 8 bytes each. At 100,000 namespaces this is a few MiB, where a dict or an
    array per namespace costs tens.
    """

    def __init__(self, meters: Sequence[str], names: Names) -> None:
        self._index = {name: i for i, name in enumerate(meters)}
        self._names = names
        self._columns: list[array[float]] = [array("d") for _ in meters]
        # (field, namespace, customer) -> amount, for namespaces whose owner changed in the window
        self.pieces: dict[tuple[str, str, str], float] = {}

    def add(self, meter: str, namespace: str, value: float) -> None:
        """Add ``value`` to the namespace's amount of ``meter``."""
        column, row = self._columns[self._index[meter]], self._names.row(namespace)
        if row >= len(column):
            column.extend(array("d", bytes(8 * (row + 1 - len(column)))))
        column[row] += value

    def add_piece(self, meter: str, namespace: str, customer: str, value: float) -> None:
        """Add an owner's piece of a namespace's amount (also to the namespace's whole amount)."""
        self.add(meter, namespace, value)
        key = (meter, namespace, customer)
        self.pieces[key] = self.pieces.get(key, 0.0) + value

    def columns(self) -> dict[str, Mapping[str, float]]:
        """{meter: {namespace: amount}} as views over the columns (nothing is copied)."""
        rows = self._names.rows()
        return {meter: _Column(rows, self._columns[i]) for meter, i in self._index.items()}


class _Column(Mapping[str, float]):
    """One meter's amounts, read through AmountTable's row numbers."""

    def __init__(self, rows: Mapping[str, int], column: array[float]) -> None:
        self._rows, self._column = rows, column

    def __getitem__(self, namespace: str) -> float:
        row = self._rows[namespace]
        return self._column[row] if row < len(self._column) else 0.0  # named, never added to here

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)
