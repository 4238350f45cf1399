"""A synthetic multi-tenant cluster: metric history in OpenMetrics and its exact ground truth.

Used by the tests, the demo and the benchmarks. Each series is drawn from an underlying function
(CPU, network, requests: a counter with a piecewise-constant rate, so it is piecewise linear;
memory and storage: piecewise-linear levels) sampled at its sample times. The truth is computed
from those functions analytically, never from the samples, so it is an independent check of the
metering.

Sample times. A series is sampled when its scrape target is scraped (``Target``: a phase and an
interval, Prometheus' own timestamps, minus the scrapes an outage lost), unless the exporter
stamps its samples itself and Prometheus honours it (``honor_timestamps`` defaults to true).
cAdvisor does: every container_* sample carries the time of its cgroup's last housekeeping
(google/cadvisor metrics/prometheus.go: ``NewMetricWithTimestamp(metricValue.timestamp, ...)``),
and each cgroup keeps house on its own schedule, every 10 s plus up to 100% jitter in the
kubelet (kubernetes pkg/kubelet/cadvisor/cadvisor_linux.go, cadvisor manager/container.go).
Such a series has a ``Clock``: a scrape at t stores the cgroup's latest stamp at or before t, a
stamp read twice is stored once, so its samples are off any grid, unevenly spaced and strictly
increasing, and two scrapers of one kubelet (two jobs, an HA pair) store stamps of one sequence,
many of them the same.

Conventions that make "what the samples show" and "what was used" the same thing:
- breakpoints of a function (a level's knots, a counter's rate changes) sit on its own series'
  sample times, never inside a scrape gap;
- a series with copies (the same thing scraped by two jobs, an HA Prometheus pair, an RWX volume
  reported by two kubelets) has one function, and each copy's samples must show it exactly: its
  breakpoints sit on times where every copy has a sample (``common_times``); where the copies
  share no sample time (different phases, Prometheus' own timestamps) a level is one straight
  line over their lives and a counter changes rate only ``BOUNDARY_GUARD`` away from any whole
  hour (a counter's amount in a window depends only on its values at the boundaries, so it must
  be straight between the two samples around each boundary, and nowhere else); the copies of a
  life that starts or ends inside the measured windows start and end on the same sample times
  (``shared_life``); a copied counter is flat after the copies' earliest last sample;
- a container's usage before its first sample is in its first sample (a counter starts from zero
  at container start, which lies in the same hour as the first sample);
- a container or volume stops at its last sample; a counter reset happens right after a sample;
- a scrape outage leaves at most ``MAX_BRIDGED_GAP`` (300 s, Prometheus' lookback delta, the
  longest gap the metering bridges) between two samples, and the function is straight across it;
- gauge lives that follow each other under unchanged labels at most ``MAX_BRIDGED_GAP`` apart
  look like one series to the samples: the line between them counts (``Cluster._bridges``);
- a namespace that changes hands (``Cluster.owners``) does so at a kube-state-metrics sample time;
  its usage is cut there, which is exact because every function is straight between its own
  samples; no new counter of the namespace starts between the cut and its first sample.

The demo cluster carries every trap the metering must survive: pod-level cgroup series
(container=""), pause containers (container="POD"), network reported on both, per-CPU series next to
cpu="total", a node scraped by two jobs, a container restart (new series), a counter reset with
unchanged labels, a scrape gap, CronJob pods living 90 seconds, pods crossing a window boundary,
pods created and deleted mid-window, an RWX volume reported by two nodes, two nginx-ingress
replicas one of which restarts, Istio's source and destination reports of the same request, a
namespace deleted mid-window, an idle labeled namespace and unlabeled system namespaces. The
layouts real installations store (devtools/layouts.py) are built from the same parts.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Literal

GIB = float(2**30)
CUSTOMER_LABEL = "billing.example.com/customer-id"
KSM_CUSTOMER_LABEL = "label_billing_example_com_customer_id"
# Longest distance between two samples that still shows one living series: Prometheus' default
# lookback delta (5m), which is also the longest gap the metering bridges by default. Scrape
# outages are kept within it; gauge lives under unchanged labels this close count as one.
MAX_BRIDGED_GAP = 300.0
# Copies without a common sample time change a counter's rate no closer than this to a whole hour,
# so that every copy's two samples around a window boundary lie on one straight stretch (the
# longest such stretch is an outage of MAX_BRIDGED_GAP).
BOUNDARY_GUARD = MAX_BRIDGED_GAP + 30.0

Labels = tuple[tuple[str, str], ...]


def _labels(**kv: str) -> Labels:
    return tuple(sorted(kv.items()))


@dataclass(frozen=True)
class Target:
    """A scrape target: where samples come from and when."""

    name: str
    phase: float  # seconds after the epoch grid, in [0, interval)
    interval: float = 15.0
    gaps: tuple[tuple[float, float], ...] = ()  # (from, to): no scrape with from < t < to

    def time_at(self, k: int) -> float:
        """Time of scrape number k (scrape 0 is the first one at or after the Unix epoch)."""
        return round(self.phase + k * self.interval, 3)

    def index_at_or_after(self, t: float) -> int:
        """Smallest k with time_at(k) >= t."""
        return math.ceil((t - self.phase) / self.interval - 1e-9)

    def index_at_or_before(self, t: float) -> int:
        """Largest k with time_at(k) <= t."""
        return math.floor((t - self.phase) / self.interval + 1e-9)

    def in_gap(self, t: float) -> bool:
        """Whether a scrape at t was lost."""
        return any(lo < t < hi for lo, hi in self.gaps)


def with_outage(target: Target, near: float, lost: int) -> Target:
    """``target`` with ``lost`` consecutive scrapes lost from the first one at or after ``near``.

    On Prometheus' own timestamps the two samples around the outage are then ``(lost + 1) *
    interval`` apart (1, 6 and 19 lost scrapes at 15 s: 30, 105 and 300 s).
    """
    if lost < 1:
        raise ValueError("an outage loses at least one scrape")
    k = target.index_at_or_after(near)
    gap = (target.time_at(k - 1), target.time_at(k + lost))
    return Target(target.name, target.phase, target.interval, (*target.gaps, gap))


@dataclass(frozen=True)
class Clock:
    """An exporter's own sample times: one cgroup's cAdvisor housekeeping, deterministic from ``seed``.

    Housekeeping runs when the cgroup appears (``start``) and then every ``base`` seconds plus up
    to ``jitter`` times that again (cAdvisor's ``jitter(interval, 1.0)``); a cgroup whose stats do
    not change backs off to the 15 s maximum the kubelet allows, so an idle pause container is
    modelled with ``base=15``.
    """

    seed: int
    start: float
    end: float
    base: float = 10.0
    jitter: float = 1.0
    stamps: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        out, t = [], self.start
        while t <= self.end:
            out.append(round(t, 3))
            t += self.base * (1.0 + self.jitter * rng.random())
        object.__setattr__(self, "stamps", tuple(out))

    def latest(self, t: float) -> float | None:
        """The last stamp at or before t (None before the cgroup appeared)."""
        i = bisect.bisect_right(self.stamps, t) - 1
        return self.stamps[i] if i >= 0 else None

    def after(self, t: float) -> float:
        """The first stamp after t (infinity past the end)."""
        i = bisect.bisect_right(self.stamps, t)
        return self.stamps[i] if i < len(self.stamps) else math.inf


def sample_times(target: Target, clock: Clock | None, first: float, last: float) -> list[float]:
    """The sample times a series scraped from ``target`` has in [first, last].

    Without a clock they are the target's scrape times. With one, a scrape at t stores the latest
    stamp at or before t; the series is visible from its first stamp until the stamp after its
    last one, and a stamp read by two scrapes is stored once.
    """
    if clock is None:
        times = (target.time_at(k) for k in range(target.index_at_or_after(first), target.index_at_or_before(last) + 1))
        return [t for t in times if not target.in_gap(t)]
    last_stamp = clock.latest(last)
    if last_stamp is None:
        return []
    until = min(clock.after(last_stamp), clock.end + target.interval)
    out: list[float] = []
    for k in range(target.index_at_or_after(first), target.index_at_or_before(until) + 1):
        scrape = target.time_at(k)
        if scrape >= until or target.in_gap(scrape):
            continue
        stamp = clock.latest(scrape)
        if stamp is not None and first <= stamp <= last and (not out or stamp > out[-1]):
            out.append(stamp)
    return out


Copy = tuple[Target, Clock | None]  # one copy of a series: where it is scraped, and whose stamps


def common_times(copies: Sequence[Copy], first: float, last: float) -> list[float]:
    """Times in [first, last] at which every copy has a sample: where a shared function may bend."""
    sets = [set(sample_times(t, c, first, last)) for t, c in copies]
    return sorted(set.intersection(*sets)) if sets else []


def shared_life(copies: Sequence[Copy], first: float, last: float) -> tuple[float, float] | None:
    """The first and last sample times in [first, last] that every copy has (None if under two).

    A life bounded by them is seen whole by every copy: no copy starts earlier or ends later.
    """
    common = common_times(copies, first, last)
    return (common[0], common[-1]) if len(common) >= 2 else None


@dataclass
class Counter:
    """A cumulative counter: value ``offset`` at ``start``, then the integral of a stepwise rate."""

    start: float
    offset: float
    rates: list[tuple[float, float]]  # (from_time, rate) sorted; rate holds until the next entry
    _cache: tuple[tuple[object, ...], list[float], list[float]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def value(self, t: float) -> float:
        """Counter value at t (t >= start)."""
        return self.offset + self.used(self.start, t)

    def used(self, lo: float, hi: float) -> float:
        """Exact amount counted in [lo, hi]."""
        lo = max(lo, self.start)
        if hi <= lo:
            return 0.0
        return self._integral(hi) - self._integral(lo)

    def _integral(self, t: float) -> float:
        # The integral of the rate from start to t, through prefix sums (the builders and the
        # demo may still set start or append rates after creation: the cache follows them).
        key = (self.start, id(self.rates), len(self.rates), self.rates[-1] if self.rates else None)
        if self._cache is None or self._cache[0] != key:
            froms = [max(f, self.start) for f, _ in self.rates]
            sums, total = [], 0.0
            for i, (_, rate) in enumerate(self.rates):
                sums.append(total)
                nxt = froms[i + 1] if i + 1 < len(froms) else math.inf
                if nxt > froms[i] and nxt != math.inf:
                    total += rate * (nxt - froms[i])
            self._cache = (key, froms, sums)
        _, froms, sums = self._cache
        i = bisect.bisect_right(froms, t) - 1
        if i < 0:
            return 0.0
        # a rate entry whose segment is empty (starts where the next one starts) adds nothing
        return sums[i] + self.rates[i][1] * (t - froms[i])


@dataclass
class Level:
    """A gauge level, piecewise linear through its knots, constant outside them."""

    knots: list[tuple[float, float]]  # (time, value) sorted
    _times: tuple[int, int, list[float]] | None = field(default=None, init=False, repr=False, compare=False)

    def _knot_times(self) -> list[float]:
        key = (id(self.knots), len(self.knots))
        if self._times is None or self._times[:2] != key:
            self._times = (*key, [k[0] for k in self.knots])
        return self._times[2]

    def value(self, t: float) -> float:
        """Level at t."""
        i = bisect.bisect_right(self._knot_times(), t)
        if i == 0:
            return self.knots[0][1]
        if i == len(self.knots):
            return self.knots[-1][1]
        (t0, v0), (t1, v1) = self.knots[i - 1], self.knots[i]
        return v0 + (v1 - v0) * (t - t0) / (t1 - t0)

    def integral(self, lo: float, hi: float) -> float:
        """Exact integral over [lo, hi]."""
        if hi <= lo:
            return 0.0
        points = sorted({lo, hi, *(t for t, _ in self.knots if lo < t < hi)})
        return sum((b - a) * (self.value(a) + self.value(b)) / 2 for a, b in itertools.pairwise(points))


Meter = Literal[
    "cpu",
    "memory",
    "net_tx",
    "net_rx",
    "storage",
    "http",
    "istio",
    "pg_commits",
    "mqtt_clients",
    "gpu",  # GPUs requested by running pods (a gated gauge, weighted by GPU_WEIGHTS[resource])
    "gpu_busy",  # GPU time kept busy: dcgm-exporter's engine-active ratio
    "cpu_request",  # cores requested by running pods (gated)
    "memory_request",  # bytes requested by running pods (gated)
]
# GPUs per unit of an extended resource. A MIG 1g slice is one of the 7 compute slices of an
# A100/H100 (NVIDIA MIG user guide, "Supported MIG Profiles": 1g.5gb has 1/7 of the SMs, up to 7
# instances).
GPU_WEIGHTS = {"nvidia_com_gpu": 1.0, "amd_com_gpu": 1.0, "nvidia_com_mig_1g_5gb": 1.0 / 7.0}


@dataclass
class Series:
    """One incarnation of a series: labels, where it is scraped, its life, and its function.

    ``meter`` and ``namespace`` say where its usage belongs in the truth; ``counts`` is False for
    series the metering must leave out (pod-level sums, pause containers, duplicate copies).
    ``clock`` is set when the exporter stamps the samples itself (cAdvisor): see the module
    docstring. ``first`` and ``last`` are snapped to the series' first and last sample times.
    ``gate`` makes a constant gauge count only while a 0/1 level says so (a pod's requests times
    its Running phase, the gated rule in devtools/platform_cluster.py).
    """

    name: str
    labels: Labels
    target: Target
    first: float  # time of first sample
    last: float  # time of last sample
    fn: Counter | Level
    meter: Meter | None = None
    namespace: str | None = None
    counts: bool = True
    clock: Clock | None = None
    gate: Level | None = None
    times: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # A series lives from its first sample to its last: snap the life to real sample times.
        self.times = tuple(sample_times(self.target, self.clock, self.first, self.last))
        if not self.times:
            raise ValueError(f"{self.name}{dict(self.labels)} has no sample")
        self.first, self.last = self.times[0], self.times[-1]
        if self.gate is not None and not (isinstance(self.fn, Level) and len(self.fn.knots) == 1):
            raise ValueError(f"{self.name}{dict(self.labels)}: only a constant gauge can be gated")

    def samples(self) -> Iterator[tuple[float, float]]:
        """(time, value) of every sample, skipping scrape gaps."""
        for t in self.times:
            yield t, self.fn.value(t)

    def truth(self, lo: float, hi: float) -> float:
        """Exact usage inside [lo, hi): a counter's increase, a gauge's integral (value-seconds)."""
        if isinstance(self.fn, Counter):
            return self.fn.used(max(lo, self.fn.start), min(hi, self.last))
        if self.gate is not None:
            # constant x a line through the gate's samples: the trapezoids of the products
            return self.fn.knots[0][1] * self.gate.integral(max(lo, self.first), min(hi, self.last))
        return self.fn.integral(max(lo, self.first), min(hi, self.last))


@dataclass
class Cluster:
    """Namespaces, their owners, and every series of the history.

    ``owners`` holds the namespaces whose owner changes inside the history: name -> [(from_time,
    customer or None)], sorted, as kube-state-metrics' samples show it (from_time is the first
    sample showing the new label value; no owner before the first entry). A namespace not in it
    is owned by ``customer_of`` all along.
    """

    start: float
    end: float
    namespaces: dict[str, str | None]  # name -> customer id (None: unlabeled); live at `end`
    deleted: dict[str, tuple[str | None, float]] = field(default_factory=dict)  # name -> (customer, deleted_at)
    series: list[Series] = field(default_factory=list)
    owners: dict[str, list[tuple[float, str | None]]] = field(default_factory=dict)

    def customer_of(self, namespace: str) -> str | None:
        """Owner of a namespace, live or deleted (its owner at the end, for changing owners)."""
        if namespace in self.namespaces:
            return self.namespaces[namespace]
        if namespace in self.deleted:
            return self.deleted[namespace][0]
        return None

    def ownership(self, namespace: str, lo: float, hi: float) -> list[tuple[float, float, str | None]]:
        """[lo, hi) cut where the namespace changes hands: (from, to, customer or None)."""
        history = self.owners.get(namespace)
        if history is None:
            return [(lo, hi, self.customer_of(namespace))]
        bounds = [(-math.inf, None), *history, (math.inf, None)]
        out = []
        for (a, customer), (b, _) in itertools.pairwise(bounds):
            a, b = max(a, lo), min(b, hi)
            if b > a:
                out.append((a, b, customer))
        return out

    def namespaces_of(self, lo: float, hi: float) -> dict[str, list[str]]:
        """Customer -> the namespaces it owned some part of [lo, hi), sorted."""
        out: dict[str, set[str]] = defaultdict(set)
        names = [*self.namespaces, *(n for n in self.deleted if self.deleted[n][1] > lo)]
        for ns in names:
            for _, _, customer in self.ownership(ns, lo, hi):
                if customer is not None:
                    out[customer].add(ns)
        return {c: sorted(v) for c, v in sorted(out.items())}

    def truth(self, window_start: datetime, window_end: datetime) -> dict[str, dict[str, float]]:
        """Exact usage per customer in [window_start, window_end), in report units.

        A namespace's usage is cut where it changes hands (``owners``): each customer gets the
        part inside its ownership, usage while no one owns it is billed to nobody. The optional
        meters (GPUs, requests) appear only when the cluster has their sources, as a report
        carries them only when measured.
        """
        lo, hi = window_start.timestamp(), window_end.timestamp()
        raw: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        measured: set[str] = set()
        for s in self.series:
            if not s.counts or s.meter is None or s.namespace is None:
                continue
            measured.add(s.meter)
            weight = GPU_WEIGHTS[dict(s.labels)["resource"]] if s.meter == "gpu" else 1.0
            for a, b, customer in self.ownership(s.namespace, lo, hi):
                if customer is not None:
                    raw[customer][s.meter] += weight * s.truth(a, b)
        for meter, namespace, line in self._bridge_lines():
            for a, b, customer in self.ownership(namespace, lo, hi):
                if customer is not None:
                    raw[customer][meter] += line.integral(max(a, line.knots[0][0]), min(b, line.knots[-1][0]))
        customers = {
            c
            for c in [
                *self.namespaces.values(),
                *(d[0] for d in self.deleted.values()),
                *(c for history in self.owners.values() for _, c in history),
            ]
            if c
        }
        out: dict[str, dict[str, float]] = {}
        for customer in sorted(customers):
            m = raw.get(customer, {})
            out[customer] = {
                "cpu_hours": m.get("cpu", 0.0) / 3600,
                "memory_gb_hours": m.get("memory", 0.0) / GIB / 3600,
                "network_bytes_sent": m.get("net_tx", 0.0),
                "network_bytes_received": m.get("net_rx", 0.0),
                "storage_gb_hours": m.get("storage", 0.0) / GIB / 3600,
                "http_requests": m.get("http", 0.0),
                "http_requests_istio": m.get("istio", 0.0),
                "pg_commits": m.get("pg_commits", 0.0),
                "mqtt_client_hours": m.get("mqtt_clients", 0.0) / 3600,
            }
            for meter, report, unit in _OPTIONAL_METERS:
                if meter in measured:
                    out[customer][report] = m.get(meter, 0.0) / unit
        return out

    def _bridge_lines(self) -> Iterator[tuple[Meter, str, Level]]:
        """Gauge lives that follow each other under unchanged labels at most MAX_BRIDGED_GAP apart
        look like one series: the samples show the line from one life's last sample to the next
        one's first, so it counts."""
        lives: dict[tuple[str, Labels], list[Series]] = defaultdict(list)
        for s in self.series:
            if s.counts and isinstance(s.fn, Level) and s.meter is not None and s.namespace is not None:
                lives[(s.name, s.labels)].append(s)
        for group in lives.values():
            group.sort(key=lambda i: i.first)
            for before, after in itertools.pairwise(group):
                if after.first - before.last <= MAX_BRIDGED_GAP:
                    if before.gate is not None or after.gate is not None:
                        raise ValueError(f"{before.name}: a gated gauge cannot be bridged")
                    line = Level(
                        knots=[(before.last, before.fn.value(before.last)), (after.first, after.fn.value(after.first))]
                    )
                    assert before.meter is not None and before.namespace is not None
                    yield before.meter, before.namespace, line

    def _bridges(self, lo: float, hi: float) -> Iterator[tuple[str, str, float]]:
        """What each bridge between gauge lives adds in [lo, hi): (meter, namespace, value-seconds)."""
        for meter, namespace, line in self._bridge_lines():
            yield meter, namespace, line.integral(max(lo, line.knots[0][0]), min(hi, line.knots[-1][0]))

    def write_openmetrics(self, out: IO[str]) -> int:
        """Write the whole history as OpenMetrics text for promtool; returns the sample count."""
        by_name: dict[str, dict[Labels, list[Series]]] = defaultdict(lambda: defaultdict(list))
        for s in self.series:
            by_name[s.name][s.labels].append(s)
        count = 0
        for name in sorted(by_name):
            for labels, incarnations in sorted(by_name[name].items()):
                label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
                head = f"{name}{{{label_text}}} "
                previous = -math.inf
                lines: list[str] = []
                for inc in sorted(incarnations, key=lambda i: i.first):
                    if inc.times[0] <= previous:
                        raise ValueError(f"overlapping incarnations of {name}{{{label_text}}}")
                    previous = inc.times[-1]
                    value = inc.fn.value
                    lines.extend(f"{head}{value(t)!r} {t:.3f}\n" for t in inc.times)
                out.write("".join(lines))
                count += len(lines)
        out.write("# EOF\n")
        return count

    def write_openmetrics_file(self, path: Path) -> int:
        """Write the history to a file; returns the sample count."""
        with path.open("w") as fh:
            return self.write_openmetrics(fh)


