"""kill -9 of the billing API process in the middle of storing a batch: nothing is half stored.

The server runs as its own process (``cluster-exporter billing-api serve``). A large report is
sent; once the server's own gauge says a batch is being written, the process is killed with
SIGKILL, at several delays into the write. Whatever the moment, the database then holds whole
reports only (report rows x rows per report = usage rows), the killed request was never answered
201, and the same report sent to a restarted server is stored exactly once.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from cluster_exporter.billing_api.storage import open_storage

from .conftest import TOKENS
from .process import ServerProcess
from .reports import report_body, usage

EAST = "k8s-us-east-1"
CUSTOMERS = 20_000
ROWS_PER_REPORT = CUSTOMERS * 6
T0 = datetime(2025, 11, 3, 0, tzinfo=UTC)


def server_process(database_url: str) -> ServerProcess:
    """The server under test: 20,000 customers in one part (a long batch to kill), of November 2025 (a backfill)."""
    flags = ["--max-body-bytes", str(64 << 20), "--max-customers-per-report", str(CUSTOMERS)]
    return ServerProcess(database_url, *flags, "--max-window-age", "876000h")


async def _batch_in_progress(session: aiohttp.ClientSession, url: str) -> bool:
    async with session.get(url + "/metrics") as resp:
        text = await resp.text()
    return "cluster_exporter_billing_api_batches_in_progress 1.0" in text


async def _post(session: aiohttp.ClientSession, url: str, body: bytes) -> int | str:
    try:
        async with session.post(
            url + "/api/usage/report", data=body, headers={"Authorization": f"Bearer {TOKENS[EAST]}"}
        ) as resp:
            return resp.status
    except (TimeoutError, aiohttp.ClientError) as exc:
        return type(exc).__name__


@pytest.mark.slow
async def test_kill_9_during_batch_leaves_whole_reports_only(database_url: str) -> None:
    customers = {
        f"cust_{i:05d}": usage(cpu=i / 1000, memory=1.5, sent=i, storage=2.0, requests=i % 7) for i in range(CUSTOMERS)
    }
    stored = 0
    rolled_back = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        for attempt, delay in enumerate((0.0, 0.1, 0.3)):
            body = report_body(EAST, T0 + timedelta(hours=attempt), customers)
            server = server_process(database_url)
            post = asyncio.create_task(_post(session, server.url, body))
            deadline = asyncio.get_running_loop().time() + 60
            while not await _batch_in_progress(session, server.url):
                assert not post.done(), f"the batch finished before it was seen in progress: {post.result()}"
                assert asyncio.get_running_loop().time() < deadline, "no batch in progress"
                await asyncio.sleep(0.002)
            await asyncio.sleep(delay)
            server.kill9()
            answer = await post

            store = await open_storage(database_url, 1)
            try:
                stats = await store.stats()
            finally:
                await store.close()
            # All or nothing: every report row has all its usage rows, and no usage row is orphaned.
            assert stats["usage_rows"] == stats["reports"] * ROWS_PER_REPORT, stats
            assert stats["reports"] in (stored, stored + 1)
            assert answer != 201 or stats["reports"] == stored + 1
            rolled_back += answer != 201 and stats["reports"] == stored

            # The exporter resends after the failure: stored exactly once by a restarted server.
            server = server_process(database_url)
            again = await _post(session, server.url, body)
            assert again == (201 if stats["reports"] == stored else 200), server.log[-3:]
            assert await _post(session, server.url, body) == 200
            assert server.terminate() == 0
            stored += 1
            store = await open_storage(database_url, 1)
            try:
                stats = await store.stats()
            finally:
                await store.close()
            assert (stats["reports"], stats["usage_rows"]) == (stored, stored * ROWS_PER_REPORT)
    # At least one kill landed inside the transaction: seen in progress, then nothing of it stored.
    assert rolled_back >= 1
