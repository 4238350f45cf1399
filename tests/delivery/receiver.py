"""A billing API stand-in that records every attempt and fails on purpose, on a free loopback port.

It answers ``POST /api/usage/report`` the way the real receiver must: by ``Idempotency-Key``, so a
replay of an accepted key is answered 200 again. What it answers is scripted per key (a list of
behaviours consumed one per attempt) or drawn by a ``chaos`` function; behaviours:

* ``("status", code, headers)`` answer with that status (503, 429 with Retry-After, 400, ...)
* ``("cut",)`` read the whole body, then close the connection without answering
* ``("slow", seconds)`` read the body, wait, then answer 200 (past the client's timeout)
* ``("ok",)`` accept

It runs in its own thread, so tests may block on subprocesses while it serves.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

Behaviour = tuple[Any, ...]


@dataclass
class Attempt:
    """One request as the receiver saw it."""

    key: str
    body: bytes
    authorization: str
    user_agent: str
    at: float  # time.monotonic() when the body had been read
    behaviour: Behaviour
    accepted: bool = False

    @property
    def digest(self) -> str:
        """sha256 of the body."""
        return hashlib.sha256(self.body).hexdigest()

    def report(self) -> dict[str, Any]:
        """The body as JSON."""
        return dict(json.loads(self.body))


@dataclass
class Receiver:
    """``with Receiver(token="t") as r: r.url``; ``r.attempts`` lists everything received."""

    token: str | None = None
    script: dict[str, list[Behaviour]] = field(default_factory=dict)
    chaos: Callable[[str], Behaviour] | None = None
    attempts: list[Attempt] = field(default_factory=list)
    url: str = ""

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    def _next(self, key: str) -> Behaviour:
        with self._lock:
            queue = self.script.get(key)
            if queue:
                return queue.pop(0)
        return self.chaos(key) if self.chaos is not None else ("ok",)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        key = request.headers.get("Idempotency-Key", "")
        behaviour = self._next(key)
        attempt = Attempt(
            key,
            body,
            request.headers.get("Authorization", ""),
            request.headers.get("User-Agent", ""),
            time.monotonic(),
            behaviour,
        )
        with self._lock:
            self.attempts.append(attempt)
        if self.token is not None and attempt.authorization != f"Bearer {self.token}":
            return web.json_response({"error": "unauthorized"}, status=401)
        kind = behaviour[0]
        if kind == "cut":
            assert request.transport is not None
            request.transport.close()  # the body was read: the client cannot tell whether we stored it
            raise asyncio.CancelledError
        if kind == "slow":
            await asyncio.sleep(behaviour[1])
        elif kind == "status":
            headers = behaviour[2] if len(behaviour) > 2 else {}
            return web.json_response({"error": f"scripted {behaviour[1]}"}, status=behaviour[1], headers=headers)
        attempt.accepted = True
        return web.json_response({"status": "accepted", "idempotency_key": key})

    def start(self) -> Receiver:
        """Serve on a free port from a background thread."""
        ready = threading.Event()

        async def serve() -> None:
            app = web.Application()
            app.router.add_post("/api/usage/report", self._handle)
            self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.url = f"http://127.0.0.1:{port}"

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(serve())
            ready.set()
            self._loop.run_forever()
            assert self._runner is not None
            self._loop.run_until_complete(self._runner.cleanup())
            self._loop.close()

        self._thread = threading.Thread(target=run, name="billing-receiver", daemon=True)
        self._thread.start()
        assert ready.wait(10), "receiver did not start"
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- views for assertions -------------------------------------------------------------------

    def snapshot(self) -> list[Attempt]:
        """A copy of the attempts so far."""
        with self._lock:
            return list(self.attempts)

    def by_key(self) -> dict[str, list[Attempt]]:
        """Attempts grouped by Idempotency-Key, in arrival order."""
        out: dict[str, list[Attempt]] = {}
        for attempt in self.snapshot():
            out.setdefault(attempt.key, []).append(attempt)
        return out

    def accepted_keys(self) -> set[str]:
        """Keys answered 2xx at least once."""
        return {a.key for a in self.snapshot() if a.accepted}
