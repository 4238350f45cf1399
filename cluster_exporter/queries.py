"""Every PromQL expression cluster-exporter sends, named, with what it counts and why.

A window is (T0, T1]. Each meter is one aggregate query answering one number per namespace
(``sum by (namespace)``), so the number of queries does not grow with tenants. The per-series
arithmetic inside the query follows the rules in docs/metering.md:

Counters (CPU seconds, network bytes, requests): usage = B(T1) - B(T0), where B(T) is the
counter's value at T interpolated between the last sample at or before T and the first sample
after it (when they are at most ``max_gap`` apart), the last value when the series stopped before
T, and 0 when it has no sample in ``series_lookback`` before T (a new series starts from zero).
Because window k's B(T1) is window k+1's B(T0), consecutive windows split every increment
exactly, and nothing is extrapolated (unlike increase()/rate()). Series with a counter reset near
the window are answered by the ``*_resets`` query instead and metered in Python from raw samples
(``accounting.counter_usage``), because PromQL cannot sum the drops.

Gauges (memory, storage): the time integral of the piecewise-linear line through the samples,
from a series' first sample to its last, bridging gaps up to ``max_gap``, and cut at T0 and T1
by interpolation. Inside the window the trapezoid rule over the samples is computed from their
count, sum, first and last values and times (exact for regular scrapes; a gap is spread over the
series' mean spacing). The first sample's value comes from a subquery trick: arrivals are seen at
a fine ``resolution``, each weighted down by K per second, so the earliest arrival wins a
max_over_time and is decoded back (K is derived from the values' range, so no precision is lost).

Duplicates: copies of one series that differ only in ``dedup_labels`` (two scrape jobs, HA
Prometheus replicas, RWX volumes reported by several kubelets) are merged with ``max`` before
summing. The pod-level cgroup (container="") and the pause container (container="POD") are left
out of CPU and memory; network is taken from the pod-level series, or from the pause container for
pods that have no pod-level series, never both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from .settings import CustomMeter, MeteringSettings

Kind = Literal["counter", "gauge"]


@dataclass(frozen=True)
class Meter:
    """How one report field is measured.

    ``selector`` picks the series; ``namespace_label`` names the tenant namespace on them;
    ``dedup`` lists labels that only distinguish copies; ``prefer`` = (label, values) keeps, per
    ``unit``, the series whose label has the first value present (network: pod-level, else pause).
    ``scale`` divides the amount (CPU seconds -> hours, byte-seconds -> GiB-hours).
    """

    name: str
    kind: Kind
    selector: str
    namespace_label: str = "namespace"
    dedup: tuple[str, ...] = ()
    prefer: tuple[str, tuple[str, ...]] | None = None
    unit: tuple[str, ...] | None = None  # labels identifying one countable thing when prefer is set
    scale: float = 1.0
    integer: bool = False
    template: str | None = None  # custom meters given as a raw PromQL template


@dataclass(frozen=True)
class Window:
    """One window and the metering parameters that shape its queries (seconds)."""

    start: float
    end: float
    max_gap: float
    resolution: float
    lookback: float

    @property
    def length(self) -> float:
        """Window length in seconds."""
        return self.end - self.start


GIB_SECONDS_PER_GIB_HOUR = float(2**30) * 3600.0


def builtin_meters(settings: MeteringSettings) -> list[Meter]:
    """The six built-in meters for these settings (http only when a source is configured)."""
    dedup = tuple(settings.dedup_labels)
    # Real containers only: "" is the pod cgroup (the sum of its containers), "POD" the pause
    # container. cpu="total" (or no cpu label) leaves out per-CPU series of old cAdvisors.
    containers = 'container!="",container!="POD"'
    meters = [
        Meter(
            "cpu_hours",
            "counter",
            f'container_cpu_usage_seconds_total{{{containers},cpu=~"total|"}}',
            dedup=dedup,
            scale=3600.0,
        ),
        Meter(
            "memory_gb_hours",
            "gauge",
            f"container_memory_working_set_bytes{{{containers}}}",
            dedup=dedup,
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
        meters.append(
            Meter(
                name,
                "counter",
                f"{metric}{{{net}}}",
                dedup=dedup,
                prefer=("container", ("", "POD")),
                unit=("namespace", "pod", "interface"),
                integer=True,
            )
        )
    # One series per PVC and kubelet; an RWX volume mounted on several nodes is reported by each.
    meters.append(
        Meter(
            "storage_gb_hours", "gauge", "kubelet_volume_stats_used_bytes", dedup=dedup, scale=GIB_SECONDS_PER_GIB_HOUR
        )
    )
    # Each ingress replica (pod/instance) counts its own requests: never merge replicas.
    replica_safe = tuple(label for label in dedup if label not in ("instance", "node", "pod"))
    if settings.http_source == "nginx":
        meters.append(
            Meter(
                "http_requests",
                "counter",
                "nginx_ingress_controller_requests",
                namespace_label=settings.nginx_namespace_label,
                dedup=replica_safe,
                integer=True,
            )
        )
    elif settings.http_source == "istio":
        # Both sidecars report each request (reporter="source" and "destination"): count the server's.
        meters.append(
            Meter(
                "http_requests",
                "counter",
                'istio_requests_total{reporter="destination"}',
                namespace_label="destination_service_namespace",
                dedup=replica_safe,
                integer=True,
            )
        )
    return meters


def custom_meters(settings: MeteringSettings) -> list[Meter]:
    """Operator-defined meters from the config."""
    out = []
    for m in settings.custom_meters:
        # a template answers final amounts; a selector is metered (gauges in value-hours)
        scale = (3600.0 if m.type == "gauge" and m.query is None else 1.0) / m.multiplier
        out.append(_custom(m, scale))
    return out


def _custom(m: CustomMeter, scale: float) -> Meter:
    dedup = ("prometheus", "prometheus_replica", "replica")
    return Meter(
        m.name,
        m.type,
        m.selector or "",
        namespace_label=m.namespace_label,
        dedup=dedup,
        scale=scale,
        integer=m.integer,
        template=m.query,
    )


# ---------------------------------------------------------------------------------------------
# Formatting helpers: PromQL durations in ms and @ times with ms precision, never floats in ranges.


def _d(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


def _t(seconds: float) -> str:
    return f"{seconds:.3f}"


def _without(labels: Sequence[str]) -> str:
    return ", ".join(labels)


# ---------------------------------------------------------------------------------------------
# Counters


def counter_boundary(sel: str, at: float, w: Window) -> str:
    """B(at) per series: interpolated counter value at ``at`` (see module docstring).

    VB is the last value within ``lookback``; TB its time (lookback delta, >= max_gap); TA and VA
    are the first sample after ``at`` within max_gap (VA as a min: simple series have no reset).
    """
    g, r = w.max_gap, w.resolution
    vb = f"last_over_time({sel}[{_d(w.lookback)}] @ {_t(at)})"
    tb = f"timestamp({sel} @ {_t(at)})"
    ta = f"min_over_time((timestamp({sel}) > {_t(at)})[{_d(g)}:{_d(r)}] @ {_t(at + g)})"
    va = f"min_over_time({sel}[{_d(g - 0.001)}] @ {_t(at + g)})"
    interpolated = f"(({vb}) + (({va}) - ({vb})) * ({_t(at)} - ({tb})) / (({ta}) - ({tb})))"
    return f"(({interpolated} and ((({ta}) - ({tb})) <= {g})) or ({vb}))"


def counter_resets(sel: str, w: Window) -> str:
    """Series with a counter reset anywhere that B(T0), B(T1) or the window looks at."""
    span = w.lookback + w.length + w.max_gap
    return f"(resets({sel}[{_d(span)}] @ {_t(w.end + w.max_gap)}) > 0)"


def counter_usage(sel: str, w: Window) -> str:
    """Usage per series in the window: B(T1) - B(T0), or B(T1) for a series new in the window."""
    b1, b0 = counter_boundary(sel, w.end, w), counter_boundary(sel, w.start, w)
    return f"(({b1} - {b0}) or {b1})"


# ---------------------------------------------------------------------------------------------
# Gauges


def _first_arrival_value(sel: str, lo: float, hi: float, first_time: str, w: Window) -> str:
    """Value of the first sample in (lo, hi], given that sample's time (an expression).

    At each fine step the arrival (a sample in the last ``resolution``) is weighted down by K per
    second since ``lo``; max_over_time keeps the earliest arrival, which is decoded by adding back
    K times its step. K makes one step outweigh the largest difference between any two values.
    """
    r = w.resolution
    spread = (
        f"scalar(max(max_over_time({sel}[{_d(hi - lo - 0.001)}] @ {_t(hi)})) "
        f"- min(min_over_time({sel}[{_d(hi - lo - 0.001)}] @ {_t(hi)})))"
    )
    k = f"((2 * {spread} + 1) / {r})"
    arrivals = f"last_over_time({sel}[{_d(r - 0.001)}])"
    weighted = f"max_over_time(({arrivals} - {k} * (time() - {_t(lo)}))[{_d(hi - lo - 0.001)}:{_d(r)}] @ {_t(hi)})"
    step = f"(ceil(({first_time}) / {r}) * {r})"
    return f"({weighted} + {k} * ({step} - {_t(lo)}))"


def _gauge_parts(sel: str, w: Window) -> dict[str, str]:
    """The per-series pieces of a gauge's integral, as PromQL expressions (see gauge_usage)."""
    t0, t1, g, r = w.start, w.end, w.max_gap, w.resolution
    inner = _d(w.length - 0.001)  # (T0, T1]
    p: dict[str, str] = {}
    p["n"] = f"count_over_time({sel}[{inner}] @ {_t(t1)})"
    p["vl"] = f"last_over_time({sel}[{inner}] @ {_t(t1)})"
    p["tl"] = f"max_over_time(timestamp({sel})[{inner}:{_d(min(60.0, g))}] @ {_t(t1)})"
    p["tf"] = f"min_over_time((timestamp({sel}) > {_t(t0)})[{inner}:{_d(r)}] @ {_t(t1)})"
    p["vf"] = _first_arrival_value(sel, t0, t1, p["tf"], w)
    p["sf"] = f"(ceil(({p['tf']}) / {r}) * {r})"  # first grid step at or after the first sample
    p["sl"] = f"(ceil(({p['tl']}) / {r}) * {r})"
    held = f"last_over_time({sel}[{_d(g)}])"  # a sample holds until the next one, or max_gap
    p["held_sum"] = f"(sum_over_time({held}[{inner}:{_d(r)}] @ {_t(t1)}) * {r})"
    p["held_steps"] = f"count_over_time({held}[{inner}:{_d(r)}] @ {_t(t1)})"
    p["vb0"] = f"last_over_time({sel}[{_d(g)}] @ {_t(t0)})"
    p["tb0"] = f"timestamp({sel} @ {_t(t0)})"
    # grid steps in (T0, first sample) still holding the sample from before T0
    last_pre = f"(floor((({p['tb0']}) + {g}) / {r}) * {r})"
    pre_end = f"(({last_pre} <= (({p['sf']}) - {r})) or (({p['sf']}) - {r}))"
    p["n_pre"] = f"(clamp_min(({pre_end} - {_t(t0)}) / {r}, 0) and ({p['tb0']}))"
    # grid steps from the last sample on that still hold it (to T1, or max_gap after it)
    post_end = f"clamp_max(floor((({p['tl']}) + {g}) / {r}) * {r}, {_t(t1)})"
    p["n_post"] = f"clamp_min(({post_end} - ({p['sl']})) / {r} + 1, 0)"
    p["ta1"] = f"min_over_time((timestamp({sel}) > {_t(t1)})[{_d(g)}:{_d(r)}] @ {_t(t1 + g)})"
    p["va1"] = _first_arrival_value(sel, t1, t1 + g, p["ta1"], w)
    return p


