"""Plans, prices and invoices: pure functions over Decimal, no I/O but reading the pricing file.

The original design's model, fixed where it was wrong:
- included amounts are per calendar month and follow from the month's hours (a 1 vCPU plan
  includes 720 core-hours in November, 744 in December, 672 in a February of 28 days);
- storage is billed in GB-months: the month's storage_gb_hours divided by the month's hours;
- network GB are (sent + received) / 2**30;
- HTTP requests are billed ($0.50 per million), which the original ``calculateCost`` forgot; no
  plan includes any;
- CPU and memory are billed on usage, requests or the larger of the two per hour, as the plan
  says (``bases``); GPU-hours are pure overage (no plan includes any), utilized GPU-hours are
  shown and by default not charged;
- money is Decimal and is rounded to cents once, on the total (half up), never per line.
"""

from __future__ import annotations

import calendar
import json
import re
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, localcontext
from functools import partial
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .. import meters
from .bases import LABELS, Basis, Billed, MonthUsage, billed
from .decimals import EXACT, checked
from .errors import BillingConfigError, RequestRejected

# Built-in meters of the exporter's report -> whether their amounts are whole numbers.
BUILTIN_METERS: dict[str, bool] = {spec.name: spec.integer for spec in meters.BUILTIN}
LIMIT_KEYS = ("vcpu", "memory_gb", "storage_gb", "network_gb")
GIB = Decimal(2**30)
MILLION = Decimal(10**6)
CENT = Decimal("0.01")
# Stripe meter events carry integers: time-integrated meters go as thousandths (milli-core-hours,
# milli-GB-hours), counted ones (bytes, requests) as they are.
MILLI = 1000

DEFAULT_PRICING_TOML = """\
# The original design's plans and overage prices, in US dollars.
currency = "usd"

[prices]
cpu_core_hour = "0.05"          # per core-hour above the plan's vCPU x hours in the month
memory_gb_hour = "0.01"         # per GB-hour above the plan's GB x hours in the month
storage_gb_month = "0.20"       # per GB-month above the plan's storage
network_gb = "0.10"             # per GB (2^30 bytes, sent + received) above the plan's transfer
http_million_requests = "0.50"  # per million requests; no plan includes any
gpu_hour = "2.50"               # per GPU-hour requested (gpu_hours); no plan includes any
gpu_utilized_hour = "0"         # per GPU-hour kept busy (gpu_utilized_hours): shown, not charged

[plans.starter]
base_price = "29.00"
vcpu = 1
memory_gb = 2
storage_gb = 10
network_gb = 100

[plans.professional]
base_price = "99.00"
vcpu = 4
memory_gb = 8
storage_gb = 50
network_gb = 500

[plans.enterprise]
# Custom: each customer's base price (required) and limits come from PUT /api/customers/{id};
# a limit a customer's terms leave out is unlimited.
custom = true
vcpu = "unlimited"
memory_gb = "unlimited"
storage_gb = "unlimited"
network_gb = "unlimited"
"""


def _unlimited_to_none(value: Any) -> Any:
    return None if value == "unlimited" else value


