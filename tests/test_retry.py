"""The shared retry policy (cluster_exporter/retry.py), table-driven, with injected sleep, clock and jitter."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from cluster_exporter.retry import GaveUp, Policy, Retryable, Stopped, retry_async, retry_sync, retryable_status

POLICY = Policy(initial=1.0, maximum=8.0, retry_after_max=30.0, attempts=5)


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (500, True),
        (502, True),
        (503, True),
        (429, True),
        (408, True),
        (400, False),
        (401, False),
        (403, False),
        (404, False),
    ],
)
def test_what_is_retryable(status: int, retryable: bool) -> None:
    assert retryable_status(status) is retryable


@pytest.mark.parametrize(
    ("attempt", "jitter", "retry_after", "wait"),
    [
        (1, 0.0, None, 1.0),
        (2, 0.5, None, 2.5),
        (4, 0.0, None, 8.0),  # capped
        (9, 0.9, None, 8.0),  # capped, jitter included
        (1, 0.0, 20.0, 20.0),  # Retry-After longer than the backoff wins
        (3, 0.0, 0.5, 4.0),  # ... shorter does not
        (1, 0.0, 900.0, 30.0),  # honoured up to retry_after_max
    ],
)
def test_delay(attempt: int, jitter: float, retry_after: float | None, wait: float) -> None:
    assert POLICY.delay(attempt, jitter, retry_after) == pytest.approx(wait)


class Script:
    """An attempt function failing with ``failures`` in turn, then answering "ok"."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


def test_retries_until_success_and_logs_each_retry(caplog: Any) -> None:
    sleeps: list[float] = []
    script = Script(Retryable("HTTP 503"), Retryable("HTTP 429", retry_after=4.0))
    with caplog.at_level(logging.INFO, logger="cluster_exporter.retry"):
        assert retry_sync(script, POLICY, label="thing", sleep=sleeps.append, jitter=lambda: 0.0) == "ok"
    assert sleeps == [1.0, 4.0]
    assert caplog.messages == [
        "thing: attempt 1/5 failed (HTTP 503); will retry in 1.0s",
        "thing: attempt 2/5 failed (HTTP 429); will retry in 4.0s",
    ]


def test_gives_up_after_the_attempts() -> None:
    sleeps: list[float] = []
    script = Script(*(Retryable(f"HTTP 50{i}") for i in range(9)))
    with pytest.raises(GaveUp, match=r"^HTTP 504 \(gave up after 5 attempts\)$") as caught:
        retry_sync(script, POLICY, label="thing", sleep=sleeps.append, jitter=lambda: 0.0)
    assert caught.value.attempts == 5 == script.calls
    assert sleeps == [1.0, 2.0, 4.0, 8.0]


def test_a_final_error_is_not_retried() -> None:
    script = Script(ValueError("HTTP 400"))
    with pytest.raises(ValueError, match="HTTP 400"):
        retry_sync(script, POLICY, label="thing", sleep=lambda s: None)
    assert script.calls == 1


def test_no_wait_past_the_deadline() -> None:
    now = [100.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    policy = Policy(initial=1.0, maximum=8.0, retry_after_max=30.0)  # no attempt limit: the deadline decides
    with pytest.raises(GaveUp) as caught:
        retry_sync(
            Script(*(Retryable("down") for _ in range(20))),
            policy,
            label="thing",
            deadline=108.0,
            sleep=sleep,
            monotonic=lambda: now[0],
            jitter=lambda: 0.0,
        )
    assert sleeps == [1.0, 2.0, 4.0]  # then 8s would end at 115 > 108
    assert caught.value.attempts == 4


def test_async_stops_before_an_attempt_and_after_a_failure() -> None:
    allowed = [True]

    async def attempt() -> str:
        allowed[0] = False  # e.g. the Lease was lost while the request was in flight
        raise Retryable("HTTP 503")

    async def no_sleep(seconds: float) -> None:
        raise AssertionError("must not wait")

    async def scenario() -> None:
        with pytest.raises(GaveUp):
            await retry_async(attempt, POLICY, label="x", may_continue=lambda: allowed[0], sleep=no_sleep)
        with pytest.raises(Stopped) as stopped:
            await retry_async(attempt, POLICY, label="x", may_continue=lambda: False, sleep=no_sleep)
        assert stopped.value.attempts == 0

    asyncio.run(scenario())
