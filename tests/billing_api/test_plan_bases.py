"""Plans that bill CPU and memory on usage, on requests, or on max(usage, requests) per hour; GPU lines.

Real servers (SQLite and PostgreSQL) with the default pricing plus three plans that differ from
Starter ($29, 1 vCPU = 720 core-hours and 2 GB = 1440 GB-hours in November, CPU $0.05/core-hour,
memory $0.01/GB-hour) only in their bases. One customer's November, three hours, two clusters:

    hour   cluster  cpu  cpu requested  memory  memory requested
    09:00  east     300  400            1000     600
    10:00  east     100  300             200     900
    10:00  west     400    0 (measured)  100       0 (measured)
    11:00  east     100  100             500     500

summed over clusters per hour, cpu (usage, requests): (300, 400), (500, 300), (100, 100);
memory: (1000, 600), (300, 900), (500, 500). So:

    cpu     usage 900, requests 800, max 400 + 500 + 100 = 1000
    memory  usage 1800, requests 2000, max 1000 + 900 + 500 = 2400

(max per cluster instead would be 400 + 300 + 400 + 100 = 1200 core-hours: the basis takes the
customer's hour as a whole, over its clusters.) Requests are above usage in some hours and below
in others, so max differs from both.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cluster_exporter.billing_api.bases import MonthUsage, UsageRow, billed
from cluster_exporter.billing_api.errors import RequestRejected
from cluster_exporter.billing_api.pricing import DEFAULT_PRICING_TOML, render_invoice

from .conftest import TOKENS, Server, start_server, stop_server
from .reports import report_body, usage

EAST, WEST = "k8s-us-east-1", "k8s-eu-west-1"
H9 = datetime(2025, 11, 12, 9, tzinfo=UTC)
H10, H11 = H9 + timedelta(hours=1), H9 + timedelta(hours=2)
PLANS = """
[plans.reserved]
base_price = "29.00"
vcpu = 1
memory_gb = 2
storage_gb = 10
network_gb = 100
cpu_basis = "requests"
memory_basis = "requests"

[plans.opencost]
base_price = "29.00"
vcpu = 1
memory_gb = 2
storage_gb = 10
network_gb = 100
cpu_basis = "max"
memory_basis = "max"

