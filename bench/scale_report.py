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
import contextlib
import json
import os
import resource
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
from cluster_exporter.devtools.prometheus_server import PrometheusServer, VictoriaMetricsServer, backfill
from cluster_exporter.devtools.synthetic_cluster import CUSTOMER_LABEL
from cluster_exporter.devtools.vm_import import stream_import
from cluster_exporter.metering.plan import meter_queries, namespace_owners
from cluster_exporter.metering.window import all_meters, make_window
from cluster_exporter.meters import ALWAYS as BUILTIN_METERS
from cluster_exporter.settings import PrometheusSettings, load_settings
from cluster_exporter.sources.prometheus import PrometheusClient

ROOT = Path(__file__).resolve().parents[1]
WINDOW_END = datetime(2025, 11, 20, 2, tzinfo=UTC)
INTERVAL = 30.0
METERS = BUILTIN_METERS
# VictoriaMetrics' limits, raised for 100,000 namespaces: a meter's selector picks about 200,000
# series (default limit 300,000), and a boundary answer takes longer than the default 30 s when the
# machine is shared. Its -search.maxQueryLen stays at its 16 KiB unless --max-query-length raises
# it (with the exporter's prometheus.max_query_length set to match). Before a raw fetch took only
# its own units, 256 KiB fetches counted a few units twice (docs/benchmarks.md, issue 17).
VM_ARGS = ["-search.maxUniqueTimeseries=10000000", "-search.maxQueryDuration=600s", "-search.maxQueueDuration=600s"]


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


def prepare_victoriametrics(namespaces: int, out: Path) -> tuple[Path, dict[str, dict[str, float]], list[str]]:
    """VictoriaMetrics' data directory and the truth for ``namespaces``, loaded once through the
    import API, streamed from the generator (no history written as text), and cached."""
    work = out / f"vm-{namespaces}"
    work.mkdir(parents=True, exist_ok=True)
    data, truth_file = work / "data", work / "truth.json"
    if not truth_file.exists():
        started = time.monotonic()
        cluster = scale_cluster(namespaces, WINDOW_END, interval=INTERVAL)
        print(f"generated {len(cluster.series)} series in {time.monotonic() - started:.0f}s", file=sys.stderr)
        truth = cluster.truth(datetime.fromtimestamp(WINDOW_END.timestamp() - 3600, UTC), WINDOW_END)
        labeled = sorted(ns for ns, c in cluster.namespaces.items() if c)
        with VictoriaMetricsServer(data, extra_args=VM_ARGS) as vm:
            samples = stream_import(vm.url, cluster, progress=True)
            time.sleep(2)  # let the flushed parts become searchable
        truth_file.write_text(json.dumps({"truth": truth, "namespaces": labeled}))
        print(
            f"imported {len(cluster.series)} series, {samples} samples in {time.monotonic() - started:.0f}s",
            file=sys.stderr,
        )
    loaded = json.loads(truth_file.read_text())
    return data, loaded["truth"], loaded["namespaces"]


def kube_state(labeled: list[str]) -> KubeState:
    """The stand-in's namespaces: tenant-NNNNNN-x belongs to customer NNNNNN // 2, as generated."""
    return KubeState(namespaces={ns: {CUSTOMER_LABEL: f"cust_{int(ns.split('-')[1]) // 2:06d}"} for ns in labeled})


