"""Async PromQL over HTTP: bounded concurrency, timeouts, retries, strict answers.

An answer is streamed, item by item as its body arrives, into a sink: a ``MatrixSink`` takes each
series of a matrix answer, a ``VectorSink`` each element of a vector answer. The client knows
nothing of what the sinks do with them (metering's fold implements them); nothing of an answer is
kept here.

Every failure becomes a ``PrometheusError`` naming the query: an unreachable server, an HTTP
error, a body that is not the API's JSON, a result of the wrong type, a warning (Thanos and
Mimir warn on partial answers), or a NaN/Inf value. Only 5xx, 408, 429, timeouts and connection errors
are retried; a 4xx (a bad query) is final.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import dataclasses
import json
import logging
import math
import operator
import re
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import aiohttp
import msgspec

from ..errors import PrometheusError, clip
from ..retry import GaveUp, Policy, Retryable, parse_retry_after, retry_async, retryable_status
from ..settings import PrometheusSettings
from .answer_stream import Decode, MalformedAnswer, stream_result_items

log = logging.getLogger(__name__)

OnQuery = Callable[[str, float, bool], None]  # (query name, seconds, ok)


# Of an error's body only this much is read: enough for Prometheus' error message, never an
# endless body.
ERROR_BODY_BYTES = 64 * 1024


class ByteBudget:
    """Bytes read against a limit; past it, reading stops with a PrometheusError naming the setting."""

    def __init__(self, limit: int, setting: str) -> None:
        self.limit, self.setting, self.spent = limit, setting, 0

    def spend(self, n: int, query: str) -> None:
        """Count ``n`` more bytes of query ``query``'s answer."""
        self.spent += n
        if self.spent > self.limit:
            raise PrometheusError(
                f"query {query}: answers larger than {self.limit} bytes ({self.setting}); refusing to read on"
            )


_WINDOW_BUDGET: contextvars.ContextVar[ByteBudget | None] = contextvars.ContextVar("window_budget", default=None)


class NamedQuery(Protocol):
    """What the client needs of a query: its name (for errors and metrics), PromQL and time."""

    @property
    def name(self) -> str: ...
    @property
    def expr(self) -> str: ...
    @property
    def at(self) -> float: ...


class MatrixSink(Protocol):
    """Where a matrix answer goes: each series' labels and its (time, value) samples, in order."""

    def series(self, labels: dict[str, str], samples: list[tuple[float, float]]) -> None: ...


class VectorSink(Protocol):
    """Where a vector answer goes: each element's labels and its finite value."""

    def sample(self, labels: dict[str, str], value: float) -> None: ...


class _Collect:
    """A VectorSink that keeps the answer (small answers only: ``PrometheusClient.vector``)."""

    def __init__(self) -> None:
        self.samples: list[Sample] = []

    def sample(self, labels: dict[str, str], value: float) -> None:
        self.samples.append(Sample(labels, value))


@dataclass(frozen=True)
class _Query:
    name: str
    expr: str
    at: float


# 0.5 s, 1 s, 2 s ... up to 10 s with jitter; a Retry-After up to 60 s. The number of attempts is
# the setting prometheus.attempts.
RETRY = Policy(initial=0.5, maximum=10.0, retry_after_max=60.0)


@dataclass(frozen=True)
class Sample:
    """One element of an instant vector: labels and a finite value."""

    labels: dict[str, str]
    value: float


def _headers(settings: PrometheusSettings) -> dict[str, str]:
    encoding = "gzip" if settings.compression else "identity"
    headers = {"Accept": "application/json", "Accept-Encoding": encoding, **settings.headers}
    token = settings.bearer_token
    if settings.bearer_token_file is not None:
        try:
            token = settings.bearer_token_file.read_text().strip()
        except OSError as exc:
            raise PrometheusError(f"cannot read prometheus.bearer_token_file: {exc.strerror}") from exc
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if settings.basic_auth_username is not None:
        pair = f"{settings.basic_auth_username}:{settings.basic_auth_password or ''}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    return headers


