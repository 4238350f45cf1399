"""Every PromQL expression cluster-exporter sends, named, with what it answers and why.

A window is (T0, T1]. Prometheus' cost is per series selected: every selector in an expression
is evaluated on its own (PromQL has no common subexpressions), so an expression that computes
the exact per-series arithmetic in PromQL selects each series dozens of times. Here every meter
instead asks for a fixed handful of plain answers, each selecting its series once, and the
per-series arithmetic is done by ``accounting`` from them:

- the raw samples around each boundary, ``sel[2 * search]`` evaluated at T + search: the last
  sample at or before T and the ones after it (a boundary's value, or a gauge's edge pieces, need
  nothing else: the value at T is interpolated between the two samples around it, wherever they
  are, and the even spacing a gauge's closed form needs is checked on them);
- one scan of the whole window per series: ``resets()`` for a counter (a counter without resets
  used B(T1) - B(T0)), ``sum_over_time()`` and ``count_over_time()`` for a gauge (the trapezoids
  between evenly spaced samples have a closed form in their sum and count). For a meter with
  views, the scan that decides each series also returns the other views of units without the
  preferred one.

A series these cannot meter exactly (a reset, a start or stop inside the window, a scrape gap,
a sample missing, uneven spacing, no sample within ``search`` of a boundary) is irregular: its
raw samples over everything the window reads, [T0 - max_gap, T1 + max_gap], are fetched by
``raw_samples_query``, a bounded number of units per query, and metered sample by sample.
The number of queries does not grow with tenants; the size of the answers does, linearly.

Copies are merged by what a meter measures (``Meter.unit``: a container is one per namespace,
pod and container, a volume one per namespace and claim, whoever reports it and whatever other
labels a relabeling copied in), one network view is taken per pod; ``accounting`` does both from
the labels of each answer.
No query uses ``@``: each is evaluated at its own time, which VictoriaMetrics also honours.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from .. import meters
from ..errors import LayoutError
from ..settings import CustomMeter, MeteringSettings

Kind = Literal["counter", "gauge"]


@dataclass(frozen=True)
class Route:
    """Where a series of a routed meter goes: a series whose ``resource`` label fully matches
    ``resource`` (a regex) adds its usage times ``factor`` to report field ``field``."""

    field: str
    resource: str
    factor: float


@dataclass(frozen=True)
class Meter:
    """How one report field is measured.

    ``selector`` picks the series; ``namespace_labels`` are tried in order for a series' tenant
    namespace (the first one set wins); ``unit`` names the labels of one measured thing (series of
    one unit alive at the same time are copies, counted once; one after the other, summed);
    without it, ``dedup`` lists labels that only distinguish copies. ``prefer`` = (label, values)
    keeps, per unit, the series whose label has the first value present (network: pod-level,
    else pause). ``scale`` divides the amount (CPU seconds -> hours, byte-seconds -> GiB-hours).
    """

    name: str
    kind: Kind
    selector: str
    namespace_labels: tuple[str, ...] = ("namespace",)
    dedup: tuple[str, ...] = ()
    prefer: tuple[str, tuple[str, ...]] | None = None
    unit: tuple[str, ...] | None = None  # labels identifying one measured thing
    scale: float = 1.0
    integer: bool = False
    required: bool = False  # the source must have series in or around the window (else the window fails)
    template: str | None = None  # custom meters given as a raw PromQL template
    shard: str = ""  # set on the shards of a split meter (prometheus.query_split); names its queries
    namespace_setting: str | None = None  # the setting that chooses namespace_labels, named in failures
    # Gated meters: the selector of a 0/1 series per pod (kube-state-metrics' Running phase); a
    # series counts only while its pod's gate is 1 (its samples times the gate's, integrated).
    gate: str | None = None
    routes: tuple[Route, ...] = ()  # one selector, several report fields (by the resource label)
    auto: bool = False  # reported only when its gate answered (the cluster has the source)

    @property
    def fields(self) -> tuple[str, ...]:
        """The report fields this meter's amounts go to."""
        if not self.routes:
            return (self.name,)
        return tuple(dict.fromkeys(route.field for route in self.routes))

    @property
    def gate_labels(self) -> tuple[str, ...]:
        """The labels joining a series to its pod's gate: the namespace labels and ``pod``."""
        return (*self.namespace_labels, "pod")

    @property
    def namespace_label(self) -> str:
        """The first label tried for the namespace (custom templates' ``{namespace_label}``, shards)."""
        return self.namespace_labels[0]


