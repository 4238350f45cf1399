"""The exporter's answer parsing alone, on answers recorded from the scale benchmark's Prometheus.

    .venv/bin/python bench/parse_answers.py record --namespaces 10000   # once: writes bench/out/answers-N/
    .venv/bin/python bench/parse_answers.py time --namespaces 10000 [--decoder general|fast]

``record`` starts Prometheus over the TSDB that ``scale_report.py`` generated and saves the raw
bodies of every meter query and the namespace-owner lookup of its window (the raw-sample fetches
depend on the answers and are left out). ``time`` feeds each body, in 64 KiB chunks as the network
delivers them, through the client's answer stream and item checks into sinks that keep nothing,
and prints the CPU seconds: ``general`` is the standard library's JSON decoder item by item (the
parser before issue 17), ``fast`` the typed decoder over runs of items (the default since).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from cluster_exporter.devtools.prometheus_server import PrometheusServer
from cluster_exporter.devtools.synthetic_cluster import CUSTOMER_LABEL
from cluster_exporter.metering.plan import meter_queries, namespace_owners
from cluster_exporter.metering.window import all_meters, make_window
from cluster_exporter.settings import load_settings
from cluster_exporter.sources.answer_stream import stream_result_items
from cluster_exporter.sources.prometheus import matrix_items, vector_items

ROOT = Path(__file__).resolve().parents[1]
WINDOW_END = datetime(2025, 11, 20, 2, tzinfo=UTC)
CHUNK = 64 * 1024


async def record(url: str, out: Path) -> None:
    settings = load_settings({"prometheus": {"url": url}, "metering": {"scrape_interval": "30s"}, "cluster_id": "x"})
    w = make_window(settings, datetime.fromtimestamp(WINDOW_END.timestamp() - 3600, UTC), WINDOW_END)
    queries = [namespace_owners(CUSTOMER_LABEL, w)] + [q for m in all_meters(settings) for q in meter_queries(m, w)]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
        for i, q in enumerate(queries):
            data = {"query": q.expr, "time": f"{q.at:.3f}"}
            async with session.post(f"{url}/api/v1/query", data=data, headers={"Accept-Encoding": "identity"}) as r:
                body = await r.read()
            kind = "matrix" if b'"resultType":"matrix"' in body[:200] else "vector"
            (out / f"{i:02d}-{q.name}.{kind}.json").write_bytes(body)
            print(f"{q.name}: {len(body) / 1e6:.1f} MB", file=sys.stderr)


class _Nothing:
    def series(self, labels: dict[str, str], samples: list[tuple[float, float]]) -> None:
        return None

    def sample(self, labels: dict[str, str], value: float) -> None:
        return None


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(body), CHUNK):
        yield body[i : i + CHUNK]


async def parse_all(files: list[Path], fast: bool) -> tuple[float, int, int]:
    """(CPU seconds, bytes, items) for parsing every recorded answer."""
    seconds, size, items = 0.0, 0, 0
    for path in files:
        body = path.read_bytes()
        name = path.stem
        on_item, typed = matrix_items(name, _Nothing()) if ".matrix" in name else vector_items(name, _Nothing())
        count = 0

        def counted(item: object, on_item: object = on_item) -> None:
            nonlocal count
            count += 1
            on_item(item)  # type: ignore[operator]

        started = time.process_time()
        await stream_result_items(_chunks(body), counted, fast=typed if fast else None)
        seconds += time.process_time() - started
        size += len(body)
        items += count
    return seconds, size, items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["record", "time"])
    parser.add_argument("--namespaces", type=int, default=10_000)
    parser.add_argument("--decoder", choices=["general", "fast"], default="fast")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--suffix", default="", help="read bench/out/answers-N<suffix>/ (answers edited by hand)")
    args = parser.parse_args()
    out = ROOT / "bench" / "out" / f"answers-{args.namespaces}{args.suffix}"
    if args.what == "record":
        tsdb = ROOT / "bench" / "out" / f"scale-{args.namespaces}" / "tsdb"
        out.mkdir(parents=True, exist_ok=True)
        with PrometheusServer(tsdb, extra_args=["--query.max-samples=500000000"]) as prom:
            asyncio.run(record(prom.url, out))
        return
    files = sorted(out.glob("*.json"))
    runs = [asyncio.run(parse_all(files, args.decoder == "fast")) for _ in range(args.repeat)]
    best = min(r[0] for r in runs)
    _, size, items = runs[0]
    print(
        f"{args.decoder} decoder: {len(files)} answers, {size / 1e6:.0f} MB, {items} items: "
        f"{best:.2f} s CPU (best of {args.repeat}: {', '.join(f'{r[0]:.2f}' for r in runs)})"
    )


if __name__ == "__main__":
    main()
