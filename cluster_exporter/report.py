"""The usage report: one per cluster and window, the contract between exporter and billing API.

``report_id`` is a pure function of (cluster id, window start, window end), so a report rebuilt or
resent for the same window always carries the same id, and the billing API can store it once.
A report too large for one request travels as ``parts`` reports sharing the id and window, each
with its ``part`` number (1-based) and a disjoint set of customers; (report_id, part) is the
delivery's idempotency key.
Amounts are plain JSON numbers: meters that count things (bytes, requests) are integers, meters
that integrate over time (core-hours, GiB-hours) are floats rounded to ``AMOUNT_DECIMALS``.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator, model_validator

# uuid5 namespace of cluster-exporter report ids (a fixed, random UUID: never change it).
REPORT_ID_NAMESPACE = uuid.UUID("5b0c7d1e-4a52-4c61-9a5f-0f2b8f0e6c3a")
AMOUNT_DECIMALS = 9
INTEGER_METERS = frozenset({"network_bytes_sent", "network_bytes_received", "http_requests"})
SCHEMA_VERSION = 1


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a Z, whole seconds: the only time format in reports."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def report_id(cluster_id: str, window_start: datetime, window_end: datetime) -> str:
    """Stable id of one cluster's report for one window."""
    key = f"{cluster_id}|{format_time(window_start)}|{format_time(window_end)}"
    return str(uuid.uuid5(REPORT_ID_NAMESPACE, key))


class CustomerUsage(BaseModel):
    """Everything one customer used in one window, summed over its namespaces."""

    model_config = ConfigDict(extra="allow", frozen=True)

    customer_id: str
    namespaces: list[str]
    cpu_hours: float = 0.0
    memory_gb_hours: float = 0.0
    network_bytes_sent: int = 0
    network_bytes_received: int = 0
    storage_gb_hours: float = 0.0
    http_requests: int = 0

    @model_validator(mode="after")
    def _finite_and_non_negative(self) -> CustomerUsage:
        for name, value in self.amounts().items():
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ValueError(f"{name} must be a number")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be finite and non-negative, got {value!r}")
        return self

    def amounts(self) -> dict[str, float | int]:
        """Meter name -> amount, built-in and custom meters alike."""
        data = self.model_dump()
        return {k: v for k, v in data.items() if k not in ("customer_id", "namespaces")}


class UsageReport(BaseModel):
    """One cluster's usage for the window [window_start, window_end)."""

    model_config = ConfigDict(frozen=True)

    report_id: str
    cluster_id: str
    window_start: datetime
    window_end: datetime
    schema_version: int = SCHEMA_VERSION
    part: int = Field(
        default=1, ge=1, description="1-based part number when a window's report is split across requests"
    )
    parts: int = Field(default=1, ge=1, description="how many parts the window's report has")
    usage: list[CustomerUsage] = Field(default_factory=list)

    @field_validator("window_start", "window_end")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("times must carry a timezone")
        return value.astimezone(UTC)

    @model_validator(mode="after")
    def _consistent(self) -> UsageReport:
        if self.window_end <= self.window_start:
            raise ValueError("window_end must be after window_start")
        if self.part > self.parts:
            raise ValueError("part must not exceed parts")
        expected = report_id(self.cluster_id, self.window_start, self.window_end)
        if self.report_id != expected:
            raise ValueError("report_id does not match cluster_id and window")
        return self

    @field_serializer("window_start", "window_end")
    def _serialize_time(self, value: datetime) -> str:
        return format_time(value)

    def to_json(self) -> str:
        """Canonical JSON: the same report always serialises to the same bytes."""
        return self.model_dump_json()


def round_amount(meter: str, value: float, integer: bool = False) -> float | int:
    """Round an amount the way reports carry it."""
    if meter in INTEGER_METERS or integer:
        return round(value)
    rounded = round(value, AMOUNT_DECIMALS)
    return 0.0 if rounded == 0 else rounded


def build_report(
    cluster_id: str,
    window_start: datetime,
    window_end: datetime,
    usage_by_customer: dict[str, dict[str, Any]],
) -> UsageReport:
    """Assemble a report from ``{customer_id: {"namespaces": [...], meter: amount, ...}}``."""
    usage = [CustomerUsage(customer_id=customer, **fields) for customer, fields in sorted(usage_by_customer.items())]
    return UsageReport(
        report_id=report_id(cluster_id, window_start, window_end),
        cluster_id=cluster_id,
        window_start=window_start,
        window_end=window_end,
        usage=usage,
    )
