"""Where a report waits and runs: one part per cluster at a time, a bounded number at once, off the loop.

A report part costs CPU and memory in proportion to its size (parsing the JSON, validating every
amount, hashing the content, building its hourly rows); done on the event loop, one large part
stalled every other request, ``/healthz`` included. Here:

- each cluster's parts take turns (``turn``), and a part's body is only read once its turn has
  come, so one cluster sending many large parts holds at most one body in memory and cannot queue
  ahead of the other clusters;
- at most ``workers`` parts are parsed and stored at once (``slot``), which bounds the memory
  of the requests in flight;
- parsing and validation run on the worker threads (``run``), so the event loop keeps answering.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, TypeVar

T = TypeVar("T")


class Intake:
    """Turns per cluster, slots for the parts in progress, and the worker threads that parse them."""

    def __init__(self, workers: int = 2) -> None:
        self.workers = workers
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="billing-report")
        self._slots = asyncio.Semaphore(workers)
        self._turns: dict[str, asyncio.Lock] = {}

    @asynccontextmanager
    async def turn(self, cluster: str) -> AsyncIterator[None]:
        """Wait until no other part of ``cluster`` is being received or stored."""
        # One lock per configured (authenticated) cluster: the dict is as small as the tokens list.
        async with self._turns.setdefault(cluster, asyncio.Lock()):
            yield

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Wait until fewer than ``workers`` parts are being parsed or stored."""
        async with self._slots:
            yield

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        """``work(*args)`` on a worker thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, partial(work, *args))

    def close(self) -> None:
        """Stop the worker threads once the work in progress is done."""
        self._executor.shutdown(wait=True, cancel_futures=True)
