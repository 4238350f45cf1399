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

from .advice import ownership, recommendations, warnings
from .findings import (
    CandidateLabel,
    Diagnosis,
    KsmFinding,
    MeterFinding,
    Recommendation,
    diagnose,
    run_doctor,
)
from .output import render_table, to_json

__all__ = [
    "CandidateLabel",
    "Diagnosis",
    "KsmFinding",
    "MeterFinding",
    "Recommendation",
    "diagnose",
    "ownership",
    "recommendations",
    "render_table",
    "run_doctor",
    "to_json",
    "warnings",
]
