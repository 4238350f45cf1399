"""Versioned schema migrations, one list for SQLite and PostgreSQL.

Each migration runs in its own transaction together with the row recording it in
``schema_migrations``, so a crash leaves either the old or the new version, never half of one.
Two processes migrating at once are kept apart by the primary key of ``schema_migrations`` (and,
on PostgreSQL, an advisory lock): the loser rolls back and sees the version already applied.
Never edit a migration that has shipped; add the next one.

Why the tables look as they do:
- ``usage`` has one row per (customer, hour, meter, cluster): its primary key is what makes a
  window count once (a resend or an overlapping window collides) while two clusters' usage of one
  customer sums. Hours are Unix seconds; amounts are exact decimals (TEXT on SQLite, NUMERIC on
  PostgreSQL), summed as Decimal.
- ``reports`` has one row per (report_id, part), with a digest of its content: a resend with the
  same content is answered 200, with other content 409. ``stripe_expanded`` is the outbox flag:
  0 in the same transaction as the usage, 1 once the Stripe pusher has turned it into events.
- ``stripe_events`` is the outbox proper: one meter event per (customer, meter, hour, seq) with its
  deterministic identifier; seq > 1 only when usage for an hour arrived after that hour was pushed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import StorageError, UniqueViolation

if TYPE_CHECKING:
    from .base import Storage

TYPES = {
    "sqlite": {"id": "INTEGER PRIMARY KEY AUTOINCREMENT", "amount": "TEXT", "without_rowid": " WITHOUT ROWID"},
    "postgresql": {"id": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "amount": "NUMERIC", "without_rowid": ""},
}
ADVISORY_LOCK_ID = 0x62696C6C  # "bill": serialises migrations of concurrent PostgreSQL clients

MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "reports, hourly usage, customers, Stripe outbox",
        [
            """CREATE TABLE reports (
                id {id},
                report_id TEXT NOT NULL,
                part INTEGER NOT NULL,
                parts INTEGER NOT NULL,
                cluster_id TEXT NOT NULL,
                window_start BIGINT NOT NULL,
                window_end BIGINT NOT NULL,
                customers INTEGER NOT NULL,
                content_sha256 TEXT NOT NULL,
                received_at BIGINT NOT NULL,
                stripe_expanded SMALLINT NOT NULL DEFAULT 0,
                UNIQUE (report_id, part)
            )""",
            "CREATE INDEX reports_cluster_window ON reports (cluster_id, window_start)",
            "CREATE INDEX reports_stripe_pending ON reports (window_end) WHERE stripe_expanded = 0",
            """CREATE TABLE usage (
                customer_id TEXT NOT NULL,
                hour BIGINT NOT NULL,
                meter TEXT NOT NULL,
                cluster_id TEXT NOT NULL,
                amount {amount} NOT NULL,
                report_row BIGINT NOT NULL REFERENCES reports (id),
                PRIMARY KEY (customer_id, hour, meter, cluster_id)
            ){without_rowid}""",
            "CREATE INDEX usage_report_row ON usage (report_row)",
            """CREATE TABLE customers (
                customer_id TEXT PRIMARY KEY,
                plan TEXT NOT NULL,
                base_price TEXT,
                limits TEXT,
                stripe_customer_id TEXT,
                updated_at BIGINT NOT NULL
            )""",
            """CREATE TABLE stripe_events (
                id {id},
                customer_id TEXT NOT NULL,
                meter TEXT NOT NULL,
                hour BIGINT NOT NULL,
                seq INTEGER NOT NULL,
                value BIGINT NOT NULL,
                identifier TEXT NOT NULL UNIQUE,
                status TEXT NOT NULL DEFAULT 'pending',
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at BIGINT NOT NULL,
                last_error TEXT,
                sent_at BIGINT,
                UNIQUE (customer_id, meter, hour, seq)
            )""",
            "CREATE INDEX stripe_events_due ON stripe_events (next_attempt_at) WHERE status = 'pending'",
        ],
    ),
]
LATEST_VERSION = MIGRATIONS[-1][0]


async def migrate(storage: Storage, now: int) -> list[int]:
    """Apply every migration the database lacks; returns the versions applied."""
    try:
        async with storage.transaction() as tx:
            if storage.dialect == "postgresql":
                # CREATE TABLE IF NOT EXISTS is not safe against a concurrent one (it can fail with
                # "type already exists"): the same lock as the migrations serialises it
                await tx.execute("SELECT pg_advisory_xact_lock(?)", (ADVISORY_LOCK_ID,))
            await tx.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)"
            )
    except UniqueViolation:
        pass  # created by a concurrent process at the same moment
    applied: list[int] = []
    types = TYPES[storage.dialect]
    for version, name, statements in MIGRATIONS:
        try:
            async with storage.transaction() as tx:
                if storage.dialect == "postgresql":
                    await tx.execute("SELECT pg_advisory_xact_lock(?)", (ADVISORY_LOCK_ID,))
                if await tx.fetchone("SELECT 1 FROM schema_migrations WHERE version = ?", (version,)):
                    continue
                for statement in statements:
                    await tx.execute(statement.format(**types))
                await tx.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)", (version, name, now)
                )
                applied.append(version)
        except UniqueViolation:
            continue
    async with storage.transaction() as tx:
        row = await tx.fetchone("SELECT MAX(version) FROM schema_migrations")
    if row and row[0] is not None and int(row[0]) > LATEST_VERSION:
        raise StorageError(f"the database's schema version {row[0]} is newer than this program's ({LATEST_VERSION})")
    return applied
