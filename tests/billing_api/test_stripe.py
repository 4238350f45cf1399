"""The Stripe outbox against a recording stand-in for Stripe, on SQLite and PostgreSQL.

Stripe is down while reports arrive (they are all accepted at once), then loses responses, then
comes back: every (customer, meter, hour) reaches it exactly once, with the value worked out by
hand, in integer units (thousandths for core-hours and GB-hours, bytes and requests as they are).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cluster_exporter.billing_api.pricing import DEFAULT_PRICING_TOML
from cluster_exporter.billing_api.stripe_push import backoff_seconds, stripe_takes

from .conftest import TOKENS, Server, start_server, stop_server
from .reports import report_body, usage
from .stripe_standin import API_KEY, StripeStandIn

EAST, WEST, SOUTH = "k8s-us-east-1", "k8s-eu-west-1", "k8s-ap-south-1"


class Clock:
    """The server's clock: real time plus an offset the test moves forward to make retries due."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait until ``check`` holds (at most 30 s)."""
    deadline = asyncio.get_running_loop().time() + 30
    while asyncio.get_running_loop().time() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def outbox(server: Server) -> dict[str, int]:
    status, answer = await server.admin("GET", "/api/stripe/outbox")
    assert status == 200
    return answer  # type: ignore[no-any-return]


def recorded(stripe: StripeStandIn) -> dict[tuple[str, str, int], list[int]]:
    """(Stripe customer, event name, timestamp) -> values of the accepted events."""
    out: dict[tuple[str, str, int], list[int]] = {}
    for event in stripe.events.values():
        out.setdefault((event.customer, event.event_name, event.timestamp), []).append(event.value)
    return out


async def put(server: Server, customer: str, **terms: Any) -> None:
    status, _ = await server.admin(
        "PUT", f"/api/customers/{customer}", json.dumps({"plan": "starter", **terms}).encode()
    )
    assert status in (200, 201)


async def test_stripe_down_then_up_every_event_once(database_url: str) -> None:
    stripe = await StripeStandIn(mode="down", unknown_customers={"cus_missing"}).start()
    clock = Clock()
    server = await start_server(
        database_url,
        clock=clock,
        stripe_api_key=API_KEY,
        stripe_api_base=stripe.url,
        stripe_push_interval=timedelta(seconds=0.05),
        stripe_settle_delay=timedelta(0),
    )
    try:
        h0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
        h1 = h0 + timedelta(hours=1)
        old = h0 - timedelta(days=40)
        await put(server, "cust_a", stripe_customer_id="cus_a")
        await put(server, "cust_b", stripe_customer_id="cus_b")
        await put(server, "cust_old", stripe_customer_id="cus_old")
        await put(server, "cust_bad", stripe_customer_id="cus_missing")
        await put(server, "cust_later")  # no Stripe customer yet
        reports = [
            (EAST, h0, {"cust_a": usage(cpu=1.5, memory=0.5, sent=1000), "cust_b": usage(storage=10.25)}),
            (
                WEST,
                h0,
                {"cust_a": usage(cpu=0.25, sent=24), "cust_later": usage(cpu=3.0), "cust_bad": usage(requests=9)},
            ),
            (EAST, h1, {"cust_a": usage(cpu=2.0, requests=7)}),
            (EAST, old, {"cust_old": usage(received=5)}),
        ]
        for cluster, start, customers in reports:  # Stripe is down: every report is still taken at once
            assert (await server.post_report(report_body(cluster, start, customers), TOKENS[cluster]))[0] == 201

        # Down: tried, nothing delivered, everything waits in the outbox; but the 40-day-old hour
        # (a backfill) is one Stripe no longer takes: expired at once, never sent with a moved time.
        await eventually(lambda: _true_if(stripe.attempts >= 1), "a first attempt")
        await eventually(lambda: _pending_is(server, 8), "8 events in the outbox")
        assert not stripe.events and (await outbox(server))["reports_not_expanded"] == 0
        assert (await outbox(server))["events_expired"] == 1
        expired = server.registry.get_sample_value(
            "cluster_exporter_billing_api_stripe_events_total", {"outcome": "expired"}
        )
        assert expired == 1

        # Stripe takes events but the responses are lost: the pusher must not count them as delivered.
        stripe.mode = "lose_responses"
        clock.offset += timedelta(seconds=backoff_seconds(1) + 1)
        await eventually(lambda: _true_if(len(stripe.events) >= 1), "an event recorded with its response lost")
        assert (await outbox(server))["events_sent"] == 0

        # Up again; retries come due; the lost ones are refused as duplicates and count as delivered.
        stripe.mode = "up"
        clock.offset += timedelta(hours=2)
        await eventually(lambda: _sent_and_failed(server, 6, 1), "6 events sent and 1 refused for good")
        assert stripe.duplicates >= 1
        t0, t1 = int(h0.timestamp()), int(h1.timestamp())
        expected = {
            ("cus_a", "cpu_hours", t0): [1750],  # 1.5 + 0.25 core-hours from two clusters, in milli-core-hours
            ("cus_a", "memory_gb_hours", t0): [500],  # 0.5 GB-hours
            ("cus_a", "network_bytes_sent", t0): [1024],  # 1000 + 24 bytes
            ("cus_a", "cpu_hours", t1): [2000],
            ("cus_a", "http_requests", t1): [7],
            ("cus_b", "storage_gb_hours", t0): [10250],  # 10.25 GB-hours
        }
        got = recorded(stripe)
        assert got == expected  # nothing of cus_old, every timestamp the hour's own start
        assert stripe.refused == []
        assert (await outbox(server))["events_expired"] == 1

        # A customer gets its Stripe id: its queued usage goes out. A wrong id, corrected, is retried.
        await put(server, "cust_later", stripe_customer_id="cus_later")
        await put(server, "cust_bad", stripe_customer_id="cus_fixed")
        await eventually(lambda: _sent_and_failed(server, 8, 0), "the queued and the corrected events")
        got = recorded(stripe)
        assert got[("cus_later", "cpu_hours", t0)] == [3000]
        assert got[("cus_fixed", "http_requests", t0)] == [9]

        # Usage for an hour already pushed, from a third cluster: one more event with the difference.
        late = report_body(SOUTH, h0, {"cust_a": usage(cpu=0.5)})
        assert (await server.post_report(late, TOKENS[SOUTH]))[0] == 201
        await eventually(lambda: _sent_and_failed(server, 9, 0), "the late event")
        assert sorted(recorded(stripe)[("cus_a", "cpu_hours", t0)]) == [500, 1750]
        assert len(stripe.events) == 9 and (await outbox(server))["events_pending"] == 0
        assert server.registry.get_sample_value("cluster_exporter_billing_api_stripe_events_total", {"outcome": "sent"})
    finally:
        await stop_server(server)
        await stripe.stop()