@dataclass(frozen=True)
class Window:
    """One window and the metering parameters that shape its queries (seconds)."""

    start: float
    end: float
    max_gap: float  # longest gap between two samples of one series that is bridged
    search: float  # how far on each side of a boundary its samples are read
    lookback: float

    @property
    def length(self) -> float:
        """Window length in seconds."""
        return self.end - self.start


GIB_SECONDS_PER_GIB_HOUR = float(2**30) * 3600.0


# A series' tenant namespace: Prometheus renames an exporter's own ``namespace`` label to
# ``exported_namespace`` when the target's labels already hold one (a ServiceMonitor without
# honorLabels), so where that is set it is the exporter's meaning; else ``namespace``.
NAMESPACE_LABELS = ("exported_namespace", "namespace")


def builtin_meters(settings: MeteringSettings) -> list[Meter]:
    """The six built-in meters for these settings (http only when a source is configured)."""
    dedup = tuple(settings.dedup_labels)
    # Real containers only: "" is the pod cgroup (the sum of its containers), "POD" the pause
    # container. cpu="total" (or no cpu label) leaves out per-CPU series of old cAdvisors.
    # One container is one measured thing, whatever else its copies carry (job, instance, node
    # labels a labelmap copied in, prometheus_replica): its series alive at the same time are
    # copies, and a restart's new series follows the old one.
    containers = 'container!="",container!="POD"'
    container_unit = (*NAMESPACE_LABELS, "pod", "container")
    out = [
        Meter(
            "cpu_hours",
            "counter",
            f'container_cpu_usage_seconds_total{{{containers},cpu=~"total|"}}',
            namespace_labels=NAMESPACE_LABELS,
            unit=container_unit,
            scale=3600.0,
        ),
        Meter(
            "memory_gb_hours",
            "gauge",
            f"container_memory_working_set_bytes{{{containers}}}",
            namespace_labels=NAMESPACE_LABELS,
            unit=container_unit,
            scale=GIB_SECONDS_PER_GIB_HOUR,
        ),
    ]
    # The pod's network namespace shows on the pod cgroup and on the pause container (and, on
    # some runtimes, on every container): take one view per pod and interface.
    net = f'container=~"|POD",interface!~"{settings.network_interfaces_excluded}"'
    for name, metric in (
        ("network_bytes_sent", "container_network_transmit_bytes_total"),
        ("network_bytes_received", "container_network_receive_bytes_total"),
    ):
        out.append(
            Meter(
                name,
                "counter",
                f"{metric}{{{net}}}",
                namespace_labels=NAMESPACE_LABELS,
                prefer=("container", ("", "POD")),
                unit=(*NAMESPACE_LABELS, "pod", "interface"),
                integer=meters.BY_NAME[name].integer,
            )
        )
    # A volume's usage is one value per namespace and claim, whoever reports it: an RWX volume
    # mounted on several nodes is reported by each kubelet, an RWO volume by the next node after
    # its pod moved.
    out.append(
        Meter(
            "storage_gb_hours",
            "gauge",
            "kubelet_volume_stats_used_bytes",
            namespace_labels=NAMESPACE_LABELS,
            unit=(*NAMESPACE_LABELS, "persistentvolumeclaim"),
            scale=GIB_SECONDS_PER_GIB_HOUR,
        )
    )
    # Each ingress replica (pod/instance) counts its own requests: never merge replicas.
    replica_safe = tuple(label for label in dedup if label not in ("instance", "node", "pod"))
    if settings.http_source == "nginx":
        auto = settings.nginx_namespace_label == "auto"
        out.append(
            Meter(
                "http_requests",
                "counter",
                "nginx_ingress_controller_requests",
                namespace_labels=NAMESPACE_LABELS if auto else (settings.nginx_namespace_label,),
                dedup=replica_safe,
                integer=meters.BY_NAME["http_requests"].integer,
                required=True,
                namespace_setting="metering.nginx_namespace_label",
            )
        )
    elif settings.http_source == "istio":
        # Both sidecars report each request (reporter="source" and "destination"): count the server's.
        out.append(
            Meter(
                "http_requests",
                "counter",
                'istio_requests_total{reporter="destination"}',
                namespace_labels=("destination_service_namespace",),
                dedup=replica_safe,
                integer=meters.BY_NAME["http_requests"].integer,
                required=True,
            )
        )
    if requests := requests_meter(settings):
        out.append(requests)
    if settings.gpu_utilization != "off":
        out.append(gpu_utilization_meter(settings))
    return out


