"""What the billing API accepts: the exporter's report, validated on its own terms, and customer terms.

The API keeps its own models rather than reusing ``cluster_exporter.report``: the receiver must
hold every sender to the contract (exporters of other versions, or anything else with a token),
reject what it cannot bill (unknown meters, partial hours, NaN) and read amounts as exact Decimals
straight from the JSON text (``json.loads(parse_float=Decimal)``), never through a binary float.

What one report may cost is bounded before it is paid for (``ReportLimits``, from the settings):
the number of customers is checked right after the JSON is parsed and before the model validates
anything, the window's length and age while validating, the hourly rows it becomes (customers x
meters x hours) before a single row is built. Every refusal is a ``RequestRejected`` (400, 413 or
422); nothing a client sends may surface as another exception.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .. import meters
from ..errors import clip
from ..report import format_time, report_id
from .decimals import EXACT, checked, text
from .errors import RequestRejected
from .pricing import LIMIT_KEYS, CustomerTerms, Limit, Money, PricingConfig

MAX_PARTS = 10_000
MAX_AMOUNT = Decimal(10**15)  # far above any real hour, far below what breaks a BIGINT in cents
MAX_COUNT = 10**18
FUTURE_SKEW = timedelta(minutes=5)  # clocks of clusters are not perfect
HOUR = 3600
# Hour shares of a multi-hour window are cut here; the last hour takes the remainder so the
# shares add up to exactly the reported amount.
SHARE_QUANTUM = Decimal("1e-12")

CustomerId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")]
ClusterId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")]


@dataclass(frozen=True)
class ReportLimits:
    """What one report part may cost; the defaults are the settings' (``BillingSettings``)."""

    max_window_hours: int = 24
    max_customers: int = 10_000
    max_rows: int = 300_000
    max_age: timedelta = timedelta(days=35)


def _number(value: Any) -> Any:
    # JSON numbers arrive as int or Decimal; a string or a boolean that merely looks like one is refused.
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise ValueError("must be a JSON number")
    return Decimal(value) if isinstance(value, int) else value


def _amount(value: Decimal) -> Decimal:
    return checked(value, MAX_AMOUNT)


Amount = Annotated[Decimal, BeforeValidator(_number), AfterValidator(_amount)]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT, strict=True)]
# Built-in meters a record carries only when the exporter measured them (GPUs, requests): absent
# means "not measured", which is not 0 and is stored as no row at all (see pricing's bases).
OPTIONAL_METERS: tuple[str, ...] = tuple(name for name in meters.NAMES if name in meters.OPTIONAL)


def _custom_amount(name: str, value: Any, integer: bool) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise ValueError(f"{name} must be a JSON number")
    if integer and not isinstance(value, int):
        raise ValueError(f"{name} must be a whole number")
    try:
        return checked(Decimal(value), MAX_AMOUNT)
    except ValueError as exc:
        raise ValueError(f"{name} {exc}") from None


