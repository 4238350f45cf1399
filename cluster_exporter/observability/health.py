"""/metrics, /healthz and /readyz for the long-running `run`, on the injected registry.

/healthz answers 200 while the event loop turns and neither the runner nor the Lease elector has
died (``service.supervise`` clears ``Health.alive`` when either task ends other than on a stop
request; a liveness probe that restarts a pod merely waiting for the billing API would only lose
its place in the queue).
/readyz answers 200 once the leader has read its state (a first catch-up of many windows may take
long; the pod is ready meanwhile), or, on a standby replica, while the Lease API answers: before
that the process has not shown it can reach its state or the API.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ..errors import UsageError

log = logging.getLogger(__name__)


@dataclass
class Health:
    """What the probes report; the service updates it."""

    alive: bool = True  # False once the runner or the Lease elector died
    ready: bool = False
    reason: str = "starting"


def make_app(registry: CollectorRegistry, health: Health) -> web.Application:
    """The aiohttp application."""

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        if health.alive:
            return web.Response(text="ok\n")
        return web.Response(status=503, text=f"not alive: {health.reason}\n")

    async def readyz(_: web.Request) -> web.Response:
        if health.ready:
            return web.Response(text="ready\n")
        return web.Response(status=503, text=f"not ready: {health.reason}\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


class MetricsServer:
    """``server = await MetricsServer(registry, health, address, port).start()``; ``server.port`` is the bound port."""

    def __init__(self, registry: CollectorRegistry, health: Health, address: str, port: int) -> None:
        self.registry = registry
        self.health = health
        self.address = address
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> MetricsServer:
        """Bind and serve in the running loop (port 0 binds a free port)."""
        self._runner = web.AppRunner(make_app(self.registry, self.health), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.address, self.port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise UsageError(f"cannot serve metrics on {self.address}:{self.port}: {exc.strerror}") from exc
        sockets = getattr(site._server, "sockets", None)
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        log.info("serving /metrics, /healthz and /readyz on %s:%d", self.address, self.port)
        return self

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
