"""One JSON request to the Kubernetes API through a ``kubernetes`` ApiClient: typed errors, retries.

The client's configuration still does everything that is hard to get right (kubeconfig and
in-cluster auth, token refresh, TLS, proxies); only the generated API classes are skipped. In
the kubernetes 37 client each of their methods is a pydantic-validated function, and importing
``CoreV1Api`` alone costs about 21 MiB, a sixth of the exporter's memory limit, for the three
paths we call (namespaces, ConfigMaps, Leases).

``request`` is the one place where the client's failures (an HTTP status, urllib3 and OSError
when the server cannot be reached, an answer that is not JSON) become our errors, the way kopf's
``check_response`` does it: 404 ``KubernetesNotFound``, 409 ``KubernetesConflict``, any other
4xx ``KubernetesRefused`` (final), and 5xx, 429, timeouts and connection errors are retried with
the shared policy (``retry.py``) before they end as ``KubernetesUnavailable``. The retries are few
and short: the callers run in worker threads under deadlines of their own (the Lease must be
renewed within its renew deadline), so ``attempts`` and ``budget`` are theirs to set. urllib3's
own retries are switched off (``make_api_client``) so that this is the only retry loop.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from ...errors import (
    KubernetesConflict,
    KubernetesError,
    KubernetesNotFound,
    KubernetesRefused,
    KubernetesUnavailable,
    clip,
)
from ...retry import GaveUp, Policy, Retryable, parse_retry_after, retry_sync, retryable_status

log = logging.getLogger(__name__)

ATTEMPTS = 3
# 0.2 s, 0.4 s, ... at most 2 s, and a Retry-After (the API server's priority and fairness sends 1 s)
# honoured up to 10 s; ``budget`` cuts it shorter.
RETRY = Policy(initial=0.2, maximum=2.0, retry_after_max=10.0)


def path(prefix: str, *segments: str) -> str:
    """``prefix`` followed by ``segments`` (names, resource kinds), each one percent-encoded."""
    return "/".join((prefix, *(quote(s, safe="") for s in segments)))


class _Unavailable(Retryable):
    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, retry_after=retry_after)
        self.status = status


def _status_message(data: bytes) -> tuple[str, str]:
    """(reason, message) of a Kubernetes Status answer, or ("", the clipped body) for anything else."""
    try:
        status = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return "", clip(data)
    if isinstance(status, dict) and isinstance(status.get("message"), str):
        return str(status.get("reason") or ""), clip(status["message"])
    return "", clip(data)


def check_response(what: str, status: int, data: bytes, retry_after: str | None, now: datetime) -> dict[str, Any]:
    """The answer's JSON object; the typed error of a status outside 2xx (a ``Retryable`` for 5xx and 429,
    whose message ``request`` prefixes with ``what`` once it gives up)."""
    if 200 <= status <= 299:
        try:
            answer = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise KubernetesError(f"{what}: the answer is not JSON: {clip(data)}") from exc
        if not isinstance(answer, dict):
            raise KubernetesError(f"{what}: the answer is not a JSON object: {clip(data)}")
        return answer
    reason, message = _status_message(data)
    text = f"HTTP {status}" + (f" {reason}" if reason else "") + (f": {message}" if message else "")
    if retryable_status(status):
        raise _Unavailable(text, status, parse_retry_after(retry_after, now))
    error = {404: KubernetesNotFound, 409: KubernetesConflict}.get(status, KubernetesRefused)
    raise error(f"{what}: {text}", status, message)


def request(
    api_client: Any,
    method: str,
    resource_path: str,
    *,
    timeout: float,
    query: Mapping[str, str | int] | None = None,
    body: Mapping[str, Any] | None = None,
    what: str = "",
    attempts: int = ATTEMPTS,
    budget: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
    jitter: Callable[[], float] = random.random,
    wall: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> dict[str, Any]:
    """The JSON object the API answered (blocking), after up to ``attempts`` tries of ``timeout``
    seconds each, all within ``budget`` seconds if given. ``what`` starts every error message
    (default ``METHOD path``). Raises the ``KubernetesError`` subclasses named in the module doc."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError, NewConnectionError
    from urllib3.exceptions import TimeoutError as Urllib3Timeout

    what = what or f"{method} {resource_path}"
    deadline = None if budget is None else monotonic() + budget
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    serialized = api_client.param_serialize(
        method=method,
        resource_path=resource_path,
        query_params=list((query or {}).items()),
        header_params=headers,
        body=dict(body) if body is not None else None,
        auth_settings=["BearerToken"],
    )

    def attempt() -> dict[str, Any]:
        seconds = timeout if deadline is None else max(0.1, min(timeout, deadline - monotonic()))
        try:
            response = api_client.call_api(*serialized, _request_timeout=seconds)
            data = response.read()
        except ApiException as exc:  # the client's own: TLS failures (status 0)
            if exc.status:
                return check_response(what, int(exc.status), (exc.body or "").encode(), None, wall())
            raise _Unavailable(f"cannot reach the Kubernetes API: {clip(str(exc.reason))}") from exc
        except (HTTPError, OSError) as exc:
            if isinstance(exc, (Urllib3Timeout, TimeoutError)) and not isinstance(exc, NewConnectionError):
                raise _Unavailable(f"timed out after {seconds:g}s") from exc
            raise _Unavailable(f"cannot reach the Kubernetes API: {exc.__class__.__name__}: {clip(str(exc))}") from exc
        return check_response(what, response.status, data or b"", response.getheader("Retry-After"), wall())

    policy = Policy(RETRY.initial, RETRY.maximum, RETRY.retry_after_max, attempts=attempts)
    try:
        return retry_sync(
            attempt, policy, label=what, deadline=deadline, sleep=sleep, monotonic=monotonic, jitter=jitter, logger=log
        )
    except GaveUp as exc:
        last = exc.last
        status = last.status if isinstance(last, _Unavailable) else None
        raise KubernetesUnavailable(f"{what}: {exc}", status) from exc
