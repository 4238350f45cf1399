"""cluster-exporter: billing-grade per-customer usage metering for multi-tenant Kubernetes clusters."""

__version__ = "0.1.0"
