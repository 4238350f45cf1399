"""The one retry policy for every dependency called over HTTP: Prometheus, the billing API, the Kubernetes API.

What is retried is kopf's rule (``clients/api.py``): a 5xx, a 429 (honouring Retry-After), a timeout
or a connection error. Any other 4xx is final: asking again cannot turn a bad query, an invalid
report or a missing permission into a good one. Each caller maps its own client's failures onto
this rule (``retryable_status``, ``Retryable``) in the one module that talks to the dependency, and
keeps its own numbers in a ``Policy``: Prometheus a number of attempts, delivery a time budget and
a stop flag, the Kubernetes API a few quick attempts inside its callers' deadlines.

The wait after failed attempt n is ``initial * 2**(n-1)`` plus up to ``initial`` of jitter, at most
``maximum`` (jitter keeps many clusters from retrying in step), and at least the Retry-After asked
for, up to ``retry_after_max``. Every retry is logged as one line,
``<label>: attempt 2/5 failed (<why>); will retry in 4.0s``. Sleep, clock and jitter are arguments,
so tests drive them.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


def retryable_status(status: int) -> bool:
    """True for the statuses another attempt may fix: 408 (the request was too slow this time),
    429 and every 5xx."""
    return status in (408, 429) or status >= 500


def parse_retry_after(header: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date; None if absent or bad."""
    if header is None:
        return None
    text = header.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def backoff(attempt: int, initial: float, longest: float, jitter: float) -> float:
    """Wait after failed attempt ``attempt`` (1-based): ``initial * 2**(attempt-1)`` plus up to ``initial`` of
    jitter (``jitter`` in [0, 1)), at most ``longest``."""
    return min(longest, initial * 2 ** min(attempt - 1, 32) + initial * jitter)


class Retryable(Exception):
    """One attempt failed in a way the next one may not (5xx, 429, timeout, connection error).

    ``retry_after`` is the server's Retry-After in seconds, if it sent one; ``outcome`` a label for
    the caller's metrics (e.g. ``http_5xx``)."""

    def __init__(self, message: str, *, retry_after: float | None = None, outcome: str = "") -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.outcome = outcome


class GaveUp(Exception):
    """No further attempt: out of attempts, the next wait would pass the deadline, or ``may_continue``
    said no after a failure. ``last`` is the final failure."""

    def __init__(self, last: Retryable, attempts: int) -> None:
        super().__init__(f"{last} (gave up after {attempts} attempt{'s' if attempts != 1 else ''})")
        self.last = last
        self.attempts = attempts


class Stopped(Exception):
    """``may_continue`` said no before an attempt (a stop request, a lost Lease)."""

    def __init__(self, attempts: int) -> None:
        super().__init__(f"stopped after {attempts} attempts")
        self.attempts = attempts


@dataclass(frozen=True)
class Policy:
    """A caller's numbers: the backoff, the longest Retry-After honoured, and how many attempts at most."""

    initial: float  # seconds after the first failure, doubling after each one
    maximum: float  # the longest wait from the backoff (jitter included)
    retry_after_max: float  # the longest Retry-After honoured
    attempts: int | None = None  # None: as many as the deadline allows
    log_level: int = logging.INFO  # of the "will retry" line

    def delay(self, attempt: int, jitter: float, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt ``attempt``: the backoff, or the Retry-After if longer."""
        wait = backoff(attempt, self.initial, self.maximum, jitter)
        if retry_after is not None:
            return max(wait, min(retry_after, self.retry_after_max))
        return wait


@dataclass
class _Round:
    policy: Policy
    label: str
    deadline: float | None
    monotonic: Callable[[], float]
    jitter: Callable[[], float]
    logger: logging.Logger
    attempts: int = 0

    def wait_after(self, failure: Retryable, may_continue: Callable[[], bool]) -> float:
        """Seconds to wait before the next attempt, after one failed; GaveUp when there is none."""
        policy = self.policy
        if policy.attempts is not None and self.attempts >= policy.attempts:
            raise GaveUp(failure, self.attempts) from failure
        wait = policy.delay(self.attempts, self.jitter(), failure.retry_after)
        if not may_continue() or (self.deadline is not None and self.monotonic() + wait > self.deadline):
            raise GaveUp(failure, self.attempts) from failure
        of = f"/{policy.attempts}" if policy.attempts is not None else ""
        self.logger.log(
            policy.log_level,
            "%s: attempt %d%s failed (%s); will retry in %.1fs",
            self.label,
            self.attempts,
            of,
            failure,
            wait,
        )
        return wait


def _always() -> bool:
    return True


async def retry_async(
    attempt: Callable[[], Awaitable[T]],
    policy: Policy,
    *,
    label: str,
    deadline: float | None = None,
    may_continue: Callable[[], bool] = _always,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    monotonic: Callable[[], float] = time.monotonic,
    jitter: Callable[[], float] = random.random,
    logger: logging.Logger = log,
) -> T:
    """``await attempt()`` until it returns, raises something other than ``Retryable`` (final, passed
    on as it is), or the policy gives up (``GaveUp``). ``may_continue`` is asked before every attempt
    (``Stopped`` when it says no) and after every failure; ``deadline`` is on the ``monotonic`` clock."""
    round_ = _Round(policy, label, deadline, monotonic, jitter, logger)
    while True:
        if not may_continue():
            raise Stopped(round_.attempts)
        round_.attempts += 1
        try:
            return await attempt()
        except Retryable as failure:
            wait = round_.wait_after(failure, may_continue)
        await sleep(wait)


def retry_sync(
    attempt: Callable[[], T],
    policy: Policy,
    *,
    label: str,
    deadline: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
    jitter: Callable[[], float] = random.random,
    logger: logging.Logger = log,
) -> T:
    """The blocking twin of ``retry_async`` (for the ``kubernetes`` client, which runs in worker threads)."""
    round_ = _Round(policy, label, deadline, monotonic, jitter, logger)
    while True:
        round_.attempts += 1
        try:
            return attempt()
        except Retryable as failure:
            wait = round_.wait_after(failure, _always)
        sleep(wait)