# kube-state-metrics (internal/store/pod.go): kube_pod_status_phase is one series per pod and
# phase, 1 for the pod's phase and 0 for the others; kube_pod_container_resource_requests one per
# container and resource (nvidia.com/gpu written nvidia_com_gpu), reported for every pod that
# exists, Succeeded and Failed ones included (kubernetes/kube-state-metrics#1051), and for a
# Pending pod that holds nothing yet. So requests count only while the pod's phase is Running.
RUNNING = 'kube_pod_status_phase{phase="Running"}'
REQUESTS = "kube_pod_container_resource_requests"


def requests_meter(settings: MeteringSettings) -> Meter | None:
    """Requests of running pods, integrated over time, routed by resource: cpu to
    cpu_request_hours, memory to memory_request_gb_hours, the GPU resources to gpu_hours (each
    with its weight). One selector and one gate for all three: five queries a window. None when
    both metering.requests and metering.gpu are off."""
    routes: list[Route] = []
    if settings.requests != "off":
        routes += [
            Route("cpu_request_hours", "cpu", 1 / 3600.0),
            Route("memory_request_gb_hours", "memory", 1 / GIB_SECONDS_PER_GIB_HOUR),
        ]
    if settings.gpu != "off":
        routes += [Route("gpu_hours", gpu.resource, gpu.weight / 3600.0) for gpu in settings.gpu_resources]
    if not routes:
        return None
    union = "|".join(f"({route.resource})" for route in routes)
    return Meter(
        "requests",
        "gauge",
        f"{REQUESTS}{{resource=~{_quote(union)}}}",
        namespace_labels=NAMESPACE_LABELS,
        unit=(*NAMESPACE_LABELS, "pod", "container", "resource"),
        required="on" in (settings.requests, settings.gpu),
        gate=RUNNING,
        routes=tuple(routes),
        auto="on" not in (settings.requests, settings.gpu),
    )


def gpu_utilization_meter(settings: MeteringSettings) -> Meter:
    """dcgm-exporter's busy time per GPU and pod, attributed by the pod labels its Kubernetes
    mapping adds (namespace, pod, container; exported_namespace, exported_pod and
    exported_container where its scrape does not honor labels, as its chart's ServiceMonitor
    does by default). One GPU is one UUID: series of one UUID, pod and container alive together
    are copies (two scrape jobs)."""
    percent = settings.gpu_utilization == "DCGM_FI_DEV_GPU_UTIL"
    return Meter(
        "gpu_utilized_hours",
        "gauge",
        settings.gpu_utilization,
        namespace_labels=NAMESPACE_LABELS,
        unit=(*NAMESPACE_LABELS, "exported_pod", "pod", "exported_container", "container", "UUID"),
        scale=3600.0 * (100.0 if percent else 1.0),
        required=True,
        namespace_setting="dcgm-exporter's Kubernetes pod mapping (namespace and pod labels)",
    )


def custom_meters(settings: MeteringSettings) -> list[Meter]:
    """Operator-defined meters from the config."""
    out = []
    for m in settings.custom_meters:
        # a template answers final amounts; a selector is metered (gauges in value-hours)
        scale = (3600.0 if m.type == "gauge" and m.query is None else 1.0) / m.multiplier
        out.append(_custom(m, scale))
    return out


SHARD_POSITIONS = 16  # characters from the end of a namespace name that a split may test
SHARD_SAMPLE = 10_000  # names looked at to choose the position and groups