# The optional meters: (source meter, report field, source units per report unit).
_OPTIONAL_METERS: tuple[tuple[Meter, str, float], ...] = (
    ("gpu", "gpu_hours", 3600.0),
    ("gpu_busy", "gpu_utilized_hours", 3600.0),
    ("cpu_request", "cpu_request_hours", 3600.0),
    ("memory_request", "memory_request_gb_hours", GIB * 3600.0),
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


# ---------------------------------------------------------------------------------------------
# Building blocks


@dataclass
class _Builder:
    cluster: Cluster
    rng: random.Random
    interval: float = 15.0

    def target(self, name: str, gaps: tuple[tuple[float, float], ...] = ()) -> Target:
        phase = round(self.rng.uniform(0.5, self.interval - 0.5), 3)
        return Target(name=name, phase=phase, interval=self.interval, gaps=gaps)

    def snap(self, target: Target, t: float) -> float:
        """The target's first scrape time at or after t (outside gaps)."""
        k = target.index_at_or_after(t)
        while target.in_gap(target.time_at(k)):
            k += 1
        return target.time_at(k)

    def cpu_counter(self, target: Target, first: float, last: float, base: float, offset: float = 0.0) -> Counter:
        """A counter whose rate changes every ~10 minutes, at scrape times."""
        start = first if offset else first - self.rng.uniform(0.5, 3.0)
        rates = [(start, base * self.rng.uniform(0.6, 1.4))]
        t = first + self.rng.uniform(200, 600)
        while t < last:
            rates.append((self.snap(target, t), base * self.rng.uniform(0.3, 1.7)))
            t += self.rng.uniform(300, 900)
        return Counter(start=start, offset=offset, rates=rates)

    def level(self, target: Target, first: float, last: float, base: float) -> Level:
        """A level that ramps and steps around ``base``, knots at scrape times."""
        knots = [(first, base * self.rng.uniform(0.5, 1.0))]
        t = first + self.rng.uniform(60, 400)
        while t < last:
            knots.append((self.snap(target, t), base * self.rng.uniform(0.5, 1.5)))
            t += self.rng.uniform(120, 700)
        knots.append((last, base * self.rng.uniform(0.5, 1.5)))
        # Strictly increasing knot times: a repeated time would be a jump that samples cannot show.
        kept: list[tuple[float, float]] = []
        for a, v in knots:
            if a <= last and (not kept or a > kept[-1][0]):
                kept.append((a, v))
        return Level(knots=kept)

    def container(
        self,
        target: Target,
        namespace: str,
        pod: str,
        container: str,
        first: float,
        last: float,
        cpu_cores: float,
        memory_bytes: float,
        pod_uid: str,
        preexisting: bool,
        keep_runtime_labels: bool = True,
        extra_targets: Iterable[Target] = (),
        cpu_counter: Counter | None = None,
    ) -> list[Series]:
        """cAdvisor series of one container incarnation (and its copies from duplicate jobs)."""
        runtime_id = f"{self.rng.getrandbits(64):016x}"
        common = {"namespace": namespace, "pod": pod, "container": container, "image": f"registry.local/{container}:1"}
        if keep_runtime_labels:
            common["id"] = f"/kubepods/burstable/pod{pod_uid}/{runtime_id}"
            common["name"] = runtime_id
        cpu = cpu_counter or self.cpu_counter(
            target, first, last, cpu_cores, offset=self.rng.uniform(1e4, 1e6) if preexisting else 0.0
        )
        mem = self.level(target, first, last, memory_bytes)
        out = []
        for i, tgt in enumerate([target, *extra_targets]):
            job = "kubelet" if i == 0 else "cadvisor"
            labels = {**common, "instance": tgt.name, "job": job}
            out.append(
                Series(
                    "container_cpu_usage_seconds_total",
                    _labels(**labels, cpu="total"),
                    tgt,
                    first,
                    last,
                    cpu,
                    "cpu",
                    namespace,
                    counts=i == 0,
                )
            )
            out.append(
                Series(
                    "container_memory_working_set_bytes",
                    _labels(**labels),
                    tgt,
                    first,
                    last,
                    mem,
                    "memory",
                    namespace,
                    counts=i == 0,
                )
            )
        return out

    def sandbox(
        self,
        target: Target,
        namespace: str,
        pod: str,
        pod_uid: str,
        first: float,
        last: float,
        cpu_total: float,
        mem_total: float,
        net_bytes_per_s: float,
        preexisting: bool,
        extra_targets: Iterable[Target] = (),
    ) -> list[Series]:
        """Pod-level cgroup series, the pause container, and the pod's network (reported on both)."""
        out: list[Series] = []
        pause_id = f"{self.rng.getrandbits(64):016x}"
        tx = self.cpu_counter(
            target, first, last, net_bytes_per_s, offset=self.rng.uniform(1e6, 1e9) if preexisting else 0
        )
        rx = self.cpu_counter(
            target, first, last, net_bytes_per_s * 3, offset=self.rng.uniform(1e6, 1e9) if preexisting else 0
        )
        pod_cpu = self.cpu_counter(
            target, first, last, cpu_total, offset=self.rng.uniform(1e4, 1e6) if preexisting else 0
        )
        pod_mem = self.level(target, first, last, mem_total)
        pause_cpu = self.cpu_counter(target, first, last, 0.0005, offset=10.0 if preexisting else 0)
        pause_mem = Level(knots=[(first, 700_000.0)])
        for i, tgt in enumerate([target, *extra_targets]):
            job = "kubelet" if i == 0 else "cadvisor"
            pod_level = {
                "namespace": namespace,
                "pod": pod,
                "container": "",
                "id": f"/kubepods/burstable/pod{pod_uid}",
                "instance": tgt.name,
                "job": job,
            }
            pause = {
                "namespace": namespace,
                "pod": pod,
                "container": "POD",
                "image": "registry.k8s.io/pause:3.9",
                "id": f"/kubepods/burstable/pod{pod_uid}/{pause_id}",
                "name": pause_id,
                "instance": tgt.name,
                "job": job,
            }
            out += [
                Series(
                    "container_cpu_usage_seconds_total",
                    _labels(**pod_level, cpu="total"),
                    tgt,
                    first,
                    last,
                    pod_cpu,
                    "cpu",
                    namespace,
                    counts=False,
                ),
                Series(
                    "container_memory_working_set_bytes",
                    _labels(**pod_level),
                    tgt,
                    first,
                    last,
                    pod_mem,
                    "memory",
                    namespace,
                    counts=False,
                ),
                Series(
                    "container_cpu_usage_seconds_total",
                    _labels(**pause, cpu="total"),
                    tgt,
                    first,
                    last,
                    pause_cpu,
                    "cpu",
                    namespace,
                    counts=False,
                ),
                Series(
                    "container_memory_working_set_bytes",
                    _labels(**pause),
                    tgt,
                    first,
                    last,
                    pause_mem,
                    "memory",
                    namespace,
                    counts=False,
                ),
            ]
            for view_i, view in enumerate((pod_level, pause)):
                counts = i == 0 and view_i == 0
                out += [
                    Series(
                        "container_network_transmit_bytes_total",
                        _labels(**view, interface="eth0"),
                        tgt,
                        first,
                        last,
                        tx,
                        "net_tx",
                        namespace,
                        counts=counts,
                    ),
                    Series(
                        "container_network_receive_bytes_total",
                        _labels(**view, interface="eth0"),
                        tgt,
                        first,
                        last,
                        rx,
                        "net_rx",
                        namespace,
                        counts=counts,
                    ),
                ]
        return out

    def pod(
        self,
        target: Target,
        namespace: str,
        pod: str,
        containers: dict[str, tuple[float, float]],
        first: float,
        last: float,
        net_bytes_per_s: float = 50_000.0,
        extra_targets: Iterable[Target] = (),
    ) -> list[Series]:
        """A whole pod: its containers, pod-level and pause series, network."""
        preexisting = first <= self.cluster.start
        pod_uid = f"{self.rng.getrandbits(32):08x}-{self.rng.getrandbits(16):04x}"
        out: list[Series] = []
        for name, (cores, mem) in containers.items():
            out += self.container(
                target, namespace, pod, name, first, last, cores, mem, pod_uid, preexisting, extra_targets=extra_targets
            )
        total_cpu = sum(c for c, _ in containers.values())
        total_mem = sum(m for _, m in containers.values())
        out += self.sandbox(
            target,
            namespace,
            pod,
            pod_uid,
            first,
            last,
            total_cpu,
            total_mem,
            net_bytes_per_s,
            preexisting,
            extra_targets=extra_targets,
        )
        return out

    def volume(
        self, targets: list[Target], namespace: str, pvc: str, first: float, last: float, used: float
    ) -> list[Series]:
        """kubelet_volume_stats_used_bytes of one PVC, reported by every node that mounts it."""
        level = self.level(targets[0], first, last, used)
        return [
            Series(
                "kubelet_volume_stats_used_bytes",
                _labels(namespace=namespace, persistentvolumeclaim=pvc, instance=t.name, job="kubelet"),
                t,
                first,
                last,
                level,
                "storage",
                namespace,
                counts=i == 0,
            )
            for i, t in enumerate(targets)
        ]


# ---------------------------------------------------------------------------------------------
# Functions shared by copies (see the conventions in the module docstring)


def _same_hour(start: float, first: float) -> float:
    """``start`` moved into the hour of ``first``: a new counter's usage before its first sample
    belongs to the window that sample is in."""
    hour = math.floor(first / 3600) * 3600.0
    return max(start, hour)


def _near_hour(t: float) -> bool:
    offset = t % 3600.0
    return offset < BOUNDARY_GUARD or 3600.0 - offset < BOUNDARY_GUARD


def _copy_times(copies: Sequence[Copy], first: float, last: float) -> list[list[float]]:
    times = [sample_times(t, c, first, last) for t, c in copies]
    if not copies or not all(times):
        raise ValueError(f"a copy has no sample in [{first}, {last}]")
    return times


def _next_at_or_after(times: Sequence[float], t: float) -> float | None:
    i = bisect.bisect_left(times, t)
    return times[i] if i < len(times) else None


def counter_for(
    rng: random.Random,
    copies: Sequence[Copy],
    first: float,
    last: float,
    base: float,
    offset: float = 0.0,
    not_before: float = -math.inf,
) -> Counter:
    """A counter every copy shows exactly: it starts at its first sample (from zero a moment before
    it, in the same hour, unless ``offset`` says it was already counting), changes rate every few
    minutes (on common sample times, or away from whole hours when the copies share none) and is
    flat after the copies' earliest last sample."""
    times = _copy_times(copies, first, last)
    earliest = min(ts[0] for ts in times)
    stop = min(ts[-1] for ts in times)
    if offset:
        start = earliest
    else:
        start = max(_same_hour(earliest - rng.uniform(0.5, 3.0), earliest), not_before)
        if any(math.floor(ts[0] / 3600) != math.floor(start / 3600) for ts in times):
            raise ValueError("copies of a new counter start in different hours")
    common = common_times(copies, first, last) if len(copies) > 1 else times[0]
    rates = [(start, base * rng.uniform(0.6, 1.4))]
    t = earliest + rng.uniform(200, 600)
    while t < stop:
        if len(common) >= 3:
            pick = _next_at_or_after(common, t)
        else:
            pick = t
            while _near_hour(pick):
                pick += 60.0
        if pick is None or pick >= stop:
            break
        rates.append((pick, base * rng.uniform(0.3, 1.7)))
        t = pick + rng.uniform(300, 900)
    rates.append((stop, 0.0))
    return Counter(start=start, offset=offset, rates=rates)


def level_for(rng: random.Random, copies: Sequence[Copy], first: float, last: float, base: float) -> Level:
    """A level every copy shows exactly: straight from the copies' first sample to their last,
    bending only on sample times all copies have (a ramp or step every few minutes)."""
    times = _copy_times(copies, first, last)
    lo, hi = min(ts[0] for ts in times), max(ts[-1] for ts in times)
    common = common_times(copies, first, last) if len(copies) > 1 else times[0]
    knots = [(lo, base * rng.uniform(0.5, 1.0))]
    t = lo + rng.uniform(60, 400)
    while t < hi:
        pick = _next_at_or_after(common, t)
        if pick is None or pick >= hi:
            break
        if pick > knots[-1][0]:
            knots.append((pick, base * rng.uniform(0.5, 1.5)))
        t = pick + rng.uniform(120, 700)
    if hi > knots[-1][0]:
        knots.append((hi, base * rng.uniform(0.5, 1.5)))
    return Level(knots=knots)


def counter_reset(
    rng: random.Random, copies: Sequence[Copy], first: float, at: float, last: float, base: float, offset: float
) -> tuple[Counter, Counter, float]:
    """A process restart near ``at`` under unchanged labels (a counter reset): the old counter,
    flat from the copies' earliest sample before ``at``, the new one counting from zero from their
    latest, and the split time (old lives end at or before it, new ones start after it)."""
    befores = [ts[-1] for ts in _copy_times(copies, first, at)]
    old = counter_for(rng, copies, first, min(befores), base, offset=offset)
    new = counter_for(rng, copies, max(befores) + 0.001, last, base, not_before=max(befores))
    return old, new, max(befores)
