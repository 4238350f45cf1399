"""What the doctor finds in one window: metering's checks, and its own queries of the data."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from ..errors import ExporterError, KubernetesError, PrometheusError, WindowNotReadyError
from ..metering import plan as q
from ..metering.checks import MeterCheck
from ..metering.rules import first_set
from ..metering.window import all_meters, check_ready, make_window, measure_window, window_bounds
from ..settings import KubernetesSettings, Settings
from ..sources.kube.discovery import discover_customers
from ..sources.prometheus import PrometheusClient

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