def namespace_shards(names: Sequence[str], shards: int) -> list[str]:
    """Regexes splitting namespace values into at most ``shards`` disjoint sets that together
    match every value (any string), balanced over ``names``, the namespaces in use.

    Each tests one character, counted from the end, at the position where ``names`` differ
    most, so a common prefix (``tenant-``) or suffix (``-prod``) does not put every namespace in
    one shard. That position's characters are dealt into groups, most frequent first, each to
    the lightest group. The last regex takes everything the others do not: other characters at
    that position, and values too short to have it. [] when ``names`` cannot be split.
    """
    if shards <= 1 or not names:
        return []
    sample = names[:: max(1, len(names) // SHARD_SAMPLE)]
    best: tuple[int, int, list[list[str]]] | None = None  # (largest shard, position, groups)
    for position in range(1, SHARD_POSITIONS + 1):
        counts = Counter(name[-position] for name in sample if len(name) >= position)
        groups: list[list[str]] = [[] for _ in range(shards)]
        totals = [0] * shards
        totals[-1] = len(sample) - sum(counts.values())  # too short: the last shard's
        for char, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
            lightest = min(range(shards), key=totals.__getitem__)
            groups[lightest].append(char)
            totals[lightest] += count
        if best is None or max(totals) < best[0]:
            best = (max(totals), position, groups)
    assert best is not None
    largest, position, groups = best
    named = [sorted(group) for group in groups[:-1] if group]
    if not named or largest == len(sample):
        return []  # the same everywhere: nothing to split on
    after = f".{{{position - 1}}}" if position > 1 else ""
    patterns = [f".*[{_class(group)}]{after}" for group in named]
    others = _class(sorted(c for group in named for c in group))
    shorter = f".{{0,{position - 1}}}" if position > 1 else ""
    patterns.append(f".*[^{others}]{after}|{shorter}")
    return patterns


def _class(chars: Sequence[str]) -> str:
    """Characters inside a PromQL regex bracket expression, each taken literally."""
    return _string_escape("".join(c if c.isalnum() else "\\" + c for c in chars))


def shard_meters(meter: Meter, patterns: Sequence[str]) -> list[Meter]:
    """``meter`` split into one meter per namespace pattern (``namespace_shards``): disjoint
    sets of namespace values that together select exactly the meter's series."""
    if len(patterns) <= 1 or meter.template is not None:
        return [meter]
    return [
        replace(meter, selector=with_matchers(meter.selector, f'{meter.namespace_label}=~"{pattern}"'), shard=f"s{i}")
        for i, pattern in enumerate(patterns)
    ]


def _custom(m: CustomMeter, scale: float) -> Meter:
    dedup = ("prometheus", "prometheus_replica", "replica")
    return Meter(
        m.name,
        m.type,
        m.selector or "",
        namespace_labels=(m.namespace_label,),
        dedup=dedup,
        scale=scale,
        integer=m.integer,
        required=m.selector is not None,  # a template is the operator's own PromQL: no series to check
        template=m.query,
        namespace_setting=f"namespace_label of custom meter {m.name}",
    )


# ---------------------------------------------------------------------------------------------
# Formatting helpers: PromQL durations in ms and @ times with ms precision, never floats in ranges.


def _d(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


def _t(seconds: float) -> str:
    return f"{seconds:.3f}"


def with_matchers(selector: str, matchers: str) -> str:
    """``selector`` with ``matchers`` (e.g. ``a="b",c=~"d"``) added inside its braces."""
    if selector.endswith("{}"):
        return selector[:-1] + matchers + "}"
    if selector.endswith("}"):
        return selector[:-1] + "," + matchers + "}"
    return f"{selector}{{{matchers}}}"


Role = Literal["boundary0", "boundary1", "resets", "sum", "count", "gate", "custom", "raw", "namespaces"]


@dataclass(frozen=True)
class Query:
    """A named PromQL expression, the time it is evaluated at, and what its answer means."""

    name: str
    expr: str
    meter: str
    role: Role
    at: float


def _name(meter: Meter, part: str) -> str:
    """A query's name: the meter's, what it asks, and the shard of a split meter."""
    return f"{meter.name}_{part}_{meter.shard}" if meter.shard else f"{meter.name}_{part}"


def _scan_span(w: Window) -> str:
    """What a counter's boundary values read, [T0 - search, T1 + search], as a range ending at
    T1 + search: a reset in it that the boundary answers do not explain makes a series irregular."""
    return _d(w.search + w.length + w.search)


def _raw_span(w: Window) -> str:
    """Everything the raw rules read, [T0 - max_gap, T1 + max_gap], as a range ending at T1 +
    max_gap: the samples around each boundary however far apart they are (up to max_gap)."""
    return _d(w.max_gap + w.length + w.max_gap)


def metered_selector(meter: Meter) -> str:
    """The series the per-series queries read: for a meter with views, only the preferred view
    (units without it show up in the window scan, ``_with_other_views``, and are metered from raw
    samples)."""
    if meter.prefer is None:
        return meter.selector
    label, values = meter.prefer
    return with_matchers(meter.selector, f"{label}={_quote(values[0])}")


def _string_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _quote(value: str) -> str:
    return '"' + _string_escape(value) + '"'


def boundary_query(meter: Meter, w: Window, side: Literal[0, 1]) -> Query:
    """Raw samples of every series in [T - search, T + search] around boundary T (a matrix)."""
    at = w.start if side == 0 else w.end
    return Query(
        _name(meter, f"boundary{side}"),
        f"{metered_selector(meter)}[{_d(2 * w.search)}]",
        meter.name,
        "boundary0" if side == 0 else "boundary1",
        at + w.search,
    )


@dataclass(frozen=True)
class CounterPlan:
    """A counter meter's queries for one window: the samples around each boundary, and the
    window scan (resets per series) that decides which series those give exactly."""

    boundary0: Query
    boundary1: Query
    resets: Query

    def queries(self) -> list[Query]:
        """Every query of the plan, in the order they are named here."""
        return [self.boundary0, self.boundary1, self.resets]


@dataclass(frozen=True)
class GaugePlan:
    """A gauge meter's queries for one window: the samples around each boundary, and the sum
    and count of the samples inside it (the count decides which series those give exactly)."""

    boundary0: Query
    boundary1: Query
    sum: Query
    count: Query
    gate: Query | None = None  # gated meters: each pod's gate over the raw span (gate_query)

    def queries(self) -> list[Query]:
        """Every query of the plan, in the order they are named here."""
        return [self.boundary0, self.boundary1, self.sum, self.count, *([self.gate] if self.gate else [])]


@dataclass(frozen=True)
class TemplatePlan:
    """A custom meter given as the operator's own PromQL: one query answering final amounts."""

    query: Query

    def queries(self) -> list[Query]:
        """The one query."""
        return [self.query]


MeterPlan = CounterPlan | GaugePlan | TemplatePlan


def meter_plan(meter: Meter, w: Window) -> MeterPlan:
    """The queries of one meter (one shard of it) for one window, raw-sample fetches aside."""
    if meter.template is not None:
        expr = meter.template.format(
            window=_d(w.length), window_start=_t(w.start), window_end=_t(w.end), namespace_label=meter.namespace_label
        )
        return TemplatePlan(Query(meter.name, expr, meter.name, "custom", w.end + w.max_gap))
    b0, b1 = boundary_query(meter, w, 0), boundary_query(meter, w, 1)
    if meter.kind == "counter":
        # resets() over everything B(T0) and B(T1) read; it also answers for units with other views only
        span = _scan_span(w)
        resets = _with_other_views(meter, lambda sel: f"resets({sel}[{span}])")
        return CounterPlan(b0, b1, Query(_name(meter, "resets"), resets, meter.name, "resets", w.end + w.search))
    inner = _d(w.length - 0.001)  # (T0, T1]
    total = f"sum_over_time({metered_selector(meter)}[{inner}])"
    count = _with_other_views(meter, lambda sel: f"count_over_time({sel}[{inner}])")
    return GaugePlan(
        b0,
        b1,
        Query(_name(meter, "sum"), total, meter.name, "sum", w.end),
        Query(_name(meter, "count"), count, meter.name, "count", w.end),
        gate_query(meter, w) if meter.gate else None,
    )


# Gate codes: max + 2 * min of a pod's gate over everything the raw rules read.
GATE_ALWAYS, GATE_NEVER = 3.0, 0.0  # anything else: the pod's gate changed (its series go raw)


def gate_query(meter: Meter, w: Window) -> Query:
    """Per pod, whether its gate was 1 at every sample of [T0 - max_gap, T1 + max_gap]
    (GATE_ALWAYS: its series are metered as they are), at none (GATE_NEVER: they count zero),
    or changed (they are metered from raw samples, multiplied by the gate's). Copies of the gate
    (two scrape jobs) are aggregated away by pod."""
    assert meter.gate is not None
    by, span = ", ".join(meter.gate_labels), _raw_span(w)
    expr = (
        f"max by ({by}) (max_over_time({meter.gate}[{span}])) + 2 * min by ({by}) (min_over_time({meter.gate}[{span}]))"
    )
    return Query(_name(meter, "gate"), expr, meter.name, "gate", w.end + w.max_gap)


def raw_gate_query(meter: Meter, w: Window, matchers: dict[str, list[str]]) -> Query:
    """The raw gate samples of the pods behind some irregular units of a gated meter."""
    assert meter.gate is not None
    pods = {label: values for label, values in matchers.items() if label in meter.gate_labels}
    sel = with_matchers(meter.gate, _unit_matchers(pods))
    return Query(f"{meter.name}_raw_gate", f"{sel}[{_raw_span(w)}]", meter.name, "raw", w.end + w.max_gap)


def _with_other_views(meter: Meter, scan: Callable[[str], str]) -> str:
    """``scan`` of the metered series, and for a meter with views, ``or`` the same scan of the
    other views of units that have no preferred view in it (network: pods with only the pause
    container's series). Such a series has no boundary answer, so it is irregular and its unit
    is metered from raw samples. One query instead of a separate lookup of those units, which
    selected both views once more: a third less Prometheus time for a network meter."""
    preferred = scan(metered_selector(meter))
    if meter.prefer is None:
        return preferred
    assert meter.unit is not None
    label, values = meter.prefer
    others = with_matchers(meter.selector, f"{label}!={_quote(values[0])}")
    return f"{preferred} or on({', '.join(meter.unit)}) {scan(others)}"


def meter_queries(meter: Meter, w: Window) -> list[Query]:
    """Every query of ``meter_plan`` as a list."""
    return meter_plan(meter, w).queries()


def raw_samples_query(meter: Meter, w: Window, matchers: dict[str, list[str]]) -> Query:
    """Raw samples of the series behind some irregular units in [T0 - max_gap, T1 + max_gap]."""
    sel = with_matchers(meter.selector, _unit_matchers(matchers))
    return Query(f"{meter.name}_raw", f"{sel}[{_raw_span(w)}]", meter.name, "raw", w.end + w.max_gap)


def raw_lookback_query(meter: Meter, w: Window, matchers: dict[str, list[str]]) -> Query:
    """For counters: the last value of the same series in [T0 - lookback, T0 - max_gap], which
    is all of the lookback B(T0) may read (one value a series instead of hours of samples)."""
    sel = with_matchers(meter.selector, _unit_matchers(matchers))
    span = w.lookback - w.max_gap
    return Query(
        f"{meter.name}_raw_before", f"last_over_time({sel}[{_d(span)}])", meter.name, "raw", w.start - w.max_gap
    )


def _unit_matchers(matchers: dict[str, list[str]]) -> str:
    return ",".join(f'{label}=~"{_regex_union(values)}"' for label, values in sorted(matchers.items()))


_REGEX_SPECIALS = set("\\.+*?()|[]{}^$")


def _escape(value: str) -> str:
    """A label value as a literal inside a PromQL regex string: regex-escaped, then string-escaped."""
    return _string_escape("".join("\\" + c if c in _REGEX_SPECIALS else c for c in value))


def _regex_union(values: Sequence[str]) -> str:
    return "|".join(_escape(v) for v in sorted(set(values)))


Unit = tuple[tuple[str, str], ...]


def raw_chunks(units: Sequence[Unit], max_length: int, max_units: int) -> list[tuple[list[Unit], dict[str, list[str]]]]:
    """``units`` in runs whose raw-sample query stays within ``max_length`` bytes and
    ``max_units`` units, each with its matchers: one regex union of values per label ("" among
    them where a unit of the run lacks the label: absent is "" in PromQL)."""
    budget = max_length - 512  # the selector, range and function around the matchers
    runs: list[list[Unit]] = []
    chunk: list[Unit] = []
    seen: dict[str, set[str]] = {}
    length = 0
    for unit in units:
        extra = sum(
            len(_escape(v)) + 1 + (len(k) + 6 if k not in seen else 0) for k, v in unit if v not in seen.get(k, ())
        )
        if chunk and (length + extra > budget or len(chunk) >= max_units):
            runs.append(chunk)
            chunk, seen, length = [], {}, 0
            extra = sum(len(_escape(v)) + 1 + len(k) + 6 for k, v in unit)
        chunk.append(unit)
        for k, v in unit:
            seen.setdefault(k, set()).add(v)
        length += extra
    if chunk:
        runs.append(chunk)
    return [(run, _matchers(run)) for run in runs]


def raw_fetches(
    meter: Meter, w: Window, units: Sequence[Unit], max_length: int, max_units: int
) -> list[tuple[list[Unit], dict[str, list[str]]]]:
    """``units`` in runs (``raw_chunks``) whose raw-sample and lookback queries, as rendered, are
    at most ``max_length`` bytes: a run that renders longer is split, and a single unit whose
    label values alone are too long is selected by fewer labels (the shortest values kept): that
    selects more series, which the fold ignores, never fewer. LayoutError when not even one label
    of a unit fits."""
    out: list[tuple[list[Unit], dict[str, list[str]]]] = []
    pending = list(reversed(raw_chunks(units, max_length, max_units)))
    while pending:
        run, matchers = pending.pop()
        if _raw_length(meter, w, matchers) <= max_length:
            out.append((run, matchers))
        elif len(run) > 1:
            half = len(run) // 2
            pending += [(run[half:], _matchers(run[half:])), (run[:half], _matchers(run[:half]))]
        else:
            out.append((run, _narrowed(meter, w, matchers, max_length)))
    return out


def _raw_length(meter: Meter, w: Window, matchers: dict[str, list[str]]) -> int:
    return max(len(raw_samples_query(meter, w, matchers).expr), len(raw_lookback_query(meter, w, matchers).expr))


def _narrowed(meter: Meter, w: Window, matchers: dict[str, list[str]], max_length: int) -> dict[str, list[str]]:
    """One unit's matchers without its longest label values until its queries fit."""
    kept = dict(matchers)
    while kept and _raw_length(meter, w, kept) > max_length:
        del kept[max(kept, key=lambda label: (sum(len(v) for v in kept[label]), label))]
    if not kept:
        raise LayoutError(
            f"meter {meter.name}: even one label of a series makes a raw-sample query longer than "
            f"{max_length} bytes; raise prometheus.max_query_length"
        )
    return kept


def _matchers(units: Sequence[Unit]) -> dict[str, list[str]]:
    values: dict[str, set[str]] = {}
    for unit in units:
        for label, value in unit:
            values.setdefault(label, set()).add(value)
    for label, found in values.items():
        if any(label not in dict(unit) for unit in units):
            found.add("")
    return {label: sorted(found) for label, found in values.items()}


def namespace_owners(label_key: str, w: Window) -> Query:
    """kube-state-metrics' record of each namespace's customer label over everything the raw
    rules read, [T0 - max_gap, T1 + max_gap]: one row per namespace and value seen ("" where the
    namespace carried none). A namespace with two rows changed owner around the window."""
    ksm_label = ksm_label_name(label_key)
    # kube-state-metrics' own `namespace` label arrives as exported_namespace when its scrape job
    # does not honor labels (the target's namespace took the name): keep both, as the meters do
    by = ", ".join((*NAMESPACE_LABELS, ksm_label))
    expr = f"max by ({by}) (last_over_time(kube_namespace_labels[{_raw_span(w)}]))"
    return Query("namespace_owners", expr, "namespaces", "namespaces", w.end + w.max_gap)


def namespace_label_samples(label: str, namespaces: Sequence[str], w: Window) -> Query:
    """The raw kube_namespace_labels samples of namespaces whose owner changed around the window
    (``label``: the label carrying their name), over [T0 - max_gap, T1 + max_gap]: the instant
    of each change."""
    sel = f'kube_namespace_labels{{{label}=~"{_regex_union(namespaces)}"}}'
    return Query("namespace_label_samples", f"{sel}[{_raw_span(w)}]", "namespaces", "namespaces", w.end + w.max_gap)


def ksm_label_name(label_key: str) -> str:
    """kube-state-metrics' name for a Kubernetes label key (label_ + key with non-alnum as _)."""
    return "label_" + "".join(c if c.isalnum() else "_" for c in label_key)


# ---------------------------------------------------------------------------------------------
# cluster-exporter doctor: what the data holds beyond what metering reads. Never used for billing;
# each is one query however many meters and namespaces there are.

DOCTOR_METER_LABEL = "cluster_exporter_meter"  # added by doctor_namespaces_with_data: the meter
DOCTOR_NAMESPACE_LABEL = "cluster_exporter_namespace"  # ... and the series' tenant namespace


def doctor_namespaces_with_data(meters: Sequence[Meter], w: Window) -> Query | None:
    """Series with a sample in (T0, T1], counted per meter and tenant namespace: one row per
    (``cluster_exporter_meter``, ``cluster_exporter_namespace``), the namespace being the first of
    the meter's namespace labels set, as metering reads it (absent: the series is unattributed).

    Every view and copy is counted (pod-level, pause container, both scrape jobs): this says
    where data is, not what is billed. All selector meters in one expression, each selecting its
    series once over the window (about one window scan per meter); ``or`` never drops a row
    because each operand carries its own meter label. Custom meters given as a PromQL template
    are left out (their query is the operator's own). None when no meter has a selector.
    """
    span = _d(w.length - 0.001)  # (T0, T1], as the gauge scans
    operands = []
    for meter in meters:
        if meter.template is not None:
            continue
        expr = f"last_over_time({meter.selector}[{span}])"
        for label in reversed(meter.namespace_labels):  # the first label set wins: apply it last
            expr = f'label_replace({expr}, "{DOCTOR_NAMESPACE_LABEL}", "$1", "{label}", "(.+)")'
        operands.append(f'label_replace({expr}, "{DOCTOR_METER_LABEL}", {_quote(meter.name)}, "", "")')
    if not operands:
        return None
    expr = f"count by ({DOCTOR_METER_LABEL}, {DOCTOR_NAMESPACE_LABEL}) ({' or '.join(operands)})"
    return Query("doctor_namespaces_with_data", expr, "namespaces", "namespaces", w.end)


def doctor_namespace_labels(label_key: str, w: Window) -> Query:
    """kube-state-metrics' namespaces during the window, one row per namespace and value of the
    customer label ("" where kube_namespace_labels does not carry it), over the same span as
    ``namespace_owners``. ``exported_namespace`` is kept: where it is set, kube-state-metrics was
    scraped without honorLabels and its ``namespace`` label was renamed."""
    ksm_label = ksm_label_name(label_key)
    expr = (
        f"count by (namespace, exported_namespace, {ksm_label}) "
        f"(last_over_time(kube_namespace_labels[{_d(w.length + w.max_gap)}]))"
    )
    return Query("doctor_namespace_labels", expr, "namespaces", "namespaces", w.end + w.max_gap)


DOCTOR_POD_LABEL = "cluster_exporter_pod"  # added by doctor_gpu_utilization: the series has a pod label
DCGM_METRICS = ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "DCGM_FI_DEV_GPU_UTIL")


def doctor_gpu_utilization(w: Window) -> Query:
    """dcgm-exporter's utilization series at the window end, counted per metric and by whether
    they carry a pod (its Kubernetes pod mapping on): which gpu_utilization the cluster can use."""
    names = "|".join(DCGM_METRICS)
    expr = (
        f'count by (__name__, {DOCTOR_POD_LABEL}) (label_replace({{__name__=~"{names}"}}, '
        f'"{DOCTOR_POD_LABEL}", "yes", "pod", ".+"))'
    )
    return Query("doctor_gpu_utilization", expr, "namespaces", "namespaces", w.end)


def doctor_candidate_labels(meter: Meter, w: Window, labels: Sequence[str]) -> Query:
    """A meter's unattributed series (none of its namespace labels set) with a sample in
    (T0, T1], counted by ``labels``, the label names on them that may hold the tenant namespace:
    which of them carries the namespaces that have the customer label."""
    empty = ",".join(f'{label}=""' for label in meter.namespace_labels)
    expr = (
        f"count by ({', '.join(labels)}) "
        f"(last_over_time({with_matchers(meter.selector, empty)}[{_d(w.length - 0.001)}]))"
    )
    return Query(f"doctor_{meter.name}_candidate_labels", expr, meter.name, "namespaces", w.end)
