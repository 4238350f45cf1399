"""``cluster-exporter run``: wire settings to the state store, the Lease, the deliverer and the runner.

Modes:
* the loop (a Deployment): cycles forever; after a clean cycle it sleeps until the next window is
  due, after a failed one ``poll_interval``; serves /metrics, /healthz and /readyz.
* ``--once`` (a CronJob): one cycle; exit 0 when everything due was delivered, else non-zero.
* ``--dry-run``: measure and print the due windows; no state, no Lease, nothing sent.

``--as-of`` replaces the clock: the run behaves as if started at that time (the clock then moves
on at the real pace), for replaying history and for tests. SIGTERM and SIGINT set a stop flag:
the request in flight finishes and is recorded, the Lease is released, and the exit code is 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector

from ..errors import DeliveryError, ExporterError, KubernetesError, UsageError, clip
from ..metering.window import Discover, OwnersAt, measure_window
from ..observability.health import Health, MetricsServer
from ..observability.metrics import ExporterMetrics
from ..progress import Progress
from ..report import UsageReport, format_time, window_label
from ..settings import KubernetesSettings, Settings
from ..sources.kube.discovery import discover_customers, make_api_client
from ..sources.prometheus import PrometheusClient
from .leader import AlwaysLeader, Leadership, LeaseElector
from .owner_history import OwnerHistory
from .runner import CycleResult, Runner, ceil_to, due_window_ends, initial_watermark, newest_due_end
from .sender import Deliverer
from .state import DirectoryStore, StateStore
from .state_configmap import ConfigMapStore

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class NotLeaderError(ExporterError):
    """--once could not get the Lease: another replica is reporting."""


@dataclass(frozen=True)
class RunOptions:
    """The run command's flags that are not settings."""

    once: bool = False
    as_of: datetime | None = None
    dry_run: bool = False


def configure_logging(stream: TextIO | None = None) -> None:
    """One line per event on stderr, UTC timestamps."""
    handler = logging.StreamHandler(stream or sys.stderr)
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%SZ")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for noisy in ("aiohttp.access", "kubernetes", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def make_clock(
    as_of: datetime | None, monotonic: Callable[[], float] = time.monotonic, wall: Callable[[], datetime] | None = None
) -> Callable[[], datetime]:
    """The run's clock: the wall clock, or ``as_of`` moving on at the real pace."""
    if as_of is None:
        return wall or (lambda: datetime.now(UTC))
    started = monotonic()
    return lambda: as_of + timedelta(seconds=monotonic() - started)


def own_namespace(settings: Settings, service_account_file: Path = SERVICE_ACCOUNT_NAMESPACE) -> str:
    """delivery.namespace, else the namespace of the pod's service account."""
    if settings.delivery.namespace:
        return settings.delivery.namespace
    try:
        return service_account_file.read_text().strip()
    except OSError as exc:
        raise UsageError(
            "cannot tell the exporter's namespace (for the Lease and the state ConfigMap): set DELIVERY_NAMESPACE "
            "or --namespace, or use --state-dir and --no-leader-election outside a cluster"
        ) from exc


def make_store(settings: Settings, api_client_factory: Callable[[], Any], metrics: ExporterMetrics) -> StateStore:
    """The configured state backend."""
    d = settings.delivery
    if d.backend == "directory":
        assert d.state_dir is not None
        return DirectoryStore(d.state_dir)
    return ConfigMapStore(
        api_client_factory,
        own_namespace(settings),
        d.configmap_name,
        d.configmap_max_bytes,
        request_timeout=settings.kubernetes.timeout.total_seconds(),
        on_error=lambda operation: metrics.kubernetes_errors.labels(operation).inc(),
    )


def _check(settings: Settings, options: RunOptions) -> None:
    if not settings.cluster_id:
        raise UsageError("no cluster id: set --cluster-id or CLUSTER_ID")
    if not options.dry_run and not settings.billing_api.url:
        raise UsageError("no billing API: set --billing-api-url or BILLING_API_URL, or use --dry-run")


def _counting_discover(metrics: ExporterMetrics) -> Callable[[KubernetesSettings], Any]:
    async def discover(kubernetes: KubernetesSettings) -> dict[str, str]:
        try:
            return await discover_customers(kubernetes)
        except KubernetesError:
            metrics.kubernetes_errors.labels("list_namespaces").inc()
            raise

    return discover


def recording(discover: Discover, history: OwnerHistory, at: datetime) -> Discover:
    """``discover``, recording what it returns in ``history`` as seen ``at`` (a failed discovery
    raises before anything is recorded: it is never an empty owner map)."""

    async def discover_and_record(kubernetes: KubernetesSettings) -> dict[str, str]:
        live = await discover(kubernetes)
        history.observe(at, live)
        return live

    return discover_and_record


