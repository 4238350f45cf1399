"""A synthetic multi-tenant cluster: metric history in OpenMetrics and its exact ground truth.

Used by the tests, the demo and the benchmarks. Each series is drawn from an underlying function
(CPU: piecewise-constant rate, so the counter is piecewise linear; memory and storage:
piecewise-linear levels) sampled at its scrape target's times. The truth is computed from those
functions analytically, never from the samples, so it is an independent check of the metering.

Conventions that make "what the samples show" and "what was used" the same thing:
- breakpoints of a function sit on its own target's scrape times, never inside a scrape gap;
- a container's usage before its first sample is in its first sample (a counter starts from zero
  at container start, which lies in the same window as the first sample);
- a container or volume stops at its last sample; a counter reset happens right after a sample.

The demo cluster carries every trap the metering must survive: pod-level cgroup series
(container=""), pause containers (container="POD"), network reported on both, per-CPU series next to
cpu="total", a node scraped by two jobs, a container restart (new series), a counter reset with
unchanged labels, a scrape gap, CronJob pods living 90 seconds, pods crossing a window boundary,
pods created and deleted mid-window, an RWX volume reported by two nodes, two nginx-ingress
replicas one of which restarts, Istio's source and destination reports of the same request, a
namespace deleted mid-window, an idle labeled namespace and unlabeled system namespaces.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Literal

GIB = float(2**30)
CUSTOMER_LABEL = "billing.example.com/customer-id"
KSM_CUSTOMER_LABEL = "label_billing_example_com_customer_id"

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


@dataclass
class Counter:
    """A cumulative counter: value ``offset`` at ``start``, then the integral of a stepwise rate."""

    start: float
    offset: float
    rates: list[tuple[float, float]]  # (from_time, rate) sorted; rate holds until the next entry

    def value(self, t: float) -> float:
        """Counter value at t (t >= start)."""
        return self.offset + self.used(self.start, t)

    def used(self, lo: float, hi: float) -> float:
        """Exact amount counted in [lo, hi]."""
        lo = max(lo, self.start)
        if hi <= lo:
            return 0.0
        total = 0.0
        for i, (t_from, rate) in enumerate(self.rates):
            t_to = self.rates[i + 1][0] if i + 1 < len(self.rates) else math.inf
            a, b = max(lo, t_from), min(hi, t_to)
            if b > a:
                total += rate * (b - a)
        return total


@dataclass
class Level:
    """A gauge level, piecewise linear through its knots, constant outside them."""

    knots: list[tuple[float, float]]  # (time, value) sorted

    def value(self, t: float) -> float:
        """Level at t."""
        times = [k[0] for k in self.knots]
        i = bisect.bisect_right(times, t)
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


Meter = Literal["cpu", "memory", "net_tx", "net_rx", "storage", "http", "istio", "pg_commits", "mqtt_clients"]


@dataclass
class Series:
    """One incarnation of a series: labels, where it is scraped, its life, and its function.

    ``meter`` and ``namespace`` say where its usage belongs in the truth; ``counts`` is False for
    series the metering must leave out (pod-level sums, pause containers, duplicate copies).
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

    def samples(self) -> Iterator[tuple[float, float]]:
        """(time, value) of every sample, skipping scrape gaps."""
        for t, _ in self._sample_times():
            yield t, self.fn.value(t)

    def __post_init__(self) -> None:
        # A series lives from its first sample to its last: snap the life to real sample times.
        k0, k1 = self.target.index_at_or_after(self.first), self.target.index_at_or_before(self.last)
        while k0 <= k1 and self.target.in_gap(self.target.time_at(k0)):
            k0 += 1
        while k1 >= k0 and self.target.in_gap(self.target.time_at(k1)):
            k1 -= 1
        if k0 > k1:
            raise ValueError(f"{self.name}{dict(self.labels)} has no sample")
        self.first, self.last = self.target.time_at(k0), self.target.time_at(k1)

    def _sample_times(self) -> Iterator[tuple[float, int]]:
        k0, k1 = self.target.index_at_or_after(self.first), self.target.index_at_or_before(self.last)
        for k in range(k0, k1 + 1):
            t = self.target.time_at(k)
            if not self.target.in_gap(t):
                yield t, k

    def truth(self, lo: float, hi: float) -> float:
        """Exact usage inside [lo, hi): a counter's increase, a gauge's integral (value-seconds)."""
        if isinstance(self.fn, Counter):
            return self.fn.used(max(lo, self.fn.start), min(hi, self.last))
        return self.fn.integral(max(lo, self.first), min(hi, self.last))


