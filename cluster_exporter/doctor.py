"""``cluster-exporter doctor``: what one window's data holds, per meter, and the settings it needs.

It meters the window exactly as ``report`` does (``metering.measure_window``) and keeps what the
answers showed of the data (``checks.MeterCheck``: series, the label that carried each series'
namespace, sample spacing, unattributed usage and the labels it carried instead). Then it asks
Prometheus what metering itself never needs: which namespaces have data in any meter (one query
for all meters), what kube-state-metrics recorded of the customer label, and, for a meter with
unattributed series, which of their labels holds namespaces that have the customer label. From
all of it, it recommends settings.

It never stops at the first problem: everything found is printed, then the window's failure, so
the exit code is the one ``report`` would give (0 only when the window can be metered as
configured) and one run shows every fix needed.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from .errors import ExporterError, KubernetesError, PrometheusError, WindowNotReadyError
from .metering import plan as q
from .metering.checks import MeterCheck
from .metering.rules import first_set
from .metering.window import all_meters, check_ready, make_window, measure_window, window_bounds
from .report import format_time
from .settings import KubernetesSettings, Settings
from .sources.kube.discovery import discover_customers
from .sources.prometheus import PrometheusClient

SCHEMA_VERSION = 1  # of the JSON output; docs/doctor.md describes it
LOOKBACK = 300.0  # Prometheus' lookback delta, the longest max_gap (seconds)
SHOWN = 10  # namespaces named per line of the table (the JSON lists them all)
SETTLE_ROOM = 30.0  # seconds a window's last scrape is given to be scraped and stored, past when it is due

Discover = Callable[[KubernetesSettings], Coroutine[Any, Any, dict[str, str]]]


@dataclass(frozen=True)
class Recommendation:
    """One change to make: a cluster-exporter setting, a kube-state-metrics flag, or a scrape fix."""

    kind: Literal["setting", "kube-state-metrics", "scrape"]
    setting: str | None  # the setting or flag; None for a scrape fix
    value: str | None  # its value (plain, not TOML-quoted)
    reason: str


@dataclass(frozen=True)
class CandidateLabel:
    """A label on a meter's unattributed series that may hold the tenant namespace."""

    label: str
    values: int  # distinct values on those series
    labeled: int  # ... that are namespaces with the customer label (live, or in kube-state-metrics' record)


@dataclass
class MeterFinding:
    """What one meter's data showed: metering's checks and the doctor's own queries."""

    meter: q.Meter
    check: MeterCheck | None = None  # None: metering failed before every answer was in
    namespaces: dict[str, int] | None = None  # tenant namespace -> series with data ("" unattributed)
    candidates: list[CandidateLabel] = field(default_factory=list)  # best first

    @property
    def jitter(self) -> float | None:
        """How much later than the median spacing samples come (the 99th percentile spacing minus
        the median, lost scrapes left out): what boundary_search must cover beyond the interval."""
        if self.check is None or self.check.scrape_interval is None:
            return None
        median = self.check.scrape_interval
        regular = sorted(s for s in self.check.spacings if s <= 1.5 * median)
        return max(0.0, regular[int(0.99 * (len(regular) - 1))] - median)


@dataclass
class KsmFinding:
    """kube-state-metrics' kube_namespace_labels during the window."""

    label: str  # the customer label as kube-state-metrics names it
    namespaces: set[str] = field(default_factory=set)  # namespaces with a kube_namespace_labels series
    owners: dict[str, str] = field(default_factory=dict)  # namespace -> customer label value recorded
    renamed: int = 0  # rows whose namespace is in exported_namespace (scraped without honorLabels)


