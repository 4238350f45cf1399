"""The billing API's own metrics, on an injected registry (names ``cluster_exporter_billing_api_*``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

STORE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class BillingApiMetrics:
    """Every metric the billing API exposes on /metrics."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.report_requests = Counter(
            "cluster_exporter_billing_api_report_requests_total",
            "POST /api/usage/report requests by HTTP status.",
            ["status"],
            registry=registry,
        )
        self.usage_rows_stored = Counter(
            "cluster_exporter_billing_api_usage_rows_stored_total",
            "Hourly usage rows stored (customer x hour x meter).",
            registry=registry,
        )
        self.store_duration = Histogram(
            "cluster_exporter_billing_api_report_store_duration_seconds",
            "Time to store one report part in one transaction.",
            buckets=STORE_BUCKETS,
            registry=registry,
        )
        self.batches_in_progress = Gauge(
            "cluster_exporter_billing_api_batches_in_progress",
            "Report parts being written right now.",
            registry=registry,
        )
        self.stripe_events = Counter(
            "cluster_exporter_billing_api_stripe_events_total",
            "Stripe meter event attempts by outcome (sent, duplicate, retry, failed).",
            ["outcome"],
            registry=registry,
        )
        self.stripe_pending = Gauge(
            "cluster_exporter_billing_api_stripe_events_pending",
            "Meter events waiting in the outbox at the end of the last push round.",
            registry=registry,
        )
        self.stripe_last_round = Gauge(
            "cluster_exporter_billing_api_stripe_last_round_timestamp_seconds",
            "When the last Stripe push round ended without a retryable error (Unix seconds).",
            registry=registry,
        )
