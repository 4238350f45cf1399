"""One catch-up cycle: from the durable watermark, build every closed window once, deliver oldest first.

A cycle loads the state, delivers what is spooled (oldest window first), then for each window that
closed after the watermark, oldest first: measures it, spools it together with the new watermark
in one atomic write, and delivers it. A window that cannot be measured (Prometheus down, no data
yet) stops the cycle: later windows wait, so the watermark never jumps over a window.

Each build records the owners discovery returned in the state's owner history and bills the window
with the owners recorded closest to it (delivery/owner_history.py); the history is saved with the
state and pruned to what the windows still to build need.

When delivery fails (the billing API down past the retry budget), building goes on: the reports
wait in the spool, safe from Prometheus' retention running out, until the API is back. A backend
that is full (a ConfigMap's 1 MiB) stops the building until the spool drains.

Stop requests (SIGTERM) and a lost Lease are checked before every request and every write; the
request in flight finishes and its outcome is written, so the state is always consistent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ..errors import ExporterError, UsageError
from ..observability.metrics import ExporterMetrics
from ..progress import Progress
from ..report import UsageReport, format_time, window_label
from ..settings import Settings
from .leader import Leadership
from .owner_history import OwnerHistory
from .sender import Deliverer
from .state import DeadLetter, SpoolEntry, State, StateError, StateStore, StateTooLargeError, entry_label

log = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class LostLeaseError(StateError):
    """The Lease was lost mid-cycle; the new leader owns the state now."""


# (window end, now, the owner history to record discovery in and bill with) -> report
Build = Callable[[datetime, datetime, OwnerHistory], Awaitable[UsageReport]]


def floor_to(moment: datetime, length: timedelta) -> datetime:
    """The window boundary at or before ``moment`` (windows are aligned to the Unix epoch)."""
    return moment - (moment - EPOCH) % length


def ceil_to(moment: datetime, length: timedelta) -> datetime:
    """The window boundary at or after ``moment``."""
    floor = floor_to(moment, length)
    return floor if floor == moment else floor + length


def newest_due_end(now: datetime, length: timedelta, settle: timedelta) -> datetime:
    """End of the newest window that ended at least ``settle`` before ``now``."""
    return floor_to(now - settle, length)


def initial_watermark(now: datetime, length: timedelta, backfill_from: datetime | None) -> datetime:
    """Where a first start begins: ``backfill_from`` (a window boundary), else the start of the current window."""
    if backfill_from is None:
        return floor_to(now, length)
    if floor_to(backfill_from, length) != backfill_from:
        raise UsageError(f"--backfill-from {format_time(backfill_from)} is not on a window boundary ({length})")
    return backfill_from


def due_window_ends(watermark: datetime, newest_due: datetime, length: timedelta) -> list[datetime]:
    """Ends of the windows after the watermark up to the newest due one, oldest first."""
    ends = []
    end = watermark + length
    while end <= newest_due:
        ends.append(end)
        end += length
    return ends


@dataclass
class CycleResult:
    """What one cycle did, and what it left undone."""

    delivered: int = 0
    dead_lettered: int = 0
    built: int = 0
    skipped: int = 0
    pending: int = 0  # due windows not delivered at the end: spooled or not built yet
    error: ExporterError | None = None
    stopped: bool = False
    not_leader: bool = False

    @property
    def ok(self) -> bool:
        """Everything due was delivered (or dead-lettered)."""
        return self.error is None and self.pending == 0 and not self.stopped and not self.not_leader

    def summary(self) -> str:
        """One line for the log."""
        text = (
            f"{self.delivered} delivered, {self.dead_lettered} dead-lettered, {self.built} built, "
            f"{self.pending} pending"
        )
        if self.skipped:
            text += f", {self.skipped} skipped (older than max age)"
        if self.stopped:
            text += "; stopped"
        if self.not_leader:
            text += "; not leader"
        return text


def _detail(entry: SpoolEntry) -> str:
    parts = f"{entry.parts} part" + ("s" if entry.parts > 1 else "")
    return f"{entry.customers} customers, {entry.namespaces} namespaces, {parts}"


class Runner:
    """Catch-up cycles over injected parts: state store, deliverer, report builder, leadership, clock."""

    def __init__(
        self,
        settings: Settings,
        store: StateStore,
        deliverer: Deliverer,
        build: Build,
        leader: Leadership,
        metrics: ExporterMetrics,
        clock: Callable[[], datetime],
        stop: asyncio.Event,
        progress: Progress | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        on_state_loaded: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.deliverer = deliverer
        self.build = build
        self.leader = leader
        self.metrics = metrics
        self.clock = clock
        self.stop = stop
        self.progress = progress or Progress("lines")
        self.on_state_loaded = on_state_loaded  # readiness: the state backend answered
        self.monotonic = monotonic
        self.length = settings.metering.window
        self._deadline: float | None = None
        self._told_backfill = False
        self._saved_owners = (0, -1)  # (id, revision) of the owner history last saved

    def _halted(self, result: CycleResult) -> bool:
        if self.stop.is_set():
            result.stopped = True
        elif not self.leader.is_leader():
            result.not_leader = True
        return result.stopped or result.not_leader

    async def cycle(self) -> CycleResult:
        """One catch-up cycle; errors end up in the result (a UsageError is raised: config must change)."""
        result = CycleResult()
        if not self._halted(result):
            try:
                with self.store.session():
                    await self._cycle(result)
            except UsageError:
                raise
            except LostLeaseError:
                result.not_leader = True
            except ExporterError as exc:
                result.error = exc
                log.error("cycle failed: %s", exc)
            finally:
                self.progress.finish()
        if result.stopped:
            outcome = "stopped"
        elif result.not_leader:
            outcome = "not_leader"
        else:
            outcome = "ok" if result.ok else "failed"
        self.metrics.cycles.labels(outcome).inc()
        if outcome == "failed":
            self.metrics.windows_failed.inc()
        return result

    async def _cycle(self, result: CycleResult) -> None:
        now = self.clock()
        d = self.settings.delivery
        self._deadline = None  # the retry budget starts with the cycle's first request
        state = await self._load()
        changed = False
        if state.watermark is None:
            state.watermark = initial_watermark(now, self.length, d.backfill_from)
            log.info("first start: reporting windows from %s on", format_time(state.watermark))
            changed = True
        elif d.backfill_from is not None and not self._told_backfill:
            self._told_backfill = True
            log.info("state in %s has a watermark; --backfill-from is ignored", self.store.describe())
        oldest = ceil_to(now - d.max_age, self.length)
        if state.watermark < oldest:
            result.skipped = (oldest - state.watermark) // self.length
            log.warning(
                "skipping %d windows %s..%s: older than delivery.max_age (%s) and never built",
                result.skipped,
                format_time(state.watermark),
                format_time(oldest),
                d.max_age,
            )
            self.metrics.windows_skipped.inc(result.skipped)
            state.watermark = oldest
            changed = True
        if changed:
            await self._save(state)
        newest = newest_due_end(now, self.length, self.settings.metering.effective_settle_delay)
        due = due_window_ends(state.watermark, newest, self.length)
        self.progress.start(len(state.spool) + len(due))
        delivering = await self._drain(state, result)
        for end in due:
            if self._halted(result):
                break
            entry = await self._build(end, state.owners, result)
            if entry is None:
                break
            previous = state.watermark
            state.spool.append(entry)
            state.watermark = end
            state.owners.prune(end + self.length)  # keeps what the next windows are billed with
            try:
                await self._save(state)
            except StateTooLargeError as exc:
                state.spool.pop()
                state.watermark = previous
                if not state.spool:
                    raise StateError(f"the report of window {entry_label(entry)} alone does not fit: {exc}") from exc
                log.warning("spool full (%s); window %s is built once the spool drains", exc, entry_label(entry))
                break
            result.built += 1
            if delivering:
                delivering = await self._drain(state, result)
            else:  # the billing API is failing: the window waits in the spool, say so per window anyway
                self.progress.window(entry_label(entry), "spooled", _detail(entry))
        result.pending = len(state.spool) + len(due) - result.built
        if self._saved_owners != (id(state.owners), state.owners.revision) and not self._halted(result):
            await self._save(state)  # owners discovery saw while a window could not be built

    async def _load(self) -> State:
        try:
            state = await asyncio.to_thread(self.store.load, self.settings.cluster_id, int(self.length.total_seconds()))
        except StateError:
            self.metrics.state_errors.labels("load").inc()
            raise
        if state.last_delivered is not None:
            self.metrics.last_delivered_window_end.set(state.last_delivered.timestamp())
        self._saved_owners = (id(state.owners), state.owners.revision)
        self._publish(state)
        self.on_state_loaded()
        return state

    def _check_lease(self) -> None:
        # Never write after losing the Lease: the new leader owns the state now.
        if not self.leader.is_leader():
            raise LostLeaseError("lost the Lease; not writing state")

    async def _save(self, state: State) -> None:
        self._check_lease()
        try:
            await asyncio.to_thread(self.store.save, state)
        except StateError:
            self.metrics.state_errors.labels("save").inc()
            raise
        self._saved_owners = (id(state.owners), state.owners.revision)
        self._publish(state)

    def _publish(self, state: State) -> None:
        self.metrics.spool_depth.set(len(state.spool))
        self.metrics.spool_bytes.set(self.store.spool_bytes())

    async def _build(self, end: datetime, owners: OwnerHistory, result: CycleResult) -> SpoolEntry | None:
        """Measure the window ending at ``end``; None when it cannot be (logged) or we must stop."""
        label = window_label(end - self.length, end)
        started = self.monotonic()
        building: asyncio.Task[UsageReport] = asyncio.ensure_future(self.build(end, self.clock(), owners))
        stopping = asyncio.create_task(self.stop.wait())
        try:
            await asyncio.wait({building, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not building.done():  # stopping: nothing of this window is stored yet, so drop the work
            building.cancel()
            with contextlib.suppress(asyncio.CancelledError, ExporterError):
                await building
            result.stopped = True
            return None
        try:
            report = building.result()
        except ExporterError as exc:
            result.error = exc
            log.error("window %s cannot be built: %s; it and later windows wait for the next cycle", label, exc)
            return None
        self.metrics.window_duration.observe(self.monotonic() - started)
        self.metrics.report_customers.set(len(report.usage))
        self.metrics.report_namespaces.set(sum(len(u.namespaces) for u in report.usage))
        if self._halted(result):
            return None
        return SpoolEntry.from_report(report, self.settings.delivery.max_customers_per_part, built_at=self.clock())

    async def _drain(self, state: State, result: CycleResult) -> bool:
        """Deliver spooled windows oldest first; False when one could not be delivered (it stays spooled)."""
        while state.spool:
            entry = state.spool[0]
            label = entry_label(entry)
            for part in entry.pending():
                if self._halted(result):
                    return False
                key = entry.key(part)
                if self._deadline is None:
                    self._deadline = self.monotonic() + self.settings.delivery.retry_budget.total_seconds()
                body = entry.bodies[part - 1]
                outcome = await self.deliverer.send(key, body, self._deadline, label=f"{label} ({key})")
                if outcome.kind == "delivered":
                    entry.done[part] = "delivered"
                elif outcome.kind == "rejected":
                    await self._dead_letter(entry, part, outcome.status, outcome.reason)
                    entry.done[part] = "dead-lettered"
                elif outcome.kind == "stopped":
                    self._halted(result)
                    return False
                else:
                    log.error("window %s not delivered: %s; it stays spooled", label, outcome.reason)
                    return False
                if entry.pending():
                    await self._save(state)  # a split window: remember each part done
            state.spool.pop(0)
            delivered = all(v == "delivered" for v in entry.done.values())
            if delivered:
                state.last_delivered = entry.window_end
            await self._save(state)
            if delivered:
                result.delivered += 1
                self.metrics.windows_delivered.inc()
                self.metrics.last_delivered_window_end.set(entry.window_end.timestamp())
            else:
                result.dead_lettered += 1
                self.metrics.windows_dead_lettered.inc()
            self.progress.window(label, "delivered" if delivered else "dead-lettered", _detail(entry))
        return True

    async def _dead_letter(self, entry: SpoolEntry, part: int, status: int | None, reason: str) -> None:
        letter = DeadLetter(
            idempotency_key=entry.key(part),
            report_id=entry.report_id,
            part=part,
            parts=entry.parts,
            window_start=entry.window_start,
            window_end=entry.window_end,
            status=status,
            reason=reason,
            at=self.clock(),
            body_sha256=entry.digests[part - 1],
            body=entry.bodies[part - 1],
        )
        self._check_lease()
        try:
            await asyncio.to_thread(self.store.add_dead_letter, letter)
        except StateError:
            self.metrics.state_errors.labels("dead_letter").inc()
            raise
        log.error(
            "billing API refused report %s (window %s) for good: %s; kept as dead letter in %s",
            letter.idempotency_key,
            entry_label(entry),
            reason,
            self.store.describe(),
        )