@dataclass
class Diagnosis:
    """Everything the doctor found about one window."""

    settings: Settings
    window_start: datetime
    window_end: datetime
    meters: list[MeterFinding]
    live: dict[str, str] | None = None  # namespace -> customer, from the Kubernetes API
    ksm: KsmFinding | None = None
    dcgm: dict[str, dict[str, int]] | None = None  # dcgm-exporter metric -> {"with_pod": n, "without_pod": n}
    error: ExporterError | None = None  # why the window cannot be metered as configured
    failed_queries: list[str] = field(default_factory=list)  # the doctor's own reads that failed, one line each

    def failure(self) -> ExporterError | None:
        """The metering error, else a doctor query's failure, else None (exit 0)."""
        if self.error is not None:
            return self.error
        if self.failed_queries:
            return PrometheusError(f"doctor: {self.failed_queries[0]}")
        return None

    @property
    def exit_code(self) -> int:
        """The command's exit code."""
        failure = self.failure()
        return 0 if failure is None else failure.exit_code

    @property
    def with_data(self) -> set[str] | None:
        """Namespaces with data in any meter in the window."""
        counted = [f.namespaces for f in self.meters if f.namespaces is not None]
        return {ns for found in counted for ns in found if ns} if counted else None

    @property
    def historical(self) -> dict[str, str]:
        """Namespaces kube-state-metrics recorded with the customer label that the API no longer labels."""
        owners = self.ksm.owners if self.ksm is not None else {}
        return {ns: c for ns, c in owners.items() if self.live is None or ns not in self.live}

    @property
    def labeled(self) -> set[str]:
        """Namespaces billed in this window: labeled now, or labeled in kube-state-metrics' record."""
        return set(self.live or ()) | set(self.historical)


async def diagnose(
    settings: Settings,
    window_end: datetime,
    now: datetime,
    prometheus: PrometheusClient,
    discover: Discover = discover_customers,
) -> Diagnosis:
    """Meter the window ending at ``window_end`` and find out what its data holds.

    Raises only UsageError (a window end not on a window boundary); every other failure is in
    the Diagnosis. A window not closed and settled by ``now`` is not read at all.
    """
    m = settings.metering
    start, end = window_bounds(window_end, m.window)
    d = Diagnosis(settings, start, end, [MeterFinding(meter) for meter in all_meters(settings)])
    try:
        check_ready(end, now, m.effective_settle_delay)
    except WindowNotReadyError as exc:
        d.error = exc
        return d
    w = make_window(settings, start, end)

    async def recording_discover(kubernetes: KubernetesSettings) -> dict[str, str]:
        d.live = await discover(kubernetes)
        return d.live

    def on_checks(checks: Sequence[MeterCheck]) -> None:
        by_name = {check.meter: check for check in checks}
        for finding in d.meters:
            finding.check = by_name.get(finding.meter.name)

    async def meter() -> None:
        try:
            await measure_window(settings, end, now, prometheus, discover=recording_discover, on_checks=on_checks)
        except ExporterError as exc:
            d.error = exc

    await asyncio.gather(
        meter(), _namespaces_with_data(d, prometheus, w), _namespace_labels(d, prometheus, w), _dcgm(d, prometheus, w)
    )
    if d.live is None and not isinstance(d.error, KubernetesError):
        try:  # metering failed before discovery finished
            d.live = await discover(settings.kubernetes)
        except KubernetesError as exc:
            d.failed_queries.append(f"listing namespaces: {exc}")
    for finding in d.meters:
        await _candidate_labels(d, finding, prometheus, w)
    return d


async def run_doctor(settings: Settings, window_end: datetime, now: datetime) -> Diagnosis:
    """The doctor command's body: diagnose one window through a Prometheus client of its own."""
    async with PrometheusClient(settings.prometheus) as prometheus:
        return await diagnose(settings, window_end, now, prometheus)


class _Each:
    """A VectorSink handing each element of a doctor query's answer to a function."""

    def __init__(self, sample: Callable[[dict[str, str], float], None]) -> None:
        self.sample = sample


async def _ask(
    d: Diagnosis, prometheus: PrometheusClient, query: q.Query, on_sample: Callable[[dict[str, str], float], None]
) -> bool:
    """Run one doctor query; a failure is recorded, not raised (the rest is still worth printing)."""
    try:
        await prometheus.stream_vector(query, _Each(on_sample))
    except ExporterError as exc:
        d.failed_queries.append(f"query {query.name} failed: {exc}")
        return False
    return True


