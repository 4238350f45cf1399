"""Scale benchmark: one hourly window over N labeled namespaces in a real Prometheus.

    .venv/bin/python bench/scale_report.py --namespaces 10000

Generates (once, cached under bench/out/) the scale cluster of cluster_exporter.devtools:
N namespaces, two per customer, one or two pods each with the full cAdvisor layout (containers,
pause, pod-level cgroup, network on pod and pause), one PVC each, ingress traffic, one pod in ten
starting or stopping inside the window; backfills it with promtool and starts Prometheus on a
free port. Then, on the same Prometheus:

1. runs ``cluster-exporter report --dry-run`` as a child process: wall time, peak RSS
   (getrusage of the child), the report checked customer by customer against the generator's
   exact truth, and the PromQL HTTP requests it sent (prometheus_http_requests_total before/after);
2. runs the original design's per-namespace metering (six queries per namespace, ten in flight);
3. sends the exporter's own queries raw (no parsing) to separate Prometheus' time from ours.

It prints one line per target with the measured figure and the limit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from cluster_exporter.devtools.clusters import scale_cluster
from cluster_exporter.devtools.kubeapi_standin import KubeApiStandIn, KubeState, write_kubeconfig
from cluster_exporter.devtools.original_design import ORIGINAL, per_namespace_usage
from cluster_exporter.devtools.prometheus_server import PrometheusServer, backfill
from cluster_exporter.devtools.synthetic_cluster import CUSTOMER_LABEL
from cluster_exporter.metering.plan import meter_queries, namespace_owners
from cluster_exporter.metering.window import all_meters, make_window
from cluster_exporter.meters import ALWAYS as BUILTIN_METERS
from cluster_exporter.settings import PrometheusSettings, load_settings
from cluster_exporter.sources.prometheus import PrometheusClient

ROOT = Path(__file__).resolve().parents[1]
WINDOW_END = datetime(2025, 11, 20, 2, tzinfo=UTC)
INTERVAL = 30.0
METERS = BUILTIN_METERS


def prepare(namespaces: int, out: Path) -> tuple[Path, dict[str, dict[str, float]], list[str]]:
    """The TSDB and the truth for ``namespaces``, generated once and cached."""
    work = out / f"scale-{namespaces}"
    work.mkdir(parents=True, exist_ok=True)
    tsdb, truth_file = work / "tsdb", work / "truth.json"
    if not truth_file.exists():
        started = time.monotonic()
        cluster = scale_cluster(namespaces, WINDOW_END, interval=INTERVAL)
        history = work / "history.om"
        samples = cluster.write_openmetrics_file(history)
        backfill(history, tsdb)
        history.unlink()
        truth = cluster.truth(datetime.fromtimestamp(WINDOW_END.timestamp() - 3600, UTC), WINDOW_END)
        labeled = sorted(ns for ns, c in cluster.namespaces.items() if c)
        truth_file.write_text(json.dumps({"truth": truth, "namespaces": labeled}))
        print(
            f"generated {len(cluster.series)} series, {samples} samples in {time.monotonic() - started:.0f}s",
            file=sys.stderr,
        )
    data = json.loads(truth_file.read_text())
    return tsdb, data["truth"], data["namespaces"]


def kube_state(labeled: list[str]) -> KubeState:
    """The stand-in's namespaces: tenant-NNNNNN-x belongs to customer NNNNNN // 2, as generated."""
    return KubeState(namespaces={ns: {CUSTOMER_LABEL: f"cust_{int(ns.split('-')[1]) // 2:06d}"} for ns in labeled})


def query_requests(url: str) -> float:
    """prometheus_http_requests_total of the query endpoint, read from Prometheus' own /metrics
    (the benchmark Prometheus scrapes nothing, itself included)."""
    with urllib.request.urlopen(f"{url}/metrics") as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("prometheus_http_requests_total{") and 'handler="/api/v1/query"' in line:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def run_exporter(prom_url: str, kubeconfig: Path) -> tuple[float, float, dict[str, object]]:
    """Run the report as a child process: (seconds, peak RSS in MiB, report)."""
    env = {
        **os.environ,
        "PROMETHEUS_URL": prom_url,
        "KUBECONFIG": str(kubeconfig),
        "CLUSTER_ID": "k8s-bench",
        "CUSTOMER_LABEL": CUSTOMER_LABEL,
        "METERING_SCRAPE_INTERVAL": f"{INTERVAL:g}s",
        "PROMETHEUS_TIMEOUT": "600s",
    }
    started = time.monotonic()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cluster_exporter.cli",
            "report",
            "--dry-run",
            "--window-end",
            WINDOW_END.strftime("%Y-%m-%dT%H:%M:%SZ"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    peak, out = peak_rss_until_exit(proc)
    seconds = time.monotonic() - started
    stderr = proc.stderr.read() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"exporter failed ({proc.returncode}): {stderr.strip()}")
    return seconds, peak, json.loads(out)