def gauge_usage(sel: str, w: Window) -> str:
    """Integral per series (value-seconds) over the window, for series without a gap over max_gap.

    interior = L + D on [first sample, last sample]: L is the left-held integral summed on the
    ``resolution`` grid (exact across short gaps when scrapes keep their phase), minus the grid
    steps before the first and after the last sample; D turns left-held into trapezoids, (last -
    first) * mean spacing / 2. The edges interpolate to T0 and T1 when the series is alive there.
    """
    p = _gauge_parts(sel, w)
    t0, t1, g, r = w.start, w.end, w.max_gap, w.resolution
    zero = f"({p['n']} * 0)"
    held = (
        f"({p['held_sum']} - ((({r} * ({p['vb0']}) * ({p['n_pre']}))) or {zero}) - {r} * ({p['vl']}) * ({p['n_post']}))"
    )
    skew = f"(((({p['tl']}) - ({p['tf']})) / (({p['n']}) - 1) * (({p['vl']}) - ({p['vf']})) / 2) and (({p['n']}) > 1))"
    interior = f"({held} + ({skew} or {zero}))"
    at_t0 = f"(({p['vb0']}) + (({p['vf']}) - ({p['vb0']})) * ({_t(t0)} - ({p['tb0']})) / (({p['tf']}) - ({p['tb0']})))"
    left = f"((({p['tf']}) - {_t(t0)}) * ({at_t0} + ({p['vf']})) / 2 and ((({p['tf']}) - ({p['tb0']})) <= {g}))"
    at_t1 = f"(({p['vl']}) + (({p['va1']}) - ({p['vl']})) * ({_t(t1)} - ({p['tl']})) / (({p['ta1']}) - ({p['tl']})))"
    right = f"(({_t(t1)} - ({p['tl']})) * (({p['vl']}) + {at_t1}) / 2 and ((({p['ta1']}) - ({p['tl']})) <= {g}))"
    return f"({interior} + ({left} or {zero}) + ({right} or {zero}))"


