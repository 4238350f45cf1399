"""POST /api/usage/report against a real server, on SQLite and PostgreSQL: every status, stored once."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from cluster_exporter.billing_api.storage import Storage
from cluster_exporter.report import report_id

from .conftest import TOKENS, Server, start_server, stop_server
from .reports import GIB, report_body, report_dict, usage

EAST, WEST = "k8s-us-east-1", "k8s-eu-west-1"
T0 = datetime(2025, 11, 3, 10, tzinfo=UTC)
EMPTY = {
    "reports": 0,
    "usage_rows": 0,
    "customers": 0,
    "reports_not_expanded": 0,
    "events_pending": 0,
    "events_sent": 0,
    "events_failed": 0,
    "events_expired": 0,
}


def two_customers() -> dict[str, dict[str, Any]]:
    return {
        "cust_acme": usage(cpu=1.5, memory=3.25, sent=1000, received=2000, storage=10.0, requests=42),
        "cust_b": usage(cpu=0.5),
    }


async def test_created_duplicate_conflict(server: Server, storage: Storage) -> None:
    body = report_body(EAST, T0, two_customers())
    rid = report_id(EAST, T0, T0 + timedelta(hours=1))

    status, answer = await server.post_report(body, TOKENS[EAST], **{"Idempotency-Key": rid})
    assert (status, answer["status"], answer["customers"]) == (201, "stored", 2)
    stored = await storage.stats()
    assert stored["reports"] == 1 and stored["usage_rows"] == 2 * 6

    # The same report again, even with keys in another order: 200, nothing new.
    reordered = json.dumps(dict(reversed(list(json.loads(body).items())))).encode()
    for again in (body, reordered):
        status, answer = await server.post_report(again, TOKENS[EAST], **{"Idempotency-Key": rid})
        assert (status, answer["status"]) == (200, "duplicate")
    assert await storage.stats() == stored

    # Same report id, different content: 409 and nothing changed.
    changed = report_body(EAST, T0, {**two_customers(), "cust_b": usage(cpu=0.75)})
    status, answer = await server.post_report(changed, TOKENS[EAST])
    assert status == 409 and "different content" in answer["error"]
    assert await storage.stats() == stored
    totals = await storage.usage_totals("cust_b", 0, 2**40)
    assert totals["cpu_hours"] == pytest.approx(0.5)


def _broken(mutate: Any) -> bytes:
    data = report_dict(EAST, T0, two_customers())
    mutate(data)
    return json.dumps(data).encode()


def _set(path: list[Any], value: Any) -> Any:
    def mutate(data: Any) -> None:
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _delete(path: list[Any]) -> Any:
    def mutate(data: Any) -> None:
        target = data
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return mutate


def _half_hour(data: dict[str, Any]) -> None:
    data["window_start"], data["window_end"] = "2025-11-03T10:30:00Z", "2025-11-03T11:30:00Z"
    start = datetime(2025, 11, 3, 10, 30, tzinfo=UTC)
    data["report_id"] = report_id(EAST, start, start + timedelta(hours=1))


def _future(data: dict[str, Any]) -> None:
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=2)
    data["window_start"], data["window_end"] = (
        start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    data["report_id"] = report_id(EAST, start, start + timedelta(hours=1))


GOOD = report_body(EAST, T0, two_customers())
OTHER_ID = report_id(EAST, T0, T0 + timedelta(hours=2))
REJECTED: list[tuple[str, bytes, dict[str, str], int, str]] = [
    # name, body, headers, status, fragment of the error
    ("not JSON", b"cpu_hours=1", {}, 400, "malformed JSON"),
    ("truncated JSON", GOOD[:-20], {}, 400, "malformed JSON"),
    ("NaN literal", GOOD.replace(b'"cpu_hours": 1.5', b'"cpu_hours": NaN'), {}, 422, "finite"),
    ("Infinity literal", GOOD.replace(b'"cpu_hours": 1.5', b'"cpu_hours": Infinity'), {}, 422, "finite"),
    ("overflowing number", GOOD.replace(b'"cpu_hours": 1.5', b'"cpu_hours": 1e999'), {}, 422, "less than or equal"),
    ("JSON array", b"[]", {}, 422, "must be a JSON object"),
    ("missing usage", _broken(_delete(["usage"])), {}, 422, "usage: Field required"),
    ("missing meter", _broken(_delete(["usage", 0, "cpu_hours"])), {}, 422, "cpu_hours: Field required"),
    ("missing customer id", _broken(_delete(["usage", 1, "customer_id"])), {}, 422, "customer_id"),
    ("negative amount", _broken(_set(["usage", 0, "memory_gb_hours"], -0.5)), {}, 422, "greater than or equal"),
    ("negative count", _broken(_set(["usage", 0, "http_requests"], -1)), {}, 422, "greater than or equal"),
    ("fractional bytes", _broken(_set(["usage", 0, "network_bytes_sent"], 1.5)), {}, 422, "valid integer"),
    ("boolean amount", _broken(_set(["usage", 0, "http_requests"], True)), {}, 422, "valid integer"),
    ("string amount", _broken(_set(["usage", 0, "cpu_hours"], "1.5")), {}, 422, "must be a JSON number"),
    ("invalid UTF-8", GOOD.replace(b"cust_b", b"cust_\xff"), {}, 400, "malformed JSON"),
    ("unknown meter", _broken(_set(["usage", 0, "tpu_hours"], 2.0)), {}, 422, "unknown meter 'tpu_hours'"),
    ("window not whole hours", _broken(_half_hour), {}, 422, "whole hours"),
    ("window in the future", _broken(_future), {}, 422, "in the future"),
    ("report id of another window", _broken(_set(["report_id"], OTHER_ID)), {}, 422, "report_id"),
    ("unknown schema", _broken(_set(["schema_version"], 2)), {}, 422, "schema_version"),
    ("part beyond parts", _broken(_set(["part"], 3)), {}, 422, "part must not exceed parts"),
    ("customer twice", _broken(lambda d: d["usage"].append(d["usage"][0])), {}, 422, "appears twice"),
    ("wrong Idempotency-Key", GOOD, {"Idempotency-Key": "something-else"}, 422, "Idempotency-Key"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "body", "headers", "status", "fragment"), REJECTED, ids=[r[0] for r in REJECTED])
async def test_rejected_and_nothing_stored(
    server: Server, storage: Storage, name: str, body: bytes, headers: dict[str, str], status: int, fragment: str
) -> None:
    got, answer = await server.post_report(body, TOKENS[EAST], **headers)
    assert got == status, answer
    assert fragment in answer["error"]
    assert "\n" not in answer["error"]
    assert await storage.stats() == EMPTY


async def test_authentication_and_authorisation(server: Server, storage: Storage) -> None:
    body = report_body(EAST, T0, two_customers())
    assert (await server.request("POST", "/api/usage/report", body=body))[0] == 401
    for token in ("wrong", "admin-secret", TOKENS[EAST] + "x"):
        assert (await server.post_report(body, token))[0] == 401
    status, answer = await server.post_report(body, TOKENS[WEST])
    assert status == 403 and "cannot report for cluster k8s-us-east-1" in answer["error"]
    assert await storage.stats() == EMPTY
    assert (
        server.registry.get_sample_value("cluster_exporter_billing_api_report_requests_total", {"status": "401"}) == 4
    )


async def test_size_limit(database_url: str, storage: Storage) -> None:
    server = await start_server(database_url, max_body_bytes=4096)
    try:
        customers = {f"cust_{i:04d}": usage(cpu=1.0) for i in range(40)}
        body = report_body(EAST, T0, customers)
        assert len(body) > 4096
        status, answer = await server.post_report(body, TOKENS[EAST])
        assert status == 413 and "limit of 4096" in answer["error"]

        async def chunks() -> Any:  # no Content-Length: the limit holds while reading
            for i in range(0, len(body), 1000):
                yield body[i : i + 1000]

        status, _ = await server.request("POST", "/api/usage/report", token=TOKENS[EAST], body=chunks())  # type: ignore[arg-type]
        assert status == 413
        assert (await server.post_report(report_body(EAST, T0, {"cust_a": usage(cpu=1.0)}), TOKENS[EAST]))[0] == 201
        assert (await storage.stats())["reports"] == 1
    finally:
        await stop_server(server)


async def test_split_report(server: Server, storage: Storage) -> None:
    rid = report_id(EAST, T0, T0 + timedelta(hours=1))
    part1 = report_body(EAST, T0, {"cust_a": usage(cpu=1.0)}, part=1, parts=2)
    part2 = report_body(EAST, T0, {"cust_b": usage(cpu=2.0)}, part=2, parts=2)
    assert (await server.post_report(part1, TOKENS[EAST], **{"Idempotency-Key": f"{rid}/1"}))[0] == 201
    assert (await server.post_report(part2, TOKENS[EAST], **{"Idempotency-Key": f"{rid}/2"}))[0] == 201
    assert (await server.post_report(part2, TOKENS[EAST], **{"Idempotency-Key": f"{rid}/2"}))[0] == 200
    # A bare report id names part 1 only when the report is not split.
    assert (await server.post_report(part2, TOKENS[EAST], **{"Idempotency-Key": rid}))[0] == 422
    before = await storage.stats()
    assert before["reports"] == 2 and before["usage_rows"] == 12

    # A third part claiming a customer part 1 already carried: 409, a window counts once.
    part3 = report_body(EAST, T0, {"cust_a": usage(cpu=1.0)}, part=3, parts=3)
    status, answer = await server.post_report(part3, TOKENS[EAST])
    assert status == 409 and "parts=2" in answer["error"]
    part2_again = report_body(EAST, T0, {"cust_a": usage(cpu=5.0)}, part=2, parts=2)
    assert (await server.post_report(part2_again, TOKENS[EAST]))[0] == 409
    assert await storage.stats() == before


async def test_two_clusters_sum_and_windows_never_overlap(server: Server, storage: Storage) -> None:
    assert (await server.post_report(report_body(EAST, T0, {"cust_acme": usage(cpu=1.25, sent=100)}), TOKENS[EAST]))[
        0
    ] == 201
    assert (await server.post_report(report_body(WEST, T0, {"cust_acme": usage(cpu=0.5, sent=23)}), TOKENS[WEST]))[
        0
    ] == 201
    status, answer = await server.admin(
        "GET", "/api/customers/cust_acme/usage?from=2025-11-03T00:00:00Z&to=2025-11-04T00:00:00Z"
    )
    assert status == 200
    assert answer["hours"] == [
        {
            "hour": "2025-11-03T10:00:00Z",
            "cpu_hours": 1.75,
            "memory_gb_hours": 0,
            "network_bytes_sent": 123,
            "network_bytes_received": 0,
            "storage_gb_hours": 0,
            "http_requests": 0,
        }
    ]
    before = await storage.stats()
    # EAST again, for a two-hour window covering the hour it already reported: refused whole.
    overlapping = report_body(
        EAST, T0 - timedelta(hours=1), {"cust_new": usage(cpu=1.0), "cust_acme": usage(cpu=9.0)}, hours=2
    )
    status, answer = await server.post_report(overlapping, TOKENS[EAST])
    assert status == 409 and "never counted twice" in answer["error"]
    assert await storage.stats() == before
    assert (await storage.usage_totals("cust_acme", 0, 2**40))["cpu_hours"] == pytest.approx(1.75)


async def test_multi_hour_window_is_spread_over_its_hours(server: Server, storage: Storage) -> None:
    start = datetime(2025, 11, 30, 23, tzinfo=UTC)  # 23:00 .. 02:00 crosses into December
    body = report_body(EAST, start, {"cust_x": usage(cpu=1.0, sent=10, requests=3)}, hours=3)
    assert (await server.post_report(body, TOKENS[EAST]))[0] == 201
    november = await storage.usage_totals(
        "cust_x", int(datetime(2025, 11, 1, tzinfo=UTC).timestamp()), int(datetime(2025, 12, 1, tzinfo=UTC).timestamp())
    )
    everything = await storage.usage_totals("cust_x", 0, 2**40)
    assert str(november["cpu_hours"]) == "0.333333333333"
    assert everything["cpu_hours"] == 1 and everything["network_bytes_sent"] == 10 and everything["http_requests"] == 3
    hours = await storage.hourly_usage("cust_x", 0, 2**40)
    assert len(hours) == 3


async def test_concurrent_duplicates_store_once(server: Server, storage: Storage) -> None:
    customers = {f"cust_{i:03d}": usage(cpu=i / 10, sent=i * GIB) for i in range(200)}
    body = report_body(EAST, T0, customers)
    results = await asyncio.gather(*(server.post_report(body, TOKENS[EAST]) for _ in range(20)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] * 19 + [201]
    stats = await storage.stats()
    assert stats["reports"] == 1 and stats["usage_rows"] == 200 * 6

    # Concurrent sends of one part with different contents: one wins, every other one is 409 or 200.
    bodies = [report_body(WEST, T0, {"cust_000": usage(cpu=float(i))}) for i in range(10)]
    results = await asyncio.gather(*(server.post_report(b, TOKENS[WEST]) for b in bodies * 2))
    created = [i for i, (status, _) in enumerate(results) if status == 201]
    assert len(created) == 1
    winner = created[0] % 10
    for i, (status, _) in enumerate(results):
        assert status == (201 if i == created[0] else 200 if i % 10 == winner else 409)
    totals = await storage.usage_totals("cust_000", 0, 2**40)
    assert totals["cpu_hours"] == winner


async def test_custom_meter_declared_in_pricing(database_url: str, storage: Storage, tmp_path: Any) -> None:
    from cluster_exporter.billing_api.pricing import DEFAULT_PRICING_TOML

    pricing = tmp_path / "pricing.toml"
    pricing.write_text(
        DEFAULT_PRICING_TOML
        + '\n[meters.pg_commits]\nunit = "commit"\nprice = "0.001"\nincluded = "1000"\ninteger = true\n'
    )
    server = await start_server(database_url, pricing_file=pricing)
    try:
        body = report_body(EAST, T0, {"cust_db": usage(pg_commits=3500)})
        assert (await server.post_report(body, TOKENS[EAST]))[0] == 201
        fractional = report_body(EAST, T0 + timedelta(hours=1), {"cust_db": usage(pg_commits=1.5)})
        status, answer = await server.post_report(fractional, TOKENS[EAST])
        assert status == 422 and "whole number" in answer["error"]
        assert (await server.admin("PUT", "/api/customers/cust_db", b'{"plan": "starter"}'))[0] == 201
        status, invoice = await server.admin("GET", "/api/customers/cust_db/invoice?month=2025-11")
        line = next(x for x in invoice["lines"] if x["meter"] == "pg_commits")
        # 3500 commits, 1000 included, 2500 x $0.001 = $2.50 on top of Starter's $29.
        assert (line["used"], line["included"], line["overage"], line["amount"]) == ("3500", "1000", "2500", "2.5")
        assert invoice["total"] == "31.50"
    finally:
        await stop_server(server)


async def test_health_readiness_metrics(server: Server) -> None:
    assert await server.request("GET", "/healthz") == (200, {"status": "ok"})
    assert await server.request("GET", "/readyz") == (200, {"status": "ready"})
    assert (await server.post_report(report_body(EAST, T0, two_customers()), TOKENS[EAST]))[0] == 201
    async with server.session.get(server.url + "/metrics") as resp:
        text = await resp.text()
    assert 'cluster_exporter_billing_api_report_requests_total{status="201"} 1.0' in text
    assert "cluster_exporter_billing_api_usage_rows_stored_total 12.0" in text
    assert (await server.request("GET", "/api/nothing"))[0] == 404
    assert (await server.request("GET", "/api/usage/report"))[0] == 405


async def test_optional_meters_stored_when_measured_and_absent_otherwise(server: Server, storage: Storage) -> None:
    # cust_gpu's exporter measured every optional meter (a 0 among them); cust_old's measured none.
    measured = usage(
        cpu=1.0, gpu_hours=2.0, gpu_utilized_hours=0.0, cpu_request_hours=1.5, memory_request_gb_hours=4.25
    )
    body = report_body(EAST, T0, {"cust_gpu": measured, "cust_old": usage(cpu=1.0)}, hours=2)
    status, answer = await server.post_report(body, TOKENS[EAST])
    assert status == 201, answer
    assert (await storage.stats())["usage_rows"] == (10 + 6) * 2
    totals = await storage.usage_totals("cust_gpu", 0, 2**40)
    assert {m: totals[m] for m in ("gpu_hours", "gpu_utilized_hours", "cpu_request_hours")} == {
        "gpu_hours": 2,
        "gpu_utilized_hours": 0,  # measured: a 0 is kept as a 0
        "cpu_request_hours": 1.5,
    }
    assert totals["memory_request_gb_hours"] == Decimal("4.25")
    old = await storage.usage_totals("cust_old", 0, 2**40)
    assert set(old) == {
        "cpu_hours",
        "memory_gb_hours",
        "network_bytes_sent",
        "network_bytes_received",
        "storage_gb_hours",
        "http_requests",
    }  # not measured: no row, not a 0
    status, hours = await server.admin(
        "GET", "/api/customers/cust_gpu/usage?from=2025-11-03T10:00:00Z&to=2025-11-03T12:00:00Z"
    )
    assert status == 200 and hours["hours"][0]["gpu_hours"] == 1 and hours["hours"][1]["cpu_request_hours"] == 0.75
    # A null is not a spelling of "not measured": 422, like any amount that is not a number.
    broken = report_dict(EAST, T0 + timedelta(hours=5), {"cust_gpu": measured})
    broken["usage"][0]["cpu_request_hours"] = None
    status, answer = await server.post_report(json.dumps(broken).encode(), TOKENS[EAST])
    assert status == 422 and "cpu_request_hours" in answer["error"]
