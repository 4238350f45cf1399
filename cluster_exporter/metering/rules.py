"""The metering rules: samples in, exact usage out. Pure: no I/O, no state between calls.

``counter_usage`` and ``gauge_usage`` are the rules written out on a series' raw samples: the
reference. Most series are metered without all their samples, from what the plan's queries
answer: the samples around each boundary and, for gauges, the sum and count of the samples inside
the window. ``counter_at_boundary``, ``gauge_start``, ``gauge_end`` and ``gauge_closed_form``
apply the same rules to those, and say when they cannot (the series is then irregular and metered
from its raw samples). ``merged_usage`` tells copies of one measured thing from its lives in time;
``namespace_of``, ``unit_key``, ``view_rank`` and ``route_of`` say what a series is and where its
usage goes; ``gated`` multiplies a series by its pod's gate.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace

from .plan import Meter, Window

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


def _around(samples: Samples, at: float, w: Window) -> tuple[int, float, float, float, float] | None:
    """(i, tb, vb, ta, va): the samples just before (or at) and just after ``at`` (``_split``)."""
    i = _split(samples, at, w)
    if i is None:
        return None
    (tb, vb), (ta, va) = samples[i - 1], samples[i]
    return i, tb, vb, ta, va


def counter_at_boundary(samples: Samples, at: float, w: Window) -> float | None:
    """B(at) of a series alive across ``at``, from its samples in [at - search, at + search];
    None when these do not show it alive across ``at`` (it started or stopped near ``at``, or a
    gap straddles it: the series is metered from its raw samples)."""
    around = _around(samples, at, w)
    return None if around is None else _between(*around[1:], at)


# Two sample spacings differing by at most this (seconds) are equal: Prometheus stores
# timestamps in whole milliseconds.
EVEN = 0.0015


# What a regular gauge's boundaries contribute, from its samples around them:
# at T0 (ta, va, spacing, left, even): the first sample after T0, its distance from the one
# before, the integral over [T0, ta], and 1.0 if every spacing in the answer is that spacing;
# at T1 (tb, vb, right, spacing, even): the last sample at or before T1, the integral over
# [tb, T1], its distance to the next sample, and the same evenness flag.
GaugeStart = tuple[float, float, float, float, float]


GaugeEnd = tuple[float, float, float, float, float]


def _even(samples: Samples, spacing: float) -> float:
    """1.0 if every spacing between consecutive ``samples`` is ``spacing`` to the millisecond."""
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(samples)]
    return 1.0 if not gaps or (spacing - min(gaps) <= EVEN and max(gaps) - spacing <= EVEN) else 0.0


def _on_line(tb: float, vb: float, ta: float, va: float, at: float) -> float:
    """A gauge's value at ``at`` on the straight line between two of its samples."""
    return vb + (va - vb) * (at - tb) / (ta - tb)


def gauge_start(samples: Samples, w: Window) -> GaugeStart | None:
    """A gauge's piece at T0 from its samples around T0, or None (not alive across T0). Evenness
    is read on the samples from the one before T0 on."""
    around = _around(samples, w.start, w)
    if around is None:
        return None
    i, tb, vb, ta, va = around
    at_t0 = _on_line(tb, vb, ta, va, w.start)
    return ta, va, ta - tb, (ta - w.start) * (at_t0 + va) / 2, _even(samples[i - 1 :], ta - tb)


def gauge_end(samples: Samples, w: Window) -> GaugeEnd | None:
    """A gauge's piece at T1 from its samples around T1, or None (not alive across T1). Evenness
    is read on the samples up to the one after T1."""
    around = _around(samples, w.end, w)
    if around is None:
        return None
    i, tb, vb, ta, va = around
    at_t1 = _on_line(tb, vb, ta, va, w.end)
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


def first_set(labels: Mapping[str, str], names: Sequence[str]) -> str:
    """The value of the first of ``names`` set (non-empty) on ``labels``, or ""."""
    for name in names:
        value = labels.get(name)
        if value:
            return value
    return ""


def namespace_of(meter: Meter, labels: Mapping[str, str]) -> str:
    """The tenant namespace a series is attributed to: the first of the meter's namespace labels
    set on it, or "" (unattributed)."""
    return first_set(labels, meter.namespace_labels)


def unit_key(meter: Meter, labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """What one measured thing is for this meter: its unit labels, or all but the copy labels."""
    if meter.unit is not None:
        return tuple((name, labels.get(name, "")) for name in meter.unit)
    return tuple(sorted((k, v) for k, v in labels.items() if k != "__name__" and k not in meter.dedup))


def route_of(meter: Meter, labels: Mapping[str, str]) -> tuple[str, float] | None:
    """(report field, factor) a series' usage goes to: the meter's own field, or for a routed
    meter the first route whose resource regex its ``resource`` label fully matches (None: no
    route takes it)."""
    if not meter.routes:
        return meter.name, 1.0
    resource = labels.get("resource", "")
    for route in meter.routes:
        if re.fullmatch(route.resource, resource):
            return route.field, route.factor
    return None


def gate_key(meter: Meter, labels: Mapping[str, str]) -> UnitKey:
    """Which pod's gate a series (or a gate series) belongs to: its gate labels' values."""
    return tuple((name, labels.get(name, "")) for name in meter.gate_labels)


def gated(samples: Samples, gate: Samples, w: Window) -> Samples:
    """A gated series' samples, each times its gate at that instant: the gate's sample at the same
    time, else its last one before it at most max_gap earlier (two scrape jobs stamp different
    times), else 0 (no gate seen: the pod was not running). ``gate`` is sorted by time; where
    copies of the gate share a time, the largest value counts."""
    times = [t for t, _ in gate]
    out = []
    for t, v in samples:
        i = bisect.bisect_right(times, t)
        if i == 0 or t - times[i - 1] > w.max_gap:
            out.append((t, 0.0))
            continue
        at = times[i - 1]
        value = max(g for tg, g in gate[bisect.bisect_left(times, at) : i])
        out.append((t, v * value))
    return out


def view_rank(meter: Meter, labels: Mapping[str, str]) -> int:
    """Which view of its unit a series is (0 the preferred one; always 0 for meters without views)."""
    if meter.prefer is None:
        return 0
    label, order = meter.prefer
    value = labels.get(label, "")
    return order.index(value) if value in order else len(order)


def copy_key(meter: Meter, labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """Series with the same key are copies of one series: the same unit, the same view."""
    key = unit_key(meter, labels)
    return (*key, ("", str(view_rank(meter, labels)))) if meter.prefer is not None else key


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
    return _split(samples, at, w) is not None or any(t == at for t, _ in samples)


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
