"""Sending reports to the billing API: one POST per report part, retried until it lands or is refused.

Every attempt of a part carries the same ``Idempotency-Key`` and byte-identical body (the caller
passes the spooled bytes), so the receiver can store a report once however often it arrives:
after a timeout, after a connection cut once the body was sent, or after a crash and restart.

What is retried is the shared rule of ``retry.py``: 5xx, 429 (honouring Retry-After), timeouts and
connection errors, with exponential backoff and jitter, for as long as the caller's deadline allows.
Any other 4xx is final: retrying an invalid report cannot make it valid, so the caller dead-letters it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import aiohttp

from .. import __version__
from ..errors import DeliveryError, PermanentDeliveryError, UsageError, clip
from ..observability.metrics import ExporterMetrics
from ..report import UsageReport
from ..retry import GaveUp, Policy, Retryable, Stopped, parse_retry_after, retry_async, retryable_status
from ..settings import BillingApiSettings, DeliverySettings

log = logging.getLogger(__name__)

REPORT_PATH = "/api/usage/report"


def split_report(report: UsageReport, max_customers: int) -> list[UsageReport]:
    """The report as parts of at most ``max_customers`` customers, sharing id and window (one part if it fits)."""
    usage = list(report.usage)
    if len(usage) <= max_customers:
        return [report.model_copy(update={"part": 1, "parts": 1})]
    chunks = [usage[i : i + max_customers] for i in range(0, len(usage), max_customers)]
    return [
        report.model_copy(update={"part": n, "parts": len(chunks), "usage": chunk})
        for n, chunk in enumerate(chunks, start=1)
    ]


def idempotency_key(report_id: str, part: int, parts: int) -> str:
    """``report_id`` for a whole report, ``report_id/part`` for one part of a split report."""
    return report_id if parts == 1 else f"{report_id}/{part}"


@dataclass(frozen=True)
class Outcome:
    """How sending one part ended."""

    kind: Literal["delivered", "rejected", "gave_up", "stopped"]
    attempts: int
    status: int | None = None
    reason: str = ""


class Deliverer:
    """``async with Deliverer(api, delivery) as d: await d.send(key, body, deadline)``.

    ``may_send`` is asked before every attempt (a stop request, a lost Lease); ``stop`` cuts a backoff
    sleep short. ``monotonic`` is the clock of deadlines, ``wall`` the one Retry-After dates are read
    against. The token is read again for each attempt, so a rotated Secret is picked up.
    """

    def __init__(
        self,
        api: BillingApiSettings,
        delivery: DeliverySettings,
        metrics: ExporterMetrics | None = None,
        stop: asyncio.Event | None = None,
        may_send: Callable[[], bool] = lambda: True,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
        identity: str | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if not api.url:
            raise UsageError("no billing API: set --billing-api-url or BILLING_API_URL")
        self.api = api
        self.delivery = delivery
        self.metrics = metrics
        self.stop = stop or asyncio.Event()
        self.may_send = may_send
        self.monotonic = monotonic
        self.wall = wall
        self.jitter = jitter
        self.url = f"{api.url.rstrip('/')}{REPORT_PATH}"
        self.user_agent = f"cluster-exporter/{__version__}" + (f" ({identity})" if identity else "")
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Deliverer:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.api.timeout.total_seconds()))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def send(self, key: str, body: str, deadline: float, label: str = "") -> Outcome:
        """POST ``body`` under ``key`` until accepted, refused (4xx), stopped, or the next wait passes ``deadline``."""
        payload = body.encode()
        d = self.delivery
        policy = Policy(
            initial=d.backoff_initial.total_seconds(),
            maximum=d.backoff_max.total_seconds(),
            retry_after_max=d.retry_after_max.total_seconds(),
            log_level=logging.WARNING,
        )
        attempts = 0

        async def attempt() -> tuple[int, bytes]:
            nonlocal attempts
            attempts += 1
            return await self._post(key, payload)

        try:
            status, text = await retry_async(
                attempt,
                policy,
                label=f"delivery of {label or key}",
                deadline=deadline,
                may_continue=self.may_send,
                sleep=self._sleep,
                monotonic=self.monotonic,
                jitter=self.jitter,
                logger=log,
            )
        except Stopped:
            return Outcome("stopped", attempts, reason="stopped before the next attempt")
        except GaveUp as exc:
            kind: Literal["gave_up", "stopped"] = "gave_up" if self.may_send() else "stopped"
            return Outcome(kind, attempts, reason=f"{exc.last} (after {attempts} attempts)")
        if 200 <= status < 300:
            return Outcome("delivered", attempts, status)
        return Outcome("rejected", attempts, status, f"HTTP {status}: {clip(text)}")

    async def _sleep(self, seconds: float) -> None:
        # A stop request cuts the backoff short; the next attempt then sees may_send() is False.
        try:
            await asyncio.wait_for(self.stop.wait(), timeout=seconds)
        except TimeoutError:
            pass

    async def _post(self, key: str, payload: bytes) -> tuple[int, bytes]:
        assert self._session is not None, "use Deliverer as an async context manager"
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": key,
            "User-Agent": self.user_agent,
        }
        token = self.api.resolved_token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        started = self.monotonic()
        try:
            async with self._session.post(self.url, data=payload, headers=headers) as resp:
                text = await resp.read()
                status = resp.status
                retry_after = parse_retry_after(resp.headers.get("Retry-After"), self.wall())
        except TimeoutError as exc:
            self._attempt("timeout", started)
            raise Retryable(f"timed out after {self.api.timeout.total_seconds():g}s", outcome="timeout") from exc
        except aiohttp.ClientError as exc:
            self._attempt("connection_error", started)
            raise Retryable(f"{exc.__class__.__name__}: {clip(str(exc))}", outcome="connection_error") from exc
        if retryable_status(status):
            outcome = "http_429" if status == 429 else "http_5xx"
            self._attempt(outcome, started)
            raise Retryable(f"HTTP {status}: {clip(text)}", retry_after=retry_after, outcome=outcome)
        self._attempt("success" if 200 <= status < 300 else "http_4xx", started)
        return status, text

    def _attempt(self, outcome: str, started: float) -> None:
        if self.metrics is not None:
            self.metrics.delivery_attempts.labels(outcome).inc()
            self.metrics.delivery_duration.observe(self.monotonic() - started)


async def send_report(
    api: BillingApiSettings,
    delivery: DeliverySettings,
    report: UsageReport,
    metrics: ExporterMetrics | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> int:
    """Deliver one report now, without spool or watermark (the ``report`` command); returns the part count."""
    parts = split_report(report, delivery.max_customers_per_part)
    deadline = monotonic() + delivery.retry_budget.total_seconds()
    async with Deliverer(api, delivery, metrics, monotonic=monotonic) as deliverer:
        for part in parts:
            key = idempotency_key(part.report_id, part.part, part.parts)
            outcome = await deliverer.send(key, part.to_json(), deadline)
            if outcome.kind == "rejected":
                raise PermanentDeliveryError(f"billing API refused report {key}: {outcome.reason}")
            if outcome.kind != "delivered":
                raise DeliveryError(f"report {key} not delivered: {outcome.reason}")
    return len(parts)