@dataclass
class Cluster:
    """Namespaces, their owners, and every series of the history."""

    start: float
    end: float
    namespaces: dict[str, str | None]  # name -> customer id (None: unlabeled); live at `end`
    deleted: dict[str, tuple[str | None, float]] = field(default_factory=dict)  # name -> (customer, deleted_at)
    series: list[Series] = field(default_factory=list)

    def customer_of(self, namespace: str) -> str | None:
        """Owner of a namespace, live or deleted."""
        if namespace in self.namespaces:
            return self.namespaces[namespace]
        if namespace in self.deleted:
            return self.deleted[namespace][0]
        return None

    def truth(self, window_start: datetime, window_end: datetime) -> dict[str, dict[str, float]]:
        """Exact usage per customer in [window_start, window_end), in report units."""
        lo, hi = window_start.timestamp(), window_end.timestamp()
        raw: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for s in self.series:
            if not s.counts or s.meter is None or s.namespace is None:
                continue
            customer = self.customer_of(s.namespace)
            if customer is None:
                continue
            raw[customer][s.meter] += s.truth(lo, hi)
        for meter, namespace, value in self._bridges(lo, hi):
            customer = self.customer_of(namespace)
            if customer is not None:
                raw[customer][meter] += value
        customers = {c for c in [*self.namespaces.values(), *(d[0] for d in self.deleted.values())] if c}
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
        return out

    def _bridges(self, lo: float, hi: float) -> Iterator[tuple[str, str, float]]:
        """Gauge lives that follow each other under unchanged labels look like one series: the
        samples show the line from one life's last sample to the next one's first, so it counts."""
        lives: dict[tuple[str, Labels], list[Series]] = defaultdict(list)
        for s in self.series:
            if s.counts and isinstance(s.fn, Level) and s.meter is not None and s.namespace is not None:
                lives[(s.name, s.labels)].append(s)
        for group in lives.values():
            group.sort(key=lambda i: i.first)
            for before, after in itertools.pairwise(group):
                if after.first - before.last <= 2 * before.target.interval:
                    line = Level(
                        knots=[(before.last, before.fn.value(before.last)), (after.first, after.fn.value(after.first))]
                    )
                    assert before.meter is not None and before.namespace is not None
                    yield before.meter, before.namespace, line.integral(max(lo, before.last), min(hi, after.first))

    def write_openmetrics(self, out: IO[str]) -> int:
        """Write the whole history as OpenMetrics text for promtool; returns the sample count."""
        by_name: dict[str, dict[Labels, list[Series]]] = defaultdict(lambda: defaultdict(list))
        for s in self.series:
            by_name[s.name][s.labels].append(s)
        count = 0
        for name in sorted(by_name):
            for labels, incarnations in sorted(by_name[name].items()):
                label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
                previous = -math.inf
                for inc in sorted(incarnations, key=lambda i: i.first):
                    for t, v in inc.samples():
                        if t <= previous:
                            raise ValueError(f"overlapping incarnations of {name}{{{label_text}}}")
                        previous = t
                        out.write(f"{name}{{{label_text}}} {v!r} {t:.3f}\n")
                        count += 1
        out.write("# EOF\n")
        return count

    def write_openmetrics_file(self, path: Path) -> int:
        """Write the history to a file; returns the sample count."""
        with path.open("w") as fh:
            return self.write_openmetrics(fh)


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
# The demo cluster


