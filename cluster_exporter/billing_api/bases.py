"""What a plan bills CPU and memory on: usage, requests, or the larger of the two in each hour.

Platforms sell reservations as well as usage: a plan of "1 vCPU, 2 GB" may mean what the
customer's containers used, what its running pods requested, or, as OpenCost allocates, the
larger of the two. A plan chooses per resource (``cpu_basis``, ``memory_basis``):

- ``usage``: the month's ``cpu_hours`` (``memory_gb_hours``), as before;
- ``requests``: the month's ``cpu_request_hours`` (``memory_request_gb_hours``);
- ``max``: for each hour, max(usage, requests) of the customer summed over its clusters, then
  summed over the month. A customer that used more than it requested in some hours and less in
  others pays for more than either total.

The included amount (vCPU x hours in the month, GB x hours) is subtracted from that quantity
as for usage. A request meter is optional in a report: an exporter that does not meter requests
(older, or ``metering.requests`` off) leaves it out, and then nothing says what was requested.
Billing such an hour as 0 would bill short, so a plan on ``requests`` or ``max`` refuses the
invoice instead (409), naming the customer, the first hour and cluster without the meter, and
the fix.

Pure: rows in, quantities out; the storage reads the rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Literal

from ..report import window_label
from .decimals import EXACT
from .errors import RequestRejected

Basis = Literal["usage", "requests", "max"]
# How an invoice line names its basis.
LABELS: dict[str, str] = {"usage": "usage", "requests": "requests", "max": "max(usage, requests)"}
# resource -> (usage meter, request meter)
RESOURCES: dict[str, tuple[str, str]] = {
    "cpu": ("cpu_hours", "cpu_request_hours"),
    "memory": ("memory_gb_hours", "memory_request_gb_hours"),
}
# Which exporter setting turns a request meter on (named in the refusal).
REQUEST_SETTING = "metering.requests"

UsageRow = tuple[int, str, str, Decimal]  # hour (Unix seconds), cluster, meter, amount


@dataclass(frozen=True)
class MonthUsage:
    """A customer's stored usage in a month: totals, hourly sums over clusters, and who reported what."""

    totals: dict[str, Decimal] = field(default_factory=dict)
    hourly: dict[int, dict[str, Decimal]] = field(default_factory=dict)
    # (hour, cluster) -> the meters that cluster's report carried for the customer in that hour
    reported: dict[tuple[int, str], set[str]] = field(default_factory=dict)

    @classmethod
    def from_rows(cls, rows: list[UsageRow]) -> MonthUsage:
        """Sum stored rows (one per customer, hour, meter and cluster), never rounding."""
        month = cls()
        for hour, cluster, meter, amount in rows:
            month.totals[meter] = EXACT.add(month.totals.get(meter, Decimal(0)), amount)
            meters = month.hourly.setdefault(hour, {})
            meters[meter] = EXACT.add(meters.get(meter, Decimal(0)), amount)
            month.reported.setdefault((hour, cluster), set()).add(meter)
        return month

    def total(self, meter: str) -> Decimal:
        """The month's total of ``meter`` (0 when no row has it)."""
        return self.totals.get(meter, Decimal(0))

    def first_without(self, meter: str) -> tuple[int, str] | None:
        """The earliest (hour, cluster) whose report has usage of the customer but not ``meter``."""
        missing = [key for key, meters in self.reported.items() if meter not in meters]
        return min(missing) if missing else None


@dataclass(frozen=True)
class Billed:
    """The quantity a CPU or memory line bills, on which basis, and the totals it came from."""

    basis: Basis
    quantity: Decimal
    usage: Decimal
    requests: Decimal | None  # None: the basis is usage (the request meter is not needed)


def billed(month: MonthUsage, resource: str, basis: Basis, customer_id: str, plan: str) -> Billed:
    """What ``resource`` ("cpu" or "memory") bills in ``month`` under ``basis``; 409 when requests are missing."""
    usage_meter, request_meter = RESOURCES[resource]
    usage = month.total(usage_meter)
    if basis == "usage":
        return Billed(basis, usage, usage, None)
    gap = month.first_without(request_meter)
    if gap is not None:
        hour, cluster = gap
        start = datetime.fromtimestamp(hour, UTC)
        raise RequestRejected(
            409,
            f"customer {customer_id}: plan {plan} bills {resource} on {LABELS[basis]}, but the usage of hour "
            f"{window_label(start, start + timedelta(hours=1))} from cluster {cluster} has no {request_meter} "
            f"(its exporter did not meter requests); not billed as 0: enable request metering on that exporter "
            f"(setting {REQUEST_SETTING}), and bill hours already stored without it on usage ({resource}_basis)",
        )
    requests = month.total(request_meter)
    if basis == "requests":
        return Billed(basis, requests, usage, requests)
    quantity = Decimal(0)
    for meters in month.hourly.values():
        larger = max(meters.get(usage_meter, Decimal(0)), meters.get(request_meter, Decimal(0)))
        quantity = EXACT.add(quantity, larger)
    return Billed(basis, quantity, usage, requests)
