"""``cluster-exporter demo``: the whole pipeline on the built-in synthetic cluster.

Generates the demo cluster's history, backfills it into a real local Prometheus (free port),
serves its namespaces from the Kubernetes API stand-in, meters three hourly windows and prints
each report next to the generator's exact ground truth.
"""

from __future__ import annotations

import asyncio
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from ..metering import measure_window
from ..prometheus import PrometheusClient
from ..report import UsageReport
from ..settings import Settings, load_settings
from .kubeapi_standin import KubeApiStandIn, KubeState, write_kubeconfig
from .prometheus_server import PrometheusServer, backfill
from .synthetic_cluster import CUSTOMER_LABEL, Cluster, demo_cluster, hour_windows

CUSTOM_METERS = [
    {"name": "pg_commits", "type": "counter", "selector": 'pg_stat_database_xact_commit{datname!=""}', "integer": True},
    {"name": "mqtt_client_hours", "type": "gauge", "selector": "mqtt_connected_clients"},
]


def demo_namespaces(cluster: Cluster) -> dict[str, dict[str, str]]:
    """The live namespaces of the demo cluster with their labels, as the API would list them."""
    out = {}
    for name, customer in cluster.namespaces.items():
        labels = {"kubernetes.io/metadata.name": name}
        if customer:
            labels[CUSTOMER_LABEL] = customer
        out[name] = labels
    return out


def demo_settings(prometheus_url: str, kubeconfig: Path) -> Settings:
    """Settings for metering the demo cluster."""
    return load_settings(
        {
            "cluster_id": "k8s-demo-1",
            "prometheus": {"url": prometheus_url},
            "kubernetes": {"kubeconfig": str(kubeconfig), "customer_label": CUSTOMER_LABEL},
            "metering": {"custom_meters": CUSTOM_METERS},
        }
    )


def prepare(workdir: Path, cluster: Cluster) -> Path:
    """Write and backfill the demo history once; returns the TSDB directory."""
    data = workdir / "tsdb"
    marker = workdir / "tsdb.done"
    if not marker.exists():
        history = workdir / "history.om"
        cluster.write_openmetrics_file(history)
        backfill(history, data)
        history.unlink()
        marker.write_text("ok\n")
    return data


def max_relative_error(report: UsageReport, truth: dict[str, dict[str, float]]) -> tuple[float, str]:
    """Largest relative difference between a report and the truth, and where it is."""
    worst, where = 0.0, "-"
    for record in report.usage:
        for meter, value in record.amounts().items():
            expected = truth.get(record.customer_id, {}).get(meter, 0.0)
            if expected == 0:
                err = abs(value)
            else:
                err = abs(value - expected) / expected
            if err > worst:
                worst, where = err, f"{record.customer_id}.{meter}"
    return worst, where


def run_demo(fmt: str, workdir: Path | None) -> int:
    """Run the demo and print its reports; returns the exit code."""
    from ..cli import render

    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="cluster-exporter-demo-")
        workdir = Path(tmp.name)
    workdir.mkdir(parents=True, exist_ok=True)
    cluster = demo_cluster()
    print(f"demo: synthetic cluster with {len(cluster.series)} series; backfilling a local Prometheus in {workdir}")
    data = prepare(workdir, cluster)
    kube = KubeApiStandIn(KubeState(namespaces=demo_namespaces(cluster))).start_in_thread()
    try:
        with PrometheusServer(data) as prom:
            settings = demo_settings(prom.url, write_kubeconfig(workdir / "kubeconfig", kube.url))
            print(f"demo: Prometheus at {prom.url}, Kubernetes API stand-in at {kube.url}\n")

            async def meter_all() -> list[UsageReport]:
                async with PrometheusClient(settings.prometheus) as client:
                    reports = []
                    for _, end in hour_windows(cluster):
                        reports.append(await measure_window(settings, end, datetime.now(UTC), client))
                    return reports

            for report in asyncio.run(meter_all()):
                print(render(report.model_dump(mode="json"), fmt) if fmt == "table" else report.to_json())
                err, where = max_relative_error(report, cluster.truth(report.window_start, report.window_end))
                print(f"largest difference from the generator's exact truth: {err:.4%} ({where})\n")
    finally:
        kube.stop_thread()
        if tmp is not None:
            tmp.cleanup()
    return 0


def main() -> None:  # pragma: no cover
    """python -m cluster_exporter.devtools.demo"""
    raise SystemExit(run_demo("table", None))


if __name__ == "__main__":  # pragma: no cover
    main()