async def _namespaces_with_data(d: Diagnosis, prometheus: PrometheusClient, w: q.Window) -> None:
    query = q.doctor_namespaces_with_data([f.meter for f in d.meters], w)
    if query is None:
        return
    found: dict[str, dict[str, int]] = {f.meter.name: {} for f in d.meters if f.meter.template is None}

    def on_sample(labels: dict[str, str], value: float) -> None:
        by_namespace = found.get(labels.get(q.DOCTOR_METER_LABEL, ""))
        if by_namespace is not None:
            namespace = labels.get(q.DOCTOR_NAMESPACE_LABEL, "")
            by_namespace[namespace] = by_namespace.get(namespace, 0) + int(value)

    if await _ask(d, prometheus, query, on_sample):
        for finding in d.meters:
            finding.namespaces = found.get(finding.meter.name)


async def _namespace_labels(d: Diagnosis, prometheus: PrometheusClient, w: q.Window) -> None:
    label_key = d.settings.kubernetes.customer_label
    ksm = KsmFinding(q.ksm_label_name(label_key))

    def on_sample(labels: dict[str, str], value: float) -> None:
        namespace = first_set(labels, q.NAMESPACE_LABELS)
        ksm.renamed += bool(labels.get("exported_namespace"))
        ksm.namespaces.add(namespace)
        if labels.get(ksm.label):
            ksm.owners[namespace] = labels[ksm.label]

    if await _ask(d, prometheus, q.doctor_namespace_labels(label_key, w), on_sample):
        d.ksm = ksm


async def _dcgm(d: Diagnosis, prometheus: PrometheusClient, w: q.Window) -> None:
    found: dict[str, dict[str, int]] = {}

    def on_sample(labels: dict[str, str], value: float) -> None:
        counts = found.setdefault(labels.get("__name__", ""), {"with_pod": 0, "without_pod": 0})
        counts["with_pod" if labels.get(q.DOCTOR_POD_LABEL) else "without_pod"] += int(value)

    if await _ask(d, prometheus, q.doctor_gpu_utilization(w), on_sample):
        d.dcgm = found


def ownership(d: Diagnosis) -> dict[str, str]:
    """Where this cluster's owners over time come from (metering/ownership.py), and why."""
    ksm, label = d.ksm, d.settings.kubernetes.customer_label
    if d.settings.metering.namespace_labels_metric and ksm is not None and ksm.owners:
        return {
            "source": "kube-state-metrics",
            "detail": f"kube_namespace_labels carries {label}: each namespace's usage is cut at every change of "
            "owner and each part billed to the owner of its time",
        }
    why = (
        "metering.namespace_labels_metric = false"
        if not d.settings.metering.namespace_labels_metric
        else f"kube_namespace_labels does not carry {label}"
    )
    return {
        "source": "observed",
        "detail": f"{why}: owners are those the exporter observes at each cycle (backlog windows: those recorded "
        "closest to them); a relabel inside a window goes wholly to the owner at measurement time",
    }


def _candidate_names(finding: MeterFinding) -> list[str]:
    """Labels on a meter's unattributed series whose name says they may hold a namespace."""
    if finding.check is None:
        return []
    return sorted(
        name
        for name in finding.check.labels_found
        if "namespace" in name and name not in finding.meter.namespace_labels
    )


async def _candidate_labels(d: Diagnosis, finding: MeterFinding, prometheus: PrometheusClient, w: q.Window) -> None:
    names = _candidate_names(finding)
    if not names or finding.meter.template is not None:  # (names: the check has unattributed series)
        return
    values: dict[str, set[str]] = {name: set() for name in names}

    def on_sample(labels: dict[str, str], value: float) -> None:
        for name in names:
            if labels.get(name):
                values[name].add(labels[name])

    if await _ask(d, prometheus, q.doctor_candidate_labels(finding.meter, w, names), on_sample):
        labeled = d.labeled
        found = [CandidateLabel(name, len(values[name]), len(values[name] & labeled)) for name in names]
        finding.candidates = sorted(found, key=lambda c: (-c.labeled, -c.values, c.label))


# ---------------------------------------------------------------------------------------------
# What to change


def _duration(seconds: float) -> str:
    """A duration as settings take it, rounded up to a whole 5 s (``75s``, ``2m``)."""
    whole = int(math.ceil(seconds / 5.0 - 1e-9) * 5)
    return f"{whole // 60}m" if whole % 60 == 0 else f"{whole}s"


