"""Print, for one demo window, what each method bills per customer next to the exact truth.

    .venv/bin/python bench/accuracy_vs_increase.py [--window-end 2025-11-20T02:00:00Z]

Methods: this project's metering, the original design's queries as written, and the same
increase()/rate()/avg_over_time method with this project's series selection. Output: a Markdown
table of relative errors (docs/accuracy.md holds a copy).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

from cluster_exporter.devtools.clusters import demo_cluster
from cluster_exporter.devtools.demo import demo_namespaces, demo_settings, prepare
from cluster_exporter.devtools.kubeapi_standin import KubeApiStandIn, KubeState, write_kubeconfig
from cluster_exporter.devtools.original_design import INCREASE_ONLY, ORIGINAL, per_namespace_usage
from cluster_exporter.devtools.prometheus_server import PrometheusServer
from cluster_exporter.metering.window import measure_window, parse_time
from cluster_exporter.meters import NAMES as BUILTIN_METERS
from cluster_exporter.sources.prometheus import PrometheusClient

METERS = BUILTIN_METERS


def by_customer(per_ns: dict[str, dict[str, float]], owners: dict[str, str]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for ns, amounts in per_ns.items():
        for meter, value in amounts.items():
            out[owners[ns]][meter] += value
    return out


async def compare(prom_url: str, kubeconfig: Path, window_end: datetime) -> str:
    cluster = demo_cluster()
    settings = demo_settings(prom_url, kubeconfig)
    owners = {ns: c for ns, c in cluster.namespaces.items() if c}
    truth = cluster.truth(window_end.replace(hour=window_end.hour - 1), window_end)
    async with PrometheusClient(settings.prometheus) as client:
        report = await measure_window(settings, window_end, datetime(2026, 1, 1, tzinfo=UTC), client)
        ours = {r.customer_id: r.amounts() for r in report.usage}
        original = by_customer(await per_namespace_usage(client, owners, window_end.timestamp(), ORIGINAL), owners)
        increase = by_customer(await per_namespace_usage(client, owners, window_end.timestamp(), INCREASE_ONLY), owners)
    lines = [
        "| customer | meter | exact | cluster-exporter | increase() method | original design |",
        "|---|---|---:|---:|---:|---:|",
    ]

    def err(value: float, want: float) -> str:
        return "0" if want == 0 and value == 0 else ("n/a" if want == 0 else f"{(value - want) / want:+.2%}")

    for customer in sorted(set(owners.values())):
        for meter in METERS:
            want = truth[customer][meter]
            if want == 0:
                continue
            lines.append(
                f"| {customer} | {meter} | {want:.6g} | {err(ours[customer][meter], want)} | "
                f"{err(increase[customer][meter], want)} | {err(original[customer][meter], want)} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--window-end", default="2025-11-20T02:00:00Z")
    args = parser.parse_args()
    cluster = demo_cluster()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = prepare(work, cluster)
        kube = KubeApiStandIn(KubeState(namespaces=demo_namespaces(cluster))).start_in_thread()
        try:
            with PrometheusServer(data) as prom:
                kubeconfig = write_kubeconfig(work / "kubeconfig", kube.url)
                print(asyncio.run(compare(prom.url, kubeconfig, parse_time(args.window_end))))
        finally:
            kube.stop_thread()


if __name__ == "__main__":
    main()
