"""Pushing stored usage to Stripe Billing meter events, through the outbox.

A report's transaction only flags it (``reports.stripe_expanded = 0``); this module, running in
the background, turns settled reports into outbox events (``Storage.expand_next_report``) and
sends them with the official ``stripe`` package (v1 ``billing.meter_events``), so Stripe being
slow or down never blocks or loses a report. Every event carries a deterministic ``identifier``
(customer, meter, hour, seq): a resend after a crash or a lost response is refused by Stripe as a
duplicate, which we count as delivered, so nothing is billed twice.

Values are integers: time-integrated meters in thousandths (cpu_hours -> milli-core-hours,
memory_gb_hours -> milli-GB-hours, storage_gb_hours -> milli-GB-hours; the optional gpu_hours,
gpu_utilized_hours, cpu_request_hours and memory_request_gb_hours alike, and only when measured),
counted meters as they are (bytes, requests); custom meters by their ``stripe_scale``. The
timestamp is always the hour's start, never moved: usage stamped into another period would make
Stripe and the invoice disagree.
An event whose hour Stripe no longer takes (older than its 35 days, e.g. a backfill, or a backlog
that waited too long) is marked ``expired`` instead, counted and logged; the invoice keeps it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol

import aiohttp
import stripe

from ..errors import clip
from .errors import StorageError, StripePushError
from .metrics import BillingApiMetrics
from .pricing import PricingConfig
from .storage import PendingEvent, Storage

log = logging.getLogger("cluster_exporter.billing_api.stripe")

# Stripe takes timestamps from the past 35 days; a minute of margin covers the request on its way.
STRIPE_MAX_AGE = timedelta(days=35) - timedelta(minutes=1)
SEND_BATCH = 200
CONCURRENCY = 8
FIRST_BACKOFF_S = 30
MAX_BACKOFF_S = 3600
EXPANSIONS_PER_ROUND = 1000

Delivered = Literal["sent", "duplicate"]


def stripe_takes(hour: int, now: int) -> bool:
    """Whether Stripe still takes an event stamped ``hour`` (the hour's start, never moved)."""
    return hour >= now - int(STRIPE_MAX_AGE.total_seconds())


def backoff_seconds(attempts: int) -> int:
    """Delay before the next try of an event that has failed ``attempts`` times (doubling, capped)."""
    return int(min(FIRST_BACKOFF_S * 2 ** max(attempts - 1, 0), MAX_BACKOFF_S))


class MeterEventSender(Protocol):
    """Sends one meter event; raises StripePushError."""

    async def send(self, event: PendingEvent, event_name: str, timestamp: int) -> Delivered:
        """Deliver ``event``; "duplicate" when Stripe already had its identifier."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


def _is_duplicate(exc: stripe.InvalidRequestError) -> bool:
    # Stripe refuses a known identifier with a 400 ("An event already exists with identifier ...").
    message = (exc.user_message or str(exc) or "").lower()
    return exc.code in ("duplicate_meter_event", "resource_already_exists") or (
        "already exists" in message and "identifier" in message
    )


class StripeMeterEventSender:
    """The official ``stripe`` client on aiohttp, its base address pointed at ``api_base``."""

    def __init__(self, api_key: str, api_base: str, timeout_s: float = 30.0) -> None:
        self._http = stripe.AIOHTTPClient(timeout=aiohttp.ClientTimeout(total=timeout_s))
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base, "meter_events": api_base},
            http_client=self._http,
            max_network_retries=0,  # the outbox retries, with its own backoff
        )

    async def send(self, event: PendingEvent, event_name: str, timestamp: int) -> Delivered:
        """POST /v1/billing/meter_events for one event."""
        try:
            await self._client.v1.billing.meter_events.create_async(
                params={
                    "event_name": event_name,
                    "identifier": event.identifier,
                    "timestamp": timestamp,
                    "payload": {"stripe_customer_id": event.stripe_customer_id, "value": str(event.value)},
                }
            )
        except stripe.InvalidRequestError as exc:
            if _is_duplicate(exc):
                return "duplicate"
            raise StripePushError(
                f"Stripe refused event: HTTP {exc.http_status} {clip(str(exc))}", retryable=False
            ) from exc
        except stripe.StripeError as exc:
            # Connection errors, 429, 5xx, and 401/403 (a wrong key is fixed by the operator, not by dropping usage).
            status = exc.http_status
            retryable = status is None or status >= 500 or status in (401, 403, 409, 429)
            raise StripePushError(f"Stripe: HTTP {status} {clip(str(exc))}", retryable=retryable) from exc
        return "sent"

    async def close(self) -> None:
        """Close the aiohttp session."""
        await self._http.close_async()


@dataclass
class RoundResult:
    """What one push round did."""

    expanded: int = 0
    sent: int = 0
    duplicates: int = 0
    retried: int = 0
    failed: int = 0
    expired: int = 0
    interrupted: bool = False


class StripePusher:
    """Expands settled reports into outbox events and sends them, round after round."""

    def __init__(
        self,
        storage: Storage,
        pricing: PricingConfig,
        sender: MeterEventSender,
        *,
        clock: Callable[[], datetime],
        interval: timedelta,
        settle_delay: timedelta,
        metrics: BillingApiMetrics,
    ) -> None:
        self.storage = storage
        self.meters = pricing.stripe_meters()
        self.sender = sender
        self.clock = clock
        self.interval = interval
        self.settle_delay = settle_delay
        self.metrics = metrics

    async def push_once(self) -> RoundResult:
        """One round: expand every settled report, then send what is due until done or Stripe fails."""
        result = RoundResult()
        now = int(self.clock().timestamp())
        ready_before = now - int(self.settle_delay.total_seconds())
        while result.expanded < EXPANSIONS_PER_ROUND and await self.storage.expand_next_report(
            ready_before, self.meters, now
        ):
            result.expanded += 1
        while not result.interrupted:
            events = await self.storage.due_events(now, SEND_BATCH)
            if not events:
                break
            await self._expire([e for e in events if not stripe_takes(e.hour, now)], result)
            await self._send_batch([e for e in events if stripe_takes(e.hour, now)], now, result)
        if result.expired:
            log.error(
                "stripe: %d meter events of hours older than Stripe's 35 days expired unsent (a backfill, or a "
                "backlog that waited too long); they stay on the invoice",
                result.expired,
            )
        self.metrics.stripe_pending.set(await self.storage.count_events("pending"))
        if not result.interrupted:
            self.metrics.stripe_last_round.set(now)
        return result

    async def _expire(self, events: list[PendingEvent], result: RoundResult) -> None:
        if not events:
            return
        await self.storage.mark_expired([e.id for e in events], "older than Stripe's 35 days: never sent")
        result.expired += len(events)
        self.metrics.stripe_events.labels("expired").inc(len(events))

    async def _send_batch(self, events: list[PendingEvent], now: int, result: RoundResult) -> None:
        slots = asyncio.Semaphore(CONCURRENCY)

        async def one(event: PendingEvent) -> tuple[PendingEvent, Delivered | StripePushError | None]:
            async with slots:
                if result.interrupted:  # Stripe is failing: leave the rest, untouched, for the next round
                    return event, None
                event_name = self.meters.get(event.meter, (event.meter, 1))[0]
                try:
                    return event, await self.sender.send(event, event_name, event.hour)
                except StripePushError as exc:
                    if exc.retryable:
                        result.interrupted = True
                    return event, exc

        delivered: list[int] = []
        for event, outcome in await asyncio.gather(*(one(e) for e in events)):
            if outcome is None:
                continue
            if outcome == "sent" or outcome == "duplicate":
                delivered.append(event.id)
                result.sent += outcome == "sent"
                result.duplicates += outcome == "duplicate"
                self.metrics.stripe_events.labels(outcome).inc()
            elif isinstance(outcome, StripePushError) and outcome.retryable:
                delay = backoff_seconds(event.attempts + 1)
                await self.storage.mark_retry(event.id, now + delay, str(outcome))
                result.retried += 1
                self.metrics.stripe_events.labels("retry").inc()
                log.warning(
                    "stripe: event %s attempt %d failed (%s); will retry in %ds",
                    event.identifier,
                    event.attempts + 1,
                    outcome,
                    delay,
                )
            else:
                await self.storage.mark_failed(event.id, str(outcome))
                result.failed += 1
                self.metrics.stripe_events.labels("failed").inc()
                log.error("stripe: event %s refused for good: %s", event.identifier, outcome)
        await self.storage.mark_sent(delivered, now)

    async def run(self, stop: asyncio.Event) -> None:
        """Push rounds every ``interval`` until ``stop`` is set; a failing round never ends the loop."""
        while not stop.is_set():
            try:
                result = await self.push_once()
                if result.expanded or result.sent or result.retried or result.failed or result.expired:
                    log.info("stripe: %s", result)
            except StorageError as exc:
                log.error("stripe: push round failed: %s", exc)
            except Exception:  # the pusher must outlive any bug in one round
                log.exception("stripe: push round crashed")
            try:
                await asyncio.wait_for(stop.wait(), self.interval.total_seconds())
            except TimeoutError:
                pass
        await self.sender.close()