def recommendations(d: Diagnosis) -> list[Recommendation]:
    """The changes the findings call for, layout first, then sources, then timing."""
    out: list[Recommendation] = []
    for finding in d.meters:
        out += _layout(finding)
    out += _sources(d)
    out += _timing(d)
    return out


def _layout(finding: MeterFinding) -> list[Recommendation]:
    check, meter = finding.check, finding.meter
    if check is None or not check.unattributed_series:
        return []
    expected = " or ".join(meter.namespace_labels)
    share = f"{check.unattributed_series} of {check.series} {meter.name} series have no {expected}"
    best = finding.candidates[0] if finding.candidates else None
    if best is not None and meter.namespace_setting is not None:
        held = (
            f"{best.labeled} of its {best.values} values are labeled namespaces"
            if best.labeled
            else f"none of its {best.values} values is a labeled namespace yet"
        )
        return [Recommendation("setting", meter.namespace_setting, best.label, f"{share}; {best.label}: {held}")]
    found = ", ".join(name for name, _ in check.labels_found.most_common(8)) or "no labels"
    if meter.namespace_setting is not None:
        reason = f"{share}; set it to the label that holds the tenant namespace (they carry {found})"
        return [Recommendation("setting", meter.namespace_setting, None, reason)]
    reason = (
        f"{share} (they carry {found}): a scrape job or relabeling drops or renames it; keep "
        f"{meter.namespace_label} on {meter.selector}"
    )
    return [Recommendation("scrape", None, None, reason)]


def _sources(d: Diagnosis) -> list[Recommendation]:
    out: list[Recommendation] = []
    s = d.settings
    # a required source without series, on a cluster whose other meters have data (else nothing is scraped)
    scraped = any(f.check is not None and f.check.series for f in d.meters if not f.meter.required)
    for finding in d.meters:
        if scraped and finding.check is not None and finding.meter.required and not finding.check.series:
            if finding.meter.name == "http_requests":
                reason = f"no {finding.meter.selector} series: set it if this cluster has no ingress"
                if s.metering.http_source == "nginx":
                    reason += ' (or "istio" if it meters requests with Istio)'
                out.append(Recommendation("setting", "metering.http_source", "none", reason))
            else:
                reason = f"{finding.meter.name}: no {finding.meter.selector} series; fix or remove the custom meter"
                out.append(Recommendation("scrape", None, None, reason))
    ksm, key = d.ksm, s.kubernetes.customer_label
    allowlist = Recommendation(
        "kube-state-metrics",
        "--metric-labels-allowlist",
        f"namespaces=[{key}]",
        "namespaces deleted or unlabeled during a window are billed from kube-state-metrics' record of the "
        f"label; kube_namespace_labels does not carry {key}"
        + ("" if s.metering.namespace_labels_metric else " (and set metering.namespace_labels_metric = true)"),
    )
    if ksm is not None and ksm.namespaces and not ksm.owners:
        out.append(allowlist)
    if d.dcgm and s.metering.gpu_utilization == "off":
        metric = min(d.dcgm)  # DCGM_FI_DEV_GPU_UTIL < DCGM_FI_PROF_GR_ENGINE_ACTIVE: the profiling one if both
        metric = "DCGM_FI_PROF_GR_ENGINE_ACTIVE" if "DCGM_FI_PROF_GR_ENGINE_ACTIVE" in d.dcgm else metric
        out.append(
            Recommendation(
                "setting", "metering.gpu_utilization", metric, "dcgm-exporter is scraped: meter gpu_utilized_hours"
            )
        )
    elif ksm is not None and not ksm.namespaces and s.metering.namespace_labels_metric and scraped:
        out.append(
            Recommendation(
                allowlist.kind,
                allowlist.setting,
                allowlist.value,
                "Prometheus has no kube_namespace_labels in the window: scrape kube-state-metrics with this flag "
                "(or set metering.namespace_labels_metric = false to bill live namespaces only)",
            )
        )
    return out