def gauge_gaps(sel: str, w: Window) -> str:
    """Series with a gap longer than max_gap in the window: fewer held grid steps than expected."""
    p = _gauge_parts(sel, w)
    expected = f"((({p['n_pre']}) or ({p['n']} * 0)) + (({p['sl']}) - ({p['sf']})) / {w.resolution} + ({p['n_post']}))"
    return f"(({p['held_steps']}) < ({expected} - 0.5))"


# ---------------------------------------------------------------------------------------------
# Per-meter queries


def _merge_copies(expr: str, meter: Meter) -> str:
    return f"max without({_without(meter.dedup)}) ({expr})" if meter.dedup else expr


def _prefer_views(per_series: str, meter: Meter) -> str:
    """One view per unit: the first value of meter.prefer's label that a unit has."""
    assert meter.prefer and meter.unit
    label, values = meter.prefer
    views = [f"{_merge_copies(per_series.replace('__VIEW__', f',{label}={_quote(v)}'), meter)}" for v in values]
    return f" or on({_without(meter.unit)}) ".join(f"({v})" for v in views)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _with_view_slot(selector: str) -> str:
    """Add a placeholder for a view matcher inside the selector's braces."""
    if selector.endswith("}"):
        return selector[:-1] + "__VIEW__}"
    return selector + "{__VIEW__}".replace("{,", "{")


