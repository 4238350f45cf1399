"""Load benchmark of the billing API, on SQLite and on a real PostgreSQL 15 (fsync on).

Targets (issue 6):
  1. one 5,000-customer report is validated and stored in under 1 s (the POST's whole round trip,
     measured by the client, worst of several distinct reports);
  2. 100 such reports sent by 20 concurrent clients, each sent twice (the copies racing each
     other), are all stored exactly once; resending all of them again changes no invoice total.
  3. (issue "hostile input and overload") the costliest reports the default limits allow, a
     10,000-customer part of almost 8 MiB and a 2,000-customer 24-hour window (288,000 rows),
     are stored with the server's memory bounded, and /healthz answers within 1 s while they
     arrive together; an 8 MiB body of a 24-hour window (6.8 million rows) is refused at once.

The server is ``cluster-exporter billing-api serve`` in its own process on a free loopback port.
Prints one line per target with the measured figure and the limit; exits 1 if any target fails.

    .venv/bin/python bench/billing_api_load.py [--targets sqlite,postgresql] [--customers 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import psutil

from cluster_exporter.billing_api.storage import open_storage
from cluster_exporter.devtools.local_postgres import LocalPostgres
from cluster_exporter.report import build_report

ADMIN = "bench-admin"
START = datetime(2025, 11, 1, 0, tzinfo=UTC)
SINGLE_LIMIT_S = 1.0
HEALTHZ_LIMIT_S = 1.0
MIB = 1 << 20


class Server:
    """``cluster-exporter billing-api serve`` in a child process."""

    def __init__(self, database_url: str, tokens_file: Path) -> None:
        command = [sys.executable, "-c", "import sys; from cluster_exporter.cli import main; sys.exit(main())"]
        command += ["billing-api", "serve", "--host", "127.0.0.1", "--port", "0", "--database-url", database_url]
        command += ["--tokens-file", str(tokens_file), "--admin-token", ADMIN]
        command += ["--max-window-age", "876000h"]  # the reports are of November 2025: a backfill
        env = {k: v for k, v in os.environ.items() if not k.startswith("BILLING_")}
        self.proc = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
        self.url = ""
        self.log: list[str] = []
        ready = threading.Event()

        def read() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.log.append(line.rstrip())
                found = re.search(r"listening on (http://\S+)", line)
                if found:
                    self.url = found.group(1)
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(60):
            self.proc.kill()
            raise SystemExit(f"billing API did not start: {self.log[-5:]}")

    def stop(self) -> None:
        """SIGTERM and wait."""
        self.proc.terminate()
        self.proc.wait(60)


def report_json(cluster: str, hour: int, customers: int, seed: int) -> bytes:
    """A report as the exporter builds it: ``customers`` customers with every built-in meter."""
    rng = random.Random(seed)
    usage = {
        f"cust_{i:05d}": {
            "namespaces": [f"tenant-{i:05d}", f"tenant-{i:05d}-db"],
            "cpu_hours": round(rng.uniform(0, 4), 9),
            "memory_gb_hours": round(rng.uniform(0, 16), 9),
            "network_bytes_sent": rng.randrange(10**10),
            "network_bytes_received": rng.randrange(10**10),
            "storage_gb_hours": round(rng.uniform(0, 100), 9),
            "http_requests": rng.randrange(10**6),
        }
        for i in range(customers)
    }
    start = START + timedelta(hours=hour)
    return build_report(cluster, start, start + timedelta(hours=1), usage).to_json().encode()


async def post(session: aiohttp.ClientSession, url: str, body: bytes, token: str) -> tuple[int, float]:
    """POST one report; (status, seconds)."""
    began = time.perf_counter()
    async with session.post(url + "/api/usage/report", data=body, headers={"Authorization": f"Bearer {token}"}) as r:
        await r.read()
        return r.status, time.perf_counter() - began


async def invoices(session: aiohttp.ClientSession, url: str, customers: list[str]) -> dict[str, str]:
    """customer -> invoice total for November 2025."""
    totals = {}
    for customer in customers:
        async with session.get(
            f"{url}/api/customers/{customer}/invoice?month=2025-11", headers={"Authorization": f"Bearer {ADMIN}"}
        ) as resp:
            assert resp.status == 200, await resp.text()
            totals[customer] = (await resp.json())["total"]
    return totals


async def single_report(target: str, url: str, customers: int, runs: int) -> bool:
    """Target 1: worst POST time of ``runs`` distinct reports."""
    times = []
    size = 0
    async with aiohttp.ClientSession() as session:
        for run in range(runs):
            body = report_json("bench-00", run, customers, seed=run)
            size = len(body)
            status, seconds = await post(session, url, body, "token-00")
            if status != 201:
                print(f"{target}: report {run} answered {status}")
                return False
            times.append(seconds)
    worst = max(times)
    ok = worst < SINGLE_LIMIT_S
    print(
        f"{target:<11} one {customers:,}-customer report validated+stored: worst {worst:.3f} s "
        f"(median {statistics.median(times):.3f} s, {runs} reports of {size / 1e6:.1f} MB)  "
        f"limit {SINGLE_LIMIT_S:.2f} s  {'OK' if ok else 'FAIL'}"
    )
    return ok


async def concurrent_reports(
    target: str, url: str, database_url: str, customers: int, reports: int, clients: int
) -> bool:
    """Target 2: ``reports`` reports, each sent twice at random moments by ``clients`` clients, then all resent."""
    clusters = 20
    jobs = [(f"bench-{i % clusters:02d}", i // clusters, i) for i in range(reports)]
    sends = jobs * 2
    random.Random(7).shuffle(sends)
    queue: asyncio.Queue[tuple[str, int, int]] = asyncio.Queue()
    statuses: list[int] = []
    sample = [f"cust_{i:05d}" for i in range(0, customers, max(1, customers // 10))]

    async def client(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            cluster, hour, seed = queue.get_nowait()
            body = await asyncio.to_thread(report_json, cluster, hour, customers, seed)
            status, _ = await post(session, url, body, "token-" + cluster[-2:])
            statuses.append(status)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
        for customer in sample:
            async with session.put(
                f"{url}/api/customers/{customer}", data=b'{"plan": "professional"}',
                headers={"Authorization": f"Bearer {ADMIN}"},
            ) as resp:  # fmt: skip
                assert resp.status in (200, 201)
        for send in sends:
            queue.put_nowait(send)
        began = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        elapsed = time.perf_counter() - began
        first = await invoices(session, url, sample)
        created, duplicates = statuses.count(201), statuses.count(200)
        statuses.clear()
        for send in jobs:  # every report once more: a full resend after, say, a lost state
            queue.put_nowait(send)
        await asyncio.gather(*(client(session) for _ in range(clients)))
        resent_ok = statuses.count(200) == reports
        second = await invoices(session, url, sample)
    store = await open_storage(database_url, 1)
    try:
        stats = await store.stats()
    finally:
        await store.close()
    exact = stats["reports"] == reports and stats["usage_rows"] == reports * customers * 6
    ok = created == reports and duplicates == reports and resent_ok and exact and first == second
    print(
        f"{target:<11} {reports} reports x {customers:,} customers from {clients} clients, each sent twice: "
        f"{created} stored (201), {duplicates} duplicates (200), {stats['usage_rows']:,} usage rows "
        f"(expected {reports * customers * 6:,}); full resend: {'all 200' if resent_ok else 'NOT all 200'}; "
        f"{len(sample)} invoice totals {'unchanged' if first == second else 'CHANGED'}; "
        f"{elapsed:.1f} s ({reports / elapsed:.1f} reports/s)  limit: exactly once  {'OK' if ok else 'FAIL'}"
    )
    return ok


def _customer(i: int, namespaces: int) -> dict[str, object]:
    return {
        "namespaces": [f"tenant-{i:05d}-namespace-{n:03d}" for n in range(namespaces)],
        "cpu_hours": round(i / 7, 9),
        "memory_gb_hours": 1.25,
        "network_bytes_sent": i * 1000,
        "network_bytes_received": 7,
        "storage_gb_hours": 3.5,
        "http_requests": i,
    }


def largest_bodies(end: datetime, first: int) -> dict[str, tuple[str, bytes, int]]:
    """name -> (cluster, body, expected status): the costliest reports the default limits allow, and one past them."""
    day = timedelta(hours=24)
    wide = {f"cust_{i:05d}": _customer(i, 20) for i in range(10_000)}
    long = {f"cust_{i:05d}": _customer(i, 1) for i in range(2_000)}
    zero = {"namespaces": [], **dict.fromkeys(("cpu_hours", "memory_gb_hours", "storage_gb_hours"), 0.0)}
    zero |= dict.fromkeys(("network_bytes_sent", "network_bytes_received", "http_requests"), 0)
    per_customer = len(json.dumps({"customer_id": "c_00000", **zero})) + 1
    full = {f"c_{i:05d}": zero for i in range((8 * MIB - 2048) // per_customer)}

    def body(cluster: str, start: datetime, customers: dict[str, dict[str, object]]) -> bytes:
        return build_report(cluster, start, end, customers).to_json().encode()

    a, b, c = (f"bench-{first + i:02d}" for i in range(3))
    return {
        "10,000 customers x 1 h": (a, body(a, end - timedelta(hours=1), wide), 201),
        "2,000 customers x 24 h": (b, body(b, end - day, long), 201),
        "47,000 customers x 24 h": (c, body(c, end - day, full), 413),
    }


async def largest_reports(target: str, server: Server) -> bool:
    """Target 3: time and server memory of each costliest report alone, then /healthz while they all arrive."""
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    bodies = await asyncio.to_thread(largest_bodies, end, 0)
    again = await asyncio.to_thread(largest_bodies, end, 3)  # the same sizes from three other clusters
    process = psutil.Process(server.proc.pid)
    peak = [0]
    ok = True

    async def sample(stop: asyncio.Event) -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            await asyncio.sleep(0.005)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:
        for name, (cluster, body, expected) in bodies.items():
            base = process.memory_info().rss
            peak[0] = base
            stop = asyncio.Event()
            sampler = asyncio.create_task(sample(stop))
            status, seconds = await post(session, server.url, body, "token-" + cluster[-2:])
            stop.set()
            await sampler
            ok &= status == expected
            print(
                f"{target:<11} {name} ({len(body) / 1e6:.1f} MB): HTTP {status} (expected {expected}) in "
                f"{seconds:.2f} s; server memory {base / MIB:.0f} -> peak {peak[0] / MIB:.0f} MiB"
            )
        latencies: list[float] = []
        done = asyncio.Event()

        async def watch() -> None:
            while not done.is_set():
                began = time.perf_counter()
                async with session.get(server.url + "/healthz") as resp:
                    await resp.read()
                latencies.append(time.perf_counter() - began)
                await asyncio.sleep(0.01)

        watcher = asyncio.create_task(watch())
        began = time.perf_counter()
        # The same sizes again, all at once, from other clusters, with a fourth cluster's small report.
        small = build_report("bench-06", end - timedelta(hours=1), end, {"cust_small": _customer(1, 1)})
        sends = [post(session, server.url, body, "token-" + cluster[-2:]) for cluster, body, _ in again.values()]
        sends.append(post(session, server.url, small.to_json().encode(), "token-06"))
        results = await asyncio.gather(*sends)
        elapsed = time.perf_counter() - began
        done.set()
        await watcher
    worst = max(latencies)
    ok &= [status for status, _ in results] == [201, 201, 413, 201] and worst < HEALTHZ_LIMIT_S
    print(
        f"{target:<11} all of them at once with a small report of another cluster: {elapsed:.1f} s (small report "
        f"{results[-1][1]:.2f} s); /healthz worst {worst:.3f} s over {len(latencies)} probes  limit "
        f"{HEALTHZ_LIMIT_S:.2f} s  {'OK' if worst < HEALTHZ_LIMIT_S else 'FAIL'}"
    )
    return ok


async def run_target(target: str, urls: list[str], tokens_file: Path, args: argparse.Namespace) -> bool:
    """Every target against one database kind (a fresh database each)."""
    ok = True
    if args.only_largest:
        server = Server(urls[2], tokens_file)
        try:
            return await largest_reports(target, server)
        finally:
            server.stop()
    server = Server(urls[0], tokens_file)
    try:
        ok &= await single_report(target, server.url, args.customers, args.runs)
    finally:
        server.stop()
    server = Server(urls[1], tokens_file)
    try:
        ok &= await concurrent_reports(target, server.url, urls[1], args.customers, args.reports, args.clients)
    finally:
        server.stop()
    server = Server(urls[2], tokens_file)
    try:
        ok &= await largest_reports(target, server)
    finally:
        server.stop()
    return ok


def main() -> int:
    """Run the benchmark; exit code 0 when every target is met."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", default="sqlite,postgresql")
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=5, help="distinct reports timed for target 1")
    parser.add_argument("--reports", type=int, default=100)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--only-largest", action="store_true", help="run target 3 only")
    args = parser.parse_args()
    ok = True
    with tempfile.TemporaryDirectory(prefix="billing-bench-") as tmp:
        tokens_file = Path(tmp) / "tokens"
        tokens_file.write_text("".join(f"bench-{i:02d}=token-{i:02d}\n" for i in range(20)))
        for target in args.targets.split(","):
            if target == "sqlite":
                urls = [f"sqlite:///{tmp}/single.db", f"sqlite:///{tmp}/concurrent.db", f"sqlite:///{tmp}/largest.db"]
                ok &= asyncio.run(run_target(target, urls, tokens_file, args))
            elif target == "postgresql":
                with LocalPostgres(fsync=True) as pg:
                    urls = [pg.create_database(name) for name in ("single", "concurrent", "largest")]
                    ok &= asyncio.run(run_target(target, urls, tokens_file, args))
            else:
                parser.error(f"unknown target {target}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