# Prices and limits are checked like usage amounts (decimals.checked): an enterprise limit of
# 1e999999999 or a price of 1e-20000 is refused where it is given, never at invoice time.
MAX_MONEY = Decimal(10**12)
MAX_QUANTITY = Decimal(10**15)
Money = Annotated[Decimal, AfterValidator(partial(checked, maximum=MAX_MONEY))]
Quantity = Annotated[Decimal, AfterValidator(partial(checked, maximum=MAX_QUANTITY))]
Limit = Annotated[Quantity | None, BeforeValidator(_unlimited_to_none)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Prices(_Model):
    """Overage unit prices of the built-in meters, in the currency's units."""

    cpu_core_hour: Money
    memory_gb_hour: Money
    storage_gb_month: Money
    network_gb: Money
    http_million_requests: Money
    # Absent from pricing files written before GPUs were metered: their GPU lines show at 0.
    gpu_hour: Money = Decimal(0)
    gpu_utilized_hour: Money = Decimal(0)


class PlanConfig(_Model):
    """One plan: base price per month, included amounts (None: unlimited), what CPU and memory bill on."""

    base_price: Money | None = None
    custom: bool = Field(False, description="Base price and limits come from each customer's terms.")
    vcpu: Limit
    memory_gb: Limit
    storage_gb: Limit
    network_gb: Limit
    cpu_basis: Basis = Field("usage", description="CPU overage on usage, requests, or max of the two per hour.")
    memory_basis: Basis = Field("usage", description="Memory overage on usage, requests, or max of the two per hour.")

    @model_validator(mode="after")
    def _priced(self) -> PlanConfig:
        if self.base_price is None and not self.custom:
            raise ValueError("a plan that is not custom needs a base_price")
        return self


class MeterConfig(_Model):
    """A custom meter (the exporter's metering.custom_meters) the API accepts and bills."""

    unit: str = "unit"
    price: Money = Decimal(0)
    included: Quantity = Decimal(0)
    integer: bool = Field(False, description="Amounts must be whole numbers.")
    stripe_scale: int | None = Field(None, ge=1, description="Stripe value = amount x scale (default 1 or 1000).")
    stripe_event_name: str | None = None


class PricingConfig(_Model):
    """The whole pricing file."""

    currency: str = "usd"
    prices: Prices
    plans: dict[str, PlanConfig]
    meters: dict[str, MeterConfig] = Field(default_factory=dict)
    stripe_event_names: dict[str, str] = Field(
        default_factory=dict, description="Stripe event_name of a built-in meter (default: the meter's name)."
    )

    @field_validator("meters")
    @classmethod
    def _meter_names(cls, value: dict[str, MeterConfig]) -> dict[str, MeterConfig]:
        for name in value:
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,62}", name) or name in BUILTIN_METERS:
                raise ValueError(f"custom meter name {name!r} must be snake_case and not a built-in meter")
        return value

    @field_validator("stripe_event_names")
    @classmethod
    def _event_names(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = set(value) - set(BUILTIN_METERS)
        if unknown:
            raise ValueError(f"stripe_event_names for unknown meters: {sorted(unknown)}")
        return value

    def meters_known(self) -> dict[str, bool]:
        """Every meter a report may carry -> whether its amounts are whole numbers."""
        return {**BUILTIN_METERS, **{name: m.integer for name, m in self.meters.items()}}

    def stripe_meters(self) -> dict[str, tuple[str, int]]:
        """meter -> (Stripe event_name, integer scale) for every meter pushed to Stripe."""
        out = {
            name: (self.stripe_event_names.get(name, name), 1 if integer else MILLI)
            for name, integer in BUILTIN_METERS.items()
        }
        for name, meter in self.meters.items():
            scale = meter.stripe_scale or (1 if meter.integer else MILLI)
            out[name] = (meter.stripe_event_name or name, scale)
        return out


def load_pricing(path: Path | None) -> PricingConfig:
    """The pricing file (TOML, or JSON when it ends in .json), or the default."""
    try:
        if path is None:
            data: dict[str, Any] = tomllib.loads(DEFAULT_PRICING_TOML)
        elif path.suffix == ".json":
            data = json.loads(path.read_text())
        else:
            data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise BillingConfigError(f"cannot read pricing file {path}: {exc.strerror}") from exc
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise BillingConfigError(f"pricing file {path} is not valid: {exc}") from exc
    try:
        return PricingConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BillingConfigError(f"pricing file {path or '(default)'}: {where}: {first['msg']}") from exc


@dataclass(frozen=True)
class CustomerTerms:
    """A customer's plan and, for custom plans, its own base price and limits."""

    plan: str
    base_price: Decimal | None = None
    limits: dict[str, Decimal | None] | None = None
    stripe_customer_id: str | None = None


def parse_month(text: str) -> tuple[datetime, datetime]:
    """``2025-11`` -> [start, end) of that calendar month in UTC; 400 for anything else."""
    match = re.fullmatch(r"([0-9]{4})-([0-9]{2})", text or "")
    # December 9999 would end in year 10000, which datetime cannot hold.
    if not match or not 1 <= int(match.group(2)) <= 12 or not 1970 <= int(match.group(1)) <= 9998:
        raise RequestRejected(400, f"month must look like 2025-11 (years 1970 to 9998), got {text[:20]!r}")
    year, month = int(match.group(1)), int(match.group(2))
    start = datetime(year, month, 1, tzinfo=UTC)
    return start, start + timedelta(days=calendar.monthrange(year, month)[1])


def hours_in_month(month: str) -> int:
    """Hours of a calendar month in UTC (672, 696, 720 or 744)."""
    start, end = parse_month(month)
    return int((end - start).total_seconds()) // 3600


@dataclass(frozen=True)
class InvoiceLine:
    """One billed quantity (on its basis), what the plan includes, and the overage's price."""

    meter: str
    unit: str
    used: Decimal
    included: Decimal | None  # None: unlimited
    unit_price: Decimal
    basis: Basis = "usage"
    # Under "max" (and "requests"), the month's totals of the usage and the request meter.
    usage_total: Decimal | None = None
    requests_total: Decimal | None = None

    @classmethod
    def from_billed(
        cls, meter: str, unit: str, quantity: Billed, included: Decimal | None, unit_price: Decimal
    ) -> InvoiceLine:
        """A CPU or memory line: the billed quantity, with both totals unless it is plain usage."""
        if quantity.basis == "usage":
            return cls(meter, unit, quantity.quantity, included, unit_price)
        return cls(
            meter, unit, quantity.quantity, included, unit_price, quantity.basis, quantity.usage, quantity.requests
        )

    @property
    def overage(self) -> Decimal:
        """Usage above the included amount (nothing when unlimited)."""
        if self.included is None:
            return Decimal(0)
        return max(Decimal(0), EXACT.subtract(self.used, self.included))

    @property
    def amount(self) -> Decimal:
        """Exact price of the overage, not rounded (the invoice rounds once, on the total)."""
        return EXACT.multiply(self.overage, self.unit_price)

    def to_dict(self) -> dict[str, str]:
        """JSON-ready form; ``used`` is what the basis bills, the totals show where it came from."""
        out = {
            "meter": self.meter,
            "unit": self.unit,
            "basis": LABELS[self.basis],
            "used": fmt(self.used),
            "included": "unlimited" if self.included is None else fmt(self.included),
            "overage": fmt(self.overage),
            "unit_price": fmt(self.unit_price),
            "amount": fmt(self.amount),
        }
        if self.usage_total is not None:
            out["usage_total"] = fmt(self.usage_total)
        if self.requests_total is not None:
            out["requests_total"] = fmt(self.requests_total)
        return out


@dataclass(frozen=True)
class Invoice:
    """A customer's bill for one calendar month."""

    customer_id: str
    month: str
    plan: str
    currency: str
    hours: int
    base_price: Decimal
    lines: list[InvoiceLine]

    @property
    def total(self) -> Decimal:
        """Base price plus every line's exact amount, rounded half up to cents once."""
        with localcontext(EXACT):
            return (self.base_price + sum((line.amount for line in self.lines), Decimal(0))).quantize(
                CENT, rounding=ROUND_HALF_UP
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; every number is a string so nothing passes through a float."""
        return {
            "customer_id": self.customer_id,
            "month": self.month,
            "plan": self.plan,
            "currency": self.currency,
            "hours_in_month": self.hours,
            "base_price": str(self.base_price.quantize(CENT, rounding=ROUND_HALF_UP)),
            "lines": [line.to_dict() for line in self.lines],
            "total": str(self.total),
        }


def fmt(value: Decimal, places: int = 9) -> str:
    """A Decimal for people: at most ``places`` decimals, no exponent, no trailing zeros."""
    text = format(value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP, context=EXACT), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def plan_limits(pricing: PricingConfig, terms: CustomerTerms) -> tuple[Decimal, dict[str, Decimal | None]]:
    """Base price and limits that apply to a customer: the plan's, overridden by custom terms."""
    plan = pricing.plans.get(terms.plan)
    if plan is None:
        raise RequestRejected(409, f"plan {terms.plan!r} is not in the pricing configuration")
    limits: dict[str, Decimal | None] = {key: getattr(plan, key) for key in LIMIT_KEYS}
    base = plan.base_price
    if plan.custom:
        base = terms.base_price if terms.base_price is not None else base
        limits.update(terms.limits or {})
    if base is None:
        raise RequestRejected(409, f"plan {terms.plan!r} is custom and the customer has no base_price")
    return base, limits


def compute_invoice(
    customer_id: str, month: str, terms: CustomerTerms, pricing: PricingConfig, usage: MonthUsage
) -> Invoice:
    """The invoice of ``customer_id`` for ``month`` from its stored ``usage``; 409 when the plan's basis lacks data."""
    with localcontext(EXACT):
        return _invoice(customer_id, month, terms, pricing, usage)


def _invoice(customer_id: str, month: str, terms: CustomerTerms, pricing: PricingConfig, usage: MonthUsage) -> Invoice:
    hours = Decimal(hours_in_month(month))
    base, limits = plan_limits(pricing, terms)
    plan = pricing.plans[terms.plan]
    total = usage.total

    def times_hours(limit: Decimal | None) -> Decimal | None:
        return None if limit is None else limit * hours

    def unit(meter: str) -> str:
        return meters.BY_NAME[meter].pricing_unit

    prices = pricing.prices
    cpu = billed(usage, "cpu", plan.cpu_basis, customer_id, terms.plan)
    memory = billed(usage, "memory", plan.memory_basis, customer_id, terms.plan)
    lines = [
        InvoiceLine.from_billed("cpu", unit("cpu_hours"), cpu, times_hours(limits["vcpu"]), prices.cpu_core_hour),
        InvoiceLine.from_billed(
            "memory", unit("memory_gb_hours"), memory, times_hours(limits["memory_gb"]), prices.memory_gb_hour
        ),
        InvoiceLine(
            "storage",
            unit("storage_gb_hours"),
            total("storage_gb_hours") / hours,
            limits["storage_gb"],
            prices.storage_gb_month,
        ),
        InvoiceLine(
            "network",
            unit("network_bytes_sent"),
            (total("network_bytes_sent") + total("network_bytes_received")) / GIB,
            limits["network_gb"],
            prices.network_gb,
        ),
        InvoiceLine(
            "http_requests",
            unit("http_requests"),
            total("http_requests") / MILLION,
            Decimal(0),
            prices.http_million_requests,
        ),
    ]
    # GPU lines only for customers whose exporter measured GPUs this month: the invoices of
    # everyone else stay as they were. No plan includes GPU-hours.
    for line, meter, price in (
        ("gpu", "gpu_hours", prices.gpu_hour),
        ("gpu_utilized", "gpu_utilized_hours", prices.gpu_utilized_hour),
    ):
        if meter in usage.totals:
            lines.append(InvoiceLine(line, unit(meter), total(meter), Decimal(0), price))
    for name, meter_config in sorted(pricing.meters.items()):
        lines.append(InvoiceLine(name, meter_config.unit, total(name), meter_config.included, meter_config.price))
    return Invoice(customer_id, month, terms.plan, pricing.currency, int(hours), base, lines)


def render_invoice(invoice: dict[str, Any]) -> str:
    """An invoice (as ``Invoice.to_dict`` gives it) as an aligned table for people."""
    header = ["meter", "unit", "used", "included", "overage", "unit price", "amount", "basis"]
    rows = [header] + [
        [
            line["meter"],
            line["unit"],
            line["used"],
            line["included"],
            line["overage"],
            line["unit_price"],
            line["amount"],
            line.get("basis", "usage"),
        ]
        for line in invoice["lines"]
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    body = "\n".join(
        "  ".join(
            cell.ljust(widths[i]) if i < 2 else cell if i == len(header) - 1 else cell.rjust(widths[i])
            for i, cell in enumerate(row)
        )
        for row in rows
    )
    for line in invoice["lines"]:
        if "usage_total" in line and "requests_total" in line:
            body += (
                f"\n{line['meter']} billed on {line['basis']}: month totals usage {line['usage_total']}, "
                f"requests {line['requests_total']} {line['unit']}s"
            )
    currency = invoice["currency"].upper()
    title = (
        f"invoice {invoice['customer_id']}  {invoice['month']}  plan {invoice['plan']}  "
        f"({invoice['hours_in_month']} hours)"
    )
    return (
        f"{title}\n{'base price'.ljust(widths[0])}  {invoice['base_price']} {currency}\n{body}\n"
        f"{'total'.ljust(widths[0])}  {invoice['total']} {currency}"
    )