@dataclass(frozen=True)
class Query:
    """A named PromQL expression and what its answer means."""

    name: str
    expr: str
    meter: str
    role: Literal["amount", "irregular", "raw", "custom", "check", "namespaces"]
    by: tuple[str, ...] = field(default=())


def meter_queries(meter: Meter, w: Window) -> list[Query]:
    """The aggregate queries of one meter: amounts per namespace, and its irregular series."""
    if meter.template is not None:
        expr = meter.template.format(
            window=_d(w.length), window_start=_t(w.start), window_end=_t(w.end), namespace_label=meter.namespace_label
        )
        return [Query(f"{meter.name}", expr, meter.name, "custom", (meter.namespace_label,))]
    per_series = counter_usage if meter.kind == "counter" else gauge_usage
    ns = meter.namespace_label
    if meter.prefer:
        slot = _with_view_slot(meter.selector)
        usage = _prefer_views(per_series(slot, w), meter)
    else:
        usage = _merge_copies(per_series(meter.selector, w), meter)
    # Irregular series (counter resets, gauge gaps over max_gap) are metered from raw samples.
    irregular_fn = counter_resets if meter.kind == "counter" else gauge_gaps
    if meter.prefer:
        assert meter.unit
        irregular = f"max by ({_without(meter.unit)}) ({irregular_fn(meter.selector, w)})"
        usage = f"({usage}) unless on({_without(meter.unit)}) {irregular}"
    else:
        irregular = _merge_copies(irregular_fn(meter.selector, w), meter)
        usage = f"({usage}) unless {irregular}"
    queries = [Query(f"{meter.name}_irregular", irregular, meter.name, "irregular")]
    queries.insert(0, Query(meter.name, f"sum by ({ns}) ({usage})", meter.name, "amount", (ns,)))
    return queries


