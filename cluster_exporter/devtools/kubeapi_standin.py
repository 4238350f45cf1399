"""A small stand-in for the Kubernetes API server, for tests and the demo.

No real API server can run on the development machines (none is packaged), so the real
``kubernetes`` client talks over HTTP to this aiohttp app instead. It implements what
cluster-exporter uses, the way the API server does it: namespaces with labels, label selectors
(``key``, ``!key``, ``key=value``, ``key!=value``, ``key in (a,b)``, ``key notin (a,b)``),
``limit``/``continue`` pagination, and injectable failures (every request, or the next few with
given statuses and headers such as Retry-After).

For delivery it also serves namespaced ConfigMaps (v1) and Leases (coordination.k8s.io/v1) with
get, create, replace and delete, and the API server's concurrency rules: every write bumps a
cluster-wide resourceVersion; a replace carrying a stale resourceVersion is refused with 409
Conflict, one without any is applied unconditionally; creating an existing object is 409
AlreadyExists; objects can only be created in an existing namespace; a ConfigMap whose data and
binaryData exceed 1 MiB is refused with 422 Invalid ("Too long").
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
    # answer the next requests with these (status, headers), one each, then serve normally again
    fail_next: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # path?query of each request, for assertions
    resource_version: int = 1000
    # (resource, namespace, name) -> object, for configmaps and leases
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    writes: list[tuple[str, str, int]] = field(default_factory=list)  # (method, path, status) of each write
    configmap_max_bytes: int = 1024 * 1024  # the API server's limit on a ConfigMap's data + binaryData
    _matches: dict[tuple[str, int, int, int], list[str]] = field(default_factory=dict, repr=False)

    def matching_namespaces(self, selector: str) -> list[str]:
        """Sorted names matching ``selector``; remembered while the namespaces stay the same, so
        paging through 100,000 namespaces does not filter them all again for every page.

        Adding or removing namespaces is seen; to change the labels of an existing one, assign a
        new dict to ``namespaces`` (the cache is keyed on its identity, names and count)."""
        fingerprint = (selector, id(self.namespaces), len(self.namespaces), hash(tuple(self.namespaces)))
        cached = self._matches.get(fingerprint)
        if cached is None:
            cached = [n for n in sorted(self.namespaces) if selector_matches(selector, self.namespaces[n])]
            self._matches = {fingerprint: cached}
        return cached

    def get(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        """A stored object (a deep copy), or None."""
        obj = self.objects.get((resource, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None


_REASONS = {403: "Forbidden", 404: "NotFound", 409: "Conflict", 429: "TooManyRequests", 503: "ServiceUnavailable"}


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
        if state.fail_next:
            status, headers = state.fail_next.pop(0)
            response = _status(status, _REASONS.get(status, "InternalError"), "injected failure")
            response.headers.update(headers)
            return response
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
            names = state.matching_namespaces(selector)
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

    async def get_object(request: web.Request) -> web.Response:
        resource, ns, name = _key(request)
        obj = state.objects.get((resource, ns, name))
        if obj is None:
            return _not_found(resource, name)
        return web.json_response(obj)

    async def write_object(request: web.Request) -> web.Response:
        response = await _write(request)
        state.writes.append((request.method, request.path, response.status))
        return response

    async def _write(request: web.Request) -> web.Response:
        resource = request.match_info["resource"]
        ns = request.match_info["namespace"]
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _status(400, "BadRequest", "the body is not JSON")
        if not isinstance(body, dict) or not isinstance(body.get("metadata"), dict):
            return _status(400, "BadRequest", "the body has no metadata")
        meta = body["metadata"]
        name = request.match_info.get("name") or meta.get("name") or ""
        if meta.get("name", name) != name:
            return _status(400, "BadRequest", "the name of the object does not match the name on the URL")
        if meta.get("namespace", ns) != ns:
            return _status(400, "BadRequest", "the namespace of the object does not match the namespace on the URL")
        invalid = _validate(resource, name, body, state.configmap_max_bytes)
        if invalid is not None:
            return invalid
        existing = state.objects.get((resource, ns, name))
        if request.method == "POST":
            if existing is not None:
                return _status(409, "AlreadyExists", f'{resource} "{name}" already exists')
            if ns not in state.namespaces:
                return _status(404, "NotFound", f'namespaces "{ns}" not found')
            if meta.get("resourceVersion"):
                return _status(400, "BadRequest", "resourceVersion should not be set on objects to be created")
            meta["uid"] = f"uid-{resource}-{ns}-{name}-{state.resource_version}"
            meta["creationTimestamp"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            status = 201
        else:
            if existing is None:
                return _not_found(resource, name)
            wanted = meta.get("resourceVersion")
            if wanted and wanted != existing["metadata"]["resourceVersion"]:
                return _status(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {resource} "{name}": the object has been modified; '
                    "please apply your changes to the latest version and try again",
                )
            meta["uid"] = existing["metadata"]["uid"]
            meta["creationTimestamp"] = existing["metadata"]["creationTimestamp"]
            status = 200
        state.resource_version += 1
        meta.update(name=name, namespace=ns, resourceVersion=str(state.resource_version))
        state.objects[(resource, ns, name)] = body
        return web.json_response(body, status=status)

    async def delete_object(request: web.Request) -> web.Response:
        resource, ns, name = _key(request)
        if state.objects.pop((resource, ns, name), None) is None:
            return _not_found(resource, name)
        state.resource_version += 1
        state.writes.append((request.method, request.path, 200))
        return web.json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})

    async def version(_: web.Request) -> web.Response:
        return web.json_response({"major": "1", "minor": "31", "gitVersion": "v1.31.0-standin"})

    app = web.Application(middlewares=[record])
    app.router.add_get("/api/v1/namespaces", list_namespaces)
    app.router.add_get("/version", version)
    for prefix, resource in (
        ("/api/v1/namespaces/{namespace}/", "configmaps"),
        ("/apis/coordination.k8s.io/v1/namespaces/{namespace}/", "leases"),
    ):
        collection = prefix + "{resource:" + resource + "}"
        app.router.add_post(collection, write_object)
        app.router.add_get(collection + "/{name}", get_object)
        app.router.add_put(collection + "/{name}", write_object)
        app.router.add_delete(collection + "/{name}", delete_object)
    return app


def _key(request: web.Request) -> tuple[str, str, str]:
    return request.match_info["resource"], request.match_info["namespace"], request.match_info["name"]


def _not_found(resource: str, name: str) -> web.Response:
    return _status(404, "NotFound", f'{resource} "{name}" not found')


_CONFIGMAP_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_MICRO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")


def _validate(resource: str, name: str, body: dict[str, Any], max_bytes: int) -> web.Response | None:
    """The API server's validation of what cluster-exporter writes; None when valid."""
    if resource == "configmaps":
        data = body.get("data") or {}
        binary = body.get("binaryData") or {}
        size = 0
        for key, value in data.items():
            if not _CONFIGMAP_KEY.match(key) or not isinstance(value, str):
                return _status(422, "Invalid", f'ConfigMap "{name}" is invalid: data[{key}]: Invalid value')
            size += len(value.encode())
        for key, value in binary.items():
            if not _CONFIGMAP_KEY.match(key) or key in data:
                return _status(422, "Invalid", f'ConfigMap "{name}" is invalid: binaryData[{key}]: Invalid value')
            try:
                size += len(base64.b64decode(value, validate=True))
            except (binascii.Error, TypeError, ValueError):
                return _status(400, "BadRequest", f"binaryData[{key}] is not base64")
        if size > max_bytes:
            return _status(
                422, "Invalid", f'ConfigMap "{name}" is invalid: []: Too long: must have at most {max_bytes} bytes'
            )
        return None
    spec = body.get("spec") or {}
    for field_name in ("acquireTime", "renewTime"):
        value = spec.get(field_name)
        if value is not None and not (isinstance(value, str) and _MICRO_TIME.match(value)):
            return _status(400, "BadRequest", f"spec.{field_name}: not a MicroTime: {value!r}")
    duration = spec.get("leaseDurationSeconds")
    if duration is not None and (not isinstance(duration, int) or duration <= 0):
        return _status(422, "Invalid", f'Lease "{name}" is invalid: spec.leaseDurationSeconds: must be greater than 0')
    return None


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

    def mutate(self, change: Callable[[KubeState], None]) -> None:
        """Apply ``change`` to the state from the server's own thread (servers started with start_in_thread)."""
        assert self._loop is not None, "mutate() is for a server started with start_in_thread()"
        done = threading.Event()

        def apply() -> None:
            try:
                change(self.state)
            finally:
                done.set()

        self._loop.call_soon_threadsafe(apply)
        done.wait(10)

    def stop_thread(self) -> None:
        """Stop a server started with start_in_thread."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