class UsageRecordIn(BaseModel):
    """One customer's usage in one report; custom meters are extra keys declared in the pricing file."""

    model_config = ConfigDict(extra="allow")

    customer_id: CustomerId
    namespaces: list[Annotated[str, Field(max_length=253)]] = Field(max_length=10_000)
    cpu_hours: Amount
    memory_gb_hours: Amount
    network_bytes_sent: Count
    network_bytes_received: Count
    storage_gb_hours: Amount
    http_requests: Count
    gpu_hours: Amount | None = None
    gpu_utilized_hours: Amount | None = None
    cpu_request_hours: Amount | None = None
    memory_request_gb_hours: Amount | None = None

    @field_validator(*OPTIONAL_METERS, mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # Absent is "not measured"; a null would be a third spelling of it, so it is refused.
        if value is None:
            raise ValueError("must be a JSON number (leave the meter out when it was not measured)")
        return value

    @model_validator(mode="after")
    def _custom_meters(self, info: ValidationInfo) -> UsageRecordIn:
        known: dict[str, bool] = (info.context or {}).get("meters", {})
        extras = self.__pydantic_extra__ or {}
        for name, value in extras.items():
            if name not in known:
                raise ValueError(f"unknown meter {name!r}: neither built in nor declared in the pricing configuration")
            extras[name] = _custom_amount(name, value, known[name])
        return self

    def amounts(self) -> dict[str, Decimal]:
        """meter -> exact amount, built-in and custom meters alike; an optional meter only when measured."""
        out = {
            "cpu_hours": self.cpu_hours,
            "memory_gb_hours": self.memory_gb_hours,
            "network_bytes_sent": Decimal(self.network_bytes_sent),
            "network_bytes_received": Decimal(self.network_bytes_received),
            "storage_gb_hours": self.storage_gb_hours,
            "http_requests": Decimal(self.http_requests),
        }
        for name in OPTIONAL_METERS:
            amount: Decimal | None = getattr(self, name)
            if amount is not None:
                out[name] = amount
        out.update(self.__pydantic_extra__ or {})
        return out


class ReportIn(BaseModel):
    """One cluster's report (or one part of it) for the window [window_start, window_end)."""

    model_config = ConfigDict(extra="forbid")

    report_id: str
    cluster_id: ClusterId
    window_start: AwareDatetime
    window_end: AwareDatetime
    schema_version: Literal[1]
    part: Annotated[int, Field(ge=1, le=MAX_PARTS, strict=True)] = 1
    parts: Annotated[int, Field(ge=1, le=MAX_PARTS, strict=True)] = 1
    usage: list[UsageRecordIn]

    @field_validator("window_start", "window_end")
    @classmethod
    def _whole_hour(cls, value: datetime) -> datetime:
        try:
            value = value.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:00:00+01:00 lies before year 1 in UTC
            raise ValueError("time is out of range in UTC") from None
        if value.minute or value.second or value.microsecond:
            raise ValueError("window bounds must be whole hours")
        return value

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> ReportIn:
        context = info.context or {}
        limits: ReportLimits = context.get("limits") or ReportLimits()
        hours = self.hours
        if hours < 1 or hours > limits.max_window_hours:
            raise ValueError(f"the window must be 1 to {limits.max_window_hours} whole hours, got {hours}")
        now: datetime | None = context.get("now")
        if now is not None and self.window_end > now + FUTURE_SKEW:
            raise ValueError(f"window_end {format_time(self.window_end)} is in the future")
        if now is not None and self.window_start < now - limits.max_age:
            # Stripe refuses meter events older than 35 days, and moving them into the current
            # period would make Stripe and the invoice disagree; a backfill is the operator's call.
            raise ValueError(
                f"window_start {format_time(self.window_start)} is older than the {_age(limits.max_age)} "
                "accepted (Stripe takes usage of the past 35 days; BILLING_MAX_WINDOW_AGE allows a backfill)"
            )
        if self.part > self.parts:
            raise ValueError("part must not exceed parts")
        if self.report_id != report_id(self.cluster_id, self.window_start, self.window_end):
            raise ValueError("report_id does not match cluster_id and window")
        seen: set[str] = set()
        for record in self.usage:
            if record.customer_id in seen:
                raise ValueError(f"customer {record.customer_id} appears twice")
            seen.add(record.customer_id)
        return self

    @property
    def hours(self) -> int:
        """Length of the window in hours (a whole number once validated)."""
        return int((self.window_end - self.window_start).total_seconds()) // HOUR

    @property
    def row_count(self) -> int:
        """Hourly usage rows this part becomes: customers x their meters x hours."""
        return self.hours * sum(len(record.amounts()) for record in self.usage)

    @property
    def idempotency_key(self) -> str:
        """The key the exporter sends: the report id, with ``/part`` for split reports."""
        return self.report_id if self.parts == 1 else f"{self.report_id}/{self.part}"

    def content_digest(self) -> str:
        """SHA-256 of the report's meaning: key order, number spelling (1 vs 1.0) and customer order do not count."""
        canonical = {
            "report_id": self.report_id,
            "cluster_id": self.cluster_id,
            "window_start": format_time(self.window_start),
            "window_end": format_time(self.window_end),
            "part": self.part,
            "parts": self.parts,
            "usage": sorted(
                (
                    record.customer_id,
                    sorted(record.namespaces),
                    sorted((meter, text(amount)) for meter, amount in record.amounts().items()),
                )
                for record in self.usage
            ),
        }
        return hashlib.sha256(json.dumps(canonical, separators=(",", ":")).encode()).hexdigest()

    def hourly_rows(self) -> Iterator[tuple[str, int, str, Decimal]]:
        """(customer, hour start in Unix seconds, meter, amount) for every hour of the window.

        A multi-hour window is spread evenly over its hours so invoices can cut at month ends and
        Stripe gets hourly events; the shares add up to exactly the reported amount.
        """
        start = int(self.window_start.timestamp())
        hours = self.hours
        for record in self.usage:
            for meter, amount in record.amounts().items():
                if hours == 1:
                    yield record.customer_id, start, meter, amount
                    continue
                # EXACT, not the thread's context: 28 digits would round the larger amounts.
                share = EXACT.divide(amount, hours).quantize(SHARE_QUANTUM, rounding=ROUND_DOWN, context=EXACT)
                for i in range(hours - 1):
                    yield record.customer_id, start + i * HOUR, meter, share
                last = EXACT.subtract(amount, EXACT.multiply(share, hours - 1))
                yield record.customer_id, start + (hours - 1) * HOUR, meter, last


def _age(age: timedelta) -> str:
    return f"{age.days} days" if age.days and not age.seconds else f"{age.total_seconds() / 3600:g} hours"


def _describe(exc: ValidationError) -> str:
    errors = exc.errors()
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return clip(f"{where + ': ' if where else ''}{message}{more}")


def parse_report(body: bytes, meters: dict[str, bool], now: datetime, limits: ReportLimits | None = None) -> ReportIn:
    """Validate a report body: 400 not JSON, 413 over the limits, 422 JSON that is not a valid report.

    CPU-bound on large bodies: the server calls it on a worker thread, never on the event loop.
    """
    limits = limits or ReportLimits()
    try:
        # NaN and Infinity are not JSON; read them as Decimal NaN so validation names the field.
        data = json.loads(body, parse_float=Decimal, parse_constant=lambda _: Decimal("NaN"))
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise RequestRejected(400, f"malformed JSON: {clip(str(exc))}") from exc
    except RecursionError:
        raise RequestRejected(400, "malformed JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise RequestRejected(422, "the report must be a JSON object")
    usage = data.get("usage")
    if isinstance(usage, list) and len(usage) > limits.max_customers:
        raise RequestRejected(
            413, f"{len(usage)} customers in one part, over the limit of {limits.max_customers}: split the report"
        )
    try:
        report = ReportIn.model_validate(data, context={"meters": meters, "now": now, "limits": limits})
    except ValidationError as exc:
        raise RequestRejected(422, _describe(exc)) from exc
    except RecursionError:
        raise RequestRejected(422, "the report is nested too deeply") from None
    rows = report.row_count
    if rows > limits.max_rows:
        raise RequestRejected(
            413,
            f"the part would become {rows} hourly usage rows (customers x meters x {report.hours} hours), over the "
            f"limit of {limits.max_rows}: send fewer customers per part or shorter windows",
        )
    return report


def check_idempotency_key(header: str | None, report: ReportIn) -> None:
    """An Idempotency-Key, when sent, must name this report and part (422 otherwise)."""
    if header is None:
        return
    accepted = {f"{report.report_id}/{report.part}"}
    if report.parts == 1:
        accepted.add(report.report_id)
    if header.strip() not in accepted:
        raise RequestRejected(
            422, f"Idempotency-Key {clip(header, 80)!r} does not match the report (expected {report.idempotency_key})"
        )


class CustomerIn(BaseModel):
    """Body of ``PUT /api/customers/{id}``."""

    model_config = ConfigDict(extra="forbid")

    plan: str
    base_price: Money | None = None
    limits: dict[Literal["vcpu", "memory_gb", "storage_gb", "network_gb"], Limit] | None = None
    stripe_customer_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_]{1,255}$")] | None = None


def parse_customer(body: bytes, pricing: PricingConfig) -> CustomerTerms:
    """Validate customer terms against the pricing configuration (400 / 422)."""
    try:
        data = CustomerIn.model_validate_json(body)
    except ValidationError as exc:
        status = 400 if any(e["type"] == "json_invalid" for e in exc.errors()) else 422
        raise RequestRejected(status, _describe(exc)) from exc
    plan = pricing.plans.get(data.plan)
    if plan is None:
        raise RequestRejected(422, f"unknown plan {data.plan!r}; known: {', '.join(sorted(pricing.plans))}")
    if not plan.custom and (data.base_price is not None or data.limits is not None):
        raise RequestRejected(422, f"plan {data.plan} has fixed terms; base_price and limits are for custom plans")
    if plan.custom and data.base_price is None and plan.base_price is None:
        raise RequestRejected(422, f"plan {data.plan} is custom: give the customer's base_price")
    limits: dict[str, Decimal | None] | None = None
    if data.limits is not None:
        limits = {k: v for k, v in data.limits.items() if k in LIMIT_KEYS}
    return CustomerTerms(data.plan, data.base_price, limits, data.stripe_customer_id)
