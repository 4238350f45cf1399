"""The diagnosis as JSON (docs/doctor.md) and as a table for people."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..report import format_time
from .advice import ownership, recommendations, warnings
from .findings import (
    SCHEMA_VERSION,
    SHOWN,
    Diagnosis,
    MeterFinding,
)


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
