"""Leader election through a coordination.k8s.io/v1 Lease, the way client-go's leaderelection does it.

Two replicas run; the one holding the Lease reports, the other waits. The holder renews every
``retry_period``; a standby takes the Lease over when its record has not changed for
``lease_duration`` as measured on the standby's own monotonic clock (never by comparing its wall
clock with the holder's renewTime, so clock skew between nodes cannot shorten a lease). Updates
carry the resourceVersion read, so of two replicas racing for a free Lease exactly one wins (409).

The holder counts itself leader only until ``renew_deadline`` (< ``lease_duration``) after its
last successful renewal: a holder that cannot reach the API server stops reporting before a
standby is allowed to start. On SIGTERM the holder releases the Lease (empty holderIdentity), so
the standby takes over at its next try instead of after a full lease duration.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from ..errors import (
    KubernetesConflict,
    KubernetesError,
    KubernetesNotFound,
    KubernetesStatusError,
    KubernetesUnavailable,
)
from ..observability.metrics import ExporterMetrics
from ..sources.kube import api as kube_api

log = logging.getLogger(__name__)


class Leadership(Protocol):
    """What the runner asks: may I report right now?"""

    def is_leader(self) -> bool:
        """True while this process may send and write state."""
        ...


class AlwaysLeader:
    """Leader election switched off: this process always reports."""

    def is_leader(self) -> bool:
        """Always True."""
        return True


def micro_time(moment: datetime) -> str:
    """A Kubernetes MicroTime: RFC 3339 with microseconds, UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseElector:
    """Acquire and renew Lease ``namespace/name`` as ``identity``; ``run`` is the background task."""

    def __init__(
        self,
        api_client_factory: Callable[[], Any],
        namespace: str,
        name: str,
        identity: str,
        lease_duration: float,
        renew_deadline: float,
        retry_period: float,
        metrics: ExporterMetrics | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.api_client_factory = api_client_factory
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.metrics = metrics
        self.monotonic = monotonic
        self.wall = wall
        self.changed = asyncio.Event()  # set whenever leadership is gained or lost
        self.reachable = False  # the last Lease call got an answer
        self.last_error: str | None = None  # why the last Lease call failed, if it did
        self._api: Any = None
        self._valid_until = 0.0
        self._leading = False
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0

    def is_leader(self) -> bool:
        """True until renew_deadline after the last successful acquire or renewal."""
        return self._leading and self.monotonic() < self._valid_until

    def describe(self) -> str:
        """lease <namespace>/<name>."""
        return f"lease {self.namespace}/{self.name}"

    def _client(self) -> Any:
        if self._api is None:
            self._api = self.api_client_factory()
        return self._api

    def _url(self, *name: str) -> str:
        return kube_api.path("/apis/coordination.k8s.io/v1/namespaces", self.namespace, "leases", *name)

    def _request(
        self, operation: str, method: str, url: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any] | int:
        """The answer's JSON, or the HTTP status of a refusal (404, 409); other failures raise
        KubernetesError, remembered in ``last_error`` and ``reachable``."""
        # Retries included, one call ends within half the renew deadline: a renewal that cannot
        # land in time is better given up and tried again at the next round.
        budget = max(1.0, self.renew_deadline / 2)
        try:
            answer = kube_api.request(
                self._client(), method, url, body=body, timeout=budget, budget=budget, what=operation
            )
        except (KubernetesNotFound, KubernetesConflict) as exc:
            self.reachable, self.last_error = True, None
            return exc.status
        except KubernetesError as exc:
            # an HTTP answer (403, 503) shows the API is there; no answer, or one that is not JSON, does not
            status = exc.status if isinstance(exc, (KubernetesStatusError, KubernetesUnavailable)) else None
            self.reachable = status is not None
            self._count_error(operation)
            self.last_error = str(exc)
            raise
        self.reachable, self.last_error = True, None
        return answer

    def _count_error(self, operation: str) -> None:
        if self.metrics is not None:
            self.metrics.kubernetes_errors.labels(operation).inc()

    def _spec(self, previous: dict[str, Any] | None) -> dict[str, Any]:
        now = micro_time(self.wall())
        spec = dict(previous or {})
        if spec.get("holderIdentity") != self.identity:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if previous else 0)
        spec.update(holderIdentity=self.identity, leaseDurationSeconds=int(self.lease_duration), renewTime=now)
        return spec

    def try_acquire_or_renew(self) -> bool:
        """One round (blocking): True if we hold the Lease afterwards. Raises KubernetesError when the API fails."""
        started = self.monotonic()
        lease = self._request("get_lease", "GET", self._url(self.name))
        if lease == 404:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(None),
            }
            created = self._request("create_lease", "POST", self._url(), body)
            return self._held(created, started)
        assert isinstance(lease, dict)
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        if holder != self.identity:
            record = (holder, spec.get("renewTime"), spec.get("leaseDurationSeconds"), spec.get("leaseTransitions"))
            if record != self._observed:  # it moved: the holder is alive, restart our count
                self._observed, self._observed_at = record, started
            duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
            if holder and started < self._observed_at + duration:
                return False
        lease["spec"] = self._spec(spec)  # metadata keeps the resourceVersion we read: a racing writer gets 409
        updated = self._request("update_lease", "PUT", self._url(self.name), lease)
        return self._held(updated, started)

    def _held(self, answer: dict[str, Any] | int, started: float) -> bool:
        if isinstance(answer, int):  # 409: someone else created or updated it first
            return False
        self._valid_until = started + self.renew_deadline
        return True

    def _set_leading(self, leading: bool) -> None:
        if leading == self._leading:
            return
        self._leading = leading
        self.changed.set()
        if self.metrics is not None:
            self.metrics.is_leader.set(1 if leading else 0)
            if leading:
                self.metrics.leader_transitions.inc()
        if leading:
            log.info("became leader (%s, identity %s)", self.describe(), self.identity)
        else:
            log.warning("no longer leader (%s); stopped reporting", self.describe())

    async def step(self) -> None:
        """One acquire-or-renew round in a worker thread, and the leadership that follows from it."""
        try:
            held = await asyncio.to_thread(self.try_acquire_or_renew)
        except KubernetesError as exc:
            log.warning("%s: %s", self.describe(), exc)
            held = False
        if held:
            self._set_leading(True)
        elif not self.is_leader():
            self._set_leading(False)

    async def run(self, stop: asyncio.Event) -> None:
        """Acquire, then renew, every retry_period until ``stop``; then release if we hold it."""
        while not stop.is_set():
            await self.step()
            if self._leading and not self.is_leader():
                self._set_leading(False)  # renewals failed for renew_deadline
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.retry_period)
            except TimeoutError:
                pass
        await self.release()

    async def wait_until_leader(self, stop: asyncio.Event, give_up_after: float | None = None) -> bool:
        """Wait for leadership (True), a stop request or ``give_up_after`` seconds (False)."""
        deadline = None if give_up_after is None else self.monotonic() + give_up_after
        while not self.is_leader():
            if stop.is_set() or (deadline is not None and self.monotonic() >= deadline):
                return False
            self.changed.clear()
            wait = self.retry_period
            if deadline is not None:
                wait = max(0.0, min(wait, deadline - self.monotonic()))
            try:
                await asyncio.wait_for(self.changed.wait(), timeout=wait)
            except TimeoutError:
                pass
        return True

    async def release(self) -> None:
        """Give the Lease up (holder emptied) so a standby need not wait out the lease duration."""
        if not self._leading:
            return
        self._set_leading(False)
        self._valid_until = 0.0

        def work() -> None:
            lease = self._request("get_lease", "GET", self._url(self.name))
            if not isinstance(lease, dict) or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            lease["spec"].update(holderIdentity="", leaseDurationSeconds=1, renewTime=micro_time(self.wall()))
            self._request("update_lease", "PUT", self._url(self.name), lease)

        try:
            await asyncio.to_thread(work)
            log.info("released %s", self.describe())
        except KubernetesError as exc:
            log.warning("could not release %s: %s", self.describe(), exc)
