"""Every PromQL expression cluster-exporter sends, named, with what it counts and why.

A window is (T0, T1]. Each meter answers one number per namespace (``sum by (namespace)``), so
the number of queries does not grow with tenants. The per-series arithmetic follows the rules in
docs/metering.md and uses only instant selectors and short range functions pinned with ``@``.

Counters (CPU seconds, network bytes, requests): usage = B(T1) - B(T0), where B(T) is the
counter's value at T, interpolated between the last sample at or before T and the first sample
after it (when they are at most ``max_gap`` apart), the last value when the series stopped before
T, and 0 when it was not seen in ``series_lookback`` (a new series starts from zero). Window k's
B(T1) is window k+1's B(T0), so consecutive windows split every increment exactly, and nothing is
extrapolated (unlike increase()/rate()). Each boundary is its own query, so its building blocks
are evaluated once.

Gauges (memory, storage): the time integral of the line through the samples, cut at T0 and T1
by interpolation. For a series alive across both boundaries with evenly spaced samples this has
a closed form, the trapezoid rule from the samples' count and sum plus two edge pieces.

Irregular series (counter resets: PromQL cannot sum the drops; gauges that start, stop, or miss
samples in the window) are listed by a second query per meter, left out of the amounts, and
metered from their raw samples by ``accounting`` under the same rules.

Duplicates: copies of one series that differ only in ``dedup_labels`` (two scrape jobs, HA
Prometheus replicas, RWX volumes reported by several kubelets) are merged with ``max`` before
summing. The pod-level cgroup (container="") and the pause container (container="POD") are left
out of CPU and memory; network is taken from the pod-level series, or from the pause container for
pods that have no pod-level series, never both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
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
    required: bool = False  # the source must have series (see source_check)
    template: str | None = None  # custom meters given as a raw PromQL template
    shard: str = ""  # set on the shards of a split meter (prometheus.query_split); names its queries


@dataclass(frozen=True)
class Window:
    """One window and the metering parameters that shape its queries (seconds)."""

    start: float
    end: float
    max_gap: float
    horizon: float  # how far after a boundary its next sample is looked for (~1.5 scrape intervals)
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
                required=True,
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
                required=True,
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


NAMESPACE_FIRST_CHARACTERS = "0123456789abcdefghijklmnopqrstuvwxyz"


def shard_meters(meter: Meter, shards: int) -> list[Meter]:
    """``meter`` split into ``shards`` meters over disjoint sets of namespaces (by first character).

    Namespace names start with a lowercase letter or a digit; the last shard also takes every
    other value (including none), so the shards together select exactly the meter's series.
    """
    if shards <= 1 or meter.template is not None:
        return [meter]
    chars = NAMESPACE_FIRST_CHARACTERS
    size = -(-len(chars) // shards)
    groups = [chars[i : i + size] for i in range(0, len(chars), size)]
    out = []
    for i, group in enumerate(groups):
        pattern = f"[{group}].*"
        if i == len(groups) - 1:
            pattern += f"|[^{chars}].*|"
        matcher = f'{meter.namespace_label}=~"{pattern}"'
        selector = with_matchers(meter.selector, matcher)
        out.append(replace(meter, selector=selector, shard=f"s{i}"))
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
        required=m.selector is not None,  # a template is the operator's own PromQL: no series to check
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
# Primitives. Only instant selectors and short range functions pinned with @: they cost one pass
# over the series' samples. (timestamp() of a selector inside a subquery costs ~100x more on
# Prometheus 2.42, so no subquery is used at all.)


def _prims(sel: str, w: Window) -> dict[str, str]:
    """Per-series building blocks at the window's boundaries, as PromQL expressions.

    Around each boundary T: the last sample at or before T (value vb within max_gap, vl within
    the lookback; time tb), and the K samples in (T, T + horizon] (their last time tk, last value
    vk, sum sa, min ma). With even spacing the first sample after T is at ta = tb + (tk - tb) / K;
    its value is ma for a counter without reset, and sa - vk * (K - 1) for any series when K <= 2.
    """
    t0, t1, g, h = w.start, w.end, w.max_gap, w.horizon
    p: dict[str, str] = {}
    for side, at in (("0", t0), ("1", t1)):
        ahead = f"{sel}[{_d(h - 0.001)}] @ {_t(at + h)}"  # (T, T + horizon]
        # at T1 the lookback also spans the window: every series seen by B(T0) is seen by B(T1)
        lookback = w.lookback + (w.length if side == "1" else 0.0)
        p[f"vl{side}"] = f"last_over_time({sel}[{_d(lookback)}] @ {_t(at)})"
        p[f"vb{side}"] = f"last_over_time({sel}[{_d(g)}] @ {_t(at)})"
        p[f"tb{side}"] = f"timestamp({sel} @ {_t(at)})"
        p[f"tk{side}"] = f"timestamp({sel} @ {_t(at + h)})"
        p[f"vk{side}"] = f"last_over_time({ahead})"
        p[f"ka{side}"] = f"count_over_time({ahead})"
        p[f"sa{side}"] = f"sum_over_time({ahead})"
        p[f"ma{side}"] = f"min_over_time({ahead})"
        p[f"ta{side}"] = f"(({p[f'tb{side}']}) + (({p[f'tk{side}']}) - ({p[f'tb{side}']})) / ({p[f'ka{side}']}))"
        p[f"va{side}"] = f"(({p[f'sa{side}']}) - ({p[f'vk{side}']}) * (({p[f'ka{side}']}) - 1))"
    inner = _d(w.length - 0.001)  # (T0, T1]
    p["n"] = f"count_over_time({sel}[{inner}] @ {_t(t1)})"
    p["s"] = f"sum_over_time({sel}[{inner}] @ {_t(t1)})"
    return p


# ---------------------------------------------------------------------------------------------
# Counters


def counter_boundary(sel: str, at: float, w: Window) -> str:
    """B(at) per series: the counter's value at ``at``.

    Interpolated between the last sample at or before ``at`` and the first one after it when a
    sample follows within the horizon and the two are at most max_gap apart; otherwise the last
    value seen within the lookback (absent, i.e. 0, when the series had not started).
    """
    p = _prims(sel, w)
    side = "0" if at == w.start else "1"
    vb, tb, tk, ma, ka, vl = (p[f"{k}{side}"] for k in ("vb", "tb", "tk", "ma", "ka", "vl"))
    # (tk - tb) / K is the spacing; 0/0 (no sample ahead) is NaN and fails the comparison
    spacing = f"(((({tk}) - ({tb})) / ({ka})) <= {w.max_gap})"
    step = f"(({ma}) - ({vb})) * ({_t(at)} - ({tb})) / {spacing}"
    return f"((({vb}) + {step}) or ({vl}))"


def counter_resets(sel: str, w: Window) -> str:
    """Series with a counter reset anywhere that B(T0), B(T1) or the window looks at."""
    span = w.lookback + w.length + w.horizon
    return f"(resets({sel}[{_d(span)}] @ {_t(w.end + w.horizon)}) > 0)"


# ---------------------------------------------------------------------------------------------
# Gauges


def _gauge_regular(p: dict[str, str], w: Window) -> str:
    """The series whose integral Prometheus computes in closed form: alive across both boundaries
    (one or two samples just after each, at most max_gap from the one before) and no sample
    missing in between (the count matches the span divided by the spacing at T0)."""
    g = w.max_gap
    spacing = f"(({p['ta0']}) - ({p['tb0']}))"
    span = f"(({p['tb1']}) - ({p['ta0']}))"
    return (
        f"((({p['ka0']}) <= 2) and (({p['ka1']}) <= 2) and ({spacing} <= {g})"
        f" and ((({p['ta1']}) - ({p['tb1']})) <= {g})"
        f" and (abs({span} / {spacing} - (({p['n']}) - 1)) < 0.5))"
    )


def gauge_usage(sel: str, w: Window) -> str:
    """Integral per regular series (value-seconds) over the window.

    With a, va the first sample in the window, b, vb the last, N samples summing to S at even
    spacing, the trapezoids between them are (b - a) / (N - 1) * (S - (va + vb) / 2); the two edge
    pieces interpolate to T0 from the sample before it and to T1 towards the sample after it.
    """
    p = _prims(sel, w)
    t0, t1 = _t(w.start), _t(w.end)
    a, va, pb, vp = p["ta0"], p["va0"], p["tb0"], p["vb0"]
    b, vb, nx, vn = p["tb1"], p["vb1"], p["ta1"], p["va1"]
    interior = f"((({b}) - ({a})) / clamp_min(({p['n']}) - 1, 1) * (({p['s']}) - (({va}) + ({vb})) / 2))"
    at_t0 = f"(({vp}) + (({va}) - ({vp})) * ({t0} - ({pb})) / (({a}) - ({pb})))"
    left = f"((({a}) - {t0}) * ({at_t0} + ({va})) / 2)"
    at_t1 = f"(({vb}) + (({vn}) - ({vb})) * ({t1} - ({b})) / (({nx}) - ({b})))"
    right = f"(({t1} - ({b})) * (({vb}) + {at_t1}) / 2)"
    return f"(({interior} + {left} + {right}) and {_gauge_regular(p, w)})"


def gauge_irregular(sel: str, w: Window) -> str:
    """Series with samples in the window that gauge_usage cannot meter (new, ended, gaps, spacing)."""
    p = _prims(sel, w)
    return f"(({p['n']}) unless {_gauge_regular(p, w)})"


# ---------------------------------------------------------------------------------------------
# Per-meter queries


def _merge_copies(expr: str, meter: Meter) -> str:
    return f"max without({_without(meter.dedup)}) ({expr})" if meter.dedup else expr


def _prefer_views(per_series: str, meter: Meter) -> str:
    """One view per unit: the first value of meter.prefer's label that a unit has."""
    assert meter.prefer and meter.unit
    label, values = meter.prefer
    views = [f"{_merge_copies(per_series.replace('__VIEW__', f'{label}={_quote(v)}'), meter)}" for v in values]
    return f" or on({_without(meter.unit)}) ".join(f"({v})" for v in views)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def with_matchers(selector: str, matchers: str) -> str:
    """``selector`` with ``matchers`` (e.g. ``a="b",c=~"d"``) added inside its braces."""
    if selector.endswith("{}"):
        return selector[:-1] + matchers + "}"
    if selector.endswith("}"):
        return selector[:-1] + "," + matchers + "}"
    return f"{selector}{{{matchers}}}"


