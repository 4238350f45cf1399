"""cluster-exporter's own metrics, on an injected registry.

Names follow ``cluster_exporter_<subsystem>_<name>_<unit>``; counters end in ``_total``. Tests
read them with ``registry.get_sample_value``; the Grafana dashboard and the alert rules in the
chart use exactly these names (a test checks them against a running exporter's /metrics).
"""

from __future__ import annotations

import platform
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .. import __version__
from ..metering.checks import MeterCheck

QUERY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
DELIVERY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class ExporterMetrics:
    """Every metric the exporter exposes, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.build_info = Gauge(
            "cluster_exporter_build_info",
            "Build information; always 1.",
            ["version", "python_version"],
            registry=registry,
        )
        self.build_info.labels(__version__, platform.python_version()).set(1)

        # delivery
        self.last_delivered_window_end = Gauge(
            "cluster_exporter_delivery_last_delivered_window_end_timestamp_seconds",
            "End of the newest window the billing API accepted (Unix seconds).",
            registry=registry,
        )
        self.windows_delivered = Counter(
            "cluster_exporter_delivery_windows_delivered_total",
            "Windows the billing API accepted.",
            registry=registry,
        )
        self.windows_failed = Counter(
            "cluster_exporter_delivery_windows_failed_total",
            "Cycles that ended with a window still undelivered (it stays spooled and is retried).",
            registry=registry,
        )
        self.windows_dead_lettered = Counter(
            "cluster_exporter_delivery_windows_dead_lettered_total",
            "Reports the billing API rejected for good (4xx); kept in the dead-letter store.",
            registry=registry,
        )
        self.delivery_attempts = Counter(
            "cluster_exporter_delivery_attempts_total",
            "HTTP attempts to deliver a report, by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.delivery_duration = Histogram(
            "cluster_exporter_delivery_request_duration_seconds",
            "Duration of one delivery HTTP attempt.",
            buckets=DELIVERY_BUCKETS,
            registry=registry,
        )
        self.spool_depth = Gauge(
            "cluster_exporter_spool_depth_reports",
            "Reports built and waiting to be delivered.",
            registry=registry,
        )

        self.windows_skipped = Counter(
            "cluster_exporter_delivery_windows_skipped_total",
            "Windows never built because they started more than delivery.max_age before the clock.",
            registry=registry,
        )
        self.cycles = Counter(
            "cluster_exporter_delivery_cycles_total",
            "Catch-up cycles, by result (ok, failed, stopped, not_leader).",
            ["result"],
            registry=registry,
        )
        self.spool_bytes = Gauge(
            "cluster_exporter_spool_bytes",
            "Size of the spooled report bodies as stored (gzipped in the ConfigMap backend).",
            registry=registry,
        )
        self.state_errors = Counter(
            "cluster_exporter_state_errors_total",
            "Failed reads or writes of the durable state, by operation.",
            ["operation"],
            registry=registry,
        )

        # metering
        self.query_duration = Histogram(
            "cluster_exporter_prometheus_query_duration_seconds",
            "Duration of one PromQL query, by query name.",
            ["query"],
            buckets=QUERY_BUCKETS,
            registry=registry,
        )
        self.query_errors = Counter(
            "cluster_exporter_prometheus_query_errors_total",
            "PromQL queries that failed, by query name.",
            ["query"],
            registry=registry,
        )
        self.kubernetes_errors = Counter(
            "cluster_exporter_kubernetes_api_errors_total",
            "Kubernetes API calls that failed, by operation.",
            ["operation"],
            registry=registry,
        )
        self.window_duration = Histogram(
            "cluster_exporter_metering_window_duration_seconds",
            "Time to measure one window end to end.",
            buckets=QUERY_BUCKETS,
            registry=registry,
        )
        self.report_customers = Gauge(
            "cluster_exporter_report_customers",
            "Customers in the last report built.",
            registry=registry,
        )
        self.report_namespaces = Gauge(
            "cluster_exporter_report_namespaces",
            "Namespaces in the last report built.",
            registry=registry,
        )

        # what the last measured window's answers showed, per meter (see checks.py)
        self.metering_series = Gauge(
            "cluster_exporter_metering_series",
            "Series the last measured window's answers held, per meter.",
            ["meter"],
            registry=registry,
        )
        self.unattributed_series = Gauge(
            "cluster_exporter_metering_unattributed_series",
            "Series of the last measured window with no namespace the meter reads (label missing or empty), per meter.",
            ["meter"],
            registry=registry,
        )
        self.unattributed_amount = Gauge(
            "cluster_exporter_metering_unattributed_amount",
            "Usage of those series in the last measured window, in the meter's report units (not billed).",
            ["meter"],
            registry=registry,
        )
        self.scrape_interval = Gauge(
            "cluster_exporter_metering_scrape_interval_seconds",
            "Median spacing of the samples in the last measured window, per meter (absent when unknown).",
            ["meter"],
            registry=registry,
        )
        self.windows_unattributed = Counter(
            "cluster_exporter_metering_windows_with_unattributed_usage_total",
            "Window measurements with usage attributed to no namespace, per meter (a retried window counts again).",
            ["meter"],
            registry=registry,
        )

        # whose owners a window is billed with, without kube-state-metrics (delivery/owner_history.py)
        self.owner_changes_inside_window = Counter(
            "cluster_exporter_metering_owner_changes_inside_window_total",
            "Namespaces that changed owner inside a window and were billed wholly to the new one (once per window).",
            registry=registry,
        )
        self.windows_billed_with_recorded_owners = Counter(
            "cluster_exporter_metering_windows_billed_with_recorded_owners_total",
            "Window measurements billed with owners recorded at an earlier cycle that differ from the live ones.",
            registry=registry,
        )

        # high availability
        self.is_leader = Gauge(
            "cluster_exporter_leader_is_leader",
            "1 while this replica holds the leader Lease.",
            registry=registry,
        )
        self.leader_transitions = Counter(
            "cluster_exporter_leader_transitions_total",
            "Times this replica became leader.",
            registry=registry,
        )

    def on_query(self, name: str, seconds: float, ok: bool) -> None:
        """Hook for PrometheusClient: record one query's duration and outcome."""
        self.query_duration.labels(name).observe(seconds)
        if not ok:
            self.query_errors.labels(name).inc()

    def on_window_checks(self, checks: Sequence[MeterCheck]) -> None:
        """Hook for measure_window: record what one window's answers showed, per meter.

        Called for every measured window, also one that then fails its data checks, so the gauges
        show why a window cannot be billed while it keeps failing.
        """
        for check in checks:
            meter = check.meter
            self.metering_series.labels(meter).set(check.series)
            self.unattributed_series.labels(meter).set(check.unattributed_series)
            self.unattributed_amount.labels(meter).set(check.unattributed_amount)
            interval = check.scrape_interval
            if interval is not None:
                self.scrape_interval.labels(meter).set(interval)
            else:  # a value from an earlier window would pass for this one's
                try:
                    self.scrape_interval.remove(meter)
                except KeyError:
                    pass
            windows = self.windows_unattributed.labels(meter)  # at 0 from the first window: increase() sees the first
            if check.unattributed_amount > 0:
                windows.inc()