def _timing(d: Diagnosis) -> list[Recommendation]:
    m = d.settings.metering
    # (median spacing, jitter, longest gap) of each meter whose samples were seen
    seen = [
        (f.check.scrape_interval, f.jitter or 0.0, f.check.longest_gap)
        for f in d.meters
        if f.check is not None and f.check.scrape_interval is not None
    ]
    if not seen:
        return []
    out: list[Recommendation] = []
    interval = max(median for median, _, _ in seen)
    reach = min(max(median + jitter for median, jitter, _ in seen), LOOKBACK)  # what boundary_search must cover
    longest = max(gap for _, _, gap in seen)
    max_gap, search = m.max_gap.total_seconds(), m.boundary_search.total_seconds()
    # A window is read once the first sample after its end is in for every series alive across
    # it: at most max_gap after the end (a bridged gap), or one interval plus jitter; the rest of
    # the settle delay is room for the scrape and its ingestion.
    settle, needed = m.effective_settle_delay.total_seconds(), max(max_gap, reach) + SETTLE_ROOM
    if settle < needed:
        out.append(
            Recommendation(
                "setting",
                "metering.settle_delay",
                _duration(needed),
                f"windows are read {settle:g}s after their end, but the first sample after it can come "
                f"{max(max_gap, reach):g}s later (max_gap, or the interval plus jitter) and needs time to be "
                "scraped and stored",
            )
        )
    # max_gap: at least 1.5 scrape intervals and the boundary search (the settings' rules), and the
    # gaps seen, unless they are longer than Prometheus' lookback (a warning, not a setting)
    wanted = max(1.5 * interval, reach, longest if longest <= LOOKBACK else 0.0)
    if wanted > max_gap:
        why = [f"samples are {interval:g}s apart, up to {reach:g}s with jitter"]
        if max_gap < longest <= LOOKBACK:
            why.append(
                f"gaps of {longest:g}s between two samples of one series end a life of the series and nothing "
                "is counted across them (if they are scrape gaps, not containers that stopped and came back)"
            )
        out.append(Recommendation("setting", "metering.max_gap", _duration(min(wanted, LOOKBACK)), "; ".join(why)))
    if reach > search:
        out.append(
            Recommendation(
                "setting",
                "metering.boundary_search",
                _duration(reach),
                f"samples come up to {reach:g}s apart (median interval plus jitter), more than the boundary "
                f"search of {search:g}s: series without a sample that close to a boundary are fetched raw",
            )
        )
    return out


def warnings(d: Diagnosis) -> list[str]:
    """Findings that change no exit code but deserve a look."""
    out = list(d.failed_queries)
    labeled = d.labeled
    billed = {f.meter.name for f in d.meters if f.namespaces and any(ns in labeled for ns in f.namespaces if ns)}
    for f in d.meters:
        if f.namespaces and billed and f.meter.name not in billed and any(f.namespaces):
            where = ", ".join(sorted(ns for ns in f.namespaces if ns)[:SHOWN])
            out.append(
                f"{f.meter.name}: its series are in no namespace with the customer label (only in {where}): "
                "is the tenant namespace in another label?"
            )
    longest = max((f.check.longest_gap for f in d.meters if f.check is not None), default=0.0)
    if longest > LOOKBACK:
        out.append(
            f"a gap of {longest:g}s between two samples of one series: longer than 5m, Prometheus' lookback; "
            "such series are metered as two lives (check the scraping if it was not a stop)"
        )
    for metric, counts in sorted((d.dcgm or {}).items()):
        if counts["without_pod"] and not counts["with_pod"]:
            out.append(
                f"{metric} has no pod label: enable dcgm-exporter's Kubernetes pod mapping "
                "(DCGM_EXPORTER_KUBERNETES=true, the pod-resources socket mounted) or its usage is attributed to nobody"
            )
    requests = next((f for f in d.meters if f.meter.gate is not None), None)
    if requests is not None and requests.check is not None and not requests.check.series and d.ksm and d.ksm.namespaces:
        out.append(
            f"kube-state-metrics is scraped but has no {q.REQUESTS} series: {', '.join(requests.meter.fields)} "
            "are not reported (kube-state-metrics --resources must include pods)"
        )
    if d.ksm is not None and d.live is not None and d.ksm.owners:
        missing = sorted(ns for ns in d.live if ns not in d.ksm.owners)
        if missing:
            out.append(
                f"{len(missing)} labeled namespace(s) without the customer label in kube_namespace_labels "
                f"(e.g. {missing[0]}): if deleted, they would not be billed for that window"
            )
    return out


# ---------------------------------------------------------------------------------------------
# Output