[plans.mixed]
base_price = "29.00"
vcpu = 1
memory_gb = 2
storage_gb = 10
network_gb = 100
cpu_basis = "requests"
memory_basis = "max"
"""


def sells(cpu: float, cpu_req: float, memory: float, memory_req: float) -> dict[str, Any]:
    """A record of an exporter that meters requests."""
    return usage(cpu=cpu, memory=memory, cpu_request_hours=cpu_req, memory_request_gb_hours=memory_req)


# (cluster, hour, usage record) of the month in the module docstring
MONTH = [
    (EAST, H9, sells(300, 400, 1000, 600)),
    (EAST, H10, sells(100, 300, 200, 900)),
    (WEST, H10, sells(400, 0, 100, 0)),
    (EAST, H11, sells(100, 100, 500, 500)),
]
# plan -> (cpu line: basis, used, overage, amount), (memory line: same), total
EXPECTED: dict[str, tuple[tuple[str, str, str, str], tuple[str, str, str, str], str]] = {
    # (900 - 720) x 0.05 = 9; (1800 - 1440) x 0.01 = 3.60; 29 + 9 + 3.60
    "starter": (("usage", "900", "180", "9"), ("usage", "1800", "360", "3.6"), "41.60"),
    # (800 - 720) x 0.05 = 4; (2000 - 1440) x 0.01 = 5.60; 29 + 4 + 5.60
    "reserved": (("requests", "800", "80", "4"), ("requests", "2000", "560", "5.6"), "38.60"),
    # (1000 - 720) x 0.05 = 14; (2400 - 1440) x 0.01 = 9.60; 29 + 14 + 9.60
    "opencost": (
        ("max(usage, requests)", "1000", "280", "14"),
        ("max(usage, requests)", "2400", "960", "9.6"),
        "52.60",
    ),
    # CPU on requests (4), memory on max (9.60): 29 + 4 + 9.60
    "mixed": (("requests", "800", "80", "4"), ("max(usage, requests)", "2400", "960", "9.6"), "42.60"),
}


@pytest.fixture
async def selling(database_url: str, tmp_path: Path) -> Any:
    """A billing API whose pricing is the default plus the plans above."""
    pricing = tmp_path / "pricing.toml"
    pricing.write_text(DEFAULT_PRICING_TOML + PLANS)
    server = await start_server(database_url, pricing_file=pricing)
    yield server
    await stop_server(server)


async def _post(server: Server, cluster: str, start: datetime, customers: dict[str, Any]) -> None:
    status, answer = await server.post_report(report_body(cluster, start, customers), TOKENS[cluster])
    assert status == 201, answer


async def _invoice(server: Server, customer: str, plan: str) -> tuple[int, Any]:
    status, answer = await server.admin("PUT", f"/api/customers/{customer}", json.dumps({"plan": plan}).encode())
    assert status in (200, 201), answer
    return await server.admin("GET", f"/api/customers/{customer}/invoice?month=2025-11")


async def test_each_plan_basis_against_hand_computed_invoices(selling: Server) -> None:
    # One customer per plan, every one with the same month.
    for cluster, start, record in MONTH:
        await _post(selling, cluster, start, {f"cust_{plan}": record for plan in EXPECTED})
    for plan, (cpu, memory, total) in EXPECTED.items():
        status, invoice = await _invoice(selling, f"cust_{plan}", plan)
        assert status == 200, invoice
        lines = {line["meter"]: line for line in invoice["lines"]}
        assert list(lines) == ["cpu", "memory", "storage", "network", "http_requests"], plan  # no GPU: no GPU line
        for meter, (basis, used, overage, amount) in (("cpu", cpu), ("memory", memory)):
            line = lines[meter]
            got = (line["basis"], line["used"], line["included"], line["overage"], line["amount"])
            assert got == (basis, used, "720" if meter == "cpu" else "1440", overage, amount), (plan, meter)
            if basis == "usage":
                assert "usage_total" not in line and "requests_total" not in line
            else:  # the totals it came from: usage 900 / 1800, requests 800 / 2000
                totals = ("900", "800") if meter == "cpu" else ("1800", "2000")
                assert (line["usage_total"], line["requests_total"]) == totals, (plan, meter)
        assert all(lines[m]["basis"] == "usage" for m in ("storage", "network", "http_requests"))
        assert invoice["total"] == total, plan

    _, invoice = await selling.admin("GET", "/api/customers/cust_opencost/invoice?month=2025-11")
    text = render_invoice(invoice)
    (cpu_row,) = [row for row in text.splitlines() if row.startswith("cpu ") and "billed on" not in row]
    assert cpu_row.split("  ")[-1] == "max(usage, requests)"
    assert cpu_row.split()[:7] == ["cpu", "core-hour", "1000", "720", "280", "0.05", "14"]
    assert "cpu billed on max(usage, requests): month totals usage 900, requests 800 core-hours" in text
    assert "memory billed on max(usage, requests): month totals usage 1800, requests 2000 GB-hours" in text
    assert text.splitlines()[-1].split() == ["total", "52.60", "USD"]


async def test_requests_missing_is_a_409_never_a_short_bill(selling: Server) -> None:
    # cust_legacy: east meters requests; west's exporter (older) leaves them out at 10:00.
    await _post(selling, EAST, H9, {"cust_legacy": sells(300, 400, 1000, 600)})
    await _post(selling, WEST, H10, {"cust_legacy": usage(cpu=400, memory=100)})
    # cust_cpu_only: requests of CPU metered, memory requests not.
    await _post(selling, EAST, H11, {"cust_cpu_only": usage(cpu=800, memory=10, cpu_request_hours=900)})

    for plan, resource in (("reserved", "cpu"), ("opencost", "cpu"), ("mixed", "cpu")):
        status, answer = await _invoice(selling, "cust_legacy", plan)
        assert status == 409, (plan, answer)
        error = answer["error"]
        assert error.startswith(f"customer cust_legacy: plan {plan} bills {resource} on "), error
        assert "hour 2025-11-12T10:00:00Z..11:00:00Z from cluster k8s-eu-west-1 has no cpu_request_hours" in error
        assert "enable request metering on that exporter (setting metering.requests)" in error
    # On usage, the same month bills (300 + 400 core-hours, under the 720 included): nothing is missing.
    status, invoice = await _invoice(selling, "cust_legacy", "starter")
    assert (status, invoice["total"]) == (200, "29.00")

    # Memory on max needs memory requests even when the CPU ones are there.
    status, answer = await _invoice(selling, "cust_cpu_only", "mixed")
    assert status == 409 and "bills memory on max(usage, requests)" in answer["error"]
    assert (
        "2025-11-12T11:00:00Z..12:00:00Z from cluster k8s-us-east-1 has no memory_request_gb_hours" in answer["error"]
    )
    # Reserved bills memory on requests too: refused for the same hour; on usage it bills.
    status, answer = await _invoice(selling, "cust_cpu_only", "reserved")
    assert status == 409 and "bills memory on requests" in answer["error"]
    status, invoice = await _invoice(selling, "cust_cpu_only", "starter")
    assert (status, invoice["total"]) == (200, "33.00")  # (800 - 720) x 0.05 = 4


async def test_gpu_lines_priced_and_only_where_measured(selling: Server) -> None:
    gpu = usage(cpu=1, gpu_hours=3.0, gpu_utilized_hours=1.5)
    await _post(selling, EAST, H9, {"cust_gpu": gpu, "cust_cpu": usage(cpu=1)})
    await _post(selling, WEST, H9, {"cust_gpu": usage(gpu_hours=1.5, gpu_utilized_hours=0.5)})
    status, invoice = await _invoice(selling, "cust_gpu", "starter")
    assert status == 200, invoice
    lines = {line["meter"]: line for line in invoice["lines"]}
    assert list(lines)[-2:] == ["gpu", "gpu_utilized"]
    # 3 + 1.5 = 4.5 GPU-hours, none included, x $2.50 = $11.25; utilized 2 GPU-hours at $0: shown, not charged.
    assert {k: lines["gpu"][k] for k in ("unit", "used", "included", "overage", "amount")} == {
        "unit": "GPU-hour",
        "used": "4.5",
        "included": "0",
        "overage": "4.5",
        "amount": "11.25",
    }
    assert (lines["gpu_utilized"]["used"], lines["gpu_utilized"]["amount"]) == ("2", "0")
    assert invoice["total"] == "40.25"
    status, invoice = await _invoice(selling, "cust_cpu", "starter")
    assert [line["meter"] for line in invoice["lines"]] == ["cpu", "memory", "storage", "network", "http_requests"]


# -- the pure rule, table-driven ---------------------------------------------------------------------


def _rows(*hours: tuple[int, str, dict[str, int]]) -> list[UsageRow]:
    return [(hour, cluster, meter, Decimal(v)) for hour, cluster, meters in hours for meter, v in meters.items()]


CPU = "cpu_hours"
REQ = "cpu_request_hours"


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        # nothing at all: 0 on every basis
        ([], {"usage": 0, "requests": 0, "max": 0}),
        # requests above usage every hour: max is the requests
        (_rows((0, "a", {CPU: 1, REQ: 2}), (3600, "a", {CPU: 1, REQ: 2})), {"usage": 2, "requests": 4, "max": 4}),
        # below, then above: max is more than either total
        (_rows((0, "a", {CPU: 5, REQ: 2}), (3600, "a", {CPU: 1, REQ: 4})), {"usage": 6, "requests": 6, "max": 9}),
        # two clusters in one hour are summed first: max(1 + 4, 3 + 0) = 5, not 3 + 4
        (_rows((0, "a", {CPU: 1, REQ: 3}), (0, "b", {CPU: 4, REQ: 0})), {"usage": 5, "requests": 3, "max": 5}),
    ],
)
def test_billed_quantity_per_basis(rows: list[UsageRow], expected: dict[str, int]) -> None:
    month = MonthUsage.from_rows(rows)
    for basis, quantity in expected.items():
        assert billed(month, "cpu", basis, "c", "p").quantity == quantity, basis  # type: ignore[arg-type]


def test_billed_refuses_the_first_hour_without_requests() -> None:
    month = MonthUsage.from_rows(
        _rows((7200, "b", {CPU: 1}), (3600, "b", {CPU: 1}), (3600, "a", {CPU: 1}), (0, "a", {CPU: 1, REQ: 1}))
    )
    assert billed(month, "cpu", "usage", "c", "p").quantity == 4
    for basis in ("requests", "max"):
        with pytest.raises(RequestRejected) as refused:
            billed(month, "cpu", basis, "c", "p")  # type: ignore[arg-type]
        assert refused.value.status == 409
        assert "hour 1970-01-01T01:00:00Z..02:00:00Z from cluster a has no cpu_request_hours" in str(refused.value)
