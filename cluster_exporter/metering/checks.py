"""What one window's answers said about the data itself, per meter: the per-window source checks.

Metering trusts no setting about the data's layout: while a meter's answers stream in, it counts
the series it saw, the ones it could not attribute to any namespace (no namespace label, or an
empty one) and their usage, the label names those carried instead, and the spacing of samples
(the scrape interval as the data shows it). ``check_attribution`` turns a meter whose series
mostly cannot be attributed into a one-line failure naming the setting to change; the counts are
also exposed as self-metrics (``cluster_exporter_metering_unattributed_*``) and printed by
``cluster-exporter doctor``.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..errors import LayoutError

# Labels that hold a tenant namespace in the layouts real installations store, most likely first
# (a label such as controller_namespace holds the exporter's own, never the tenant's).
LIKELY_NAMESPACE_LABELS = ("namespace", "exported_namespace", "destination_service_namespace")
SPACINGS_KEPT = 4096  # samples of spacing kept per meter for the median (bounded memory)


@dataclass
class MeterCheck:
    """One meter's answers in one window, as the data showed them."""

    meter: str
    namespace_labels: tuple[str, ...]  # the labels tried, in order, for a series' namespace
    series: int = 0  # series with samples in or around the window
    unattributed_series: int = 0  # ... with none of namespace_labels set (or all empty)
    unattributed_amount: float = 0.0  # their usage in the window, in report units
    attributed_amount: float = 0.0  # usage of the attributed series, in report units
    labels_found: Counter[str] = field(default_factory=Counter)  # label names on unattributed series
    label_used: Counter[str] = field(default_factory=Counter)  # which of namespace_labels attributed a series
    spacings: list[float] = field(default_factory=list)  # seconds between consecutive samples (bounded)
    longest_gap: float = 0.0  # the longest spacing between two samples of one series seen
    copies: int = 0  # series alive across the window that were copies of another (two jobs, HA replicas)

    def saw_series(self, labels: Mapping[str, str]) -> None:
        """Count one series (or one row of a template meter's answer): which namespace label
        attributed it, or, when none of them is set, the label names it carries instead."""
        self.series += 1
        used = next((name for name in self.namespace_labels if labels.get(name)), None)
        if used is not None:
            self.label_used[used] += 1
        else:
            self.unattributed_series += 1
            self.labels_found.update(name for name in labels if name != "__name__")

    def saw_spacing(self, seconds: float) -> None:
        """Record the distance between two consecutive samples of one series."""
        if len(self.spacings) < SPACINGS_KEPT:
            self.spacings.append(seconds)
        self.longest_gap = max(self.longest_gap, seconds)

    @property
    def scrape_interval(self) -> float | None:
        """The median spacing of the samples seen (seconds), or None without two samples."""
        return statistics.median(self.spacings) if self.spacings else None

    @property
    def attributed_share(self) -> float:
        """The share of this meter's usage attributed to a namespace (1.0 when it used nothing)."""
        total = self.attributed_amount + self.unattributed_amount
        return 1.0 if total <= 0 else self.attributed_amount / total

    def merge(self, other: MeterCheck) -> None:
        """Add the counts of another shard of the same meter."""
        self.series += other.series
        self.unattributed_series += other.unattributed_series
        self.unattributed_amount += other.unattributed_amount
        self.attributed_amount += other.attributed_amount
        self.labels_found.update(other.labels_found)
        self.label_used.update(other.label_used)
        for spacing in other.spacings:
            self.saw_spacing(spacing)
        self.longest_gap = max(self.longest_gap, other.longest_gap)
        self.copies += other.copies


def attribution_problem(check: MeterCheck, selector: str, min_share: float, setting: str | None) -> str | None:
    """One line saying why ``check``'s meter cannot be billed as configured, or None.

    A meter fails when it has series but attributes less than ``min_share`` of its usage (or of
    its series, when nothing was used) to a namespace: the namespace is in a label the meter does
    not read. ``setting`` names the setting that chooses the label, where there is one.
    """
    if not check.series or not check.unattributed_series:
        return None
    attributed_series = check.series - check.unattributed_series
    share = (
        check.attributed_share
        if check.attributed_amount + check.unattributed_amount > 0
        else (attributed_series / check.series)
    )
    if share >= min_share:
        return None
    expected = " or ".join(check.namespace_labels)
    found = ", ".join(name for name, _ in check.labels_found.most_common(8)) or "no labels"
    candidates = sorted(
        (name for name in check.labels_found if "namespace" in name and name not in check.namespace_labels),
        key=lambda name: (name not in LIKELY_NAMESPACE_LABELS, name),
    )
    fix = ""
    if setting and candidates:
        fix = f' (set {setting} = "{candidates[0]}")'
    elif setting:
        fix = f" (set {setting} to the label that holds the tenant namespace)"
    what = "none" if attributed_series == 0 else f"only {share:.1%} of the usage"
    carry = ", ".join(candidates) if candidates else found
    who = "they" if attributed_series == 0 else f"{check.unattributed_series} of them"
    return f"{check.meter}: {check.series} {selector} series, {what} with label {expected}; {who} carry {carry}{fix}"


def check_attribution(checks: list[tuple[MeterCheck, str, str | None]], min_share: float) -> None:
    """Raise LayoutError for the first meter ``attribution_problem`` finds fault with."""
    for check, selector, setting in checks:
        problem = attribution_problem(check, selector, min_share, setting)
        if problem is not None:
            raise LayoutError(problem)


def check_pipelines(amounts: Mapping[str, Mapping[str, float]], live: Mapping[str, str]) -> None:
    """Cross-check the meters: a labeled namespace whose containers used CPU in the window but
    show no memory is a broken pipeline (memory series dropped by a relabeling, a second
    Prometheus missing them), not an idle customer. Raises LayoutError naming the first such
    namespace and how many there are."""
    cpu, memory = amounts.get("cpu_hours"), amounts.get("memory_gb_hours")
    if cpu is None or memory is None:
        return
    broken = sorted(namespace for namespace in live if cpu.get(namespace, 0.0) > 0 and memory.get(namespace, 0.0) <= 0)
    if broken:
        raise LayoutError(
            f"memory_gb_hours: {len(broken)} labeled namespace(s) used CPU in the window but have no "
            f"container_memory_working_set_bytes series (e.g. {broken[0]}): the memory series are not "
            "scraped or are dropped by a relabeling; refusing to bill them no memory"
        )
