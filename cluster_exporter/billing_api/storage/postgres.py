"""PostgreSQL storage: for several billing API replicas and platforms with many clusters.

Plain psycopg 3 async connections in a small pool of our own (psycopg_pool would be one more
dependency for twenty lines). Usage rows go in with COPY, the fastest path PostgreSQL has; a
unique violation anywhere in the batch aborts the whole transaction, which is what we want.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import psycopg

from ..errors import StorageError, UniqueViolation
from .base import Storage

_PLACEHOLDER = re.compile(r"\?")


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

    async def insert_many(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        try:
            async with self._conn.cursor() as cur:
                async with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in rows:
                        await copy.write_row(row)
        except psycopg.Error as exc:
            raise _mapped(exc) from exc


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
