"""Properties of the report model's parsing (hypothesis): what any body becomes, and what a valid one means.

- whatever the bytes, ``parse_report`` returns a report or refuses it with a 400, 413 or 422 and a
  one-line message: never another exception (which the server would answer 500, and the
  exporter would retry forever);
- a valid report means exactly its numbers: amounts read back equal to the text sent, whatever
  the spelling (``1.5``, ``1.50``, ``15E-1``), and the content digest is the same for every
  spelling, key order and customer order, and different as soon as one amount differs;
- a window's hourly shares are non-negative, have at most 12 decimals and add up exactly;
- an optional meter (GPUs, requests) left out stays out: never read as 0, never a row.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cluster_exporter.billing_api.decimals import EXACT, PLACES, checked, text
from cluster_exporter.billing_api.errors import RequestRejected
from cluster_exporter.billing_api.models import MAX_AMOUNT, OPTIONAL_METERS, ReportLimits, parse_report
from cluster_exporter.billing_api.pricing import BUILTIN_METERS
from cluster_exporter.report import format_time, report_id

NOW = datetime(2025, 12, 1, tzinfo=UTC)
CLUSTER = "k8s-us-east-1"
AMOUNTS = ("cpu_hours", "memory_gb_hours", "storage_gb_hours")
COUNTS = ("network_bytes_sent", "network_bytes_received", "http_requests")
OPTIONAL = tuple(sorted(OPTIONAL_METERS))  # amounts too, each present or absent
LIMITS = ReportLimits(max_customers=20, max_rows=20 * 10 * 24)
SETTINGS = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def parse(body: bytes) -> Any:
    return parse_report(body, BUILTIN_METERS, NOW, LIMITS)


def assert_refused_properly(body: bytes) -> None:
    """A report, or a 400/413/422 with a one-line message; anything else fails the test."""
    try:
        parse(body)
    except RequestRejected as exc:
        assert exc.status in (400, 413, 422)
        assert str(exc) and "\n" not in str(exc)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


@SETTINGS
@given(st.binary(max_size=400))
def test_any_bytes_are_parsed_or_refused_with_a_4xx(body: bytes) -> None:
    assert_refused_properly(body)


@SETTINGS
@given(json_values)
def test_any_json_is_parsed_or_refused_with_a_4xx(value: Any) -> None:
    assert_refused_properly(json.dumps(value).encode())


# -- valid reports, built as text -----------------------------------------------------------------

places = st.integers(min_value=0, max_value=PLACES)
amounts = st.builds(
    lambda digits, exponent: Decimal(digits).scaleb(-exponent),
    st.integers(min_value=0, max_value=10**15),
    places,
).filter(lambda d: d <= MAX_AMOUNT)
counts = st.integers(min_value=0, max_value=10**18)


@st.composite
def spelled(draw: st.DrawFn, amount: Decimal) -> str:
    """One of the many JSON spellings of ``amount``."""
    plain = format(amount, "f")
    variants = [plain, format(amount, "E")]
    if "." in plain:
        variants.append(plain + "0" * draw(st.integers(min_value=1, max_value=30)))
    else:
        variants.append(plain + "." + "0" * draw(st.integers(min_value=1, max_value=30)))
    return draw(st.sampled_from(variants))


records = st.fixed_dictionaries(
    {
        "namespaces": st.lists(st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True), max_size=3),
        **{meter: amounts for meter in AMOUNTS},
        **{meter: counts for meter in COUNTS},
    },
    optional={meter: amounts for meter in OPTIONAL},
)
reports = st.tuples(
    st.dictionaries(st.from_regex(r"cust_[a-z0-9]{1,8}", fullmatch=True), records, min_size=0, max_size=8),
    st.integers(min_value=1, max_value=24),  # hours
    st.integers(min_value=0, max_value=24 * 20),  # hours before NOW the window ends
)


def as_text(customers: dict[str, Any], hours: int, back: int, draw: st.DrawFn, shuffle: bool) -> bytes:
    """The report as JSON text, amounts spelled by ``draw``, keys and customers in any order."""
    end = NOW - timedelta(hours=back)
    start = end - timedelta(hours=hours)
    items = list(customers.items())
    if shuffle:
        items = draw(st.permutations(items))
    usage = []
    for customer, record in items:
        fields = [f'"customer_id": "{customer}"', f'"namespaces": {json.dumps(record["namespaces"])}']
        fields += [f'"{meter}": {draw(spelled(record[meter]))}' for meter in AMOUNTS + OPTIONAL if meter in record]
        fields += [f'"{meter}": {record[meter]}' for meter in COUNTS]
        if shuffle:
            fields = draw(st.permutations(fields))
        usage.append("{" + ", ".join(fields) + "}")
    envelope = [
        f'"report_id": "{report_id(CLUSTER, start, end)}"',
        f'"cluster_id": "{CLUSTER}"',
        f'"window_start": "{format_time(start)}"',
        f'"window_end": "{format_time(end)}"',
        '"schema_version": 1',
        '"usage": [' + ", ".join(usage) + "]",
    ]
    if shuffle:
        envelope = draw(st.permutations(envelope))
    return ("{" + ", ".join(envelope) + "}").encode()


@SETTINGS
@given(reports, st.data())
def test_a_valid_report_means_exactly_its_numbers(report: Any, data: st.DataObject) -> None:
    customers, hours, back = report
    first = parse(as_text(customers, hours, back, data.draw, shuffle=False))
    again = parse(as_text(customers, hours, back, data.draw, shuffle=True))
    for parsed in (first, again):
        assert {r.customer_id: r.amounts() for r in parsed.usage} == {
            c: {m: Decimal(v) for m, v in record.items() if m != "namespaces"} for c, record in customers.items()
        }
    assert first.content_digest() == again.content_digest()


@SETTINGS
@given(reports, st.data())
def test_one_different_amount_is_a_different_digest(report: Any, data: st.DataObject) -> None:
    customers, hours, back = report
    if not customers:
        return
    customer = data.draw(st.sampled_from(sorted(customers)))
    record = dict(customers[customer])
    meter = data.draw(st.sampled_from(AMOUNTS + COUNTS + tuple(m for m in OPTIONAL if m in record)))
    step = Decimal(1).scaleb(-PLACES) if meter in AMOUNTS + OPTIONAL else 1
    old = record[meter]
    record[meter] = old - step if old >= step else old + step
    changed = {**customers, customer: record}
    before = parse(as_text(customers, hours, back, data.draw, shuffle=False))
    after = parse(as_text(changed, hours, back, data.draw, shuffle=False))
    assert before.content_digest() != after.content_digest()


@SETTINGS
@given(reports, st.data())
def test_hourly_shares_are_exact(report: Any, data: st.DataObject) -> None:
    customers, hours, back = report
    parsed = parse(as_text(customers, hours, back, data.draw, shuffle=False))
    sums: dict[tuple[str, str], Decimal] = {}
    rows = 0
    for customer, _hour, meter, share in parsed.hourly_rows():
        assert share >= 0 and -share.as_tuple().exponent <= PLACES  # type: ignore[operator]
        sums[customer, meter] = EXACT.add(sums.get((customer, meter), Decimal(0)), share)
        rows += 1
    assert rows == parsed.row_count == sum(len(record) - 1 for record in customers.values()) * hours
    for (customer, meter), total in sums.items():
        assert total == Decimal(customers[customer][meter])


@SETTINGS
@given(reports, st.data())
def test_past_the_limits_413(report: Any, data: st.DataObject) -> None:
    customers, hours, back = report
    body = as_text(customers, hours, back, data.draw, shuffle=False)
    small = ReportLimits(max_customers=3, max_rows=3 * 6 * 4)
    meters = sum(len(record) - 1 for record in customers.values())  # every meter but "namespaces"
    try:
        parsed = parse_report(body, BUILTIN_METERS, NOW, small)
    except RequestRejected as exc:
        assert exc.status == 413
        assert len(customers) > 3 or meters * hours > small.max_rows
    else:
        assert len(customers) <= 3 and parsed.row_count == meters * hours <= small.max_rows


# -- the one rule for decimals ------------------------------------------------------------------


@SETTINGS
@given(st.decimals(allow_nan=True, allow_infinity=True) | amounts)
def test_checked_decimals_are_exact_or_refused(value: Decimal) -> None:
    try:
        result = checked(value, MAX_AMOUNT)
    except ValueError as exc:
        assert str(exc).startswith("must ")
        return
    assert result == value and 0 <= result <= MAX_AMOUNT
    assert Decimal(text(result)) == value and "E" not in text(result)
    assert -min(result.as_tuple().exponent, 0) <= PLACES  # type: ignore[operator,type-var]
