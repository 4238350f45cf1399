"""The one table of built-in meters: what each report field is, in which unit, and how it is priced.

Read by the settings (names a custom meter may not take), the report (the fields every usage
record carries, and which are whole numbers), the metering plan (which meters round to integers),
the billing API's pricing (which amounts must be whole, how Stripe events scale them) and the
tests that check the Grafana dashboard. A new built-in meter is one row here plus its PromQL in
the metering plan.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MeterSpec:
    """One built-in meter."""

    name: str  # the report field
    unit: str  # what one unit of the reported amount is
    integer: bool  # amounts are whole numbers (things counted), else floats (time integrals)
    pricing_unit: str  # the unit the invoice line prices it in
    description: str
    # Carried by a usage record only when the exporter measured it (the cluster has its source):
    # absent means "not measured", which a plan billing on it must refuse, never read as zero.
    optional: bool = False


BUILTIN: tuple[MeterSpec, ...] = (
    MeterSpec("cpu_hours", "core-hour", False, "core-hour", "CPU time of the customer's containers"),
    MeterSpec("memory_gb_hours", "GiB-hour", False, "GB-hour", "working-set memory of its containers over time"),
    MeterSpec("network_bytes_sent", "byte", True, "GB", "bytes its pods sent"),
    MeterSpec("network_bytes_received", "byte", True, "GB", "bytes its pods received"),
    MeterSpec("storage_gb_hours", "GiB-hour", False, "GB-month", "used bytes of its volumes over time"),
    MeterSpec("http_requests", "request", True, "million requests", "requests to its Ingresses"),
    MeterSpec(
        "gpu_hours", "GPU-hour", False, "GPU-hour", "GPUs its running pods requested, weighted per resource", True
    ),
    MeterSpec("gpu_utilized_hours", "GPU-hour", False, "GPU-hour", "GPU time its pods kept busy (dcgm-exporter)", True),
    MeterSpec("cpu_request_hours", "core-hour", False, "core-hour", "CPU its running pods requested", True),
    MeterSpec("memory_request_gb_hours", "GiB-hour", False, "GB-hour", "memory its running pods requested", True),
)
BY_NAME = {spec.name: spec for spec in BUILTIN}
NAMES: tuple[str, ...] = tuple(spec.name for spec in BUILTIN)
INTEGER: frozenset[str] = frozenset(spec.name for spec in BUILTIN if spec.integer)
ALWAYS: tuple[str, ...] = tuple(spec.name for spec in BUILTIN if not spec.optional)  # in every record
OPTIONAL: frozenset[str] = frozenset(spec.name for spec in BUILTIN if spec.optional)
RESERVED = frozenset({*NAMES, "customer_id", "namespaces"})  # fields a custom meter may not be named