def _with_view_slot(selector: str) -> str:
    """Add a placeholder for a view matcher inside the selector's braces."""
    return with_matchers(selector, "__VIEW__")


@dataclass(frozen=True)
class Query:
    """A named PromQL expression and what its answer means."""

    name: str
    expr: str
    meter: str
    role: Literal["amount", "irregular", "raw", "custom", "check", "namespaces"]
    by: tuple[str, ...] = field(default=())
    sign: int = 1  # amounts: added (+1) or subtracted (-1) per namespace


def meter_queries(meter: Meter, w: Window) -> list[Query]:
    """The aggregate queries of one meter: its amounts per namespace, and its irregular series.

    A counter is answered by two queries, B(T1) summed with sign +1 and B(T0) with sign -1 (each
    boundary's building blocks evaluated once); a gauge by one. Irregular series (counter resets,
    gauges Prometheus cannot integrate in closed form) are left out of the amounts and listed by
    the ``*_irregular`` query, to be metered from raw samples.
    """
    if meter.template is not None:
        expr = meter.template.format(
            window=_d(w.length), window_start=_t(w.start), window_end=_t(w.end), namespace_label=meter.namespace_label
        )
        return [Query(f"{meter.name}", expr, meter.name, "custom", (meter.namespace_label,))]
    ns = meter.namespace_label
    irregular_fn = counter_resets if meter.kind == "counter" else gauge_irregular
    if meter.prefer:
        assert meter.unit
        irregular = f"max by ({_without(meter.unit)}) ({irregular_fn(meter.selector, w)})"
        exclude = f"unless on({_without(meter.unit)}) {irregular}"
    else:
        irregular = _merge_copies(irregular_fn(meter.selector, w), meter)
        exclude = f"unless {irregular}"

    def amount(per_series: Callable[[str, Window], str]) -> str:
        if meter.prefer:
            usage = _prefer_views(per_series(_with_view_slot(meter.selector), w), meter)
        else:
            usage = _merge_copies(per_series(meter.selector, w), meter)
        return f"sum by ({ns}) (({usage}) {exclude})"

    suffix = f"_{meter.shard}" if meter.shard else ""
    queries = [Query(f"{meter.name}_irregular{suffix}", irregular, meter.name, "irregular")]
    if meter.kind == "counter":
        queries.insert(
            0,
            Query(
                f"{meter.name}_start{suffix}",
                amount(lambda sel, win: counter_boundary(sel, win.start, win)),
                meter.name,
                "amount",
                (ns,),
                sign=-1,
            ),
        )
        queries.insert(
            0,
            Query(
                f"{meter.name}_end{suffix}",
                amount(lambda sel, win: counter_boundary(sel, win.end, win)),
                meter.name,
                "amount",
                (ns,),
            ),
        )
    else:
        queries.insert(0, Query(f"{meter.name}{suffix}", amount(gauge_usage), meter.name, "amount", (ns,)))
    return queries


