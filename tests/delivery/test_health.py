"""/healthz goes red when the runner (or the Lease elector) dies: on a real HTTP server, and through run_service."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from cluster_exporter.delivery.service import RunOptions, run_service, supervise
from cluster_exporter.delivery.state import DirectoryStore, State
from cluster_exporter.devtools.kubeapi_standin import KubeApiStandIn
from cluster_exporter.devtools.prometheus_server import PrometheusServer
from cluster_exporter.errors import UsageError
from cluster_exporter.metering.window import parse_time
from cluster_exporter.observability.health import Health, MetricsServer

from .conftest import AS_OF
from .test_delivery_failures import make_settings

Probe = Callable[[str], Awaitable[tuple[int, str]]]


@pytest.fixture
async def served() -> AsyncIterator[tuple[Health, Probe]]:
    """A real MetricsServer on a free loopback port, and a function GETting one of its paths."""
    health = Health(ready=True, reason="running")
    server = await MetricsServer(CollectorRegistry(), health, "127.0.0.1", 0).start()

    async def probe(path: str) -> tuple[int, str]:
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{server.port}{path}") as resp:
            return resp.status, await resp.text()

    yield health, probe
    await server.stop()


async def _settle(task: asyncio.Task[None]) -> None:
    await asyncio.wait([task])
    await asyncio.sleep(0)  # done callbacks run on the next turn of the loop


async def test_healthz_goes_red_when_the_runner_dies(served: tuple[Health, Probe]) -> None:
    health, probe = served
    stop = asyncio.Event()

    async def runner() -> None:
        await asyncio.sleep(0.05)
        raise RuntimeError("boom")

    task = asyncio.create_task(runner(), name="runner")
    supervise(task, health, stop)
    assert await probe("/healthz") == (200, "ok\n")
    await _settle(task)
    assert await probe("/healthz") == (503, "not alive: runner died: RuntimeError: boom\n")
    assert (await probe("/readyz"))[0] == 503
    assert stop.is_set()  # the service stops: the process exits with the runner's error


async def test_healthz_goes_red_when_the_runner_ends_while_running(served: tuple[Health, Probe]) -> None:
    health, probe = served
    stop = asyncio.Event()

    async def runner() -> None:
        return None

    task = asyncio.create_task(runner(), name="lease elector")
    supervise(task, health, stop)
    await _settle(task)
    assert await probe("/healthz") == (503, "not alive: lease elector ended while the service was running\n")


async def test_healthz_stays_green_when_the_runner_ends_on_a_stop_request(served: tuple[Health, Probe]) -> None:
    health, probe = served
    stop = asyncio.Event()

    async def runner() -> None:
        await stop.wait()

    task = asyncio.create_task(runner(), name="runner")
    supervise(task, health, stop)
    stop.set()
    await _settle(task)
    assert await probe("/healthz") == (200, "ok\n")


async def test_run_service_marks_the_dead_runner(
    prometheus: PrometheusServer, kube: KubeApiStandIn, tmp_path: Path
) -> None:
    """The loop's runner dies of a UsageError (its state belongs to another cluster): /healthz is red and
    run_service ends with the runner's error, its server stopped."""
    settings = make_settings(prometheus, kube, tmp_path, url="http://127.0.0.1:9", metrics_port=0)
    DirectoryStore(tmp_path / "state").save(State(cluster_id="another-cluster", window_seconds=3600))
    health = Health()
    with pytest.raises(UsageError, match="belongs to cluster 'another-cluster'"):
        await asyncio.wait_for(
            run_service(
                settings,
                RunOptions(as_of=parse_time(AS_OF)),
                registry=CollectorRegistry(),
                install_signal_handlers=False,
                health=health,
            ),
            30,
        )
    assert not health.alive and not health.ready
    assert health.reason.startswith("runner died: UsageError: ")
