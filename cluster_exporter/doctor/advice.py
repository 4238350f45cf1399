"""What the doctor makes of its findings: the settings to change, the warnings, where owners come from."""

from __future__ import annotations

import math

from ..metering import plan as q
from .findings import (
    LOOKBACK,
    SETTLE_ROOM,
    SHOWN,
    Diagnosis,
    MeterFinding,
    Recommendation,
)


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
