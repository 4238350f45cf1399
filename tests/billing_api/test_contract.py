"""The exporter's own delivery code against the real billing API: the contract, end to end.

``cluster_exporter.delivery.send_report`` splits a report into parts and sends each with its
``Idempotency-Key``; the billing API must store every part once, answer resends 200, and refuse
a changed report in a way the exporter treats as final.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cluster_exporter.delivery.sender import send_report
from cluster_exporter.errors import PermanentDeliveryError
from cluster_exporter.report import build_report
from cluster_exporter.settings import BillingApiSettings, DeliverySettings

from .conftest import TOKENS, Server
from .reports import usage

EAST = "k8s-us-east-1"
T0 = datetime(2025, 11, 20, 6, tzinfo=UTC)


async def test_exporter_delivery_against_the_billing_api(server: Server) -> None:
    customers = {f"cust_{i:02d}": usage(cpu=0.5 + i, requests=1000 * i) for i in range(25)}
    report = build_report(EAST, T0, T0 + timedelta(hours=1), customers)
    api = BillingApiSettings(url=server.url, token=TOKENS[EAST])
    delivery = DeliverySettings(max_customers_per_part=10)

    assert await send_report(api, delivery, report) == 3  # 10 + 10 + 5 customers
    assert await send_report(api, delivery, report) == 3  # resent: every part answered 200
    status, outbox = await server.admin("GET", "/api/stripe/outbox")
    assert (status, outbox["reports"], outbox["usage_rows"]) == (200, 3, 25 * 6)
    statuses = {
        code: server.registry.get_sample_value("cluster_exporter_billing_api_report_requests_total", {"status": code})
        for code in ("200", "201")
    }
    assert statuses == {"200": 3, "201": 3}

    assert (await server.admin("PUT", "/api/customers/cust_24", b'{"plan": "starter"}'))[0] == 201
    status, invoice = await server.admin("GET", "/api/customers/cust_24/invoice?month=2025-11")
    # 24.5 core-hours and 24,000 requests: under Starter's 720 core-hours; 0.024 million x $0.50 = $0.012.
    assert (status, invoice["total"]) == (200, "29.01")

    changed = build_report(EAST, T0, T0 + timedelta(hours=1), {**customers, "cust_00": usage(cpu=9.0)})
    with pytest.raises(PermanentDeliveryError, match="409"):
        await send_report(api, delivery, changed)
    status, outbox = await server.admin("GET", "/api/stripe/outbox")
    assert (outbox["reports"], outbox["usage_rows"]) == (3, 25 * 6)
