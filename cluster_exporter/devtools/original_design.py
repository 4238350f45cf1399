"""The original design's metering, kept only to compare against (accuracy and speed).

../shared/original-design.md sends six PromQL queries per namespace with increase()/rate() over
the last hour and avg_over_time for memory. Two variants are measured:

- ``ORIGINAL``: its queries as written (every cAdvisor series, pod-level sums and pause
  containers included; ``cpu_hours`` as rate()*3600 divided back to hours so units match);
- ``INCREASE_ONLY``: the same increase()/rate()/avg_over_time method with this project's series
  selection, so the only difference left is the method (extrapolation, averaging).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from ..sources.prometheus import PrometheusClient

GIB = 1024**3

# name -> (template with {ns} and {w}, factor to report units)
ORIGINAL: dict[str, tuple[str, float]] = {
    "network_bytes_sent": ('sum(increase(container_network_transmit_bytes_total{{namespace="{ns}"}}[{w}]))', 1.0),
    "network_bytes_received": ('sum(increase(container_network_receive_bytes_total{{namespace="{ns}"}}[{w}]))', 1.0),
    "storage_gb_hours": ('sum(kubelet_volume_stats_used_bytes{{namespace="{ns}"}}) / 1024 / 1024 / 1024', 1.0),
    "cpu_hours": ('sum(rate(container_cpu_usage_seconds_total{{namespace="{ns}"}}[{w}])) * 3600', 1 / 3600),
    "memory_gb_hours": (
        'sum(avg_over_time(container_memory_working_set_bytes{{namespace="{ns}"}}[{w}])) / 1024 / 1024 / 1024',
        1.0,
    ),
    "http_requests": ('sum(increase(nginx_ingress_controller_requests{{namespace="{ns}"}}[{w}]))', 1.0),
}

_C = 'container!="",container!="POD"'
INCREASE_ONLY: dict[str, tuple[str, float]] = {
    "network_bytes_sent": (
        'sum(increase(container_network_transmit_bytes_total{{namespace="{ns}",container=""}}[{w}]))',
        1.0,
    ),
    "network_bytes_received": (
        'sum(increase(container_network_receive_bytes_total{{namespace="{ns}",container=""}}[{w}]))',
        1.0,
    ),
    "storage_gb_hours": (
        'max by (persistentvolumeclaim) (avg_over_time(kubelet_volume_stats_used_bytes{{namespace="{ns}"}}[{w}]))',
        1 / GIB,
    ),
    "cpu_hours": (f'sum(increase(container_cpu_usage_seconds_total{{{{namespace="{{ns}}",{_C}}}}}[{{w}}]))', 1 / 3600),
    "memory_gb_hours": (
        f'sum(avg_over_time(container_memory_working_set_bytes{{{{namespace="{{ns}}",{_C}}}}}[{{w}}]))',
        1 / GIB,
    ),
    "http_requests": ('sum(increase(nginx_ingress_controller_requests{{exported_namespace="{ns}"}}[{w}]))', 1.0),
}


async def per_namespace_usage(
    client: PrometheusClient,
    namespaces: Iterable[str],
    window_end: float,
    variant: dict[str, tuple[str, float]] = ORIGINAL,
    in_flight: int = 10,
    window: str = "1h",
) -> dict[str, dict[str, float]]:
    """{namespace: {meter: amount}} the per-namespace way: len(variant) queries per namespace."""
    limit = asyncio.Semaphore(in_flight)
    out: dict[str, dict[str, float]] = {}

    async def one(ns: str, meter: str, template: str, factor: float) -> None:
        async with limit:
            samples = await client.vector(meter, template.format(ns=ns, w=window), window_end)
        out.setdefault(ns, {})[meter] = sum(s.value for s in samples) * factor

    await asyncio.gather(*(one(ns, m, t, f) for ns in namespaces for m, (t, f) in variant.items()))
    return out