def to_json(d: Diagnosis) -> dict[str, Any]:
    """The diagnosis in the documented JSON schema (docs/doctor.md)."""
    m, failure = d.settings.metering, d.failure()
    with_data, labeled = d.with_data, d.labeled
    live = d.live
    return {
        "schema_version": SCHEMA_VERSION,
        "window_start": format_time(d.window_start),
        "window_end": format_time(d.window_end),
        "ok": failure is None,
        "exit_code": d.exit_code,
        "error": None if failure is None else str(failure),
        "configured": {
            "scrape_interval_s": m.scrape_interval.total_seconds(),
            "max_gap_s": m.max_gap.total_seconds(),
            "boundary_search_s": m.boundary_search.total_seconds(),
            "min_attributed_share": m.min_attributed_share,
            "http_source": m.http_source,
            "customer_label": d.settings.kubernetes.customer_label,
        },
        "meters": [_meter_json(f, labeled, m.max_gap.total_seconds()) for f in d.meters],
        "ownership": ownership(d),
        "dcgm_exporter": d.dcgm,
        "namespaces": {
            "labeled": None if live is None else len(live),
            "customers": None if live is None else len(set(live.values())),
            "with_data": None if with_data is None else len(with_data),
            "labeled_without_data": None if live is None or with_data is None else sorted(set(live) - with_data),
            "unlabeled_with_data": None if with_data is None or live is None else sorted(with_data - labeled),
            "billed_from_history": None if with_data is None else sorted(with_data & set(d.historical)),
        },
        "kube_state_metrics": None
        if d.ksm is None
        else {
            "label": d.ksm.label,
            "used_by_metering": m.namespace_labels_metric,
            "namespaces": len(d.ksm.namespaces),
            "with_customer_label": len(d.ksm.owners),
            "labeled_without_customer_label": None if live is None else sorted(set(live) - set(d.ksm.owners)),
            "namespace_in_exported_namespace": d.ksm.renamed > 0,
        },
        "recommendations": [
            {"kind": r.kind, "setting": r.setting, "value": r.value, "reason": r.reason} for r in recommendations(d)
        ],
        "warnings": warnings(d),
    }


def _meter_json(f: MeterFinding, labeled: set[str], max_gap: float) -> dict[str, Any]:
    c = f.check
    spacing = None if c is None else c.scrape_interval
    return {
        "name": f.meter.name,
        "selector": f.meter.selector or None,
        "namespace_labels": list(f.meter.namespace_labels),
        "measured": c is not None,
        "series": None if c is None else c.series,
        "unattributed_series": None if c is None else c.unattributed_series,
        "copies": None if c is None else c.copies,
        "label_used": None if c is None else dict(c.label_used.most_common()),
        "labels_found": None if c is None else dict(c.labels_found.most_common()),
        "attributed_amount": None if c is None else c.attributed_amount,
        "unattributed_amount": None if c is None else c.unattributed_amount,
        "attributed_share": None if c is None else c.attributed_share,
        "scrape_interval_s": spacing,
        "jitter_s": f.jitter,
        "longest_gap_s": None if c is None or spacing is None else c.longest_gap,
        "within_max_gap": None if c is None or spacing is None else c.longest_gap <= max_gap,
        "namespaces_with_data": None if f.namespaces is None else sum(1 for ns in f.namespaces if ns),
        "labeled_namespaces_with_data": None if f.namespaces is None else len(set(f.namespaces) & labeled),
        "candidate_labels": [
            {"label": x.label, "values": x.values, "labeled_namespaces": x.labeled} for x in f.candidates
        ],
    }


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(names[:SHOWN])
    return shown + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "") if names else "none"


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 60:g}m" if value >= 120 and value % 60 == 0 else f"{value:g}s"


HEADER = (
    "meter",
    "series",
    "copies",
    "unattributed",
    "namespace from",
    "interval",
    "longest gap",
    "unattributed usage",
)