def recorded_owners(history: OwnerHistory, metrics: ExporterMetrics, told: set[tuple[str, datetime]]) -> OwnersAt:
    """measure_window's ``owners_at``: the owners ``history`` recorded closest to the window; counts
    windows billed with owners other than the live ones, and counts and logs (once per namespace and
    window, ``told`` remembering) each namespace that changed owner inside the window."""

    def owners_at(start: datetime, end: datetime, live: Mapping[str, str]) -> Mapping[str, str]:
        owners = history.for_window(start, end, live)
        if owners is not live and owners != live:
            metrics.windows_billed_with_recorded_owners.inc()
            moved = sum(1 for namespace, customer in owners.items() if live.get(namespace, customer) != customer)
            log.info(
                "window %s is billed with the owners recorded closest to it: %d namespace(s) owned otherwise now",
                window_label(start, end),
                moved,
            )
        for namespace, (old, new, seen_old, seen_new) in sorted(history.changed_inside(start, end).items()):
            if (namespace, end) in told:
                continue
            told.add((namespace, end))
            metrics.owner_changes_inside_window.inc()
            log.warning(
                "namespace %s changed owner %s -> %s during window %s (seen with %s at %s, with %s at %s); "
                "billed wholly to %s (enable kube-state-metrics' kube_namespace_labels with the customer label "
                "to cut it at the change)",
                namespace,
                old,
                new,
                window_label(start, end),
                old,
                format_time(seen_old),
                new,
                format_time(seen_new),
                owners.get(namespace, new),
            )
        return owners

    return owners_at


async def dry_run(settings: Settings, options: RunOptions, out: TextIO) -> int:
    """Measure the windows a first start would report and print each report as a JSON line."""
    clock = make_clock(options.as_of)
    now = clock()
    length = settings.metering.window
    start = max(
        initial_watermark(now, length, settings.delivery.backfill_from),
        ceil_to(now - settings.delivery.max_age, length),
    )
    ends = due_window_ends(start, newest_due_end(now, length, settings.metering.effective_settle_delay), length)
    if not ends:
        log.info("dry run: no window closed after %s yet", format_time(start))
    metrics = ExporterMetrics(CollectorRegistry())
    async with PrometheusClient(settings.prometheus, on_query=metrics.on_query) as prometheus:
        for end in ends:
            report = await measure_window(
                settings, end, now, prometheus, discover=_counting_discover(metrics), on_checks=metrics.on_window_checks
            )
            out.write(report.to_json() + "\n")
            out.flush()
    return 0


async def run_service(
    settings: Settings,
    options: RunOptions,
    registry: CollectorRegistry | None = None,
    stream: TextIO | None = None,
    out: TextIO | None = None,
    install_signal_handlers: bool = True,
    stop: asyncio.Event | None = None,
    health: Health | None = None,
) -> int:
    """The run command's body; returns the exit code. ``health`` is what /healthz and /readyz serve."""
    _check(settings, options)
    if options.dry_run:
        return await dry_run(settings, options, out or sys.stdout)
    stop = stop or asyncio.Event()
    if registry is None:
        registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
    metrics = ExporterMetrics(registry)
    d = settings.delivery
    identity = d.identity or f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"

    def api_client_factory() -> Any:
        return make_api_client(settings.kubernetes)

    store = make_store(settings, api_client_factory, metrics)
    elector: LeaseElector | None = None
    leader: Leadership = AlwaysLeader()
    if d.leader_election:
        elector = LeaseElector(
            api_client_factory,
            own_namespace(settings),
            d.lease_name,
            identity,
            d.lease_duration.total_seconds(),
            d.lease_renew_deadline.total_seconds(),
            d.lease_retry_period.total_seconds(),
            metrics,
        )
        leader = elector
    else:
        metrics.is_leader.set(1)
    loop = asyncio.get_running_loop()
    if install_signal_handlers:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _on_signal, sig, stop)
    health = health or Health()
    server = None
    elector_task = None

    def may_send() -> bool:
        """Neither stopping nor without the Lease: asked before every delivery attempt."""
        return not stop.is_set() and leader.is_leader()

    try:
        if not options.once:
            server = await MetricsServer(registry, health, d.metrics_address, d.metrics_port).start()
        if elector is not None:
            elector_task = asyncio.create_task(elector.run(stop), name="lease elector")
            supervise(elector_task, health, stop)
        async with (
            PrometheusClient(settings.prometheus, on_query=metrics.on_query) as prometheus,
            Deliverer(settings.billing_api, d, metrics, stop, may_send, identity=identity) as deliverer,
        ):
            discover = _counting_discover(metrics)
            told: set[tuple[str, datetime]] = set()  # (namespace, window end) logged as changed inside

            async def build(end: datetime, now: datetime, history: OwnerHistory) -> UsageReport:
                return await measure_window(
                    settings,
                    end,
                    now,
                    prometheus,
                    discover=recording(discover, history, now),
                    on_checks=metrics.on_window_checks,
                    owners_at=recorded_owners(history, metrics, told),
                )

            clock = make_clock(options.as_of)
            progress = Progress(d.progress, stream)

            def state_loaded() -> None:
                health.ready, health.reason = True, "running"

            runner = Runner(
                settings, store, deliverer, build, leader, metrics, clock, stop, progress, on_state_loaded=state_loaded
            )
            if options.once:
                return await _once(runner, elector, stop, settings)
            runner_task = asyncio.create_task(_loop(runner, elector, stop, settings, health, clock), name="runner")
            supervise(runner_task, health, stop)
            await runner_task
            return 0
    finally:
        stop.set()
        try:
            if elector_task is not None:
                await elector_task  # releases the Lease; raises what the elector died of, if it did
        finally:
            if server is not None:
                await server.stop()
            if install_signal_handlers:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)


