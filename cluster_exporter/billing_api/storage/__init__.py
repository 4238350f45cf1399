"""Storage backends of the billing API: SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from ..errors import BillingConfigError
from .base import PendingEvent, Storage, Verdict

__all__ = ["PendingEvent", "Storage", "Verdict", "open_storage"]


async def open_storage(url: str, pool_size: int = 10) -> Storage:
    """Open the database named by ``url``: sqlite:///relative.db, sqlite:////abs.db or postgresql://..."""
    if url.startswith("sqlite://"):
        from .sqlite import SqliteStorage

        path = url.removeprefix("sqlite://")
        if not path.startswith("/") or path == "/":
            raise BillingConfigError(f"SQLite URL must be sqlite:///file.db or sqlite:////abs/file.db, got {url!r}")
        # sqlite:///x.db -> "x.db" (relative), sqlite:////srv/x.db -> "/srv/x.db"
        return await SqliteStorage.open(Path(path[1:]))
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStorage

        return await PostgresStorage.open(url, pool_size)
    raise BillingConfigError(f"database URL must start with sqlite:// or postgresql://, got {url.split(':', 1)[0]!r}")