def _meter_row(meter: dict[str, Any]) -> list[str]:
    if not meter["measured"]:
        return [meter["name"], "-", "-", "-", "not measured", "-", "-", "-"]
    gap = _seconds(meter["longest_gap_s"]) + (" > max_gap" if meter["within_max_gap"] is False else "")
    share = 1.0 - meter["attributed_share"]
    return [
        meter["name"],
        str(meter["series"]),
        str(meter["copies"]),
        str(meter["unattributed_series"]),
        ", ".join(f"{label} {n}" for label, n in meter["label_used"].items()) or "-",
        _seconds(meter["scrape_interval_s"]),
        gap,
        f"{meter['unattributed_amount']:.6g}" + (f" ({share:.1%})" if share > 0 else ""),
    ]


def render_table(d: Diagnosis) -> str:
    """The diagnosis for people: a line per meter, then namespaces, kube-state-metrics, what to set."""
    j = to_json(d)
    cfg = j["configured"]
    lines = [f"window {j['window_start']} .. {j['window_end']}  (customer label {cfg['customer_label']})", ""]
    rows = [list(HEADER), *(_meter_row(meter) for meter in j["meters"])]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    for row in rows:
        lines.append("  ".join(c.rjust(widths[i]) if i in (1, 2, 3) else c.ljust(widths[i]) for i, c in enumerate(row)))
        lines[-1] = lines[-1].rstrip()
    lines.append(
        f"configured: scrape_interval {_seconds(cfg['scrape_interval_s'])}, max_gap {_seconds(cfg['max_gap_s'])}, "
        f"boundary_search {_seconds(cfg['boundary_search_s'])}"
    )
    for meter in j["meters"]:
        if meter["unattributed_series"]:
            found = ", ".join(f"{label} {n}" for label, n in list(meter["labels_found"].items())[:12])
            lines.append(f"{meter['name']}: series without {' or '.join(meter['namespace_labels'])} carry {found}")
            for c in meter["candidate_labels"]:
                values = _count(c["values"], "value")
                lines.append(f"  {c['label']}: {values}, {c['labeled_namespaces']} of them labeled namespaces")
    lines += ["", *_namespace_lines(j), "", "recommended:" if j["recommendations"] else "recommended: nothing"]
    for r in j["recommendations"]:
        if r["kind"] == "kube-state-metrics":
            lines.append(f"  kube-state-metrics {r['setting']}={r['value']}")
        elif r["setting"] is not None:
            lines.append(f"  {r['setting']} = " + (f'"{r["value"]}"' if r["value"] is not None else "?"))
        lines.append(f"    {r['reason']}" if r["setting"] is not None else f"  {r['reason']}")
    lines += [f"warning: {warning}" for warning in j["warnings"]]
    ok = "ok: the window can be metered as configured"
    return "\n".join([*lines, "", ok if j["ok"] else f"FAILED (exit {j['exit_code']}): {j['error']}"])


def _namespace_lines(j: dict[str, Any]) -> list[str]:
    ns, ksm = j["namespaces"], j["kube_state_metrics"]
    lines = []
    if ns["labeled"] is None:
        lines.append("namespaces: the Kubernetes API was not read")
    else:
        lines.append(f"namespaces: {ns['labeled']} labeled ({ns['customers']} customers) in the Kubernetes API")
    if ns["with_data"] is not None:
        lines.append(f"  with data in the window: {ns['with_data']}")
    if ns["labeled_without_data"] is not None:
        lines.append(f"  labeled, no data in any meter: {_names(ns['labeled_without_data'])}")
    if ns["unlabeled_with_data"] is not None:
        lines.append(f"  data but no customer label (not billed): {_names(ns['unlabeled_with_data'])}")
    if ns["billed_from_history"]:
        lines.append(
            f"  billed from kube-state-metrics' record (deleted or unlabeled): {_names(ns['billed_from_history'])}"
        )
    owners = j["ownership"]
    lines.append(f"owners over time: {owners['source']} ({owners['detail']})")
    if ksm is None:
        lines.append("kube-state-metrics: not read")
    else:
        missing = ksm["labeled_without_customer_label"]
        tail = f"; missing for {_names(missing)}" if missing else "; every labeled namespace has it"
        tail = "" if missing is None else tail
        lines.append(
            f"kube-state-metrics: kube_namespace_labels has {ksm['label']} for {ksm['with_customer_label']} of "
            f"{ksm['namespaces']} namespaces{tail}"
            + ("" if ksm["used_by_metering"] else " (not used: metering.namespace_labels_metric = false)")
        )
    return lines