def pin(pid: int, cores: set[int]) -> None:
    """Keep a running process (every thread it has now; new ones inherit) on ``cores``."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(task.name), cores)


def engine_counters(url: str, engine: str) -> tuple[float, float]:
    """(instant-query HTTP requests served, CPU seconds used) from the engine's own /metrics:
    prometheus_http_requests_total or vm_http_requests_total for /api/v1/query, and
    process_cpu_seconds_total (the benchmark engine scrapes nothing, itself included)."""
    requests, cpu = 0.0, 0.0
    with urllib.request.urlopen(f"{url}/metrics") as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("process_cpu_seconds_total "):
                cpu = float(line.rsplit(" ", 1)[1])
            elif engine == "prometheus" and line.startswith("prometheus_http_requests_total{"):
                requests += float(line.rsplit(" ", 1)[1]) if 'handler="/api/v1/query"' in line else 0.0
            elif engine == "victoriametrics" and line.startswith("vm_http_requests_total{"):
                requests += float(line.rsplit(" ", 1)[1]) if 'path="/api/v1/query"' in line else 0.0
    return requests, cpu


def run_exporter(
    prom_url: str, kubeconfig: Path, cores: set[int] | None = None, **extra: str
) -> tuple[float, float, float, dict[str, object]]:
    """Run the report as a child process (on ``cores`` only, if given): (seconds, peak RSS in
    MiB, CPU seconds, report)."""
    env = {
        **os.environ,
        **extra,
        "PROMETHEUS_URL": prom_url,
        "KUBECONFIG": str(kubeconfig),
        "CLUSTER_ID": "k8s-bench",
        "CUSTOMER_LABEL": CUSTOMER_LABEL,
        "METERING_SCRAPE_INTERVAL": f"{INTERVAL:g}s",
        "PROMETHEUS_TIMEOUT": "600s",
    }
    started = time.monotonic()
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
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
        preexec_fn=None if cores is None else lambda: os.sched_setaffinity(0, cores),
    )
    peak, out = peak_rss_until_exit(proc)
    seconds = time.monotonic() - started
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # the exporter is the only child reaped meanwhile
    cpu = children.ru_utime + children.ru_stime - children_before.ru_utime - children_before.ru_stime
    stderr = proc.stderr.read() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"exporter failed ({proc.returncode}): {stderr.strip()}")
    return seconds, peak, cpu, json.loads(out)


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
    """Send the exporter's meter queries and the owner lookup as the exporter does (uncompressed
    answers, its concurrency) without parsing the answers; seconds for all. The raw-sample fetches
    of irregular series are left out (they depend on the answers): the engine's share is a little
    larger than this."""
    settings = load_settings(
        {"prometheus": {"url": prom_url}, "metering": {"scrape_interval": f"{INTERVAL:g}s"}, "cluster_id": "x"}
    )
    start = datetime.fromtimestamp(WINDOW_END.timestamp() - 3600, UTC)
    w = make_window(settings, start, WINDOW_END)
    queries = [namespace_owners(CUSTOMER_LABEL, w)]
    queries += [qq for m in all_meters(settings) for qq in meter_queries(m, w)]
    limit = asyncio.Semaphore(settings.prometheus.max_concurrency)
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout, headers={"Accept-Encoding": "identity"}) as session:

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
    parser.add_argument("--engine", choices=["prometheus", "victoriametrics"], default="prometheus")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    parser.add_argument("--skip-baseline", action="store_true", help="do not run the per-namespace design")
    parser.add_argument("--skip-gzip", action="store_true", help="run the per-namespace design uncompressed only")
    parser.add_argument("--prepare-only", action="store_true", help="generate and load the data, then stop")
    parser.add_argument(
        "--separate-cores",
        action="store_true",
        help="the engine on core 0, the exporter and this benchmark on core 1 (as when they run apart)",
    )
    parser.add_argument("--json", type=Path, help="append the figures to this file, one JSON line")
    parser.add_argument(
        "--max-query-length",
        type=int,
        help="the exporter's prometheus.max_query_length (VictoriaMetrics: its -search.maxQueryLen raised to fit; "
        "default there 16384, its own limit)",
    )
    args = parser.parse_args()
    vm = args.engine == "victoriametrics"
    data, truth, labeled = (prepare_victoriametrics if vm else prepare)(args.namespaces, args.out)
    if args.prepare_only:
        return
    state = kube_state(labeled)
    kube = KubeApiStandIn(state).start_in_thread()
    server = (
        VictoriaMetricsServer(
            data, extra_args=[*VM_ARGS, f"-search.maxQueryLen={max(16384, args.max_query_length or 0)}"]
        )
        if vm
        else PrometheusServer(data, extra_args=["--query.max-samples=500000000"])
    )
    cpu: dict[str, float] = {}
    try:
        with server as engine:
            kubeconfig = write_kubeconfig(args.out / "kubeconfig", kube.url)
            cores = None
            if args.separate_cores:
                assert engine.proc is not None
                pin(engine.proc.pid, {0})
                cores = {1}
                pin(os.getpid(), cores)  # this benchmark (its raw reads) and the Kubernetes stand-in thread
            engine_counters(engine.url, args.engine)
            requests_before, cpu_before = engine_counters(engine.url, args.engine)
            length = args.max_query_length or (16384 if vm else None)
            extra = {"PROMETHEUS_MAX_QUERY_LENGTH": str(length)} if length else {}
            seconds, rss, own_cpu, report = run_exporter(engine.url, kubeconfig, cores, **extra)
            requests_after, cpu_after = engine_counters(engine.url, args.engine)
            requests, cpu["exporter"] = requests_after - requests_before, cpu_after - cpu_before
            reported, correct, worst, where = check(report, truth)
            raw = asyncio.run(raw_queries(engine.url))
            cpu["raw"] = engine_counters(engine.url, args.engine)[1] - cpu_after
            base = as_written = None
            if not args.skip_baseline:
                before = engine_counters(engine.url, args.engine)[1]
                base = asyncio.run(baseline(engine.url, labeled))
                cpu["per-namespace"] = engine_counters(engine.url, args.engine)[1] - before
                if not args.skip_gzip:
                    as_written = asyncio.run(baseline(engine.url, labeled, gzip=True))
    finally:
        kube.stop_thread()
    n = args.namespaces
    name = "VictoriaMetrics" if vm else "Prometheus"
    print(
        f"engine: {name}, namespaces: {n}, customers: {len(truth)}, window {WINDOW_END:%Y-%m-%dT%H:%M:%SZ}"
        + (" (engine on core 0, exporter on core 1)" if args.separate_cores else "")
    )
    print(
        f"customers reported correctly (every meter within 0.01%): {correct}/{len(truth)} "
        f"(reported {reported}; worst {worst:.4%} at {where})   limit: all"
    )
    print(f"PromQL HTTP requests by the exporter: {requests:.0f}   limit: 50")
    print(f"peak RSS of the exporter process: {rss:.1f} MiB   limit: 128 MiB (aim: 100 MiB)")
    print(
        f"exporter wall time {seconds:.2f}s against {name}'s own time for its queries sent raw {raw:.2f}s: "
        f"{seconds / raw:.2f}x   limit: 1.3x"
    )
    print(f"CPU seconds of the exporter process: {own_cpu:.2f}")
    print(
        f"{name} CPU seconds per window: {cpu['exporter']:.2f} for the exporter's window, "
        f"{cpu['raw']:.2f} for its queries sent raw"
        + (f", {cpu['per-namespace']:.2f} for the per-namespace design" if "per-namespace" in cpu else "")
    )
    if as_written is not None:
        print(
            f"per-namespace design as it runs (gzip answers, as its axios client asks): {as_written[1]} queries in "
            f"{as_written[0]:.2f}s; speedup {as_written[0] / seconds:.1f}x   limit: 10x"
        )
    if base is not None:
        base_s, base_n = base
        print(f"  the same, answers uncompressed: {base_n} queries in {base_s:.2f}s; speedup {base_s / seconds:.1f}x")
    if args.json is not None:
        figures = {
            "engine": args.engine,
            "separate_cores": args.separate_cores,
            "namespaces": n,
            "correct": correct,
            "customers": len(truth),
            "requests": requests,
            "rss_mib": rss,
            "exporter_s": seconds,
            "exporter_cpu_s": own_cpu,
            "engine_raw_s": raw,
            "engine_cpu_s": cpu,
            "per_namespace_s": base[0] if base else None,
            "per_namespace_gzip_s": as_written[0] if as_written else None,
        }
        with args.json.open("a") as fh:
            fh.write(json.dumps(figures) + "\n")


if __name__ == "__main__":
    main()