def raw_samples_query(meter: Meter, w: Window, matchers: dict[str, list[str]]) -> Query:
    """Raw samples of the series behind some irregular units, over everything the window reads."""
    extra = ",".join(f'{label}=~"{_regex_union(values)}"' for label, values in sorted(matchers.items()))
    sel = with_matchers(meter.selector, extra)
    # a counter's B(T0) may read back as far as the lookback; a gauge only its window and edges
    span = (w.lookback if meter.kind == "counter" else w.max_gap) + w.length + w.horizon
    # No @ here: VictoriaMetrics ignores @ on a bare range selector. Evaluate at raw_samples_time(w).
    return Query(f"{meter.name}_raw", f"{sel}[{_d(span)}]", meter.name, "raw")


def raw_samples_time(w: Window) -> float:
    """The evaluation time of raw_samples_query: the end of everything the window reads."""
    return w.end + w.horizon


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


def source_check(meter: Meter, w: Window) -> Query:
    """How many series a configured source has over the window and the lookback before it.

    For sources that a cluster either exports or does not (the ingress controller or mesh behind
    http_requests, an operator's custom meter): none at all means the source is missing or not
    scraped, which must fail the window rather than bill every customer zero. Real containers
    and volumes need no such check (no PVC at all is a legitimate cluster).
    """
    span = w.lookback + w.length + w.horizon
    return Query(
        f"{meter.name}_source",
        f"count(count_over_time({meter.selector}[{_d(span)}] @ {_t(w.end + w.horizon)}))",
        meter.name,
        "check",
    )


def freshness_check(w: Window) -> Query:
    """How many container series have a sample after the window end (0: data is not in yet)."""
    sel = 'container_cpu_usage_seconds_total{container!="",container!="POD"}'
    return Query(
        "samples_after_window",
        f"count(count_over_time({sel}[{_d(w.horizon)}] @ {_t(w.end + w.horizon)}))",
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