def peak_rss_until_exit(proc: subprocess.Popen[Any]) -> tuple[float, Any]:
    """(peak RSS in MiB, everything written to stdout) of a child started with stdout=PIPE: its
    RSS sampled every 10 ms until it exits, its stdout read meanwhile so it never blocks."""
    watched = psutil.Process(proc.pid)
    peak = 0
    out: list[Any] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    while proc.poll() is None:
        try:
            peak = max(peak, watched.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.01)
    reader.join()
    return peak / 2**20, out[0] if out else None


def check(report: dict[str, object], truth: dict[str, dict[str, float]]) -> tuple[int, int, float, str]:
    """(customers reported, customers within 0.01% on every meter (integers within 1), worst error, where)."""
    usage = {u["customer_id"]: u for u in report["usage"]}  # type: ignore[index, union-attr]
    ok, worst, where = 0, 0.0, "-"
    for customer, expected in truth.items():
        got = usage.get(customer)
        if got is None:
            continue
        good = True
        for meter in METERS:
            want, value = expected[meter], got[meter]
            err = abs(value - want) / want if want else abs(value)
            if meter in ("network_bytes_sent", "network_bytes_received", "http_requests"):
                err = 0.0 if abs(value - want) <= 1 else err
            if err > worst:
                worst, where = err, f"{customer}.{meter}"
            good = good and err <= 1e-4
        ok += good
    return len(usage), ok, worst, where


async def raw_queries(prom_url: str) -> float:
    """Send the exporter's aggregate queries without parsing answers; seconds for all."""
    settings = load_settings(
        {"prometheus": {"url": prom_url}, "metering": {"scrape_interval": f"{INTERVAL:g}s"}, "cluster_id": "x"}
    )
    start = datetime.fromtimestamp(WINDOW_END.timestamp() - 3600, UTC)
    w = make_window(settings, start, WINDOW_END)
    queries = [namespace_owners(CUSTOMER_LABEL, w)]
    queries += [qq for m in all_meters(settings) for qq in meter_queries(m, w)]
    limit = asyncio.Semaphore(settings.prometheus.max_concurrency)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:

        async def one(expr: str, at: float) -> None:
            async with (
                limit,
                session.post(f"{prom_url}/api/v1/query", data={"query": expr, "time": f"{at:.3f}"}) as resp,
            ):
                await resp.read()

        started = time.monotonic()
        await asyncio.gather(*(one(qq.expr, qq.at) for qq in queries))
        return time.monotonic() - started


async def baseline(prom_url: str, namespaces: list[str], gzip: bool = False) -> tuple[float, int]:
    """The original design: six queries per namespace, ten in flight. Through this project's
    client (plain answers), or with ``gzip`` asking for compressed answers as the original
    design's own client (axios, under prometheus-query) does by default."""
    settings = PrometheusSettings(url=prom_url, timeout=600, max_concurrency=10, compression=gzip)
    async with PrometheusClient(settings) as client:
        started = time.monotonic()
        await per_namespace_usage(client, namespaces, WINDOW_END.timestamp(), ORIGINAL, in_flight=10)
        return time.monotonic() - started, client.requests_sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespaces", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    parser.add_argument("--skip-baseline", action="store_true", help="do not run the per-namespace design")
    args = parser.parse_args()
    tsdb, truth, labeled = prepare(args.namespaces, args.out)
    state = kube_state(labeled)
    kube = KubeApiStandIn(state).start_in_thread()
    try:
        with PrometheusServer(tsdb, extra_args=["--query.max-samples=500000000"]) as prom:
            kubeconfig = write_kubeconfig(args.out / "kubeconfig", kube.url)
            query_requests(prom.url)
            before = query_requests(prom.url)
            seconds, rss, report = run_exporter(prom.url, kubeconfig)
            requests = query_requests(prom.url) - before
            reported, correct, worst, where = check(report, truth)
            raw = asyncio.run(raw_queries(prom.url))
            base = None if args.skip_baseline else asyncio.run(baseline(prom.url, labeled))
            as_written = None if args.skip_baseline else asyncio.run(baseline(prom.url, labeled, gzip=True))
    finally:
        kube.stop_thread()
    n = args.namespaces
    print(f"namespaces: {n}, customers: {len(truth)}, window {WINDOW_END:%Y-%m-%dT%H:%M:%SZ}")
    print(
        f"customers reported correctly (every meter within 0.01%): {correct}/{len(truth)} "
        f"(reported {reported}; worst {worst:.4%} at {where})   limit: all"
    )
    print(f"PromQL HTTP requests by the exporter: {requests:.0f}   limit: 50")
    print(f"peak RSS of the exporter process: {rss:.1f} MiB   limit: 128 MiB")
    print(f"exporter wall time: {seconds:.2f}s; its queries sent raw: {raw:.2f}s (Prometheus' share)")
    if base is not None:
        base_s, base_n = base
        print(f"per-namespace design: {base_n} queries in {base_s:.2f}s; speedup {base_s / seconds:.1f}x   limit: 10x")
    if as_written is not None:
        print(
            f"  (for reference, the same with gzip answers as its own client asks: {as_written[0]:.2f}s, "
            f"{as_written[0] / seconds:.1f}x; the target is checked against the faster figure above)"
        )


if __name__ == "__main__":
    main()