def demo_cluster(day: datetime | None = None, seed: int = 7) -> Cluster:
    """The built-in demo: 5 customers, every trap, history from 22:00 the day before to 03:10.

    Windows 00:00-01:00, 01:00-02:00 and 02:00-03:00 of ``day`` (default 2025-11-20) are fully covered.
    """
    day = (day or datetime(2025, 11, 20, tzinfo=UTC)).astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    h = day.timestamp()
    start, end = h - 2 * 3600, h + 3 * 3600 + 600
    rng = random.Random(seed)
    cluster = Cluster(
        start=start,
        end=end,
        namespaces={
            "acme-prod": "cust_acme",
            "acme-dev": "cust_acme",
            "globex": "cust_globex",
            "initech": "cust_initech",
            "hooli": "cust_hooli",
            "kube-system": None,
            "monitoring": None,
            "ingress-nginx": None,
            "istio-system": None,
        },
        deleted={"umbrella-tmp": ("cust_umbrella", h + 5400)},
    )
    b = _Builder(cluster, rng)
    node_a = b.target("10.0.0.1:10250")
    node_b = b.target("10.0.0.2:10250", gaps=((h + 3600 + 1500, h + 3600 + 1560),))  # 3 scrapes lost at 01:25
    node_c = b.target("10.0.0.3:10250")
    node_c_dup = b.target("10.0.0.3:10250")  # the same node scraped again by a second job
    s = cluster.series

    def snap(t: Target, x: float) -> float:
        return b.snap(t, x)

    def last_before(t: Target, x: float) -> float:
        return t.time_at(t.index_at_or_before(x))

    # cust_acme / acme-prod: a two-container web pod all along, on a node scraped by two jobs.
    s += b.pod(
        node_c,
        "acme-prod",
        "web-7d9f-abcde",
        {"app": (0.9, 400e6), "sidecar": (0.1, 60e6)},
        start,
        end,
        net_bytes_per_s=200_000,
        extra_targets=[node_c_dup],
    )
    # a worker whose container restarts at 01:20 (new series: new id/name, counter from zero)
    uid = "a1b2c3d4-0001"
    restart = last_before(node_a, h + 3600 + 1200)
    s += b.container(node_a, "acme-prod", "worker-0", "worker", start, restart, 0.5, 300e6, uid, True)
    s += b.container(node_a, "acme-prod", "worker-0", "worker", snap(node_a, restart + 1), end, 0.7, 350e6, uid, False)
    s += b.sandbox(node_a, "acme-prod", "worker-0", uid, start, end, 0.6, 320e6, 30_000, True)
    # a batch pod that crosses the 01:00 and 02:00 boundaries: 00:40 -> 02:20
    s += b.pod(
        node_b,
        "acme-prod",
        "batch-xyz",
        {"batch": (1.5, 900e6)},
        snap(node_b, h + 2400),
        last_before(node_b, h + 2 * 3600 + 1200),
    )
    s += b.volume([node_c], "acme-prod", "data-postgres-0", start, end, 5.2 * GIB)
    # acme-dev: a CronJob every 10 minutes, pods living 90 seconds
    t = h - 3600
    i = 0
    while t < end - 300:
        first = snap(node_a, t + rng.uniform(0, 20))
        s += b.pod(
            node_a, "acme-dev", f"report-{i:04d}-x", {"job": (1.8, 200e6)}, first, first + 90.0, net_bytes_per_s=500_000
        )
        t += 600
        i += 1

    # cust_globex: counter reset with unchanged labels (runtime labels dropped by relabeling)
    uid = "b1b2c3d4-0002"
    reset_at = last_before(node_b, h + 3600 + 2400)
    s += b.container(
        node_b, "globex", "api-0", "api", start, reset_at, 0.8, 500e6, uid, True, keep_runtime_labels=False
    )
    s += b.container(
        node_b,
        "globex",
        "api-0",
        "api",
        snap(node_b, reset_at + 1),
        end,
        0.8,
        500e6,
        uid,
        False,
        keep_runtime_labels=False,
    )
    s += b.sandbox(node_b, "globex", "api-0", uid, start, end, 0.8, 500e6, 80_000, True)
    # a pod created at 01:12 and deleted at 01:47 (on the node with the scrape gap)
    s += b.pod(
        node_b,
        "globex",
        "migrate-1",
        {"migrate": (2.0, 1.2e9)},
        snap(node_b, h + 3600 + 720),
        last_before(node_b, h + 3600 + 2820),
    )
    # an RWX volume mounted on two nodes: two kubelets report the same PVC
    s += b.volume([node_b, node_a], "globex", "shared-files", start, end, 20 * GIB)

    # cust_hooli: a small steady pod and the custom meters' sources
    s += b.pod(node_a, "hooli", "svc-0", {"svc": (0.25, 128e6)}, start, end)

    # cust_umbrella: namespace deleted at 01:30; its pod ran until then
    s += b.pod(node_c, "umbrella-tmp", "load-0", {"load": (1.2, 700e6)}, start, last_before(node_c, h + 5400 - 30))
    # cust_initech: labeled, no workload at all.

    # unlabeled system namespaces: never billed
    s += b.pod(node_a, "kube-system", "coredns-1", {"coredns": (0.1, 70e6)}, start, end)
    s += b.pod(node_b, "monitoring", "prometheus-0", {"prometheus": (0.6, 2e9)}, start, end)
    s += b.volume([node_b], "monitoring", "prometheus-db", start, end, 40 * GIB)

    # nginx-ingress: two replicas; replica 1's process restarts at 01:33 (counter reset, same labels)
    ingresses = [
        ("acme-prod", "web", 40.0),
        ("globex", "api", 12.0),
        ("hooli", "svc", 3.0),
        ("umbrella-tmp", "load", 5.0),
        ("kube-system", "dashboard", 1.0),
    ]
    for replica in (0, 1):
        tgt = b.target(f"10.0.1.{replica + 1}:10254")
        pod = f"ingress-nginx-controller-{replica}"
        cut = last_before(tgt, h + 3600 + 1980) if replica == 1 else end
        for ns, ing, rps in ingresses:
            for status, share in (("200", 0.9), ("404", 0.07), ("503", 0.03)):
                end_ns = min(end, cluster.deleted.get(ns, (None, end))[1])
                labels = _labels(
                    exported_namespace=ns,
                    ingress=ing,
                    status=status,
                    method="GET",
                    namespace="ingress-nginx",
                    pod=pod,
                    instance=tgt.name,
                    job="ingress-nginx",
                    controller_class="k8s.io/ingress-nginx",
                )
                lives = [(start, min(cut, end_ns))] + ([(snap(tgt, cut + 1), end_ns)] if cut < end_ns else [])
                for j, (lo, hi) in enumerate(lives):
                    lo_s, hi_s = snap(tgt, lo), last_before(tgt, hi)
                    if hi_s <= lo_s:
                        continue
                    fn = b.cpu_counter(tgt, lo_s, hi_s, rps * share / 2, offset=1e5 if j == 0 else 0.0)
                    if j == 1:
                        fn = Counter(
                            start=lo_s - tgt.interval,
                            offset=0.0,
                            rates=[(lo_s - tgt.interval, fn.rates[0][1]), *fn.rates[1:]],
                        )
                    s.append(Series("nginx_ingress_controller_requests", labels, tgt, lo_s, hi_s, fn, "http", ns))

    # Istio: every request reported by the client's and the server's sidecar (reporter label)
    mesh = b.target("10.0.2.1:15090")
    for ns, rps in (("acme-prod", 20.0), ("globex", 6.0)):
        fn = b.cpu_counter(mesh, snap(mesh, start), end, rps, offset=5e4)
        for reporter in ("destination", "source"):
            s.append(
                Series(
                    "istio_requests_total",
                    _labels(
                        reporter=reporter,
                        destination_service_namespace=ns,
                        destination_workload="app",
                        source_workload="ingressgateway",
                        instance=mesh.name,
                        job="istio-mesh",
                        namespace="istio-system",
                    ),
                    mesh,
                    snap(mesh, start),
                    last_before(mesh, end),
                    fn,
                    "istio",
                    ns,
                    counts=reporter == "destination",
                )
            )

    # custom meters: PostgreSQL commits (counter) and MQTT connected clients (gauge)
    pg = b.target("10.0.3.1:9187")
    for ns, cps in (("acme-prod", 35.0), ("hooli", 4.0)):
        fn = b.cpu_counter(pg, snap(pg, start), end, cps, offset=7e6)
        s.append(
            Series(
                "pg_stat_database_xact_commit",
                _labels(namespace=ns, datname="app", instance=pg.name, job="pg"),
                pg,
                snap(pg, start),
                last_before(pg, end),
                fn,
                "pg_commits",
                ns,
            )
        )
    mq = b.target("10.0.3.2:9234")
    lvl = b.level(mq, snap(mq, start), last_before(mq, end), 250.0)
    s.append(
        Series(
            "mqtt_connected_clients",
            _labels(namespace="hooli", instance=mq.name, job="mqtt"),
            mq,
            snap(mq, start),
            last_before(mq, end),
            lvl,
            "mqtt_clients",
            "hooli",
        )
    )

    # kube-state-metrics: namespace labels, including the namespace deleted at 01:30
    ksm = b.target("10.0.4.1:8080")
    for ns, customer in [*cluster.namespaces.items(), *((n, d[0]) for n, d in cluster.deleted.items())]:
        last = cluster.deleted[ns][1] if ns in cluster.deleted else end
        extra = {KSM_CUSTOMER_LABEL: customer} if customer else {}
        s.append(
            Series(
                "kube_namespace_labels",
                _labels(namespace=ns, instance=ksm.name, job="kube-state-metrics", **extra),
                ksm,
                snap(ksm, start),
                last_before(ksm, last),
                Level(knots=[(start, 1.0)]),
                None,
                ns,
                counts=False,
            )
        )
    _check_boundaries(cluster)
    return cluster


