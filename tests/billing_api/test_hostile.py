"""Hostile input and overload against a real server, on SQLite and PostgreSQL.

Every request is answered in bounded memory and time; whatever can never succeed is a 4xx with a
one-line JSON error and no logged traceback (the exporter retries 5xx forever); nothing wrong is
stored. Each test here failed before the fix it is named after.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cluster_exporter.billing_api.errors import BillingConfigError
from cluster_exporter.billing_api.pricing import DEFAULT_PRICING_TOML, load_pricing
from cluster_exporter.billing_api.settings import Credentials
from cluster_exporter.billing_api.storage import Storage
from cluster_exporter.cli import main
from cluster_exporter.report import report_id

from .conftest import TOKENS, Server, start_server, stop_server
from .process import ServerProcess
from .reports import report_body, report_dict, usage

EAST, WEST, SOUTH = "k8s-us-east-1", "k8s-eu-west-1", "k8s-ap-south-1"
MIB = 1 << 20


def hours_ago(hours: int) -> datetime:
    """The start of the hour ``hours`` before the current one."""
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours)


async def raw_request(url: str, data: bytes, wait: float = 10) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are (no client library to fix them up); (status, headers, body)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(data)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), wait)
        headers = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        return int(status_line.split()[1]), headers, body
    finally:
        writer.close()


def post_head(body: bytes, token: str = TOKENS[EAST], **extra: str) -> bytes:
    """A POST /api/usage/report request head for ``body``."""
    lines = [
        "POST /api/usage/report HTTP/1.1",
        "Host: billing",
        f"Authorization: Bearer {token}",
        f"Content-Length: {len(body)}",
        *(f"{k.replace('_', '-')}: {v}" for k, v in extra.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def assert_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing a client sent may put a traceback in the logs."""
    for record in caplog.records:
        assert record.exc_info is None and "Traceback" not in record.getMessage(), record.getMessage()


def one_line_json(status: int, body: bytes) -> str:
    """The refusal's one-line message, after checking it is a JSON error of a 4xx."""
    assert 400 <= status < 500, (status, body[:200])
    error = json.loads(body)["error"]
    assert isinstance(error, str) and "\n" not in error
    return error


# -- 1. what one request may cost ---------------------------------------------------------------


def largest_reports(start: datetime) -> dict[str, bytes]:
    """The costliest reports the default limits allow, by cluster.

    EAST: 10,000 customers (the per-part limit) with 20 namespaces each, just under the 8 MiB body
    limit; WEST: 2,000 customers over a 24-hour window, 288,000 hourly rows (the limit is 300,000).
    """
    wide = {
        f"cust_{i:05d}": usage(cpu=round(i / 7, 9), memory=1.25, sent=i * 1000, storage=3.5, requests=i)
        | {"namespaces": [f"tenant-{i:05d}-namespace-{n:03d}" for n in range(20)]}
        for i in range(10_000)
    }
    long = {
        f"cust_{i:05d}": usage(cpu=round(i / 3, 9), memory=2.5, sent=i, received=7, storage=1.0) for i in range(2_000)
    }
    bodies = {
        EAST: report_body(EAST, start, wide),
        WEST: report_body(WEST, start - timedelta(hours=24), long, hours=24),
    }
    assert 7 * MIB < len(bodies[EAST]) < 8 * MIB
    return bodies


