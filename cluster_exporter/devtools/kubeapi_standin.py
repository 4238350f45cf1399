"""A small stand-in for the Kubernetes API server, for tests and the demo.

No real API server can run on the development machines (none is packaged), so the real
``kubernetes`` client talks over HTTP to this aiohttp app instead. It implements what
cluster-exporter uses, the way the API server does it: namespaces with labels, label selectors
(``key``, ``!key``, ``key=value``, ``key!=value``, ``key in (a,b)``, ``key notin (a,b)``),
``limit``/``continue`` pagination, and injectable failures.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

_REQUIREMENT = re.compile(
    r"^\s*(?P<neg>!)?\s*(?P<key>[A-Za-z0-9_./-]+)\s*"
    r"(?:(?P<op>==|=|!=)\s*(?P<value>[A-Za-z0-9_.-]*)|\s+(?P<setop>in|notin)\s*\((?P<values>[^)]*)\))?\s*$"
)


def _split_selector(selector: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    if current.strip():
        parts.append(current)
    return parts


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Whether labels satisfy a Kubernetes label selector; raises ValueError on a bad selector."""
    for requirement in _split_selector(selector):
        m = _REQUIREMENT.match(requirement)
        if not m:
            raise ValueError(f"unable to parse requirement: {requirement!r}")
        key = m["key"]
        if m["neg"]:
            if key in labels:
                return False
        elif m["op"] in ("=", "=="):
            if labels.get(key) != m["value"]:
                return False
        elif m["op"] == "!=":
            if labels.get(key) == m["value"]:
                return False
        elif m["setop"]:
            values = {v.strip() for v in m["values"].split(",") if v.strip()}
            if m["setop"] == "in" and labels.get(key) not in values:
                return False
            if m["setop"] == "notin" and labels.get(key) in values:
                return False
        elif key not in labels:
            return False
    return True


@dataclass
class KubeState:
    """What the stand-in serves, and how it should misbehave."""

    namespaces: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> labels
    fail_status: int | None = None  # answer every request with this HTTP status
    requests: list[str] = field(default_factory=list)  # path?query of each request, for assertions
    resource_version: int = 1000


def _status(code: int, reason: str, message: str) -> web.Response:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return web.json_response(body, status=code)


def make_app(state: KubeState) -> web.Application:
    """The aiohttp application serving ``state``."""

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        state.requests.append(request.path_qs)
        if state.fail_status is not None:
            return _status(state.fail_status, "InternalError", "injected failure")
        return await handler(request)

    async def list_namespaces(request: web.Request) -> web.Response:
        selector = request.query.get("labelSelector", "")
        try:
            limit = int(request.query.get("limit", "0"))
        except ValueError:
            return _status(400, "BadRequest", "limit must be an integer")
        start = 0
        token = request.query.get("continue")
        if token:
            try:
                start = int(json.loads(base64.urlsafe_b64decode(token))["start"])
            except (ValueError, KeyError, TypeError):
                return _status(410, "Expired", "the provided continue parameter is too old or malformed")
        try:
            names = [n for n in sorted(state.namespaces) if selector_matches(selector, state.namespaces[n])]
        except ValueError as exc:
            return _status(400, "BadRequest", str(exc))
        page = names[start : start + limit] if limit > 0 else names[start:]
        more = limit > 0 and start + limit < len(names)
        metadata: dict[str, Any] = {"resourceVersion": str(state.resource_version)}
        if more:
            metadata["continue"] = base64.urlsafe_b64encode(json.dumps({"start": start + limit}).encode()).decode()
            metadata["remainingItemCount"] = len(names) - start - limit
        items = [
            {
                "metadata": {
                    "name": n,
                    "labels": state.namespaces[n],
                    "uid": f"uid-{n}",
                    "resourceVersion": str(state.resource_version),
                    "creationTimestamp": "2025-01-01T00:00:00Z",
                },
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            }
            for n in page
        ]
        return web.json_response({"kind": "NamespaceList", "apiVersion": "v1", "metadata": metadata, "items": items})

    async def version(_: web.Request) -> web.Response:
        return web.json_response({"major": "1", "minor": "31", "gitVersion": "v1.31.0-standin"})

    app = web.Application(middlewares=[record])
    app.router.add_get("/api/v1/namespaces", list_namespaces)
    app.router.add_get("/version", version)
    return app


def write_kubeconfig(path: Path, url: str) -> Path:
    """A kubeconfig (JSON, which YAML parsers read) pointing the client at ``url``."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "standin", "cluster": {"server": url}}],
        "users": [{"name": "standin", "user": {"token": "standin-token"}}],
        "contexts": [{"name": "standin", "context": {"cluster": "standin", "user": "standin"}}],
        "current-context": "standin",
    }
    path.write_text(json.dumps(config, indent=2))
    return path


class KubeApiStandIn:
    """Run the stand-in on a free loopback port, in the caller's loop or in its own thread."""

    def __init__(self, state: KubeState | None = None) -> None:
        self.state = state or KubeState()
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> KubeApiStandIn:
        """Serve in the running event loop."""
        self._runner = web.AppRunner(make_app(self.state), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()

    def start_in_thread(self) -> KubeApiStandIn:
        """Serve from a background thread (for synchronous callers such as the demo)."""
        ready = threading.Event()

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self.start())
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self.stop())

        self._thread = threading.Thread(target=serve, name="kubeapi-standin", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop_thread(self) -> None:
        """Stop a server started with start_in_thread."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
