"""Measure one window: discovery and PromQL together, then pure accounting, then the report.

Whole window or nothing: every query of the window starts at once, all are awaited, and any
failure fails the window (no partial report, no zero standing in for a failed source).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from ..errors import ExporterError, NoDataError, PrometheusError, UsageError, WindowNotReadyError
from ..report import UsageReport, build_report, format_time, window_label
from ..settings import KubernetesSettings, Settings
from ..sources.kube.discovery import discover_customers
from ..sources.prometheus import PrometheusClient
from ..times import BadTime, parse_rfc3339
from . import plan as q
from .checks import MeterCheck, check_attribution, check_pipelines
from .fold import MeterResult, Pieces, meter_amounts
from .ownership import Field, Piece, WindowOwners, customer_usage, owner_pieces
from .rules import Samples, namespace_of
from .tables import AmountTable, Names

log = logging.getLogger(__name__)

CPU = "cpu_hours"
# prometheus.meters_at_once = "auto": one meter at a time until discovery has counted the labeled
# namespaces, then this many unless there are more than LARGE_CLUSTER. bench/exporter_side_scale.py
# (two series per namespace): 103 to 108 MiB at 50,000 namespaces with 3 meters at once; at 100,000,
# 142 to 144 MiB with 3 and 117 to 121 MiB with 1.
AUTO_METERS_AT_ONCE = 3
LARGE_CLUSTER = 50_000

Discover = Callable[[KubernetesSettings], Coroutine[Any, Any, dict[str, str]]]
OnChecks = Callable[[Sequence[MeterCheck]], None]
# (window start, window end, owners discovered now) -> the owners to bill the window with
OwnersAt = Callable[[datetime, datetime, Mapping[str, str]], Mapping[str, str]]


def parse_time(text: str) -> datetime:
    """An RFC 3339 time (``2025-11-20T02:00:00Z``) in UTC, or a UsageError."""
    try:
        return parse_rfc3339(text)
    except BadTime as exc:
        raise UsageError(str(exc)) from None


def window_bounds(window_end: datetime, length: timedelta) -> tuple[datetime, datetime]:
    """[start, end) of the window ending at ``window_end``, which must sit on a whole hour."""
    if window_end.minute or window_end.second or window_end.microsecond:
        raise UsageError(f"window end {window_end.isoformat()} is not on a whole hour")
    return window_end - length, window_end


def check_ready(window_end: datetime, now: datetime, settle: timedelta) -> None:
    """Refuse windows that have not ended, or ended too recently for their last scrapes."""
    if window_end > now:
        raise WindowNotReadyError(f"window ends at {format_time(window_end)}, in the future")
    if now < window_end + settle:
        raise WindowNotReadyError(
            f"window ended at {format_time(window_end)}; wait until "
            f"{format_time(window_end + settle)} (settle delay {settle}) for its last scrapes"
        )


def make_window(settings: Settings, start: datetime, end: datetime) -> q.Window:
    """The query parameters of one window, from the metering settings."""
    m = settings.metering
    return q.Window(
        start.timestamp(),
        end.timestamp(),
        m.max_gap.total_seconds(),
        m.boundary_search.total_seconds(),
        m.series_lookback.total_seconds(),
    )


def all_meters(settings: Settings) -> list[q.Meter]:
    """Built-in and custom meters, in report order."""
    return q.builtin_meters(settings.metering) + q.custom_meters(settings.metering)


async def measure_window(
    settings: Settings,
    window_end: datetime,
    now: datetime,
    prometheus: PrometheusClient,
    discover: Discover = discover_customers,
    on_checks: OnChecks | None = None,
    owners_at: OwnersAt | None = None,
) -> UsageReport:
    """The report for [window_end - window, window_end), or an ExporterError saying why not.

    ``on_checks`` receives what the answers said about the data (one MeterCheck per meter) once
    every answer is in, before any check of the data can fail the window. ``owners_at`` gives
    the owners to bill the window with, from those discovered now (default: those); where
    kube-state-metrics records the customer label, its record of the window wins, cut at every
    change inside it (metering/ownership.py).
    """
    m = settings.metering
    start, end = window_bounds(window_end, m.window)
    check_ready(end, now, m.effective_settle_delay)
    w = make_window(settings, start, end)
    meters = all_meters(settings)
    # Each answer is folded into these while it is parsed: a window holds one row of amounts per
    # namespace, and per-series numbers only for the meters being measured at the moment.
    names = Names()
    table = AmountTable([field for meter in meters for field in meter.fields], names)
    checks = {meter.name: MeterCheck(meter.name, meter.namespace_labels) for meter in meters}  # all shards
    after_end: dict[str, int] = {meter.name: 0 for meter in meters}  # series with a sample after the end
    gate_rows: dict[str, int] = {meter.name: 0 for meter in meters}
    gate = _MeterGate(settings.prometheus.meters_at_once)
    max_query_length = settings.prometheus.max_query_length
    ownership = _Ownership(q.ksm_label_name(settings.kubernetes.customer_label))

    async def measure(meter: q.Meter) -> None:
        async with gate:
            result: MeterResult = await meter_amounts(
                prometheus, meter, w, table, names, max_query_length, ownership.pieces_ready
            )
        checks[meter.name].merge(result.check)
        after_end[meter.name] += result.after_end
        gate_rows[meter.name] += result.gate_rows

    async def discover_live() -> dict[str, str]:
        live = await discover(settings.kubernetes)
        gate.size_for(len(live))
        return {names.get(namespace): customer for namespace, customer in live.items()}

    listed: dict[str, str] | None = None
    if settings.prometheus.query_split > 1:  # shards are cut along the namespace names in use
        listed = await discover_live()
    patterns = q.namespace_shards(list(listed or ()), settings.prometheus.query_split)
    shards = [shard for meter in meters for shard in q.shard_meters(meter, patterns)]
    try:
        with prometheus.window_budget():  # every answer of the window counts against one budget
            async with asyncio.TaskGroup() as group:  # one failure cancels the rest of the window
                live_task = group.create_task(discover_live()) if listed is None else None
                if m.namespace_labels_metric:
                    label_key = settings.kubernetes.customer_label
                    group.create_task(ownership.read(prometheus, label_key, w, max_query_length))
                else:
                    ownership.pieces_ready.set_result({})
                for shard in shards:
                    plan = q.meter_plan(shard, w)
                    if isinstance(plan, q.TemplatePlan):
                        answer = _TemplateAnswer(shard, table, checks[shard.name])
                        group.create_task(prometheus.stream_vector(plan.query, answer))
                    else:
                        group.create_task(measure(shard))
    except BaseExceptionGroup as failures:
        raise _first_exporter_error(failures) from None
    live = live_task.result() if live_task is not None else listed
    assert live is not None

    columns = table.columns()
    for meter in meters:
        check = checks[meter.name]
        unattributed = sum(columns[field].get("", 0.0) for field in meter.fields)
        attributed = sum(abs(v) for field in meter.fields for namespace, v in columns[field].items() if namespace)
        check.unattributed_amount = max(unattributed, 0.0) / meter.scale
        check.attributed_amount = attributed / meter.scale
    if on_checks is not None:
        on_checks(list(checks.values()))
    series = {name: check.series for name, check in checks.items()}

    # What the meters' own answers say about the data: CPU series are the pulse of a cluster.
    if not series[CPU]:
        raise NoDataError(
            f"Prometheus has no container samples in {window_label(start, end)}: "
            "scraping is broken or the data is not in yet; refusing to report idle customers"
        )
    if not after_end[CPU]:
        raise WindowNotReadyError(
            f"Prometheus has no container samples in the {m.boundary_search} after the window end yet; "
            "the window cannot be closed"
        )
    for meter in meters:
        if meter.required and meter.gate is not None and not gate_rows[meter.name]:
            raise NoDataError(
                f"meter {meter.name}: Prometheus has no {meter.gate} series around the window: kube-state-metrics "
                "is not scraped (or set metering.requests and metering.gpu to auto or off)"
            )
        if meter.required and not series[meter.name]:
            hint = (
                ' (set metering.http_source = "none" if this cluster has no ingress)'
                if meter.name == "http_requests"
                else ""
            )
            raise NoDataError(
                f"meter {meter.name}: Prometheus has no {meter.selector} series in or around the window: "
                f"its source is missing or not scraped{hint}"
            )
    check_attribution(
        [(checks[meter.name], meter.selector, meter.namespace_setting) for meter in meters],
        m.min_attributed_share,
    )
    # kube-state-metrics' record, where the cluster has it, says who owned what when; the owners
    # recorded at each cycle (owners_at) stand in for it only where it is missing
    recorded_by_ksm = bool(ownership.recorded)
    observed = owners_at(start, end, live) if owners_at is not None and not recorded_by_ksm else live
    check_pipelines(columns, observed)
    owners = WindowOwners(observed, ownership.recorded, ownership.pieces)
    fields = [
        field
        for meter in meters
        if not (meter.auto and not gate_rows[meter.name])  # measured only where the source is there
        for field in _fields(meter)
    ]
    return build_report(settings.cluster_id, start, end, customer_usage(fields, columns, table.pieces, owners))


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _fields(meter: q.Meter) -> list[Field]:
    """A meter's report fields (a routed meter's amounts are already in report units)."""
    if meter.routes:
        return [Field(name) for name in meter.fields]
    return [Field(meter.name, meter.scale, meter.integer)]


class _MeterGate:
    """How many meters are measured at once (prometheus.meters_at_once): a number, or "auto":
    one at a time until discovery has counted the labeled namespaces (``size_for``), then
    AUTO_METERS_AT_ONCE unless there are more than LARGE_CLUSTER."""

    def __init__(self, at_once: int | str) -> None:
        self._auto = at_once == "auto"
        self._semaphore = asyncio.Semaphore(1 if isinstance(at_once, str) else at_once)

    def size_for(self, namespaces: int) -> None:
        """Discovery's count is in: open up to AUTO_METERS_AT_ONCE meters if the cluster is small enough."""
        if self._auto and namespaces <= LARGE_CLUSTER:
            self._auto = False
            for _ in range(AUTO_METERS_AT_ONCE - 1):
                self._semaphore.release()

    async def __aenter__(self) -> None:
        await self._semaphore.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self._semaphore.release()


