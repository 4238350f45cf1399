"""A PromQL endpoint that breaks every promise a real one keeps, for the exporter's hostile-input tests.

Each behaviour answers every matrix query (a range selector) the same way, and vector queries with
an empty vector (``endless-5xx`` answers everything with it), on a free loopback port, from a
thread:

- ``endless-5xx``: HTTP 503 whose body never ends;
- ``endless-200``: a valid result list, then an envelope that never ends;
- ``endless-series``: a matrix whose first series' samples never end;
- ``endless-list``: a matrix of valid series that never ends;
- ``huge-label``: one series whose label value is 20 MB;
- ``disorder``: a matrix series with samples out of time order;
- ``duplicate``: the same series twice in one matrix answer;
- ``number-values``: sample values as JSON numbers instead of strings;
- ``cut``: a valid answer's start, then the connection closes.

Endless bodies are written in chunks until the client goes away or a byte cap is reached, so a
test that fails to stop reading cannot run forever either.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

from aiohttp import web

from .prometheus_server import free_port

BEHAVIOURS = (
    "endless-5xx",
    "endless-200",
    "endless-series",
    "endless-list",
    "huge-label",
    "disorder",
    "duplicate",
    "number-values",
    "cut",
)
CHUNK = 64 * 1024
CAP = 4 * 1024**3  # bytes written at most per answer, however hostile


def _series(i: int, at: float) -> dict[str, Any]:
    labels = {"__name__": "m", "namespace": f"ns-{i}", "pod": f"p-{i}", "container": "c"}
    return {"metric": labels, "values": [[at - 15 * k, str(1000 + k)] for k in range(6, 0, -1)]}


class HostilePrometheus:
    """``with HostilePrometheus("endless-5xx") as url: ...``: serves one behaviour until closed."""

    def __init__(self, behaviour: str) -> None:
        if behaviour not in BEHAVIOURS:
            raise ValueError(f"unknown behaviour {behaviour!r}; one of {', '.join(BEHAVIOURS)}")
        self.behaviour = behaviour
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.bytes_sent = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> str:
        ready = threading.Event()

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            app = web.Application()
            app.router.add_route("*", "/api/v1/query", self._quietly)
            runner = web.AppRunner(app, access_log=None)
            self._loop.run_until_complete(runner.setup())
            self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(runner.cleanup())

        self._thread = threading.Thread(target=serve, name="hostile-prometheus", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self.url

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    async def _write(self, response: web.StreamResponse, data: bytes) -> None:
        self.bytes_sent += len(data)
        await response.write(data)

    async def _endless(self, response: web.StreamResponse, start: bytes, filler: bytes) -> web.StreamResponse:
        await self._write(response, start)
        written = len(start)
        try:
            while written < CAP:
                await self._write(response, filler)
                written += len(filler)
        except (ConnectionResetError, ConnectionError, RuntimeError):
            pass  # the client stopped reading: what a hostile peer wants to know
        return response

    async def _quietly(self, request: web.Request) -> web.StreamResponse:
        """The answer; a client that went away (what every test here makes it do) is no error."""
        try:
            return await self._answer(request)
        except (ConnectionError, RuntimeError):
            return web.StreamResponse()

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        at = float(str(form.get("time", "0")))
        expr = str(form.get("query", ""))
        b = self.behaviour
        if b != "endless-5xx" and not expr.endswith("ms]"):  # a vector query: answered as a real one would
            return web.json_response({"status": "success", "data": {"resultType": "vector", "result": []}})
        status = 503 if b == "endless-5xx" else 200
        response = web.StreamResponse(status=status, headers={"Content-Type": "application/json"})
        await response.prepare(request)
        head = b'{"status":"success","data":{"resultType":"matrix","result":['
        if b == "endless-5xx":
            return await self._endless(response, b'{"status":"error","error":"', b"x" * CHUNK)
        if b == "endless-200":
            return await self._endless(response, head + b']},"padding":"', b"y" * CHUNK)
        if b == "endless-series":
            start = head + b'{"metric":{"namespace":"a"},"values":['
            return await self._endless(response, start, (f'[{at},"1"],' * 2000).encode())
        if b == "endless-list":
            item = json.dumps(_series(0, at)).encode()
            return await self._endless(response, head + item, (b"," + item) * 200)
        if b == "cut":
            await self._write(response, head + json.dumps(_series(0, at)).encode() + b",")
            assert request.transport is not None
            request.transport.close()
            return response
        result = [_series(i, at) for i in range(3)]
        if b == "huge-label":
            result[0]["metric"]["pod"] = "p" * 20_000_000
        elif b == "disorder":
            result[1]["values"] = list(reversed(result[1]["values"]))
        elif b == "duplicate":
            result.append(result[0])
        elif b == "number-values":
            result[2]["values"] = [[t, float(v)] for t, v in result[2]["values"]]
        body = json.dumps({"status": "success", "data": {"resultType": "matrix", "result": result}}).encode()
        await self._write(response, body)
        await response.write_eof()
        return response
