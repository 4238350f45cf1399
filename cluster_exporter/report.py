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
from array import array
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_serializer, field_validator, model_validator

from . import meters

# uuid5 namespace of cluster-exporter report ids (a fixed, random UUID: never change it).
REPORT_ID_NAMESPACE = uuid.UUID("5b0c7d1e-4a52-4c61-9a5f-0f2b8f0e6c3a")
AMOUNT_DECIMALS = 9
INTEGER_METERS = meters.INTEGER
SCHEMA_VERSION = 1


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a Z, whole seconds: the only time format in reports."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def window_label(start: datetime, end: datetime) -> str:
    """``2025-11-20T00:00:00Z..01:00:00Z``: a window in messages and logs."""
    return f"{format_time(start)}..{end.astimezone(UTC):%H:%M:%SZ}"


def report_id(cluster_id: str, window_start: datetime, window_end: datetime) -> str:
    """Stable id of one cluster's report for one window."""
    key = f"{cluster_id}|{format_time(window_start)}|{format_time(window_end)}"
    return str(uuid.uuid5(REPORT_ID_NAMESPACE, key))


# The built-in meters every usage record carries, in order, with the value of a meter not measured.
# The optional ones (meters.OPTIONAL: GPUs, requests) are carried only when measured.
BUILTIN_AMOUNTS: tuple[tuple[str, float | int], ...] = tuple(
    (spec.name, 0 if spec.integer else 0.0) for spec in meters.BUILTIN if not spec.optional
)
_DEFAULTS = dict(BUILTIN_AMOUNTS)
_BUILTIN = {spec.name: 0 if spec.integer else 0.0 for spec in meters.BUILTIN}
_RECORD_JSON: TypeAdapter[dict[str, Any]] = TypeAdapter(dict[str, Any])
# Meter names and which of them are whole numbers: one shared layout per combination.
_LAYOUTS: dict[tuple[tuple[str, ...], tuple[bool, ...]], tuple[tuple[str, ...], tuple[bool, ...]]] = {}
EXACT_INT = 2**53  # integers up to this are exact as doubles


class CustomerUsage:
    """Everything one customer used in one window, summed over its namespaces.

    A compact, validated, immutable record (a report of 50,000 customers holds 50,000 of them):
    the customer id, its namespaces, and one amount per meter, the six built-in meters first (0
    when not measured), then custom meters by name. Meter names are shared between records.
    """

    __slots__ = ("_layout", "_values", "customer_id", "namespaces")
    customer_id: str
    namespaces: list[str]
    _layout: tuple[tuple[str, ...], tuple[bool, ...]]  # (meter names, whole-number flags), shared
    # the amounts as doubles, 8 bytes each (a tuple of floats costs 32): a report of 50,000
    # customers is the exporter's last peak at 100,000 namespaces (docs/benchmarks.md); a tuple
    # only where a whole number is too large to be exact as a double
    _values: array[float] | tuple[float | int, ...]

    def __init__(self, customer_id: str, namespaces: list[str], **amounts: float | int) -> None:
        if not isinstance(customer_id, str) or not customer_id:
            raise ValueError("customer_id must be a non-empty string")
        if not isinstance(namespaces, list) or not all(isinstance(n, str) for n in namespaces):
            raise ValueError(f"{customer_id}: namespaces must be a list of names")
        values = {**_DEFAULTS, **amounts}
        for name, value in values.items():
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ValueError(f"{customer_id}: {name} must be a number")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{customer_id}: {name} must be finite and non-negative, got {value!r}")
            if name in _BUILTIN and isinstance(_BUILTIN[name], int) and not float(value).is_integer():
                raise ValueError(f"{customer_id}: {name} must be a whole number, got {value!r}")
        typed = [
            int(v) if isinstance(_BUILTIN.get(n), int) else float(v) if n in _BUILTIN else v for n, v in values.items()
        ]
        key = (tuple(values), tuple(isinstance(v, int) for v in typed))
        setattr_ = object.__setattr__
        setattr_(self, "customer_id", customer_id)
        setattr_(self, "namespaces", namespaces)
        setattr_(self, "_layout", _LAYOUTS.setdefault(key, key))
        exact = all(v <= EXACT_INT for v in typed)
        setattr_(self, "_values", array("d", typed) if exact else tuple(typed))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("CustomerUsage is immutable")

    def __getattr__(self, name: str) -> float | int:
        names, ints = self._layout
        try:
            i = names.index(name)
        except ValueError:
            raise AttributeError(name) from None
        return int(self._values[i]) if ints[i] else self._values[i]

    def amounts(self) -> dict[str, float | int]:
        """Meter name -> amount, built-in and custom meters alike."""
        names, ints = self._layout
        return {n: int(v) if i else v for n, i, v in zip(names, ints, self._values, strict=True)}

    def to_dict(self) -> dict[str, Any]:
        """The record as it appears in a report's JSON."""
        return {"customer_id": self.customer_id, "namespaces": list(self.namespaces), **self.amounts()}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CustomerUsage) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash((self.customer_id, tuple(self._values)))

    def __repr__(self) -> str:
        return f"CustomerUsage({self.to_dict()!r})"


class UsageReport(BaseModel):
    """One cluster's usage for the window [window_start, window_end)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

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

    @field_validator("usage", mode="before")
    @classmethod
    def _records(cls, value: Any) -> Any:
        if not isinstance(value, list | tuple) or not all(isinstance(v, CustomerUsage) for v in value):
            raise ValueError("usage must be a list of CustomerUsage records")
        return list(value)

    @field_serializer("window_start", "window_end")
    def _serialize_time(self, value: datetime) -> str:
        return format_time(value)

    @field_serializer("usage")
    def _serialize_usage(self, value: list[CustomerUsage]) -> list[dict[str, Any]]:
        return [record.to_dict() for record in value]

    def json_chunks(self) -> Iterator[str]:
        """The canonical JSON in pieces: the envelope, then one usage record at a time.

        Writing these pieces never holds a second copy of the report (a 50,000-customer report
        is 10 MB of JSON, and its records as dicts several times that).
        """
        envelope = self.model_dump_json(exclude={"usage"})
        yield envelope[:-1] + ',"usage":['
        for i, record in enumerate(self.usage):
            body = _RECORD_JSON.dump_json(record.to_dict()).decode()
            yield body if i == 0 else "," + body
        yield "]}"

    def to_json(self) -> str:
        """Canonical JSON: the same report always serialises to the same bytes."""
        return "".join(self.json_chunks())


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
    usage_by_customer: dict[str, dict[str, Any]] | Iterable[CustomerUsage],
) -> UsageReport:
    """Assemble a report from records sorted by customer, or from
    ``{customer_id: {"namespaces": [...], meter: amount, ...}}``."""
    if isinstance(usage_by_customer, dict):
        usage = [CustomerUsage(customer, **fields) for customer, fields in sorted(usage_by_customer.items())]
    else:
        usage = list(usage_by_customer)
    return UsageReport(
        report_id=report_id(cluster_id, window_start, window_end),
        cluster_id=cluster_id,
        window_start=window_start,
        window_end=window_end,
        usage=usage,
    )
