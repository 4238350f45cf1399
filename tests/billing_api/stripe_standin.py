"""A local stand-in for Stripe's ``POST /v1/billing/meter_events`` that records what it is sent.

It behaves like Stripe where the billing API depends on it: form-encoded parameters, a bearer
secret key, an ``identifier`` that may be used once (a second use is a 400 "already exists"),
timestamps only from the past 35 days up to 5 minutes ahead, customers it does not know refused
with a 400. ``mode`` makes it fail on purpose: ``down`` answers 503, ``lose_responses`` records
an event and then answers 500 as if the response had been lost on the way back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

API_KEY = "sk_test_standin"
DAY = 86400


@dataclass
class MeterEvent:
    """One event Stripe accepted."""

    event_name: str
    identifier: str
    timestamp: int
    customer: str
    value: int


@dataclass
class StripeStandIn:
    """Run with ``await StripeStandIn().start()``; ``events`` holds what was accepted, by identifier."""

    mode: str = "up"
    unknown_customers: set[str] = field(default_factory=set)
    events: dict[str, MeterEvent] = field(default_factory=dict)
    attempts: int = 0
    duplicates: int = 0
    refused: list[str] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> StripeStandIn:
        """Listen on a free loopback port."""
        app = web.Application()
        app.router.add_post("/v1/billing/meter_events", self._meter_event)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()

    @staticmethod
    def _error(status: int, message: str, kind: str = "invalid_request_error", **extra: Any) -> web.Response:
        return web.json_response({"error": {"type": kind, "message": message, **extra}}, status=status)

    async def _meter_event(self, request: web.Request) -> web.Response:
        self.attempts += 1
        if request.headers.get("Authorization") != f"Bearer {API_KEY}":
            return self._error(401, "Invalid API Key provided")
        if self.mode == "down":
            return self._error(503, "Service unavailable", kind="api_error")
        form = await request.post()
        identifier = str(form["identifier"])
        timestamp = int(str(form["timestamp"]))
        customer = str(form["payload[stripe_customer_id]"])
        value = str(form["payload[value]"])
        now = int(time.time())
        if not now - 35 * DAY <= timestamp <= now + 300:
            self.refused.append(f"timestamp {timestamp} outside Stripe's window")
            return self._error(400, "Timestamp must be within the past 35 days")
        if not value.isdigit():
            self.refused.append(f"value {value!r} not an integer")
            return self._error(400, "Value must be an integer")
        if customer in self.unknown_customers:
            return self._error(400, f"No such customer: '{customer}'", code="resource_missing")
        if identifier in self.events:
            self.duplicates += 1
            return self._error(400, f"An event already exists with identifier {identifier}.")
        self.events[identifier] = MeterEvent(str(form["event_name"]), identifier, timestamp, customer, int(value))
        if self.mode == "lose_responses":
            return self._error(500, "response lost", kind="api_error")
        return web.json_response(
            {"object": "billing.meter_event", "identifier": identifier, "event_name": form["event_name"]}
        )
