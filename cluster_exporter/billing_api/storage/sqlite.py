"""SQLite storage: the embedded default, for one billing API process.

One connection lives on one worker thread; an asyncio lock gives a transaction that connection
from BEGIN IMMEDIATE to COMMIT, so transactions never interleave and the event loop never blocks
on the disk. WAL lets ``billing-api invoice`` read while the server writes; synchronous=FULL
because a 201 promises the report is on disk.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from ..errors import StorageError, UniqueViolation
from .base import Storage

T = TypeVar("T")


def _mapped(exc: sqlite3.Error) -> StorageError:
    if isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc).upper():
        return UniqueViolation(str(exc))
    return StorageError(f"SQLite: {exc}")


class _SqliteTx:
    def __init__(self, storage: SqliteStorage) -> None:
        self._storage = storage

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return await self._storage._call(lambda conn: conn.execute(sql, tuple(params)).rowcount)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return await self._storage._call(lambda conn: conn.execute(sql, tuple(params)).fetchall())

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        return await self._storage._call(lambda conn: conn.execute(sql, tuple(params)).fetchone())

    async def insert_many(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        # executemany pulls the rows one by one on the connection's thread: a lazy iterable is
        # built there, off the event loop, and never held whole in memory.
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
        await self._storage._call(lambda conn: conn.executemany(sql, rows))

    async def lock_report(self, report_id: str) -> None:
        # BEGIN IMMEDIATE on the one connection: transactions are serial already.
        return None


class SqliteStorage(Storage):
    """Storage in one SQLite file."""

    dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="billing-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> SqliteStorage:
        """Open (and create) the database file."""
        storage = cls(path)
        await storage._call(lambda conn: None)
        return storage

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            if self.path.parent != Path("."):
                self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=30000")
            self._conn = conn
        return self._conn

    async def _call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            try:
                return work(self._connect())
            except sqlite3.Error as exc:
                raise _mapped(exc) from exc
            except OSError as exc:
                raise StorageError(f"SQLite file {self.path}: {exc.strerror}") from exc

        return await asyncio.get_running_loop().run_in_executor(self._executor, run)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_SqliteTx]:
        """BEGIN IMMEDIATE .. COMMIT on the one connection; ROLLBACK when the block raises."""
        async with self._lock:
            await self._call(lambda conn: conn.execute("BEGIN IMMEDIATE"))
            try:
                yield _SqliteTx(self)
            except BaseException:
                await asyncio.shield(self._call(lambda conn: conn.execute("ROLLBACK")))
                raise
            await self._call(lambda conn: conn.execute("COMMIT"))

    async def close(self) -> None:
        """Close the connection and stop the worker thread."""

        def close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._executor, close)
        self._executor.shutdown(wait=True)