def full_day(start: datetime) -> bytes:
    """A body just under 8 MiB for a 24-hour window: 47,000 customers, 6.8 million hourly rows."""
    per_customer = len(json.dumps({"customer_id": "c_00000", **usage()})) + 2
    customers = {f"c_{i:05d}": usage() for i in range((8 * MIB - 2048) // per_customer)}
    body = report_body(EAST, start, customers, hours=24)
    assert 7 * MIB < len(body) < 8 * MIB
    return body


async def test_healthz_and_other_clusters_served_while_the_largest_reports_arrive(database_url: str) -> None:
    # The server in its own process: on the test's event loop, a stalled loop would stall the stopwatch too.
    start = hours_ago(30)
    bodies = await asyncio.to_thread(largest_reports, start)
    refused = await asyncio.to_thread(full_day, start - timedelta(hours=48))  # was 41 s, 1.7 GB and a 6 s stall
    small = report_body(SOUTH, start, {"cust_small": usage(cpu=1.0)})
    server = await asyncio.to_thread(ServerProcess, database_url)
    latencies: list[float] = []
    rss = [server.rss_bytes()]
    done = asyncio.Event()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:

            async def post(body: bytes, cluster: str) -> tuple[int, float]:
                began = time.perf_counter()
                headers = {"Authorization": f"Bearer {TOKENS[cluster]}"}
                async with session.post(server.url + "/api/usage/report", data=body, headers=headers) as resp:
                    await resp.read()
                    return resp.status, time.perf_counter() - began

            async def watch() -> None:
                while not done.is_set():
                    began = time.perf_counter()
                    async with session.get(server.url + "/healthz") as resp:
                        assert resp.status == 200
                    latencies.append(time.perf_counter() - began)
                    rss.append(server.rss_bytes())
                    await asyncio.sleep(0.01)

            async def small_report() -> tuple[int, float]:
                await asyncio.sleep(0.5)  # the large ones are being parsed and stored
                return await post(small, SOUTH)

            watcher = asyncio.create_task(watch())
            began = time.perf_counter()
            # Each large report twice at once (an exporter's retry racing the first send): 201 and 200.
            large = [post(body, cluster) for cluster, body in bodies.items() for _ in range(2)]
            results = await asyncio.gather(post(refused, EAST), *large, small_report())
            elapsed = time.perf_counter() - began
            done.set()
            await watcher
    finally:
        assert server.terminate() == 0
    worst, small_seconds = max(latencies), results[-1][1]
    print(
        f"\nlargest reports (8 MiB x 10,000 customers; 2,000 customers x 24 h), each twice, and a full day "
        f"refused: {elapsed:.1f} s; "
        f"/healthz worst {worst:.3f} s over {len(latencies)} probes; another cluster's small report "
        f"{small_seconds:.2f} s; server RSS {rss[0] / MIB:.0f} -> peak {max(rss) / MIB:.0f} MiB"
    )
    assert sorted(status for status, _ in results) == [200, 200, 201, 201, 201, 413], results
    assert worst < 1.0, f"/healthz took {worst:.2f} s while the largest reports arrived"
    assert small_seconds < 10, f"another cluster's small report took {small_seconds:.1f} s"


async def test_limits_of_one_report(database_url: str, storage: Storage, caplog: pytest.LogCaptureFixture) -> None:
    server = await start_server(database_url, max_window=timedelta(hours=6), max_customers_per_report=50)
    try:
        start = hours_ago(30)
        many = {f"cust_{i:03d}": usage(cpu=1.0) for i in range(51)}
        status, answer = await server.post_report(report_body(EAST, start, many), TOKENS[EAST])
        assert status == 413 and "51 customers in one part, over the limit of 50" in answer["error"]
        # The operator learns which cluster was refused, and why, in one line.
        assert any(
            r.getMessage().startswith(f"report of cluster {EAST} refused: HTTP 413")
            and "51 customers" in r.getMessage()
            for r in caplog.records
        )
        status, answer = await server.post_report(report_body(EAST, start, {"c": usage()}, hours=7), TOKENS[EAST])
        assert status == 422 and "1 to 6 whole hours, got 7" in answer["error"]
        assert (await storage.stats())["reports"] == 0
    finally:
        await stop_server(server)

    server = await start_server(database_url, max_rows_per_report=6 * 2 * 24 - 1)
    try:
        two = {"cust_a": usage(cpu=1.0), "cust_b": usage(cpu=2.0)}
        status, answer = await server.post_report(report_body(EAST, start, two, hours=24), TOKENS[EAST])
        assert status == 413 and "288 hourly usage rows" in answer["error"]
        assert (await server.post_report(report_body(EAST, start, two, hours=23), TOKENS[EAST]))[0] == 201
    finally:
        await stop_server(server)


async def test_a_full_body_of_a_24_hour_window_is_refused_at_once(server: Server, storage: Storage) -> None:
    # Was 7.2 million rows, 1.7 GB and 41 s: now refused before a single row is built.
    body = await asyncio.to_thread(full_day, hours_ago(48))
    began = time.perf_counter()
    status, answer = await server.post_report(body, TOKENS[EAST])
    assert status == 413 and "over the limit of 10000" in answer["error"]
    assert time.perf_counter() - began < 5
    assert (await storage.stats())["usage_rows"] == 0


# -- 2. the client's fault is a 4xx, never a traceback ------------------------------------------


def _with(start: datetime, **fields: Any) -> bytes:
    data = report_dict(EAST, start, {"cust_a": usage(cpu=1.0)})
    data.update(fields)
    return json.dumps(data).encode()


def _amount_text(start: datetime, text: str) -> bytes:
    body = report_body(EAST, start, {"cust_a": usage(cpu=1.25)})
    assert body.count(b'"cpu_hours": 1.25') == 1
    return body.replace(b'"cpu_hours": 1.25', b'"cpu_hours": ' + text.encode())


def _year_one(start: datetime) -> bytes:
    data = report_dict(EAST, start, {"cust_a": usage(cpu=1.0)})
    data["window_start"] = "0001-01-01T00:00:00+01:00"
    return json.dumps(data).encode()


def _year_ten_thousand(start: datetime) -> bytes:
    data = report_dict(EAST, start, {"cust_a": usage(cpu=1.0)})
    data["window_end"] = "9999-12-31T23:00:00-01:00"
    return json.dumps(data).encode()


def _deep_meter(start: datetime) -> bytes:
    data = report_dict(EAST, start, {"cust_a": usage(cpu=1.0)})
    text = json.dumps(data)
    return text.replace('"cpu_hours": 1.0', '"cpu_hours": ' + "[" * 900 + "]" * 900).encode()


BAD_BODIES: list[tuple[str, Callable[[datetime], bytes], int, str]] = [
    ("JSON nested 100,000 deep", lambda s: b"[" * 100_000 + b"]" * 100_000, 400, "nested too deeply"),
    ("objects nested 100,000 deep", lambda s: b'{"a":' * 100_000 + b"1" + b"}" * 100_000, 400, "nested too deeply"),
    ("an amount nested 900 deep", _deep_meter, 422, "cpu_hours"),
    ("window_start before year 1 in UTC", _year_one, 422, "out of range"),
    ("window_end after year 9999 in UTC", _year_ten_thousand, 422, "out of range"),
    ("amount 1e-20000", lambda s: _amount_text(s, "1e-20000"), 422, "at most 12 decimal places"),
    ("amount with 20,000 decimals", lambda s: _amount_text(s, "0." + "3" * 20_000), 422, "at most 12 decimal places"),
    ("amount 1e999999999", lambda s: _amount_text(s, "1e999999999"), 422, "less than or equal"),
    ("amount 10^4000", lambda s: _amount_text(s, "1" + "0" * 4000), 422, "less than or equal"),
    ("part 10^5000", lambda s: _with(s).replace(b'"part": 1,', b'"part": 1' + b"0" * 5000 + b","), 400, "malformed"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "make", "status", "fragment"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
async def test_bad_bodies_are_4xx(
    server: Server,
    storage: Storage,
    caplog: pytest.LogCaptureFixture,
    name: str,
    make: Callable[[datetime], bytes],
    status: int,
    fragment: str,
) -> None:
    caplog.set_level(logging.INFO)
    body = make(hours_ago(3))
    got, headers, answer = await raw_request(server.url, post_head(body) + body)
    assert got == status, answer[:300]
    assert fragment in one_line_json(got, answer)
    assert_no_traceback(caplog)
    assert (await storage.stats())["reports"] == 0
    if name.startswith("amount"):  # valid JSON, just too precise: refused the same on both databases
        assert headers["content-type"].startswith("application/json")


BAD_HEADS: list[tuple[str, Callable[[bytes], bytes], int, str]] = [
    (
        "Authorization not UTF-8",
        lambda b: post_head(b).replace(b"Bearer token-east", b"Bearer \xff\xfe\xfa"),
        401,
        "valid cluster bearer token",
    ),
    ("Authorization only 'Bearer'", lambda b: post_head(b).replace(b"Bearer token-east", b"Bearer"), 401, "token"),
    ("Content-Encoding gzip, body not gzip", lambda b: post_head(b, Content_Encoding="gzip"), 400, "unreadable body"),
    ("Content-Encoding deflate, body not", lambda b: post_head(b, Content_Encoding="deflate"), 400, "unreadable body"),
    ("Idempotency-Key not UTF-8", lambda b: post_head(b, Idempotency_Key="x").replace(b": x", b": \xff"), 422, "Idem"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "make_head", "status", "fragment"), BAD_HEADS, ids=[h[0] for h in BAD_HEADS])
async def test_bad_headers_are_4xx(
    server: Server,
    storage: Storage,
    caplog: pytest.LogCaptureFixture,
    name: str,
    make_head: Callable[[bytes], bytes],
    status: int,
    fragment: str,
) -> None:
    caplog.set_level(logging.INFO)
    body = report_body(EAST, hours_ago(3), {"cust_a": usage(cpu=1.0)})
    got, _, answer = await raw_request(server.url, make_head(body) + body)
    assert got == status, answer[:300]
    assert fragment in one_line_json(got, answer)
    assert_no_traceback(caplog)
    assert (await storage.stats())["reports"] == 0


async def test_a_gzip_bomb_is_413_and_gzip_is_read(server: Server, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    bomb = gzip.compress(b"[" + b"0," * (10 * MIB) + b"0]")
    assert len(bomb) < 100_000
    got, _, answer = await raw_request(server.url, post_head(bomb, Content_Encoding="gzip") + bomb)
    assert got == 413 and "over the limit" in one_line_json(got, answer)
    body = gzip.compress(report_body(EAST, hours_ago(3), {"cust_a": usage(cpu=1.0)}))
    got, _, answer = await raw_request(server.url, post_head(body, Content_Encoding="gzip") + body)
    assert got == 201, answer
    assert_no_traceback(caplog)


ADMIN_QUERIES = [
    ("/api/customers/cust_a/invoice?month=9999-12", "month must look like"),
    ("/api/customers/cust_a/invoice?month=0000-01", "month must look like"),
    ("/api/customers/cust_a/usage?from=9999-12-31T00:00:00Z&to=9999-12-31T01:00:00Z", "between the years"),
    ("/api/customers/cust_a/usage?from=0001-01-01T00:00:00Z&to=0001-01-01T01:00:00Z", "between the years"),
    ("/api/customers/cust_a/usage?from=0001-01-01T00:00:00%2B01:00&to=2025-01-01T00:00:00Z", "RFC 3339"),
]


@pytest.mark.parametrize(("path", "fragment"), ADMIN_QUERIES, ids=[q[0].split("?")[1] for q in ADMIN_QUERIES])
async def test_dates_that_overflow_are_400(
    server: Server, caplog: pytest.LogCaptureFixture, path: str, fragment: str
) -> None:
    caplog.set_level(logging.INFO)
    await server.admin("PUT", "/api/customers/cust_a", b'{"plan": "starter"}')
    status, answer = await server.admin("GET", path)
    assert status == 400 and fragment in answer["error"], answer
    assert_no_traceback(caplog)


# -- 3. what is stored is compared exactly ------------------------------------------------------


async def test_a_difference_beyond_28_digits_is_not_a_duplicate(server: Server, storage: Storage) -> None:
    start = hours_ago(3)
    stored = _amount_text(start, "1234.567890123456")
    assert (await server.post_report(stored, TOKENS[EAST]))[0] == 201
    # The same value spelled with trailing zeros is the same content.
    same = _amount_text(start, "1234.5678901234560000000000000000000")
    assert (await server.post_report(same, TOKENS[EAST]))[0] == 200
    # Equal to Decimal's 28 significant digits, but not equal: was answered 200 "duplicate".
    differs = _amount_text(start, "1234.567890123456000000000000000001")
    status, answer = await server.post_report(differs, TOKENS[EAST])
    assert status == 422 and "at most 12 decimal places" in answer["error"]
    differs = _amount_text(start, "1234.567890123457")
    status, answer = await server.post_report(differs, TOKENS[EAST])
    assert status == 409 and "different content" in answer["error"]
    assert (await storage.usage_totals("cust_a", 0, 2**40))["cpu_hours"] == Decimal("1234.567890123456")


# -- 4. windows Stripe can no longer take -------------------------------------------------------


def _window(start: datetime) -> bytes:
    # By hand: strftime writes year 1 as "1", which is not RFC 3339.
    data = report_dict(EAST, hours_ago(3), {"c": usage(cpu=1)})
    end = start + timedelta(hours=1)
    data["window_start"], data["window_end"] = f"{start:%Y}".zfill(4) + f"{start:-%m-%dT%H:00:00Z}", end.isoformat()
    data["report_id"] = report_id(EAST, start, end)
    return json.dumps(data).encode()


async def test_old_windows_refused_unless_a_backfill_is_allowed(database_url: str, storage: Storage) -> None:
    server = await start_server(database_url, max_window_age=timedelta(days=35))
    try:
        for start in (datetime(1970, 1, 1, tzinfo=UTC), datetime(1, 1, 1, tzinfo=UTC), hours_ago(36 * 24)):
            status, answer = await server.post_report(_window(start), TOKENS[EAST])
            assert status == 422 and "older than the 35 days accepted" in answer["error"], answer
            assert "BILLING_MAX_WINDOW_AGE" in answer["error"]
        recent = report_body(EAST, hours_ago(34 * 24), {"c": usage(cpu=1)})
        assert (await server.post_report(recent, TOKENS[EAST]))[0] == 201
    finally:
        await stop_server(server)
    # The operator allows a backfill: stored and invoiced (its Stripe events expire unsent, see test_stripe).
    server = await start_server(database_url, max_window_age=timedelta(days=365 * 60))
    try:
        old = report_body(EAST, datetime(1970, 1, 1, tzinfo=UTC), {"c": usage(cpu=1)})
        assert (await server.post_report(old, TOKENS[EAST]))[0] == 201
        assert (await server.admin("PUT", "/api/customers/c", b'{"plan": "starter"}'))[0] == 201
        status, invoice = await server.admin("GET", "/api/customers/c/invoice?month=1970-01")
        assert status == 200 and invoice["lines"][0]["used"] == "1"
    finally:
        await stop_server(server)
    assert (await storage.stats())["reports"] == 2


# -- 5. limits and prices are validated where they are given ----------------------------------


BAD_TERMS = [
    ('{"plan": "enterprise", "base_price": "500", "limits": {"vcpu": "1e999999999"}}', "less than or equal"),
    ('{"plan": "enterprise", "base_price": "500", "limits": {"vcpu": 1e999999999}}', "vcpu"),
    ('{"plan": "enterprise", "base_price": "500", "limits": {"memory_gb": "1e-20000"}}', "decimal places"),
    ('{"plan": "enterprise", "base_price": "1e-20000"}', "decimal places"),
    ('{"plan": "enterprise", "base_price": "1e13"}', "less than or equal"),
    ('{"plan": "enterprise", "base_price": "NaN"}', "finite"),
    ('{"plan": "enterprise", "base_price": "-1"}', "greater than or equal"),
]


@pytest.mark.parametrize(("terms", "fragment"), BAD_TERMS)
async def test_bad_limits_and_prices_are_422(server: Server, terms: str, fragment: str) -> None:
    status, answer = await server.admin("PUT", "/api/customers/cust_e", terms.encode())
    assert status == 422 and fragment in answer["error"], answer
    assert (await server.admin("GET", "/api/customers/cust_e"))[0] == 404


async def test_the_largest_terms_still_invoice(server: Server) -> None:
    terms = {"plan": "enterprise", "base_price": "1000000000000", "limits": {"vcpu": "0.000000000001"}}
    assert (await server.admin("PUT", "/api/customers/cust_e", json.dumps(terms).encode()))[0] == 201
    start = datetime(2025, 11, 3, tzinfo=UTC)
    for cluster in (EAST, WEST, SOUTH):
        huge = usage(cpu=10**15, memory=10**15, sent=10**18, received=10**18, storage=10**15, requests=10**18)
        body = report_body(cluster, start, {"cust_e": huge}, hours=24)
        assert (await server.post_report(body, TOKENS[cluster]))[0] == 201
    status, invoice = await server.admin("GET", "/api/customers/cust_e/invoice?month=2025-11")
    assert status == 200, invoice
    cpu = next(line for line in invoice["lines"] if line["meter"] == "cpu")
    # 3 x 10^15 core-hours over 720 x 10^-12 included, at $0.05 (shown to 9 places, exact in the total)
    assert (cpu["used"], cpu["overage"]) == ("3000000000000000", "2999999999999999.999999999")
    # $10^12 base + 149,999,999,999,999.999999999964 (CPU) + 3 x 10^12 million requests x $0.50;
    # memory, storage and network are unlimited on this Enterprise contract
    assert invoice["total"] == "152500000000000.00"


def test_bad_prices_in_the_pricing_file(tmp_path: Path) -> None:
    pricing = tmp_path / "pricing.toml"
    for old, new, fragment in [
        ('cpu_core_hour = "0.05"', 'cpu_core_hour = "1e999999999"', "less than or equal"),
        ('network_gb = "0.10"', 'network_gb = "1e-20000"', "decimal places"),
        ("vcpu = 4", 'vcpu = "1e999999999"', "less than or equal"),
    ]:
        pricing.write_text(DEFAULT_PRICING_TOML.replace(old, new))
        with pytest.raises(BillingConfigError, match=fragment):
            load_pricing(pricing)


# -- 6. the admin token is nobody else's -------------------------------------------------------


def test_an_admin_token_that_is_a_cluster_token_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(BillingConfigError, match="also the token of cluster k8s-a"):
        Credentials.build({"k8s-a": "same", "k8s-b": "other"}, "same")
    args = ["billing-api", "serve", "--database-url", f"sqlite:///{tmp_path}/x.db", "--port", "0"]
    assert main([*args, "--token", "k8s-a=same", "--admin-token", "same"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "the admin token is also the token of cluster k8s-a" in lines[0]
    assert not (tmp_path / "x.db").exists()  # refused before anything is opened


# -- 7. parts of one report agree on `parts`, whatever the concurrency -------------------------


async def test_parts_that_disagree_sent_at_once_to_two_replicas(database_url: str, storage: Storage) -> None:
    replicas = [await start_server(database_url), await start_server(database_url)]
    try:
        start = hours_ago(60)
        for round_ in range(4):
            window = start + timedelta(hours=round_)
            part1 = {f"cust_a{i:04d}": usage(cpu=1.0) for i in range(3000)}
            part2 = {f"cust_b{i:04d}": usage(cpu=1.0) for i in range(3000)}
            bodies = [
                report_body(EAST, window, part1, part=1, parts=2),
                report_body(EAST, window, part2, part=2, parts=3),
            ]
            results = await asyncio.gather(
                *(r.post_report(b, TOKENS[EAST]) for r, b in zip(replicas, bodies, strict=True))
            )
            statuses = sorted(status for status, _ in results)
            assert statuses == [201, 409], results
            rid = report_id(EAST, window, window + timedelta(hours=1))
            async with storage.transaction() as tx:
                rows = await tx.fetchall("SELECT DISTINCT parts FROM reports WHERE report_id = ?", (rid,))
            assert len(rows) == 1
    finally:
        for replica in replicas:
            await stop_server(replica)


# -- 8. every answer counted, no connection kept forever ---------------------------------------


async def test_a_500_is_counted_and_logged_once(
    server: Server, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*args: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(Storage, "store_report", broken)
    status, answer = await server.post_report(report_body(EAST, hours_ago(3), {"c": usage()}), TOKENS[EAST])
    assert (status, answer) == (500, {"error": "internal error (logged)"})
    count = server.registry.get_sample_value("cluster_exporter_billing_api_report_requests_total", {"status": "500"})
    assert count == 1
    [record] = [r for r in caplog.records if r.exc_info]
    assert "internal error on POST /api/usage/report" in record.getMessage()


async def _closed_within(url: str, data: bytes, seconds: float) -> float:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    began = time.perf_counter()
    try:
        writer.write(data)
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), seconds) == b""
        return time.perf_counter() - began
    finally:
        writer.close()


async def test_idle_and_slow_connections_are_timed_out(database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    server = await start_server(
        database_url, idle_timeout=timedelta(seconds=0.5), request_timeout=timedelta(seconds=0.5)
    )
    try:
        # Connected, silent: closed.
        assert await _closed_within(server.url, b"", 5) < 3
        # A request head that never ends (slowloris): closed.
        assert await _closed_within(server.url, b"POST /api/usage/report HTTP/1.1\r\nHost: b\r\n", 5) < 3
        # Idle after a first request on a kept-alive connection: closed.
        get = b"GET /healthz HTTP/1.1\r\nHost: b\r\n\r\n"
        reader_writer = await asyncio.open_connection(*server.url.removeprefix("http://").split(":"))
        reader, writer = reader_writer
        writer.write(get)
        began = time.perf_counter()
        answer = await asyncio.wait_for(reader.read(), 5)  # the answer, then EOF once idle
        assert answer.startswith(b"HTTP/1.1 200") and time.perf_counter() - began < 3
        writer.close()
        # A body that stops half way: 408.
        body = report_body(EAST, hours_ago(3), {"c": usage()})
        began = time.perf_counter()
        got, _, answer = await raw_request(server.url, post_head(body) + body[:50], wait=5)
        assert got == 408 and "did not arrive within 0.5 s" in one_line_json(got, answer)
        assert time.perf_counter() - began < 3
        assert_no_traceback(caplog)
    finally:
        await stop_server(server)


async def test_helpers_are_sane(server: Server) -> None:
    body = report_body(EAST, hours_ago(3), {"cust_a": usage(cpu=1.0)})
    got, headers, answer = await raw_request(server.url, post_head(body) + body)
    assert got == 201 and headers["content-type"].startswith("application/json"), answer
