"""The one parser of times given by people and peers: RFC 3339 with a timezone, to UTC."""

from __future__ import annotations

from datetime import UTC, datetime


class BadTime(ValueError):
    """Not an RFC 3339 time with a timezone (the message says which and gives an example)."""


def parse_rfc3339(text: str) -> datetime:
    """``2025-11-20T02:00:00Z`` (or with an offset) as an aware datetime in UTC; BadTime otherwise.

    A time without a timezone is refused rather than guessed, and so is one that cannot be moved
    to UTC (``0001-01-01T00:00:00+01:00`` lies before year 1 in UTC).
    """
    if not isinstance(text, str):
        raise BadTime(f"not a time: {text!r} (use RFC 3339, e.g. 2025-11-20T02:00:00Z)")
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadTime(f"not a time: {text[:60]!r} (use RFC 3339, e.g. 2025-11-20T02:00:00Z)") from None
    if moment.tzinfo is None:
        raise BadTime(f"time {text[:60]!r} has no timezone (add Z for UTC)")
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise BadTime(f"time {text[:60]!r} is out of range in UTC") from None