def supervise(task: asyncio.Task[Any], health: Health, stop: asyncio.Event) -> None:
    """When ``task`` (the runner loop, the Lease elector) ends other than on a stop request, by an
    exception or at all: /healthz goes red with the reason, and the service stops (it exits with the
    task's error). Without this a dead elector would leave a replica idling as a standby for ever,
    and green."""

    def done(ended: asyncio.Task[Any]) -> None:
        if ended.cancelled():
            if stop.is_set():
                return  # cancelled on the way out
            how = "was cancelled"
        elif (exc := ended.exception()) is not None:
            how = f"died: {exc.__class__.__name__}: {clip(str(exc))}"
        elif stop.is_set():
            return  # a clean end on request
        else:
            how = "ended while the service was running"
        health.alive, health.ready, health.reason = False, False, f"{ended.get_name()} {how}"
        log.error("%s; stopping", health.reason)
        stop.set()

    task.add_done_callback(done)


def _on_signal(sig: signal.Signals, stop: asyncio.Event) -> None:
    if not stop.is_set():
        log.info("received %s: stopping after the current request", sig.name)
    stop.set()


async def _once(runner: Runner, elector: LeaseElector | None, stop: asyncio.Event, settings: Settings) -> int:
    d = settings.delivery
    if elector is not None:
        # Long enough to take over a Lease left behind by a crashed run: its record must stay unchanged
        # for a lease duration before anyone may take it.
        wait = (d.lease_duration + 3 * d.lease_retry_period).total_seconds()
        if not await elector.wait_until_leader(stop, give_up_after=wait):
            if stop.is_set():
                return 0
            if elector.last_error is not None:
                raise NotLeaderError(f"cannot acquire {elector.describe()}: {elector.last_error}; nothing reported")
            raise NotLeaderError(f"{elector.describe()} is held by another replica; it reports, this run does not")
    result = await runner.cycle()
    log.info("cycle done: %s", result.summary())
    return exit_code(result)


def exit_code(result: CycleResult) -> int:
    """0 when everything due was delivered or we were asked to stop; the error's code otherwise."""
    if result.stopped or result.ok:
        return 0
    if result.error is not None:
        return result.error.exit_code
    if result.not_leader:
        return NotLeaderError.exit_code
    return DeliveryError.exit_code


async def _loop(
    runner: Runner,
    elector: LeaseElector | None,
    stop: asyncio.Event,
    settings: Settings,
    health: Health,
    clock: Callable[[], datetime],
) -> None:
    d = settings.delivery
    length = settings.metering.window
    settle = settings.metering.effective_settle_delay
    while not stop.is_set():
        if elector is not None and not elector.is_leader():
            # Short waits, so readiness follows whether the Lease API answers.
            await elector.wait_until_leader(stop, give_up_after=d.lease_retry_period.total_seconds())
            health.ready = elector.reachable
            health.reason = f"standby ({elector.describe()} is held by another replica)"
            if not elector.reachable:
                health.reason = f"cannot reach the Kubernetes API for {elector.describe()}"
            continue
        result = await runner.cycle()
        if result.stopped:
            break
        log.info("cycle done: %s", result.summary())
        if result.not_leader:
            continue  # lost the Lease mid-cycle: wait as a standby (loop top)
        if result.ok:
            now = clock()
            due_at = newest_due_end(now, length, settle) + length + settle
            wait = max(1.0, (due_at - now).total_seconds() + 1.0)
        else:
            wait = d.poll_interval.total_seconds()
        await _sleep(stop, wait)


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass
