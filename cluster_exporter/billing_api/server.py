"""Running the billing API: open the database, migrate, serve HTTP, push to Stripe, stop cleanly.

SIGTERM and SIGINT set a stop flag: the listener closes, requests in flight finish (their
transactions commit or roll back as a whole), the Stripe pusher ends its round, then the
database is closed. A kill -9 at any moment loses nothing that was answered 201, and leaves no
half-stored report (one transaction per part).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from ..errors import clip
from .app import ApiContext, build_app
from .intake import Intake
from .metrics import BillingApiMetrics
from .models import ReportLimits
from .pricing import load_pricing
from .settings import BillingSettings, Credentials, admin_token, cluster_tokens
from .storage import open_storage
from .stripe_push import StripeMeterEventSender, StripePusher

log = logging.getLogger("cluster_exporter.billing_api")


class OneLineLogger(logging.LoggerAdapter):
    """aiohttp's server logger, one line per event: what it logs with a traceback is a client's garbage.

    aiohttp logs "Error handling request" with a traceback for malformed HTTP (a bad request
    line, an oversized header) and for a body it cannot decode; before any authentication, so
    anyone could fill the logs. Our handlers' own faults never reach it: the error middleware
    answers them and logs those tracebacks itself.
    """

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        """Log ``msg`` and the exception's one-line description as a warning, without a traceback."""
        exc = exc_info if isinstance(exc_info, BaseException) else None
        detail = f"{type(exc).__name__}: {clip(str(exc), 200)}" if exc is not None else "(no detail)"
        self.logger.warning(f"{msg}: %s", *args, detail, **kwargs)

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        """Pass messages through unchanged."""
        return msg, kwargs


def utc_now() -> datetime:
    """The wall clock, in UTC (the default clock; tests inject their own)."""
    return datetime.now(UTC)


async def serve(
    settings: BillingSettings,
    *,
    clock: Callable[[], datetime] = utc_now,
    registry: CollectorRegistry | None = None,
    on_listening: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT (or until ``stop`` is set, when one is given)."""
    tokens = cluster_tokens(settings)
    admin = admin_token(settings)
    credentials = Credentials.build(tokens, admin)  # refuses an admin token that is a cluster's
    pricing = load_pricing(settings.pricing_file)
    if not tokens:
        log.warning("no cluster tokens configured: every report will be refused with 401")
    if admin is None:
        log.warning("no admin token configured: the admin endpoints refuse every request")
    storage = await open_storage(settings.database_url, settings.database_pool_size)
    intake = Intake(settings.report_workers)
    pusher_task: asyncio.Task[None] | None = None
    runner: web.AppRunner | None = None
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    try:
        applied = await storage.migrate(int(clock().timestamp()))
        if applied:
            log.info("database migrated to schema version %d", applied[-1])
        metrics = BillingApiMetrics(registry if registry is not None else CollectorRegistry())
        limits = ReportLimits(
            max_window_hours=int(settings.max_window.total_seconds()) // 3600,
            max_customers=settings.max_customers_per_report,
            max_rows=settings.max_rows_per_report,
            max_age=settings.max_window_age,
        )
        ctx = ApiContext(
            storage,
            pricing,
            credentials,
            metrics,
            clock,
            settings.max_body_bytes,
            limits,
            intake,
            settings.request_timeout.total_seconds(),
        )
        runner = web.AppRunner(
            build_app(ctx),
            access_log=None,
            logger=OneLineLogger(logging.getLogger("aiohttp.server"), {}),
            # Closes a connection idle that long, and one whose request head has not all arrived.
            keepalive_timeout=settings.idle_timeout.total_seconds(),
        )
        await runner.setup()
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        host, port = runner.addresses[0][:2]
        url = f"http://{host}:{port}"
        log.info("listening on %s (%d cluster tokens, database %s)", url, len(tokens), storage.dialect)
        if on_listening is not None:
            on_listening(url)
        if settings.stripe_api_key:
            sender = StripeMeterEventSender(settings.stripe_api_key, settings.stripe_api_base)
            pusher = StripePusher(
                storage,
                pricing,
                sender,
                clock=clock,
                interval=settings.stripe_push_interval,
                settle_delay=settings.stripe_settle_delay,
                metrics=metrics,
            )
            pusher_task = asyncio.create_task(pusher.run(stop))
        else:
            log.info("no Stripe API key: usage is stored and queued for Stripe, nothing is pushed")
        await stop.wait()
        log.info("stopping: finishing requests in flight")
    finally:
        stop.set()
        if runner is not None:
            await runner.cleanup()
        if pusher_task is not None:
            await pusher_task
        await asyncio.to_thread(intake.close)
        await storage.close()