def raw_samples_query(meter: Meter, w: Window, matchers: dict[str, list[str]]) -> Query:
    """Raw samples of the series behind some irregular units, over everything the window reads."""
    extra = ",".join(f'{label}=~"{_regex_union(values)}"' for label, values in sorted(matchers.items()))
    sel = meter.selector[:-1] + "," + extra + "}" if meter.selector.endswith("}") else f"{meter.selector}{{{extra}}}"
    span = w.lookback + w.length + w.max_gap
    return Query(f"{meter.name}_raw", f"{sel}[{_d(span)}] @ {_t(w.end + w.max_gap)}", meter.name, "raw")


def _regex_union(values: Sequence[str]) -> str:
    specials = set("\\.+*?()|[]{}^$")
    escaped = ["".join("\\\\" + c if c in specials else c for c in v) for v in sorted(set(values))]
    return "|".join(escaped).replace('"', '\\"')


def container_samples_check(w: Window) -> Query:
    """How many container CPU series have samples in the window (0: scraping is broken)."""
    sel = 'container_cpu_usage_seconds_total{container!="",container!="POD"}'
    return Query(
        "container_samples", f"count(count_over_time({sel}[{_d(w.length - 0.001)}] @ {_t(w.end)}))", "check", "check"
    )


def freshness_check(w: Window) -> Query:
    """How many container series have a sample after the window end (0: data is not in yet)."""
    sel = 'container_cpu_usage_seconds_total{container!="",container!="POD"}'
    return Query(
        "samples_after_window",
        f"count(count_over_time({sel}[{_d(w.max_gap)}] @ {_t(w.end + w.max_gap)}))",
        "check",
        "check",
    )


def namespace_owners(label_key: str, w: Window) -> Query:
    """kube-state-metrics' record of each namespace's customer label during the window."""
    ksm_label = ksm_label_name(label_key)
    expr = (
        f'max by (namespace, {ksm_label}) (last_over_time(kube_namespace_labels{{{ksm_label}!=""}}'
        f"[{_d(w.length + w.max_gap)}] @ {_t(w.end + w.max_gap)}))"
    )
    return Query("namespace_owners", expr, "namespaces", "namespaces", ("namespace", ksm_label))


def ksm_label_name(label_key: str) -> str:
    """kube-state-metrics' name for a Kubernetes label key (label_ + key with non-alnum as _)."""
    return "label_" + "".join(c if c.isalnum() else "_" for c in label_key)
