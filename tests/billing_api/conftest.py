"""Fixtures of the billing API tests: a real PostgreSQL 15, a database per test, servers on loopback.

Every test that takes ``database_url`` runs twice, on SQLite and on PostgreSQL. PostgreSQL is a
real server started once per session (initdb into a temp dir, free port); when its binaries are
missing the tests fail with a message saying how to install them: nothing is skipped.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from cluster_exporter.billing_api.server import serve
from cluster_exporter.billing_api.settings import BillingSettings
from cluster_exporter.billing_api.storage import Storage, open_storage
from cluster_exporter.devtools.local_postgres import LocalPostgres

ADMIN = "admin-secret"
TOKENS = {"k8s-us-east-1": "token-east", "k8s-eu-west-1": "token-west", "k8s-ap-south-1": "token-south"}
# The tests' reports are dated in 2024 and 2025 (invoices of known months), long before the clock:
# their servers take them as the operator's backfill would. Tests of the age limit pass their own.
BACKFILL = timedelta(days=100 * 365)


@pytest.fixture(autouse=True)
def _no_billing_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's BILLING_* variables must not leak into the servers under test."""
    for name in list(os.environ):
        if name.startswith("BILLING_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def postgres() -> Iterator[LocalPostgres]:
    """One real PostgreSQL 15 server for the session (fsync off: the server itself is never killed)."""
    with LocalPostgres(fsync=False) as pg:
        yield pg


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database: a SQLite file, or a new database on the session's PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'billing.db'}"
    pg: LocalPostgres = request.getfixturevalue("postgres")
    return pg.create_database()


@dataclass
class Server:
    """A billing API served in-process on a free loopback port."""

    url: str
    database_url: str
    registry: CollectorRegistry
    stop: asyncio.Event
    task: asyncio.Task[None]
    session: aiohttp.ClientSession
    extra: dict[str, Any] = field(default_factory=dict)

    async def request(
        self, method: str, path: str, *, token: str | None = None, body: bytes | None = None, **kw: Any
    ) -> tuple[int, Any]:
        """Send one request; returns (status, parsed JSON body)."""
        headers = dict(kw.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        async with self.session.request(method, self.url + path, data=body, headers=headers, **kw) as resp:
            return resp.status, await resp.json(content_type=None)

    async def post_report(self, body: bytes, token: str, **headers: str) -> tuple[int, Any]:
        """POST /api/usage/report."""
        return await self.request("POST", "/api/usage/report", token=token, body=body, headers=headers)

    async def admin(self, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
        """An admin request."""
        return await self.request(method, path, token=ADMIN, body=body)


async def start_server(database_url: str, clock: Callable[[], datetime] | None = None, **settings: Any) -> Server:
    """Serve a billing API on 127.0.0.1, port 0, until ``stop_server``."""
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "database_url": database_url,
        "tokens": ",".join(f"{c}={t}" for c, t in TOKENS.items()),
        "admin_token": ADMIN,
        "max_window_age": BACKFILL,
    }
    values.update(settings)
    registry = CollectorRegistry()
    stop = asyncio.Event()
    listening: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve(
            BillingSettings(**values),
            clock=clock or (lambda: datetime.now(UTC)),
            registry=registry,
            on_listening=listening.set_result,
            stop=stop,
        )
    )
    done, _ = await asyncio.wait([listening, task], timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if listening not in done:
        stop.set()
        await task  # raises the startup error
        raise AssertionError("billing API did not start")
    return Server(listening.result(), database_url, registry, stop, task, aiohttp.ClientSession())


async def stop_server(server: Server) -> None:
    """Stop the server and wait for it to finish."""
    await server.session.close()
    server.stop.set()
    await asyncio.wait_for(server.task, 30)


@pytest.fixture
async def server(database_url: str) -> AsyncIterator[Server]:
    """A billing API with the default pricing on a fresh database (SQLite and PostgreSQL)."""
    running = await start_server(database_url)
    yield running
    await stop_server(running)


@pytest.fixture
async def storage(database_url: str) -> AsyncIterator[Storage]:
    """A second, independent connection to the test's database, to look at what was stored."""
    store = await open_storage(database_url, 2)
    yield store
    await store.close()
