"""Exact decimals at the edge: one rule for amounts, prices and limits, the same on both databases.

Every number the API takes (usage amounts, prices, plan limits) is checked here once: finite, in
range, and with at most ``PLACES`` decimal places once trailing zeros are dropped. Without the
last rule SQLite (amounts as TEXT) stored what PostgreSQL's NUMERIC refused (``1e-20000``, 20,000
decimals), and two bodies that differ only beyond Decimal's 28 significant digits looked equal.
Twelve places is where a multi-hour window's hourly shares are cut, so nothing finer could be
billed anyway. A checked value is canonical (no exponent, no trailing zeros), so its text is
what is stored and what the content digest covers.

Arithmetic on checked values (sums over a month, prices times overage) runs in ``EXACT``, whose
precision is far above what bounded values can need, so it never rounds or traps.
"""

from __future__ import annotations

from decimal import Context, Decimal

PLACES = 12
# 16 integer digits + 12 places per value; sums of millions of them and products with prices
# stay far below 80 digits.
EXACT = Context(prec=80)
_CHECK = Context(prec=40)


def checked(value: Decimal, maximum: Decimal, places: int = PLACES) -> Decimal:
    """``value`` in canonical form when it is finite, in [0, maximum] and has at most ``places`` decimals.

    Raises ValueError with a message fit for a 422. Cheap whatever the value's length or exponent:
    the range is checked before anything proportional to the exponent is done.
    """
    if not value.is_finite():
        raise ValueError("must be finite")
    if value < 0:
        raise ValueError("must be greater than or equal to 0")
    if value > maximum:
        raise ValueError(f"must be less than or equal to {maximum}")
    if not value:
        return Decimal(0)
    if value.adjusted() < -places:  # its first digit lies beyond the last place allowed
        raise ValueError(f"must have at most {places} decimal places")
    # At most 16 + places digits remain: exact in _CHECK.
    rounded = value.quantize(Decimal(1).scaleb(-places), context=_CHECK)
    if rounded != value:
        raise ValueError(f"must have at most {places} decimal places")
    return plain(rounded)


def plain(value: Decimal) -> Decimal:
    """A checked value without trailing zeros and without a positive exponent (``1E+3`` -> ``1000``)."""
    normal = value.normalize(EXACT)
    exponent = normal.as_tuple().exponent
    return normal.quantize(Decimal(1), context=EXACT) if isinstance(exponent, int) and exponent > 0 else normal


def text(value: Decimal) -> str:
    """The canonical text of a checked value: stored as is, and hashed into the content digest."""
    return format(plain(value), "f")
