"""PostgreSQL storage: for several billing API replicas and platforms with many clusters.

Plain psycopg 3 async connections in a small pool of our own (psycopg_pool would be one more
dependency for twenty lines). Usage rows go in with COPY, the fastest path PostgreSQL has; a
unique violation anywhere in the batch aborts the whole transaction, which is what we want.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import psycopg

from ..errors import StorageError, UniqueViolation
from .base import Storage

_PLACEHOLDER = re.compile(r"\?")
# Advisory locks on report ids use the two-int4 key space, apart from the migrations' bigint key.
REPORT_LOCK_CLASS = 0x72707274  # "rprt"
COPY_CHUNK_ROWS = 20_000
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _sql(text: str) -> str:
    # Our SQL is written with ? placeholders and never contains a literal ? or %.
    return _PLACEHOLDER.sub("%s", text)


def _mapped(exc: psycopg.Error) -> StorageError:
    if isinstance(exc, psycopg.errors.UniqueViolation):
        return UniqueViolation(str(exc).splitlines()[0])
    first = (str(exc).splitlines() or [exc.__class__.__name__])[0]
    return StorageError(f"PostgreSQL: {first}")


class _PgTx:
    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        try:
            cur = await self._conn.execute(_sql(sql), tuple(params))
        except psycopg.Error as exc:
            raise _mapped(exc) from exc
        return cur.rowcount

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            cur = await self._conn.execute(_sql(sql), tuple(params))
            return await cur.fetchall()
        except psycopg.Error as exc:
            raise _mapped(exc) from exc

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        try:
            cur = await self._conn.execute(_sql(sql), tuple(params))
            return await cur.fetchone()
        except psycopg.Error as exc:
            raise _mapped(exc) from exc

    async def insert_many(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        # COPY's text format is built on a worker thread, a chunk at a time: formatting hundreds
        # of thousands of rows on the event loop would stall every other request meanwhile.
        chunks = _copy_chunks(rows)
        try:
            async with self._conn.cursor() as cur:
                async with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                    while chunk := await asyncio.to_thread(next, chunks, b""):
                        await copy.write(chunk)
        except psycopg.Error as exc:
            raise _mapped(exc) from exc

    async def lock_report(self, report_id: str) -> None:
        key = int.from_bytes(hashlib.sha256(report_id.encode()).digest()[:4], "big", signed=True)
        await self.execute("SELECT pg_advisory_xact_lock(?, ?)", (REPORT_LOCK_CLASS, key))


def _copy_field(value: Any) -> str:
    return "\\N" if value is None else str(value).translate(_COPY_ESCAPES)


def _copy_chunks(rows: Iterable[Sequence[Any]]) -> Iterator[bytes]:
    lines: list[str] = []
    for row in rows:
        lines.append("\t".join(_copy_field(v) for v in row))
        if len(lines) == COPY_CHUNK_ROWS:
            yield ("\n".join(lines) + "\n").encode()
            lines.clear()
    if lines:
        yield ("\n".join(lines) + "\n").encode()


class PostgresStorage(Storage):
    """Storage in a PostgreSQL database."""

    dialect = "postgresql"

    def __init__(self, conninfo: str, pool_size: int) -> None:
        self.conninfo = conninfo
        self._idle: asyncio.LifoQueue[psycopg.AsyncConnection[Any]] = asyncio.LifoQueue()
        self._slots = asyncio.Semaphore(pool_size)
        self._all: set[psycopg.AsyncConnection[Any]] = set()

    @classmethod
    async def open(cls, conninfo: str, pool_size: int = 10) -> PostgresStorage:
        """Connect once to fail early on a wrong URL or an unreachable server."""
        storage = cls(conninfo, pool_size)
        await storage.ping()
        return storage

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        try:
            conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise StorageError(f"cannot connect to PostgreSQL: {str(exc).strip().splitlines()[-1][:200]}") from exc
        self._all.add(conn)
        return conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_PgTx]:
        """A transaction on a pooled connection; a broken connection is dropped, not reused."""
        async with self._slots:
            conn = self._idle.get_nowait() if not self._idle.empty() else await self._connect()
            healthy = False
            try:
                async with conn.transaction():
                    yield _PgTx(conn)
                healthy = True
            except psycopg.Error as exc:
                raise _mapped(exc) from exc
            finally:
                if healthy or (not conn.closed and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE):
                    self._idle.put_nowait(conn)
                else:
                    self._all.discard(conn)
                    await conn.close()

    async def close(self) -> None:
        """Close every connection."""
        for conn in list(self._all):
            await conn.close()
        self._all.clear()
