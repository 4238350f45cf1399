"""The exporter's own cost at N namespaces, without a Prometheus holding N namespaces of data.

    .venv/bin/python bench/exporter_side_scale.py 100000

A loopback PromQL stand-in answers every meter query with two series per namespace (two pods;
one PVC for storage), as many as the 10,000-namespace scale cluster has (1.9 CPU series per
namespace there), with boundary samples and window scans (every series regular), and the
Kubernetes API stand-in lists N labeled namespaces (2 per customer), so this measures only what
the exporter does: listing, parsing, folding, per-series arithmetic, accounting, building and
printing the report. It prints wall time and peak RSS of `cluster-exporter report --dry-run` as a
child process.

    .venv/bin/python bench/exporter_side_scale.py 100000 --windows 4

measures K windows one after another in one child process instead, as `run` does through the
hours, and prints the RSS after each: memory must not grow from window to window.
"""

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from aiohttp import web

from cluster_exporter.devtools.kubeapi_standin import KubeApiStandIn, KubeState, write_kubeconfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale_report import peak_rss_until_exit

N = int(sys.argv[1])
WINDOWS = int(sys.argv[sys.argv.index("--windows") + 1]) if "--windows" in sys.argv else 0
# The child for --windows: measure_window K times in one process (what `run` does hour by hour).
CONSECUTIVE = """
import asyncio, sys
from datetime import UTC, datetime
import psutil
from cluster_exporter.allocator import fix_mmap_threshold
from cluster_exporter.metering.window import measure_window
from cluster_exporter.sources.prometheus import PrometheusClient
from cluster_exporter.settings import load_settings

fix_mmap_threshold()  # as cli.main does


async def main(k):
    settings = load_settings({})
    async with PrometheusClient(settings.prometheus) as prometheus:
        for i in range(k):
            report = await measure_window(
                settings, datetime(2025, 11, 20, 2, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC), prometheus
            )
            customers = len(report.usage)
            del report
            rss = psutil.Process().memory_info().rss / 2**20
            print(f"window {i + 1}: {customers} customers, RSS after it {rss:.1f} MiB", file=sys.stderr, flush=True)


asyncio.run(main(int(sys.argv[1])))
"""
names = [f"tenant-{i:06d}" for i in range(N)]
ns_body = None


def vector(rows):
    return {"status": "success", "data": {"resultType": "vector", "result": rows}}


SPACING = 15.0  # seconds between samples
SEARCH = 90.0  # metering.boundary_search: a boundary query is evaluated at T + 90 s
PODS = [
    {"namespace": n, "exported_namespace": n, "pod": p, "container": "", "interface": "eth0"}
    for n in names
    for p in ("p0", "p1")
]
PVCS = [{"namespace": n, "persistentvolumeclaim": "data"} for n in names]
bodies: dict[tuple[str, str, bool], bytes] = {}


def answer(kind: str, at: float, volumes: bool) -> bytes:
    """Series regular everywhere: samples SPACING apart, halfway around each boundary."""
    series = PVCS if volumes else PODS
    if kind == "boundary":
        t = at - SEARCH  # the boundary (evaluated at T + boundary_search)
        values = [[t - SPACING / 2, "100"], [t + SPACING / 2, "101"]]
        rows = [{"metric": {"__name__": "m", **labels}, "values": values} for labels in series]
        return json.dumps({"status": "success", "data": {"resultType": "matrix", "result": rows}}).encode()
    value = {"resets": "0", "sum": "24000", "count": str(int(3600 / SPACING))}[kind]
    rows = [{"metric": labels, "value": [at, value]} for labels in series]
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": rows}}).encode()


async def handle(request):
    form = await request.post()
    q, at = form["query"], form["time"]
    kind = next(
        (
            k
            for k, f in (
                ("resets", "resets("),
                ("sum", "sum_over_time("),
                ("count", "count_over_time("),
            )
            if q.startswith(f)
        ),
        "boundary",
    )
    key = (kind, at, "kubelet_volume" in q)
    if key not in bodies:
        bodies[key] = answer(kind, float(at), key[2])
    return web.Response(body=bodies[key], content_type="application/json")


url = {}


def serve():
    loop = asyncio.new_event_loop()
    app = web.Application(client_max_size=2**26)
    app.router.add_post("/api/v1/query", handle)
    r = web.AppRunner(app)
    loop.run_until_complete(r.setup())
    s = web.TCPSite(r, "127.0.0.1", 0)
    loop.run_until_complete(s.start())
    url["u"] = f"http://127.0.0.1:{s._server.sockets[0].getsockname()[1]}"
    loop.run_forever()


threading.Thread(target=serve, daemon=True).start()
while "u" not in url:
    time.sleep(0.05)
kube = KubeApiStandIn(
    KubeState(namespaces={n: {"billing.example.com/customer-id": f"c{i // 2}"} for i, n in enumerate(names)})
).start_in_thread()
kc = write_kubeconfig(Path(tempfile.mkdtemp()) / "kubeconfig", kube.url)
env = {
    **os.environ,
    "PROMETHEUS_URL": url["u"],
    "KUBECONFIG": str(kc),
    "CLUSTER_ID": "x",
    "METERING_NAMESPACE_LABELS_METRIC": "false",
}
t = time.time()
command = [sys.executable, "-m", "cluster_exporter.cli", "report", "--dry-run", "--window-end", "2025-11-20T02:00:00Z"]
p = subprocess.Popen(
    [sys.executable, "-c", CONSECUTIVE, str(WINDOWS)] if WINDOWS else command,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    env=env,
)
peak, out = peak_rss_until_exit(p)
err = p.stderr.read().decode()  # type: ignore[union-attr]
size = len(out or b"")
what = f"{WINDOWS} windows in one process" if WINDOWS else "one window"
print(f"namespaces {N}, {what}: exit {p.returncode}, {time.time() - t:.1f}s, peak RSS {peak:.1f} MiB (limit 128 MiB)")
print(err[-600:] if WINDOWS else f"report {size} bytes {err[-300:]}")
