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

from ..metering.window import measure_window
from ..report import UsageReport
from ..settings import Settings, load_settings
from ..sources.prometheus import PrometheusClient
from .clusters import demo_cluster, hour_windows
from .kubeapi_standin import KubeApiStandIn, KubeState, write_kubeconfig
from .prometheus_server import PrometheusServer, backfill
from .synthetic_cluster import CUSTOMER_LABEL, Cluster

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


DEMO_PLANS = {
    "cust_acme": {"plan": "professional"},
    "cust_globex": {"plan": "starter"},
    "cust_hooli": {"plan": "starter"},
    "cust_initech": {"plan": "starter"},
    "cust_umbrella": {"plan": "enterprise", "base_price": "500.00", "limits": {"vcpu": 2}},
}
DEMO_PRICING = """
# the demo's custom meters, declared so the billing API accepts and bills them
[meters.pg_commits]
unit = "commit"
price = "0.000001"
included = "1000000"
integer = true

[meters.mqtt_client_hours]
unit = "client-hour"
price = "0.001"
included = "100000"
"""


async def bill(settings: Settings, reports: list[UsageReport], workdir: Path) -> list[str]:
    """Serve the billing API (SQLite, free port), deliver the reports, return the invoices."""
    import aiohttp

    from ..billing_api.pricing import DEFAULT_PRICING_TOML, render_invoice
    from ..billing_api.server import serve
    from ..billing_api.settings import BillingSettings
    from ..delivery.sender import send_report

    pricing = workdir / "pricing.toml"
    pricing.write_text(DEFAULT_PRICING_TOML + DEMO_PRICING)
    database = workdir / "billing.db"
    database.unlink(missing_ok=True)
    api = BillingSettings.model_validate(
        {
            "host": "127.0.0.1",
            "port": 0,
            "database_url": f"sqlite:///{database}",
            "tokens": f"{settings.cluster_id}=demo-token",
            "admin_token": "demo-admin",
            "pricing_file": pricing,
            # the demo's history is from 2025-11-20: a backfill, older than Stripe's 35 days
            "max_window_age": "876000h",
        }
    )
    listening: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    server = asyncio.create_task(serve(api, on_listening=listening.set_result, stop=stop))
    try:
        url = await asyncio.wait_for(listening, 30)
        exporter = settings.model_copy(
            update={"billing_api": settings.billing_api.model_copy(update={"url": url, "token": "demo-token"})}
        )
        for report in reports:
            await send_report(exporter.billing_api, exporter.delivery, report)
        admin = {"Authorization": "Bearer demo-admin"}
        invoices = []
        async with aiohttp.ClientSession(headers=admin) as session:
            for customer, terms in DEMO_PLANS.items():
                async with session.put(f"{url}/api/customers/{customer}", json=terms) as resp:
                    resp.raise_for_status()
                async with session.get(f"{url}/api/customers/{customer}/invoice", params={"month": "2025-11"}) as resp:
                    resp.raise_for_status()
                    invoices.append(render_invoice(await resp.json()))
        return invoices
    finally:
        stop.set()
        await server


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

            async def meter_and_bill() -> tuple[list[UsageReport], list[str]]:
                async with PrometheusClient(settings.prometheus) as client:
                    reports = [
                        await measure_window(settings, end, datetime.now(UTC), client)
                        for _, end in hour_windows(cluster)
                    ]
                return reports, await bill(settings, reports, workdir)

            reports, invoices = asyncio.run(meter_and_bill())
            for report in reports:
                print(render(report.model_dump(mode="json"), fmt) if fmt == "table" else report.to_json())
                err, where = max_relative_error(report, cluster.truth(report.window_start, report.window_end))
                print(f"largest difference from the generator's exact truth: {err:.4%} ({where})\n")
            print("billing API: the three reports delivered; invoices for 2025-11 so far:\n")
            print("\n\n".join(invoices))
        platform_demo(fmt, workdir)
    finally:
        kube.stop_thread()
        if tmp is not None:
            tmp.cleanup()
    return 0


def platform_demo(fmt: str, workdir: Path) -> None:
    """What platforms sell, on a second synthetic cluster: a namespace relabeled 20 minutes into a
    window (each owner billed its part), one unlabeled and one labeled mid-window, GPU-hours of
    running pods only (a three-minute job, a Pending and a Succeeded pod, a MIG slice), dcgm
    utilization, and requests above and below usage."""
    from ..cli import render
    from .platform_cluster import platform_cluster

    cluster = platform_cluster()
    print(f"\nplatform demo: {len(cluster.series)} series; owners over time, GPUs and requests")
    (workdir / "platform").mkdir(exist_ok=True)
    data = prepare(workdir / "platform", cluster)
    kube = KubeApiStandIn(KubeState(namespaces=demo_namespaces(cluster))).start_in_thread()
    try:
        with PrometheusServer(data) as prom:
            settings = load_settings(
                {
                    "cluster_id": "k8s-platform-1",
                    "prometheus": {"url": prom.url},
                    "kubernetes": {
                        "kubeconfig": str(write_kubeconfig(workdir / "platform-kubeconfig", kube.url)),
                        "customer_label": CUSTOMER_LABEL,
                    },
                    "metering": {"http_source": "none", "gpu_utilization": "DCGM_FI_PROF_GR_ENGINE_ACTIVE"},
                }
            )

            async def meter() -> list[UsageReport]:
                async with PrometheusClient(settings.prometheus) as client:
                    return [
                        await measure_window(settings, end, datetime.now(UTC), client)
                        for _, end in hour_windows(cluster)
                    ]

            for report in asyncio.run(meter()):
                print(render(report.model_dump(mode="json"), fmt) if fmt == "table" else report.to_json())
                err, where = max_relative_error(report, cluster.truth(report.window_start, report.window_end))
                print(f"largest difference from the generator's exact truth: {err:.4%} ({where})\n")
        for namespace, changes in sorted(cluster.owners.items()):
            told = ", ".join(f"{c or '(nobody)'} from {datetime.fromtimestamp(t, UTC):%H:%M:%S}" for t, c in changes)
            print(f"owners of {namespace}: {told}")
    finally:
        kube.stop_thread()


def main() -> None:  # pragma: no cover
    """python -m cluster_exporter.devtools.demo"""
    raise SystemExit(run_demo("table", None))


if __name__ == "__main__":  # pragma: no cover
    main()