def _check_boundaries(cluster: Cluster) -> None:
    """A new counter's start and its first sample must fall in the same hour (see module docstring)."""
    for s in cluster.series:
        if isinstance(s.fn, Counter) and s.fn.offset == 0.0:
            if math.floor(s.fn.start / 3600) != math.floor(s.first / 3600):
                s.fn.start = math.floor(s.first / 3600) * 3600.0


def hour_windows(cluster: Cluster, day: datetime | None = None) -> list[tuple[datetime, datetime]]:
    """The demo's fully covered hourly windows."""
    day = (day or datetime(2025, 11, 20, tzinfo=UTC)).replace(hour=0, minute=0, second=0, microsecond=0)
    return [(day + timedelta(hours=i), day + timedelta(hours=i + 1)) for i in range(3)]


# ---------------------------------------------------------------------------------------------
# The scale cluster (benchmarks)


def scale_cluster(
    namespaces: int = 10_000,
    window_end: datetime | None = None,
    interval: float = 30.0,
    nodes: int = 50,
    seed: int = 11,
) -> Cluster:
    """``namespaces`` labeled namespaces, two per customer, one or two pods each.

    Every pod has the full cAdvisor layout (its containers, the pause container, the pod-level
    cgroup, network on both) and every namespace one PVC and ingress traffic from two controller
    replicas. One pod in ten starts or stops inside the window. History covers the hour before
    ``window_end`` (default 2025-11-20T02:00Z) plus five minutes on each side.
    """
    end_h = (window_end or datetime(2025, 11, 20, 2, tzinfo=UTC)).timestamp()
    start, end = end_h - 3600 - 300, end_h + 300
    rng = random.Random(seed)
    names = {f"tenant-{i:06d}-{'a' if i % 2 == 0 else 'b'}": f"cust_{i // 2:06d}" for i in range(namespaces)}
    cluster = Cluster(start=start, end=end, namespaces={**names, "kube-system": None})
    b = _Builder(cluster, rng, interval=interval)
    targets = [b.target(f"10.1.{i // 250}.{i % 250}:10250") for i in range(nodes)]
    ingress = [b.target(f"10.2.0.{i}:10254") for i in (1, 2)]
    s = cluster.series
    for i, ns in enumerate(names):
        node = targets[i % nodes]
        for p in range(1 + (i % 2)):
            first, last = start, end
            if rng.random() < 0.1:  # starts or stops inside the window
                if rng.random() < 0.5:
                    first = b.snap(node, start + 300 + rng.uniform(60, 3000))
                else:
                    last = node.time_at(node.index_at_or_before(start + 300 + rng.uniform(600, 3500)))
            containers = {"app": (rng.uniform(0.05, 2.0), rng.uniform(5e7, 2e9))}
            if p == 1:
                containers["sidecar"] = (rng.uniform(0.01, 0.2), rng.uniform(1e7, 1e8))
            s += b.pod(node, ns, f"app-{p}-{i:06d}", containers, first, last, net_bytes_per_s=rng.uniform(1e3, 1e6))
        s += b.volume([node], ns, f"data-{i:06d}", start, end, rng.uniform(1e8, 5e10))
        for r, tgt in enumerate(ingress):
            fn = b.cpu_counter(tgt, b.snap(tgt, start), end, rng.uniform(0.1, 20.0), offset=rng.uniform(0, 1e6))
            labels = _labels(
                exported_namespace=ns,
                ingress="web",
                status="200",
                method="GET",
                namespace="ingress-nginx",
                pod=f"ingress-nginx-controller-{r}",
                instance=tgt.name,
                job="ingress-nginx",
            )
            s.append(Series("nginx_ingress_controller_requests", labels, tgt, start, end, fn, "http", ns))
    return cluster