def _ssl(settings: PrometheusSettings) -> ssl.SSLContext | bool:
    if settings.insecure_skip_verify:
        return False
    if settings.ca_file is not None:
        try:
            return ssl.create_default_context(cafile=str(settings.ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise PrometheusError(f"cannot load prometheus.ca_file {settings.ca_file}: {exc}") from exc
    return True


class PrometheusClient:
    """``async with PrometheusClient(settings) as prom: await prom.vector(name, expr, at)``."""

    def __init__(self, settings: PrometheusSettings, on_query: OnQuery | None = None) -> None:
        self.settings = settings
        self._on_query = on_query
        self._semaphore = asyncio.Semaphore(settings.max_concurrency)
        self._session: aiohttp.ClientSession | None = None
        self.requests_sent = 0

    async def __aenter__(self) -> PrometheusClient:
        self._session = aiohttp.ClientSession(
            headers=_headers(self.settings),
            timeout=aiohttp.ClientTimeout(total=self.settings.timeout.total_seconds()),
            connector=aiohttp.TCPConnector(ssl=_ssl(self.settings), limit=self.settings.max_concurrency),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def vector(self, name: str, expr: str, at: float) -> list[Sample]:
        """Evaluate an instant query that must answer a vector of finite values (kept whole:
        for small answers)."""
        collect = _Collect()
        await self.stream_vector(_Query(name, expr, at), collect)
        return collect.samples

    async def stream_matrix(self, query: NamedQuery, into: MatrixSink) -> int:
        """Evaluate a range-vector selector, streaming each series into ``into`` while the body
        arrives (as stream_vector). Returns the number of series."""
        on_item, fast = matrix_items(query.name, into)
        return await self._fold(query.name, query.expr, query.at, "matrix", on_item, fast)

    async def stream_vector(self, query: NamedQuery, into: VectorSink) -> int:
        """Evaluate an instant query, streaming each element into ``into`` while the body arrives.

        Nothing of the answer is kept: one network chunk and one sample at a time (a
        100,000-row vector never exists whole, as text or as objects). On any error the caller's
        window fails as a whole, so samples already handed over do not matter; an answer cut off
        after samples were handed over is not retried. Returns the number of samples.
        """
        on_item, fast = vector_items(query.name, into)
        return await self._fold(query.name, query.expr, query.at, "vector", on_item, fast)

    async def _fold(
        self, name: str, expr: str, at: float, result_type: str, on_item: Callable[[Any], None], fast: Decode | None
    ) -> int:
        """Stream the answer's result items through ``on_item``; check its type; count them."""
        count = 0

        def counted(item: Any) -> None:
            nonlocal count
            on_item(item)
            count += 1

        data = await self._query(name, expr, at, counted, fast if self.settings.fast_decoder else None)
        if data.get("resultType") != result_type:
            raise PrometheusError(f"query {name}: expected a {result_type}, got {data.get('resultType')!r}")
        if data.get("result") != []:
            raise PrometheusError(f"query {name}: malformed result")
        return count

    def _spender(self, name: str) -> Callable[[int], None]:
        """``spend(n)``: count n bytes of query ``name``'s answer against its own budget
        (prometheus.max_answer_bytes) and the window's (``window_budget``)."""
        answer = ByteBudget(self.settings.max_answer_bytes, "prometheus.max_answer_bytes")
        window = _WINDOW_BUDGET.get()

        def spend(n: int) -> None:
            answer.spend(n, name)
            if window is not None:
                window.spend(n, name)

        return spend

    @contextlib.contextmanager
    def window_budget(self) -> Iterator[ByteBudget]:
        """Count every answer read inside the block (and in the tasks it starts) against one
        budget of prometheus.max_window_bytes."""
        budget = ByteBudget(self.settings.max_window_bytes, "prometheus.max_window_bytes")
        token = _WINDOW_BUDGET.set(budget)
        try:
            yield budget
        finally:
            _WINDOW_BUDGET.reset(token)

    async def _query(
        self, name: str, expr: str, at: float, on_item: Callable[[Any], None] | None = None, fast: Decode | None = None
    ) -> dict[str, Any]:
        started = time.monotonic()
        ok = False
        try:
            async with self._semaphore:
                result = await self._with_retries(name, expr, at, on_item, fast)
            ok = True
            return result
        finally:
            if self._on_query is not None:
                self._on_query(name, time.monotonic() - started, ok)

    async def _with_retries(
        self, name: str, expr: str, at: float, on_item: Callable[[Any], None] | None, fast: Decode | None
    ) -> dict[str, Any]:
        policy = dataclasses.replace(RETRY, attempts=self.settings.attempts)
        try:
            return await retry_async(
                lambda: self._post(name, expr, at, on_item, fast), policy, label=f"query {name}", logger=log
            )
        except GaveUp as exc:
            raise PrometheusError(f"query {name}: {exc}") from exc

    async def _post(
        self, name: str, expr: str, at: float, on_item: Callable[[Any], None] | None = None, fast: Decode | None = None
    ) -> dict[str, Any]:
        assert self._session is not None, "use PrometheusClient as an async context manager"
        url = f"{self.settings.url}/api/v1/query"
        self.requests_sent += 1
        handed = 0  # result items already handed to on_item: past the first, no retry

        def count_items(item: Any) -> None:
            nonlocal handed
            handed += 1
            assert on_item is not None
            on_item(item)

        body = b""
        payload: Any = None
        spend = self._spender(name)
        try:
            async with self._session.post(url, data={"query": expr, "time": f"{at:.3f}"}) as resp:
                status = resp.status
                retry_after = resp.headers.get("Retry-After")
                if status == 200 and on_item is not None:
                    chunks = resp.content.iter_any()
                    payload = await stream_result_items(chunks, count_items, spend, self.settings.max_item_bytes, fast)
                else:  # an error's body: only its first bytes, for the message (it may never end)
                    body = await _head(resp.content, ERROR_BODY_BYTES)
                    spend(len(body))
        except (TimeoutError, aiohttp.ClientError) as exc:
            what = (
                f"timed out after {self.settings.timeout.total_seconds():.0f}s"
                if isinstance(exc, TimeoutError)
                else f"cannot reach {self.settings.url}: {exc.__class__.__name__}: {clip(str(exc))}"
            )
            if handed:
                raise PrometheusError(f"query {name}: answer cut off after {handed} series: {what}") from exc
            raise Retryable(what) from exc
        except MalformedAnswer as exc:
            raise PrometheusError(f"query {name}: HTTP {status}, {exc}") from exc
        if retryable_status(status):
            raise Retryable(
                f"HTTP {status} from {self.settings.url}: {clip(body)}",
                retry_after=parse_retry_after(retry_after, datetime.now(UTC)),
            )
        if payload is None:
            try:
                payload = json.loads(body)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise PrometheusError(f"query {name}: HTTP {status}, body is not JSON: {clip(body)}") from exc
        if not isinstance(payload, dict):
            raise PrometheusError(f"query {name}: HTTP {status}, unexpected body: {clip(body)}")
        if status != 200 or payload.get("status") != "success":
            detail = payload.get("error") or clip(body)
            raise PrometheusError(
                f"query {name}: HTTP {status}: {payload.get('errorType', 'error')}: {clip(str(detail))}"
            )
        if payload.get("warnings"):
            raise PrometheusError(
                f"query {name}: partial answer, warnings: {clip('; '.join(map(str, payload['warnings'])))}"
            )
        data = payload.get("data")
        if not isinstance(data, dict):
            raise PrometheusError(f"query {name}: answer has no data")
        return data


class _Series(msgspec.Struct):
    """A matrix element as the fast decoder returns it: sample values already floats."""

    metric: dict[str, str]
    values: list[tuple[float, float]]


class _Element(msgspec.Struct):
    """A vector element as the fast decoder returns it."""

    metric: dict[str, str]
    value: tuple[float, float]


# strict=False: "1.5" decodes to 1.5 (Prometheus writes values as strings). It would take a value
# written as a JSON number too, which the API never sends and the general path refuses ("malformed
# sample"): a run with a number after a comma (outside a string that is only a pair's value) goes
# to the general path, which names the fault. "NaN" is refused by msgspec and goes there as well.
_SERIES = msgspec.json.Decoder(list[_Series], strict=False).decode
_ELEMENTS = msgspec.json.Decoder(list[_Element], strict=False).decode
_NUMBER_AFTER_COMMA = re.compile(rb",[ \t\n\r]*[-0-9]")


def _typed(decode: Callable[[bytes], list[Any]]) -> Decode:
    def fast(run: bytes) -> list[Any]:
        if _NUMBER_AFTER_COMMA.search(run):
            raise ValueError("a number after a comma: for the general path")
        return decode(run)

    return fast


_FAST_SERIES, _FAST_ELEMENTS = _typed(_SERIES), _typed(_ELEMENTS)


def matrix_items(name: str, into: MatrixSink) -> tuple[Callable[[Any], None], Decode]:
    """(what takes each item of query ``name``'s matrix answer into ``into``, the fast decoder
    whose items it also takes): each series checked as a label set of strings and finite samples
    in strictly increasing time."""
    series = into.series

    def on_item(item: Any) -> None:
        if type(item) is _Series:
            samples = item.values
            if not all(map(math.isfinite, map(_SECOND, samples))):
                raise PrometheusError(f"query {name}: a value is not finite; refusing to meter a non-finite number")
            series(item.metric, _in_order(name, samples))
            return
        values = item.get("values") if isinstance(item, dict) else None
        if not isinstance(values, list):
            raise PrometheusError(f"query {name}: malformed matrix element")
        series(_labels(name, item), _samples(name, values))

    return on_item, _FAST_SERIES


def vector_items(name: str, into: VectorSink) -> tuple[Callable[[Any], None], Decode]:
    """As ``matrix_items``, for a vector answer: each element's label set and finite value."""
    sample = into.sample

    def on_item(item: Any) -> None:
        if type(item) is _Element:
            value = item.value[1]
            if not math.isfinite(value):
                raise PrometheusError(f"query {name}: value is {value}; refusing to meter a non-finite number")
            sample(item.metric, value)
            return
        # a sample is {"metric": {labels}, "value": [t, "v"]}; a label set holds only strings
        if not isinstance(item, dict) or not isinstance(item.get("value"), list):
            raise PrometheusError(f"query {name}: malformed vector element")
        sample(_labels(name, item), _finite(name, _pair(name, item["value"])[1]))

    return on_item, _FAST_ELEMENTS


async def _head(content: aiohttp.StreamReader, limit: int) -> bytes:
    """The first ``limit`` bytes of a body (all of it if shorter); the rest is never read."""
    body = b""
    while len(body) < limit and (chunk := await content.read(limit - len(body))):
        body += chunk
    return body


def _labels(name: str, item: dict[str, Any]) -> dict[str, str]:
    metric = item.get("metric")
    try:
        if type(metric) is dict:
            "".join(metric.values())  # a label set holds only strings (checked in C: it is hot)
            return metric
    except TypeError:
        pass
    raise PrometheusError(f"query {name}: malformed labels")


def _pair(name: str, pair: Any) -> tuple[float, str]:
    if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[1], str):
        raise PrometheusError(f"query {name}: malformed sample {clip(str(pair))}")
    try:
        return float(pair[0]), pair[1]
    except (TypeError, ValueError) as exc:
        raise PrometheusError(f"query {name}: malformed timestamp {clip(str(pair))}") from exc


_FIRST, _SECOND = operator.itemgetter(0), operator.itemgetter(1)


def _samples(name: str, values: list[Any]) -> list[tuple[float, float]]:
    """[[t, "v"], ...] as (time, value) pairs of finite numbers, in strictly increasing time (the
    usual case in one pass). A series out of time order, or with a time twice, breaks what
    Prometheus guarantees: metered, it would bill the steps backwards as resets."""
    try:
        "".join(map(_SECOND, values))  # every value a string, as _pair requires (checked in C: it is hot)
        samples = [(float(t), float(v)) for t, v in values]
        if not all(math.isfinite(v) for _, v in samples):
            raise ValueError
    except (TypeError, ValueError, LookupError):
        samples = [(_pair(name, pair)[0], _finite(name, _pair(name, pair)[1])) for pair in values]  # names the fault
    return _in_order(name, samples)


def _in_order(name: str, samples: list[tuple[float, float]]) -> list[tuple[float, float]]:
    times = list(map(_FIRST, samples))  # in C: it runs once per series of every answer
    if not all(map(operator.lt, times, times[1:])):
        raise PrometheusError(f"query {name}: a series' samples are not in strictly increasing time order")
    return samples


def _finite(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise PrometheusError(f"query {name}: value {clip(text)!r} is not a number") from exc
    if not math.isfinite(value):
        raise PrometheusError(f"query {name}: value is {text}; refusing to meter a non-finite number")
    return value