class _Ownership:
    """kube-state-metrics' record of each namespace's customer label around the window.

    ``read`` streams one row per namespace and value (``sample``, a VectorSink), then fetches the
    raw samples of the namespaces with two values and cuts the window at each change
    (``owner_pieces``). ``pieces_ready`` resolves with those pieces (the meters' scans wait for
    it: a cut namespace's series are all metered from raw samples). kube-state-metrics' own
    namespace label arrives as exported_namespace where its job does not honor labels. Nothing
    is recorded unless some namespace carries the customer label (else the label is not in
    kube-state-metrics' allowlist, and the record would say nobody owns anything).
    """

    def __init__(self, ksm_label: str) -> None:
        self.ksm_label = ksm_label
        self.recorded: dict[str, str] = {}
        self.pieces: dict[str, list[Piece]] = {}
        self.pieces_ready: asyncio.Future[Pieces] = asyncio.get_running_loop().create_future()
        self._changed: dict[str, str] = {}  # namespace -> the label carrying its name
        self._labeled = False

    def sample(self, labels: dict[str, str], value: float) -> None:
        label = "exported_namespace" if labels.get("exported_namespace") else "namespace"
        namespace = labels.get(label, "")
        if not namespace:
            return
        customer = labels.get(self.ksm_label, "")
        self._labeled = self._labeled or bool(customer)
        if self.recorded.setdefault(namespace, customer) != customer:
            self._changed[namespace] = label

    async def read(self, prometheus: PrometheusClient, label_key: str, w: q.Window, max_length: int) -> None:
        """Read the record and resolve ``pieces_ready``."""
        await prometheus.stream_vector(q.namespace_owners(label_key, w), self)
        if not self._labeled:
            self.recorded, self._changed = {}, {}
        series = _LabelSamples(self.ksm_label)
        for label in sorted(set(self._changed.values())):
            names = [namespace for namespace, carrier in self._changed.items() if carrier == label]
            for _, chunk in q.raw_chunks([((label, name),) for name in names], max_length, len(names)):
                series.label = label
                await prometheus.stream_matrix(q.namespace_label_samples(label, chunk[label], w), series)
        for namespace in self._changed:
            if namespace not in series.samples:
                raise PrometheusError(
                    f"kube_namespace_labels of namespace {namespace} did not come back; answers changed"
                )
            pieces = owner_pieces(series.samples[namespace], w)
            if len(pieces) > 1:
                self.pieces[namespace] = pieces
                changes = ", ".join(f"{p[2] or '(none)'} from {format_time(_utc(p[0]))}" for p in pieces[1:])
                log.info("namespace %s changed owner inside the window: %s; its usage is cut there", namespace, changes)
            self.recorded[namespace] = pieces[-1][2]
        self.pieces_ready.set_result(self.pieces)


class _LabelSamples:
    """Raw kube_namespace_labels samples per namespace and customer value (a MatrixSink)."""

    def __init__(self, ksm_label: str) -> None:
        self.ksm_label, self.label = ksm_label, "namespace"
        self.samples: dict[str, list[tuple[str, Samples]]] = {}

    def series(self, labels: dict[str, str], samples: Samples) -> None:
        namespace = labels.get(self.label, "")
        self.samples.setdefault(namespace, []).append((labels.get(self.ksm_label, ""), samples))


class _TemplateAnswer:
    """A custom meter's own PromQL (a VectorSink): final amounts per namespace, "" when a row
    has none of the meter's namespace labels."""

    def __init__(self, meter: q.Meter, table: AmountTable, check: MeterCheck) -> None:
        self.meter, self.table, self.check = meter, table, check

    def sample(self, labels: dict[str, str], value: float) -> None:
        self.check.saw_series(labels)
        self.table.add(self.meter.name, namespace_of(self.meter, labels), value)


def _first_exporter_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first ExporterError in a task group's failures (else the group itself: a bug)."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            inner = _first_exporter_error(exc)
            if isinstance(inner, ExporterError):
                return inner
        elif isinstance(exc, ExporterError):
            return exc
    return group
