"""Pure pieces of delivery, table-driven: window arithmetic, backoff, Retry-After, report splitting."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from cluster_exporter.delivery.runner import ceil_to, due_window_ends, floor_to, initial_watermark, newest_due_end
from cluster_exporter.delivery.sender import idempotency_key, split_report
from cluster_exporter.delivery.state import SpoolEntry
from cluster_exporter.errors import UsageError
from cluster_exporter.report import UsageReport, build_report
from cluster_exporter.retry import backoff, parse_retry_after

H = timedelta(hours=1)


def t(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.mark.parametrize(
    ("moment", "length", "floor", "ceil"),
    [
        ("2025-11-20T03:05:00Z", H, "2025-11-20T03:00:00Z", "2025-11-20T04:00:00Z"),
        ("2025-11-20T03:00:00Z", H, "2025-11-20T03:00:00Z", "2025-11-20T03:00:00Z"),
        ("2025-11-20T03:59:59.999Z", H, "2025-11-20T03:00:00Z", "2025-11-20T04:00:00Z"),
        ("2025-11-20T03:05:00Z", 2 * H, "2025-11-20T02:00:00Z", "2025-11-20T04:00:00Z"),  # aligned to the epoch
        ("2025-11-20T01:00:00+02:00", H, "2025-11-19T23:00:00Z", "2025-11-19T23:00:00Z"),
    ],
)
def test_floor_and_ceil_to_window_boundaries(moment: str, length: timedelta, floor: str, ceil: str) -> None:
    assert floor_to(t(moment), length) == t(floor)
    assert ceil_to(t(moment), length) == t(ceil)


@pytest.mark.parametrize(
    ("now", "settle", "newest"),
    [
        ("2025-11-20T03:05:00Z", timedelta(minutes=2), "2025-11-20T03:00:00Z"),
        ("2025-11-20T03:01:59Z", timedelta(minutes=2), "2025-11-20T02:00:00Z"),  # 03:00 not settled yet
        ("2025-11-20T03:02:00Z", timedelta(minutes=2), "2025-11-20T03:00:00Z"),  # settled exactly now
    ],
)
def test_newest_due_end_waits_for_the_settle_delay(now: str, settle: timedelta, newest: str) -> None:
    assert newest_due_end(t(now), H, settle) == t(newest)


@pytest.mark.parametrize(
    ("watermark", "newest", "ends"),
    [
        ("2025-11-20T00:00:00Z", "2025-11-20T03:00:00Z", ["01", "02", "03"]),
        ("2025-11-20T03:00:00Z", "2025-11-20T03:00:00Z", []),
        ("2025-11-20T03:00:00Z", "2025-11-20T02:00:00Z", []),  # a clock moved back: nothing, never negative
    ],
)
def test_due_window_ends_are_oldest_first_after_the_watermark(watermark: str, newest: str, ends: list[str]) -> None:
    expected = [t(f"2025-11-20T{h}:00:00Z") for h in ends]
    assert due_window_ends(t(watermark), t(newest), H) == expected


def test_initial_watermark_is_the_current_window_or_backfill_from() -> None:
    now = t("2025-11-20T03:05:00Z")
    assert initial_watermark(now, H, None) == t("2025-11-20T03:00:00Z")
    assert initial_watermark(now, H, t("2025-11-19T00:00:00Z")) == t("2025-11-19T00:00:00Z")
    with pytest.raises(UsageError, match="not on a window boundary"):
        initial_watermark(now, H, t("2025-11-19T00:30:00Z"))


@pytest.mark.parametrize(
    ("attempt", "jitter", "wait"),
    [(1, 0.0, 1.0), (2, 0.0, 2.0), (3, 0.5, 4.5), (7, 0.0, 60.0), (200, 0.99, 60.0)],
)
def test_backoff_doubles_with_jitter_up_to_the_maximum(attempt: int, jitter: float, wait: float) -> None:
    assert backoff(attempt, 1.0, 60.0, jitter) == pytest.approx(wait)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("7", 7.0),
        (" 2 ", 2.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("Thu, 20 Nov 2025 03:05:30 GMT", 30.0),
        ("Thu, 20 Nov 2025 03:04:00 GMT", 0.0),  # a date in the past: retry now
        ("soon", None),
    ],
)
def test_retry_after_as_seconds_or_http_date(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, t("2025-11-20T03:05:00Z")) == seconds


def _report(customers: int) -> UsageReport:
    usage = {f"cust_{i:03d}": {"namespaces": [f"ns-{i}"], "cpu_hours": 0.5} for i in range(customers)}
    return build_report("k8s-1", t("2025-11-20T00:00:00Z"), t("2025-11-20T01:00:00Z"), usage)


@pytest.mark.parametrize(
    ("customers", "per_part", "sizes"), [(0, 2, [0]), (4, 2, [2, 2]), (5, 2, [2, 2, 1]), (3, 5, [3])]
)
def test_split_report_into_disjoint_parts(customers: int, per_part: int, sizes: list[int]) -> None:
    report = _report(customers)
    parts = split_report(report, per_part)
    assert [len(p.usage) for p in parts] == sizes
    assert [(p.part, p.parts) for p in parts] == [(n, len(sizes)) for n in range(1, len(sizes) + 1)]
    assert {p.report_id for p in parts} == {report.report_id}
    assert [u.customer_id for p in parts for u in p.usage] == [f"cust_{i:03d}" for i in range(customers)]
    entry = SpoolEntry.from_report(report, per_part, built_at=t("2025-11-20T01:05:00Z"))
    rid = report.report_id
    expected_keys = [rid] if len(sizes) == 1 else [f"{rid}/{n}" for n in range(1, len(sizes) + 1)]
    assert [entry.key(n) for n in range(1, entry.parts + 1)] == expected_keys
    assert idempotency_key(rid, 1, 1) == rid
