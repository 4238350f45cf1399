"""What the metering saw per meter, as self-metrics: ExporterMetrics.on_window_checks and its wiring.

The hook is fed hand-made MeterCheck values (the metering fills them for real); the wiring is run
in-process (run_service with an injected registry) against the real Prometheus over the demo
history, once over windows that are delivered and once over a window that fails for lack of data.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from cluster_exporter.delivery.service import RunOptions, run_service
from cluster_exporter.devtools.kubeapi_standin import KubeApiStandIn, write_kubeconfig
from cluster_exporter.devtools.prometheus_server import PrometheusServer
from cluster_exporter.devtools.synthetic_cluster import CUSTOMER_LABEL
from cluster_exporter.metering.checks import MeterCheck
from cluster_exporter.metering.window import parse_time
from cluster_exporter.observability.metrics import ExporterMetrics
from cluster_exporter.settings import Settings, load_settings

from .conftest import AS_OF, BACKFILL_FROM, TOKEN
from .receiver import Receiver

SERIES = "cluster_exporter_metering_series"
UNATTRIBUTED_SERIES = "cluster_exporter_metering_unattributed_series"
UNATTRIBUTED_AMOUNT = "cluster_exporter_metering_unattributed_amount"
SCRAPE_INTERVAL = "cluster_exporter_metering_scrape_interval_seconds"
WINDOWS = "cluster_exporter_metering_windows_with_unattributed_usage_total"


def check(
    meter: str, series: int = 0, unattributed: int = 0, amount: float = 0.0, spacings: tuple[float, ...] = ()
) -> MeterCheck:
    made = MeterCheck(
        meter, ("namespace",), series=series, unattributed_series=unattributed, unattributed_amount=amount
    )
    for spacing in spacings:
        made.saw_spacing(spacing)
    return made


def value(registry: CollectorRegistry, name: str, meter: str) -> float | None:
    return registry.get_sample_value(name, {"meter": meter})


# (what, checks of the window, expected per meter: series, unattributed series, amount, scrape interval)
WINDOW_CASES = [
    (
        "everything attributed",
        [check("cpu_hours", 40, spacings=(15.0, 15.0, 30.0)), check("memory_gb_hours", 40, spacings=(15.0,))],
        {"cpu_hours": (40, 0, 0.0, 15.0), "memory_gb_hours": (40, 0, 0.0, 15.0)},
    ),
    (
        "network bytes in series without a namespace, scraped every minute",
        [check("network_bytes_sent", 12, 3, 52_428_800.0, spacings=(60.0, 60.0, 61.0))],
        {"network_bytes_sent": (12, 3, 52_428_800.0, 60.0)},
    ),
    (
        "a custom meter's own PromQL: no samples, so no scrape interval",
        [check("pg_commits", 5, 5, 1234.0)],
        {"pg_commits": (5, 5, 1234.0, None)},
    ),
    (
        "unattributed series that used nothing",
        [check("http_requests", 8, 2, 0.0, spacings=(30.0,))],
        {"http_requests": (8, 2, 0.0, 30.0)},
    ),
]


@pytest.mark.parametrize(("what", "checks", "expected"), WINDOW_CASES, ids=[case[0] for case in WINDOW_CASES])
def test_one_window_per_meter(
    what: str, checks: list[MeterCheck], expected: dict[str, tuple[int, int, float, float | None]]
) -> None:
    registry = CollectorRegistry()
    ExporterMetrics(registry).on_window_checks(checks)
    for meter, (series, unattributed, amount, interval) in expected.items():
        assert value(registry, SERIES, meter) == series
        assert value(registry, UNATTRIBUTED_SERIES, meter) == unattributed
        assert value(registry, UNATTRIBUTED_AMOUNT, meter) == amount
        assert value(registry, SCRAPE_INTERVAL, meter) == interval
        assert value(registry, WINDOWS, meter) == (1 if amount > 0 else 0)


def test_gauges_hold_the_last_window_and_the_counter_counts_windows_with_unattributed_usage() -> None:
    registry = CollectorRegistry()
    metrics = ExporterMetrics(registry)
    metrics.on_window_checks([check("cpu_hours", 10, 4, 0.5, spacings=(15.0,)), check("memory_gb_hours", 10)])
    metrics.on_window_checks([check("cpu_hours", 12, 1, 0.25), check("memory_gb_hours", 10, spacings=(30.0,))])
    metrics.on_window_checks([check("cpu_hours", 12, spacings=(15.0,)), check("memory_gb_hours", 10)])

    assert value(registry, SERIES, "cpu_hours") == 12
    assert value(registry, UNATTRIBUTED_SERIES, "cpu_hours") == 0
    assert value(registry, UNATTRIBUTED_AMOUNT, "cpu_hours") == 0
    assert value(registry, WINDOWS, "cpu_hours") == 2
    assert value(registry, WINDOWS, "memory_gb_hours") == 0  # exists at 0, so increase() sees the first one
    # an interval the last window did not show is gone, not left over from the window before
    assert value(registry, SCRAPE_INTERVAL, "cpu_hours") == 15.0
    assert value(registry, SCRAPE_INTERVAL, "memory_gb_hours") is None


def settings_for(prometheus: PrometheusServer, kube: KubeApiStandIn, tmp_path: Path, url: str, start: str) -> Settings:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    return load_settings(
        {
            "cluster_id": "k8s-metering-metrics",
            "prometheus": {"url": prometheus.url},
            "kubernetes": {
                "kubeconfig": str(write_kubeconfig(tmp_path / "kubeconfig", kube.url)),
                "customer_label": CUSTOMER_LABEL,
            },
            "billing_api": {"url": url, "token_file": str(token_file), "timeout": "2s"},
            "delivery": {"state_dir": str(tmp_path / "state"), "leader_election": False, "backfill_from": start},
        }
    )


async def test_the_run_records_every_meter_of_a_measured_window(
    prometheus: PrometheusServer, kube: KubeApiStandIn, tmp_path: Path
) -> None:
    registry = CollectorRegistry()
    with Receiver(token=TOKEN) as receiver:
        settings = settings_for(prometheus, kube, tmp_path, receiver.url, BACKFILL_FROM)
        options = RunOptions(once=True, as_of=parse_time(AS_OF))
        assert await run_service(settings, options, registry=registry, install_signal_handlers=False) == 0
    for meter in ("cpu_hours", "memory_gb_hours", "network_bytes_sent", "network_bytes_received", "storage_gb_hours"):
        assert (value(registry, SERIES, meter) or 0) > 0, meter
        assert value(registry, UNATTRIBUTED_AMOUNT, meter) is not None, meter
        assert value(registry, UNATTRIBUTED_SERIES, meter) is not None, meter
        assert value(registry, WINDOWS, meter) is not None, meter


async def test_a_window_that_fails_its_data_checks_still_updates_the_metrics(
    prometheus: PrometheusServer, kube: KubeApiStandIn, tmp_path: Path
) -> None:
    """A day after the demo history: no container samples, the window fails (exit 4), the gauges say 0 series."""
    registry = CollectorRegistry()
    with Receiver(token=TOKEN) as receiver:
        settings = settings_for(prometheus, kube, tmp_path, receiver.url, "2025-11-21T02:00:00Z")
        options = RunOptions(once=True, as_of=parse_time("2025-11-21T03:10:00Z"))
        assert await run_service(settings, options, registry=registry, install_signal_handlers=False) == 4
        assert receiver.snapshot() == []
    assert value(registry, SERIES, "cpu_hours") == 0
    assert value(registry, UNATTRIBUTED_AMOUNT, "cpu_hours") == 0