async def _true_if(condition: bool) -> bool:
    return condition


async def _pending_is(server: Server, count: int) -> bool:
    return (await outbox(server))["events_pending"] == count


async def _sent_and_failed(server: Server, sent: int, failed: int) -> bool:
    state = await outbox(server)
    return state["events_sent"] == sent and state["events_failed"] == failed


def test_stripe_window_and_backoff() -> None:
    now = 1_800_000_000
    assert stripe_takes(now - 7200, now) and stripe_takes(now - 34 * 86400, now)
    assert not stripe_takes(now - 35 * 86400, now) and not stripe_takes(now - 40 * 86400, now)
    assert [backoff_seconds(n) for n in (1, 2, 3, 8, 20)] == [30, 60, 120, 3600, 3600]


async def test_optional_meters_pushed_as_meter_events(database_url: str, tmp_path: Path) -> None:
    # GPU-hours and requests go to Stripe like the other time-integrated meters, in thousandths;
    # a built-in's event name can be renamed; a meter a record left out sends nothing.
    pricing = tmp_path / "pricing.toml"
    pricing.write_text(DEFAULT_PRICING_TOML + '\n[stripe_event_names]\ngpu_hours = "gpu_hours_requested"\n')
    stripe = await StripeStandIn().start()
    server = await start_server(
        database_url,
        pricing_file=pricing,
        stripe_api_key=API_KEY,
        stripe_api_base=stripe.url,
        stripe_push_interval=timedelta(seconds=0.05),
        stripe_settle_delay=timedelta(0),
    )
    try:
        h0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
        await put(server, "cust_gpu", stripe_customer_id="cus_gpu")
        await put(server, "cust_old", stripe_customer_id="cus_old")
        measured = usage(
            cpu=0.5, gpu_hours=1.25, gpu_utilized_hours=0.5, cpu_request_hours=2.0, memory_request_gb_hours=4.125
        )
        reports = [
            (EAST, {"cust_gpu": measured, "cust_old": usage(cpu=1.0)}),
            (WEST, {"cust_gpu": usage(gpu_hours=0.75, gpu_utilized_hours=0.0, cpu_request_hours=0.25)}),
        ]
        for cluster, customers in reports:
            assert (await server.post_report(report_body(cluster, h0, customers), TOKENS[cluster]))[0] == 201
        await eventually(lambda: _sent_and_failed(server, 6, 0), "6 events sent")
        t0 = int(h0.timestamp())
        assert recorded(stripe) == {
            ("cus_gpu", "cpu_hours", t0): [500],
            ("cus_gpu", "gpu_hours_requested", t0): [2000],  # 1.25 + 0.75 GPU-hours from two clusters
            ("cus_gpu", "gpu_utilized_hours", t0): [500],  # 0.5 + 0 (a measured 0 adds nothing)
            ("cus_gpu", "cpu_request_hours", t0): [2250],  # 2.0 + 0.25 core-hours
            ("cus_gpu", "memory_request_gb_hours", t0): [4125],
            ("cus_old", "cpu_hours", t0): [1000],  # not measured: no GPU or request events at all
        }  # zero amounts (memory, network, requests, storage) make no event, as before
        assert len(stripe.events) == 6 and stripe.refused == []
    finally:
        await stop_server(server)
        await stripe.stop()
