"""On the same data, what increase()/avg_over_time would have billed: the difference on record."""

from __future__ import annotations

from collections import defaultdict

from cluster_exporter.devtools.clusters import hour_windows
from cluster_exporter.devtools.original_design import INCREASE_ONLY, per_namespace_usage
from cluster_exporter.devtools.synthetic_cluster import Cluster
from cluster_exporter.metering.window import measure_window
from cluster_exporter.settings import Settings
from cluster_exporter.sources.prometheus import PrometheusClient

from .conftest import LATER


async def test_increase_overbills_short_lived_pods_where_exact_metering_does_not(
    settings: Settings, cluster: Cluster
) -> None:
    start, end = hour_windows(cluster)[1]
    truth = cluster.truth(start, end)
    owners = {ns: c for ns, c in cluster.namespaces.items() if c}
    async with PrometheusClient(settings.prometheus) as client:
        ours = {r.customer_id: r.amounts() for r in (await measure_window(settings, end, LATER, client)).usage}
        per_ns = await per_namespace_usage(client, owners, end.timestamp(), INCREASE_ONLY)
    naive: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for ns, amounts in per_ns.items():
        for meter, value in amounts.items():
            naive[owners[ns]][meter] += value

    def error(values: dict[str, dict[str, float]] | dict[str, dict[str, float | int]], meter: str) -> float:
        return (values["cust_acme"][meter] - truth["cust_acme"][meter]) / truth["cust_acme"][meter]

    # cust_acme runs a CronJob of 90-second pods, a restarting worker and a pod crossing the boundaries.
    for meter in ("cpu_hours", "memory_gb_hours", "network_bytes_received"):
        assert abs(error(ours, meter)) < 0.005, meter
        assert error(naive, meter) > 0.05, f"increase()/avg_over_time should over-bill {meter} here"
