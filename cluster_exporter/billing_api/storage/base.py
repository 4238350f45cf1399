"""What the billing API keeps, written once for both databases over a small transaction interface.

Exactly-once rests on unique constraints, never on check-then-insert: a report part is one row
keyed (report_id, part) and its usage rows are keyed (customer, hour, meter, cluster), all
inserted in one transaction. Of two concurrent sends of the same part, the second blocks on the
first's key and then fails on it; only then does it read the stored digest to answer 200 (same
content) or 409 (different). A batch is all or nothing because it is one transaction.

The one check no constraint expresses, that every part of a report agrees on ``parts``, runs
under a lock on the report id (``lock_report``: PostgreSQL's transaction-scoped advisory lock;
SQLite's transactions are serial already), so parts sent at once to several replicas cannot
each miss the other.

Usage rows are built lazily from the report, on the backend's own thread (SQLite) or on a worker
thread (PostgreSQL's COPY text), never as one list on the event loop.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any, Literal, Protocol

from ..bases import UsageRow
from ..decimals import EXACT, text
from ..errors import RequestRejected, UniqueViolation
from ..models import ReportIn
from ..pricing import CustomerTerms

Verdict = Literal["created", "duplicate"]
USAGE_COLUMNS = ("customer_id", "hour", "meter", "cluster_id", "amount", "report_row")
EVENT_COLUMNS = ("customer_id", "meter", "hour", "seq", "value", "identifier", "next_attempt_at")
# expired: older than Stripe takes when its turn came; never sent with a moved timestamp
STATUSES = ("pending", "sent", "failed", "expired")


class Tx(Protocol):
    """One open transaction; SQL uses ``?`` placeholders on both databases."""

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; returns the affected row count."""
        ...

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a query and return every row."""
        ...

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        """Run a query and return its first row."""
        ...

    async def insert_many(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """Insert many rows at once (the fastest way each database has), consuming ``rows`` off the event loop."""
        ...

    async def lock_report(self, report_id: str) -> None:
        """Hold every other transaction storing a part of ``report_id`` until this one ends."""
        ...


@dataclass(frozen=True)
class PendingEvent:
    """A Stripe meter event waiting in the outbox."""

    id: int
    customer_id: str
    meter: str
    hour: int
    value: int
    identifier: str
    attempts: int
    stripe_customer_id: str


def decimal(value: Any) -> Decimal:
    """An amount as stored (TEXT on SQLite, NUMERIC on PostgreSQL) as a Decimal."""
    return value if isinstance(value, Decimal) else Decimal(str(value))


def event_identifier(customer_id: str, meter: str, hour: int, seq: int) -> str:
    """Stripe identifier of a meter event: the same (customer, meter, hour, seq) always gives the same one."""
    digest = hashlib.sha256(f"{customer_id}\x1f{meter}\x1f{hour}\x1f{seq}".encode()).hexdigest()
    return f"ce1_{digest[:48]}"


class Storage(ABC):
    """Reports, hourly usage, customers and the Stripe outbox in one database."""

    dialect: str

    @abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        """A transaction: committed when the block ends, rolled back when it raises."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections."""

    async def ping(self) -> None:
        """Raise StorageError unless the database answers."""
        async with self.transaction() as tx:
            await tx.fetchone("SELECT 1")

    async def migrate(self, now: int) -> list[int]:
        """Bring the schema up to date; returns the versions applied."""
        from .schema import migrate

        return await migrate(self, now)

    # -- reports ----------------------------------------------------------------------------

    async def store_report(self, report: ReportIn, digest: str, received_at: int) -> Verdict:
        """Store one report part with all its usage, or nothing; see the module docstring."""
        try:
            async with self.transaction() as tx:
                await tx.lock_report(report.report_id)
                other = await tx.fetchone(
                    "SELECT part, parts FROM reports WHERE report_id = ? AND parts <> ? LIMIT 1",
                    (report.report_id, report.parts),
                )
                if other is not None:
                    raise RequestRejected(
                        409, f"report {report.report_id} part {other[0]} was stored with parts={other[1]}"
                    )
                row = await tx.fetchone(
                    "INSERT INTO reports (report_id, part, parts, cluster_id, window_start, window_end, customers,"
                    " content_sha256, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    (
                        report.report_id,
                        report.part,
                        report.parts,
                        report.cluster_id,
                        int(report.window_start.timestamp()),
                        int(report.window_end.timestamp()),
                        len(report.usage),
                        digest,
                        received_at,
                    ),
                )
                assert row is not None
                await tx.insert_many("usage", USAGE_COLUMNS, _usage_rows(report, row[0]))
            return "created"
        except UniqueViolation:
            pass
        return await self._explain_collision(report, digest)

    async def _explain_collision(self, report: ReportIn, digest: str) -> Verdict:
        async with self.transaction() as tx:
            stored = await tx.fetchone(
                "SELECT content_sha256 FROM reports WHERE report_id = ? AND part = ?", (report.report_id, report.part)
            )
            if stored is not None:
                if stored[0] == digest:
                    return "duplicate"
                raise RequestRejected(
                    409,
                    f"report {report.idempotency_key} was already stored with different content; nothing was changed",
                )
            clash = await tx.fetchone(
                "SELECT report_id, part FROM reports WHERE cluster_id = ? AND window_start < ? AND window_end > ?"
                " ORDER BY id LIMIT 1",
                (report.cluster_id, int(report.window_end.timestamp()), int(report.window_start.timestamp())),
            )
        where = f" by report {clash[0]} part {clash[1]}" if clash else ""
        raise RequestRejected(
            409,
            f"usage of cluster {report.cluster_id} for a customer and hour of this window was already stored{where};"
            " a window is never counted twice",
        )

    # -- customers ----------------------------------------------------------------------------

    async def put_customer(self, customer_id: str, terms: CustomerTerms, now: int) -> bool:
        """Create or replace a customer's terms; True when it was created. Failed Stripe events are requeued."""
        limits = None if terms.limits is None else json.dumps({k: _opt_str(v) for k, v in terms.limits.items()})
        values = (terms.plan, _opt_str(terms.base_price), limits, terms.stripe_customer_id, now)
        async with self.transaction() as tx:
            updated = await tx.execute(
                "UPDATE customers SET plan = ?, base_price = ?, limits = ?, stripe_customer_id = ?, updated_at = ?"
                " WHERE customer_id = ?",
                (*values, customer_id),
            )
            if not updated:
                await tx.execute(
                    "INSERT INTO customers (plan, base_price, limits, stripe_customer_id, updated_at, customer_id)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (*values, customer_id),
                )
            # A 4xx from Stripe is usually a wrong customer id; new terms deserve another try.
            await tx.execute(
                "UPDATE stripe_events SET status = 'pending', next_attempt_at = ? "
                "WHERE customer_id = ? AND status = 'failed'",
                (now, customer_id),
            )
        return not updated

    async def get_customer(self, customer_id: str) -> CustomerTerms | None:
        """A customer's terms, or None."""
        async with self.transaction() as tx:
            row = await tx.fetchone(
                "SELECT plan, base_price, limits, stripe_customer_id FROM customers WHERE customer_id = ?",
                (customer_id,),
            )
        if row is None:
            return None
        limits = None
        if row[2] is not None:
            limits = {k: None if v is None else Decimal(v) for k, v in json.loads(row[2]).items()}
        return CustomerTerms(row[0], None if row[1] is None else Decimal(row[1]), limits, row[3])

    # -- usage ----------------------------------------------------------------------------------

    async def usage_totals(self, customer_id: str, start: int, end: int) -> dict[str, Decimal]:
        """meter -> the customer's usage summed over every cluster and hour in [start, end)."""
        totals: dict[str, Decimal] = {}
        with localcontext(EXACT):  # sums of a month's rows, never rounded
            for _hour, _cluster, meter, amount in await self.usage_rows(customer_id, start, end):
                totals[meter] = totals.get(meter, Decimal(0)) + amount
        return totals

    async def hourly_usage(self, customer_id: str, start: int, end: int) -> dict[int, dict[str, Decimal]]:
        """hour -> meter -> the customer's usage in that hour, summed over clusters."""
        hours: dict[int, dict[str, Decimal]] = {}
        with localcontext(EXACT):
            for hour, _cluster, meter, amount in await self.usage_rows(customer_id, start, end):
                meters = hours.setdefault(hour, {})
                meters[meter] = meters.get(meter, Decimal(0)) + amount
        return hours

    async def usage_rows(self, customer_id: str, start: int, end: int) -> list[UsageRow]:
        """(hour, cluster, meter, amount) of every stored row of the customer in [start, end).

        A meter a report did not carry has no row: invoices tell "not measured" from 0 by that.
        """
        async with self.transaction() as tx:
            rows = await tx.fetchall(
                "SELECT hour, cluster_id, meter, amount FROM usage WHERE customer_id = ? AND hour >= ? AND hour < ?",
                (customer_id, start, end),
            )
        return [(int(h), c, m, decimal(a)) for h, c, m, a in rows]

    async def customer_known(self, customer_id: str) -> bool:
        """Whether the customer has terms or any stored usage."""
        async with self.transaction() as tx:
            row = await tx.fetchone(
                "SELECT 1 FROM customers WHERE customer_id = ? UNION ALL SELECT 1 FROM usage WHERE customer_id = ?"
                " LIMIT 1",
                (customer_id, customer_id),
            )
        return row is not None

    async def stats(self) -> dict[str, int]:
        """Row counts: reports, usage rows, customers and outbox events by status."""
        async with self.transaction() as tx:
            out = {}
            for name, sql in (
                ("reports", "SELECT COUNT(*) FROM reports"),
                ("usage_rows", "SELECT COUNT(*) FROM usage"),
                ("customers", "SELECT COUNT(*) FROM customers"),
                ("reports_not_expanded", "SELECT COUNT(*) FROM reports WHERE stripe_expanded = 0"),
            ):
                row = await tx.fetchone(sql)
                out[name] = int(row[0]) if row else 0
            for status in STATUSES:
                row = await tx.fetchone("SELECT COUNT(*) FROM stripe_events WHERE status = ?", (status,))
                out[f"events_{status}"] = int(row[0]) if row else 0
        return out

    # -- Stripe outbox --------------------------------------------------------------------------

    async def expand_next_report(self, ready_before: int, stripe_meters: dict[str, tuple[str, int]], now: int) -> bool:
        """Turn the oldest settled report part into outbox events; False when none is waiting.

        For every (customer, meter, hour) the part touches, the event value is the hour's total over
        all clusters in integer units minus what earlier events already carried: usage reported
        for an hour after it was pushed becomes one more event (next seq), and rounding never
        accumulates. Two pushers racing on one key collide on (customer, meter, hour, seq).
        """
        async with self.transaction() as tx:
            row = await tx.fetchone(
                "SELECT id FROM reports WHERE stripe_expanded = 0 AND window_end <= ? ORDER BY id LIMIT 1",
                (ready_before,),
            )
            if row is None:
                return False
            report_row = row[0]
            join = "usage p JOIN {t} x ON x.customer_id = p.customer_id AND x.hour = p.hour AND x.meter = p.meter"
            totals: dict[tuple[str, str, int], Decimal] = {}
            for customer, meter, hour, amount in await tx.fetchall(
                f"SELECT x.customer_id, x.meter, x.hour, x.amount FROM {join.format(t='usage')} WHERE p.report_row = ?",
                (report_row,),
            ):
                key = (customer, meter, int(hour))
                totals[key] = EXACT.add(totals.get(key, Decimal(0)), decimal(amount))
            pushed: dict[tuple[str, str, int], tuple[int, int]] = {}
            for customer, meter, hour, value, seq in await tx.fetchall(
                f"SELECT x.customer_id, x.meter, x.hour, x.value, x.seq FROM {join.format(t='stripe_events')}"
                " WHERE p.report_row = ?",
                (report_row,),
            ):
                key = (customer, meter, int(hour))
                done, last = pushed.get(key, (0, 0))
                pushed[key] = (done + int(value), max(last, int(seq)))
            events = []
            for (customer, meter, hour), amount in sorted(totals.items()):
                if meter not in stripe_meters:
                    continue
                units = int(EXACT.multiply(amount, stripe_meters[meter][1]).to_integral_value(rounding=ROUND_HALF_EVEN))
                done, last = pushed.get((customer, meter, hour), (0, 0))
                if units > done:
                    seq = last + 1
                    events.append(
                        (customer, meter, hour, seq, units - done, event_identifier(customer, meter, hour, seq), now)
                    )
            await tx.insert_many("stripe_events", EVENT_COLUMNS, events)
            await tx.execute("UPDATE reports SET stripe_expanded = 1 WHERE id = ?", (report_row,))
        return True

    async def due_events(self, now: int, limit: int) -> list[PendingEvent]:
        """Pending events whose time has come, of customers with a Stripe customer id, oldest first."""
        async with self.transaction() as tx:
            rows = await tx.fetchall(
                "SELECT e.id, e.customer_id, e.meter, e.hour, e.value, e.identifier, e.attempts, c.stripe_customer_id"
                " FROM stripe_events e JOIN customers c ON c.customer_id = e.customer_id"
                " WHERE e.status = 'pending' AND e.next_attempt_at <= ? AND c.stripe_customer_id IS NOT NULL"
                " ORDER BY e.next_attempt_at, e.id LIMIT ?",
                (now, limit),
            )
        return [PendingEvent(int(r[0]), r[1], r[2], int(r[3]), int(r[4]), r[5], int(r[6]), r[7]) for r in rows]

    async def count_events(self, status: str) -> int:
        """How many outbox events have ``status``."""
        async with self.transaction() as tx:
            row = await tx.fetchone("SELECT COUNT(*) FROM stripe_events WHERE status = ?", (status,))
        return int(row[0]) if row else 0

    async def mark_sent(self, ids: Sequence[int], now: int) -> None:
        """Record events Stripe has (or already had)."""
        async with self.transaction() as tx:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ", ".join("?" for _ in chunk)
                await tx.execute(
                    f"UPDATE stripe_events SET status = 'sent', sent_at = ?, attempts = attempts + 1, last_error = NULL"
                    f" WHERE id IN ({marks})",
                    (now, *chunk),
                )

    async def mark_retry(self, event_id: int, next_attempt_at: int, error: str) -> None:
        """Keep an event pending and try it again at ``next_attempt_at``."""
        async with self.transaction() as tx:
            await tx.execute(
                "UPDATE stripe_events SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? WHERE id = ?",
                (next_attempt_at, error, event_id),
            )

    async def mark_expired(self, ids: Sequence[int], error: str) -> None:
        """Give up events Stripe no longer takes (older than its 35 days): their time is never moved."""
        async with self.transaction() as tx:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ", ".join("?" for _ in chunk)
                await tx.execute(
                    f"UPDATE stripe_events SET status = 'expired', last_error = ? WHERE id IN ({marks})",
                    (error, *chunk),
                )

    async def mark_failed(self, event_id: int, error: str) -> None:
        """Stop trying an event Stripe refused for good (requeued by the customer's next PUT)."""
        async with self.transaction() as tx:
            await tx.execute(
                "UPDATE stripe_events SET status = 'failed', attempts = attempts + 1, last_error = ? WHERE id = ?",
                (error, event_id),
            )


def _usage_rows(report: ReportIn, report_row: int) -> Iterator[tuple[str, int, str, str, str, int]]:
    for customer, hour, meter, amount in report.hourly_rows():
        yield customer, hour, meter, report.cluster_id, text(amount), report_row


def _opt_str(value: Decimal | None) -> str | None:
    return None if value is None else str(value)
