"""Invoices from a real server (SQLite and PostgreSQL) against figures worked out by hand.

Every expected number below is computed in the comment next to it from the plan's terms:
Starter $29 (1 vCPU, 2 GB, 10 GB storage, 100 GB network), Professional $99 (4, 8, 50, 500),
CPU $0.05/core-hour, memory $0.01/GB-hour, storage $0.20/GB-month, network $0.10/GiB,
HTTP $0.50/million requests. November has 30 x 24 = 720 hours.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from .conftest import TOKENS, Server
from .reports import GIB, report_body, usage

EAST, WEST = "k8s-us-east-1", "k8s-eu-west-1"
NOV = datetime(2025, 11, 12, 9, tzinfo=UTC)

# customer -> (plan terms, usage in one November hour, expected lines {meter: (used, included, overage, amount)}, total)
CASES: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, tuple[str, str, str, str]], str]] = {
    # Starter includes 1 x 720 = 720 core-hours, 2 x 720 = 1440 GB-hours, 10 GB-months = 7200 GB-hours, 100 GiB.
    "starter_under": (
        {"plan": "starter"},
        usage(cpu=719.5, memory=1439, storage=7199, sent=60 * GIB, received=39 * GIB),
        {"cpu": ("719.5", "720", "0", "0"), "network": ("99", "100", "0", "0"), "http_requests": ("0", "0", "0", "0")},
        "29.00",
    ),
    "starter_at": (
        {"plan": "starter"},
        usage(cpu=720, memory=1440, storage=7200, sent=50 * GIB, received=50 * GIB),
        {"cpu": ("720", "720", "0", "0"), "memory": ("1440", "1440", "0", "0"), "storage": ("10", "10", "0", "0")},
        "29.00",
    ),
    # 10 x 0.05 + 100 x 0.01 + (8640/720 - 10) x 0.20 + 10 x 0.10 + 2 x 0.50 = 0.50 + 1 + 0.40 + 1 + 1 = 3.90
    "starter_over": (
        {"plan": "starter"},
        usage(cpu=730, memory=1540, storage=8640, sent=70 * GIB, received=40 * GIB, requests=2_000_000),
        {
            "cpu": ("730", "720", "10", "0.5"),
            "memory": ("1540", "1440", "100", "1"),
            "storage": ("12", "10", "2", "0.4"),
            "network": ("110", "100", "10", "1"),
            "http_requests": ("2", "0", "2", "1"),
        },
        "32.90",
    ),
    # docs/billing-api.md's worked example: 80 x 0.05 + 60 x 0.01 + (9000/720 - 10) x 0.20 + 50 x 0.10
    # + 5.3 x 0.50 = 4 + 0.60 + 0.50 + 5 + 2.65 = 12.75 over Starter's 29.
    "cust_acme": (
        {"plan": "starter"},
        usage(cpu=800, memory=1500, storage=9000, sent=100 * GIB, received=50 * GIB, requests=5_300_000),
        {"storage": ("12.5", "10", "2.5", "0.5"), "http_requests": ("5.3", "0", "5.3", "2.65")},
        "41.75",
    ),
    # 0.1 x 0.05 = 0.005 and 0.5 x 0.01 = 0.005: 29.010 rounded once is 29.01 (per line it would be 29.02).
    "starter_rounding": (
        {"plan": "starter"},
        usage(cpu=720.1, memory=1440.5),
        {"cpu": ("720.1", "720", "0.1", "0.005"), "memory": ("1440.5", "1440", "0.5", "0.005")},
        "29.01",
    ),
    # 29.005 rounds half up to 29.01 (half-even would give 29.00).
    "starter_half_up": ({"plan": "starter"}, usage(cpu=720.1), {"cpu": ("720.1", "720", "0.1", "0.005")}, "29.01"),
    # Professional includes 4 x 720 = 2880 core-hours, 8 x 720 = 5760 GB-hours, 50 GB-months = 36000 GB-hours, 500 GiB.
    "pro_under": (
        {"plan": "professional"},
        usage(cpu=2879, memory=5759, storage=35999, sent=499 * GIB),
        {"cpu": ("2879", "2880", "0", "0"), "storage": ("49.998611111", "50", "0", "0")},
        "99.00",
    ),
    "pro_at": (
        {"plan": "professional"},
        usage(cpu=2880, memory=5760, storage=36000, received=500 * GIB),
        {"memory": ("5760", "5760", "0", "0"), "network": ("500", "500", "0", "0")},
        "99.00",
    ),
    # 20 x 0.05 + 240 x 0.01 + (39600/720 - 50) x 0.20 + 100 x 0.10 + 1.5 x 0.50 = 1 + 2.40 + 1 + 10 + 0.75 = 15.15
    "pro_over": (
        {"plan": "professional"},
        usage(cpu=2900, memory=6000, storage=39600, sent=300 * GIB, received=300 * GIB, requests=1_500_000),
        {
            "cpu": ("2900", "2880", "20", "1"),
            "memory": ("6000", "5760", "240", "2.4"),
            "storage": ("55", "50", "5", "1"),
            "network": ("600", "500", "100", "10"),
            "http_requests": ("1.5", "0", "1.5", "0.75"),
        },
        "114.15",
    ),
    # Enterprise: $500, 16 vCPU (11520 core-hours), memory unlimited, 1000 GB storage (720000 GB-hours),
    # network left out so unlimited.
    "ent_under": (
        {"plan": "enterprise", "base_price": "500", "limits": {"vcpu": 16, "memory_gb": None, "storage_gb": 1000}},
        usage(cpu=11519, memory=10**6, storage=719999, sent=10**5 * GIB),
        {"cpu": ("11519", "11520", "0", "0"), "memory": ("1000000", "unlimited", "0", "0")},
        "500.00",
    ),
    "ent_at": (
        {"plan": "enterprise", "base_price": "500", "limits": {"vcpu": 16, "memory_gb": None, "storage_gb": 1000}},
        usage(cpu=11520, storage=720000),
        {"cpu": ("11520", "11520", "0", "0"), "storage": ("1000", "1000", "0", "0")},
        "500.00",
    ),
    # 100 x 0.05 + (792000/720 - 1000) x 0.20 + 10 x 0.50 = 5 + 20 + 5 = 30; memory and network unlimited.
    "ent_over": (
        {"plan": "enterprise", "base_price": "500", "limits": {"vcpu": 16, "memory_gb": None, "storage_gb": 1000}},
        usage(cpu=11620, memory=10**7, storage=792000, sent=10**6 * GIB, requests=10_000_000),
        {
            "cpu": ("11620", "11520", "100", "5"),
            "memory": ("10000000", "unlimited", "0", "0"),
            "storage": ("1100", "1000", "100", "20"),
            "network": ("1000000", "unlimited", "0", "0"),
            "http_requests": ("10", "0", "10", "5"),
        },
        "530.00",
    ),
}


async def _put(server: Server, customer: str, terms: dict[str, Any]) -> None:
    status, answer = await server.admin("PUT", f"/api/customers/{customer}", json.dumps(terms).encode())
    assert status in (200, 201), answer


async def test_every_plan_under_at_and_over(server: Server) -> None:
    body = report_body(EAST, NOV, {customer: case[1] for customer, case in CASES.items()})
    assert (await server.post_report(body, TOKENS[EAST]))[0] == 201
    for customer, (terms, _, lines, total) in CASES.items():
        await _put(server, customer, terms)
        status, invoice = await server.admin("GET", f"/api/customers/{customer}/invoice?month=2025-11")
        assert status == 200, invoice
        assert (invoice["plan"], invoice["hours_in_month"], invoice["total"]) == (terms["plan"], 720, total), customer
        by_meter = {line["meter"]: line for line in invoice["lines"]}
        assert list(by_meter) == ["cpu", "memory", "storage", "network", "http_requests"]
        for meter, (used, included, overage, amount) in lines.items():
            line = by_meter[meter]
            assert (line["used"], line["included"], line["overage"], line["amount"]) == (
                used,
                included,
                overage,
                amount,
            ), f"{customer} {meter}"


async def test_month_length_and_clusters_summed(server: Server) -> None:
    # February 2025 has 28 x 24 = 672 hours: Starter includes 672 core-hours; 700 - 672 = 28 x 0.05 = 1.40.
    # The usage is split over two clusters and two hours: 400 + 300 core-hours.
    feb = datetime(2025, 2, 10, 0, tzinfo=UTC)
    assert (await server.post_report(report_body(EAST, feb, {"cust_feb": usage(cpu=400)}), TOKENS[EAST]))[0] == 201
    later = feb + timedelta(hours=5)
    assert (await server.post_report(report_body(WEST, later, {"cust_feb": usage(cpu=300)}), TOKENS[WEST]))[0] == 201
    # December 2024 has 744 hours: 744 core-hours and 1488 GB-hours are exactly included.
    dec = datetime(2024, 12, 31, 23, tzinfo=UTC)
    assert (await server.post_report(report_body(EAST, dec, {"cust_feb": usage(cpu=744, memory=1488)}), TOKENS[EAST]))[
        0
    ] == 201
    await _put(server, "cust_feb", {"plan": "starter"})
    status, invoice = await server.admin("GET", "/api/customers/cust_feb/invoice?month=2025-02")
    assert (status, invoice["hours_in_month"], invoice["total"]) == (200, 672, "30.40")
    status, invoice = await server.admin("GET", "/api/customers/cust_feb/invoice?month=2024-12")
    assert (status, invoice["hours_in_month"], invoice["total"]) == (200, 744, "29.00")
    status, invoice = await server.admin("GET", "/api/customers/cust_feb/invoice?month=2025-03")
    assert (status, invoice["total"]) == (200, "29.00")  # no usage: the base price


async def test_customer_endpoints(server: Server) -> None:
    put = server.admin
    assert (await put("PUT", "/api/customers/cust_a", b'{"plan": "gold"}'))[0] == 422
    assert (await put("PUT", "/api/customers/cust_a", b'{"plan": "starter", "base_price": "1"}'))[0] == 422
    assert (await put("PUT", "/api/customers/cust_a", b'{"plan": "enterprise"}'))[0] == 422  # needs a base price
    assert (await put("PUT", "/api/customers/cust_a", b'{"plan": "starter", "extra": 1}'))[0] == 422
    assert (await put("PUT", "/api/customers/cust_a", b"{plan"))[0] == 400
    assert (await put("PUT", "/api/customers/bad%20id", b'{"plan": "starter"}'))[0] == 400
    assert (await server.request("PUT", "/api/customers/cust_a", body=b'{"plan": "starter"}'))[0] == 401
    cluster = await server.request("PUT", "/api/customers/cust_a", token=TOKENS[EAST], body=b'{"plan": "starter"}')
    assert cluster[0] == 403
    assert (await put("PUT", "/api/customers/cust_a", b'{"plan": "starter", "stripe_customer_id": "cus_1"}'))[0] == 201
    assert (await put("PUT", "/api/customers/cust_a", b'{"plan": "professional"}'))[0] == 200
    status, answer = await put("GET", "/api/customers/cust_a")
    assert (status, answer["plan"], answer["stripe_customer_id"]) == (200, "professional", None)

    assert (await put("GET", "/api/customers/nobody/invoice?month=2025-11"))[0] == 404
    assert (await put("GET", "/api/customers/cust_a/invoice?month=2025-13"))[0] == 400
    assert (await put("GET", "/api/customers/cust_a/invoice"))[0] == 400
    assert (await server.post_report(report_body(EAST, NOV, {"cust_noplan": usage(cpu=1)}), TOKENS[EAST]))[0] == 201
    status, answer = await put("GET", "/api/customers/cust_noplan/invoice?month=2025-11")
    assert status == 409 and "no plan" in answer["error"]
    assert (await put("GET", "/api/customers/cust_a/usage?from=2025-11-01T00:00:00Z"))[0] == 400
    assert (await put("GET", "/api/customers/cust_a/usage?from=2025-11-01T00:30:00Z&to=2025-11-02T00:00:00Z"))[0] == 400
    assert (await put("GET", "/api/customers/cust_a/usage?from=2025-01-01T00:00:00Z&to=2025-11-02T00:00:00Z"))[0] == 400


async def run_cli(*args: str) -> tuple[int, str, str]:
    """``cluster-exporter ARGS`` in a child process: (exit code, stdout, stderr)."""
    command = [sys.executable, "-c", "import sys; from cluster_exporter.cli import main; sys.exit(main())", *args]
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("fmt", ["table", "json"])
async def test_invoice_command(server: Server, fmt: str) -> None:
    body = report_body(EAST, NOV, {"starter_over": CASES["starter_over"][1]})
    assert (await server.post_report(body, TOKENS[EAST]))[0] == 201
    await _put(server, "starter_over", {"plan": "starter"})
    database = ["--database-url", server.database_url]
    code, out, err = await run_cli(
        "billing-api", "invoice", "--customer", "starter_over", "--month", "2025-11", "--format", fmt, *database
    )
    assert code == 0, err
    if fmt == "json":
        assert json.loads(out)["total"] == "32.90"
    else:
        lines = out.splitlines()
        assert lines[0].startswith("invoice starter_over  2025-11  plan starter")
        assert lines[-1].split() == ["total", "32.90", "USD"]
        assert "storage        GB-month            12        10        2         0.2     0.4" in out
    code, out, err = await run_cli("billing-api", "invoice", "--customer", "nobody", "--month", "2025-11", *database)
    assert (code, err.strip()) == (1, "cluster-exporter: error: no customer nobody")
    code, out, err = await run_cli(
        "billing-api", "invoice", "--customer", "x", "--month", "2025-11", "--database-url", "mysql://x"
    )
    assert (code, err.strip()) == (
        2,
        "cluster-exporter: error: database URL must start with sqlite:// or postgresql://, got 'mysql'",
    )
