"""Engines behind authentication: bearer token, basic auth, tenant header, TLS with a private CA.

A loopback proxy in front of the real demo Prometheus enforces each requirement the way Mimir,
Cortex or an authenticating gateway would, and forwards the query when it is met. The same proxy
also fails on purpose, for the shared retry policy: 5xx and 429 retried (Retry-After honoured), a
4xx final.
"""

from __future__ import annotations

import base64
import ssl
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from cluster_exporter.devtools.clusters import hour_windows
from cluster_exporter.devtools.demo import demo_settings
from cluster_exporter.devtools.kubeapi_standin import KubeApiStandIn, write_kubeconfig
from cluster_exporter.devtools.prometheus_server import PrometheusServer
from cluster_exporter.devtools.synthetic_cluster import Cluster
from cluster_exporter.errors import PrometheusError
from cluster_exporter.metering.window import measure_window
from cluster_exporter.settings import Settings
from cluster_exporter.sources.prometheus import PrometheusClient

from .conftest import LATER

TOKEN = "s3cret-token"
USER, PASSWORD = "meter", "p4ss"
TENANT = "tenant-a"


class CheckingProxy:
    """Forward /api/v1/query to Prometheus only when the request carries ``required`` headers."""

    def __init__(self, upstream: str, required: dict[str, str], ssl_context: ssl.SSLContext | None = None) -> None:
        self.upstream, self.required, self.ssl_context = upstream, required, ssl_context
        self.refused = 0
        self.fail_next: list[tuple[int, dict[str, str]]] = []  # answer the next requests so, one each
        self.hits = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        if self.fail_next:
            status, headers = self.fail_next.pop(0)
            return web.Response(status=status, headers=headers, text="injected failure")
        for name, value in self.required.items():
            if request.headers.get(name) != value:
                self.refused += 1
                return web.Response(status=401, text=f"missing or wrong {name}")
        form = await request.post()
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{self.upstream}/api/v1/query", data=dict(form)) as resp,
        ):
            return web.Response(status=resp.status, body=await resp.read(), content_type="application/json")

    async def start(self) -> CheckingProxy:
        app = web.Application()
        app.router.add_post("/api/v1/query", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def _settings(kube: KubeApiStandIn, tmp_path: Path, url: str, **prometheus: Any) -> Settings:
    base = demo_settings(url, write_kubeconfig(tmp_path / "kubeconfig", kube.url))
    return base.model_copy(update={"prometheus": base.prometheus.model_copy(update={"attempts": 1, **prometheus})})


async def _measure(settings: Settings, cluster: Cluster) -> int:
    async with PrometheusClient(settings.prometheus) as client:
        report = await measure_window(settings, hour_windows(cluster)[1][1], LATER, client)
    return len(report.usage)


@pytest.fixture
async def proxies(prometheus: PrometheusServer) -> AsyncIterator[dict[str, CheckingProxy]]:
    basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    started = {
        "bearer": await CheckingProxy(prometheus.url, {"Authorization": f"Bearer {TOKEN}"}).start(),
        "basic": await CheckingProxy(prometheus.url, {"Authorization": basic}).start(),
        "tenant": await CheckingProxy(prometheus.url, {"X-Scope-OrgID": TENANT}).start(),
    }
    yield started
    for proxy in started.values():
        await proxy.stop()


async def test_bearer_token(
    proxies: dict[str, CheckingProxy], kube: KubeApiStandIn, cluster: Cluster, tmp_path: Path
) -> None:
    url = proxies["bearer"].url
    with pytest.raises(PrometheusError, match="HTTP 401"):
        await _measure(_settings(kube, tmp_path, url), cluster)
    assert await _measure(_settings(kube, tmp_path, url, bearer_token=TOKEN), cluster) == 5
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    assert await _measure(_settings(kube, tmp_path, url, bearer_token_file=token_file), cluster) == 5


async def test_basic_auth(
    proxies: dict[str, CheckingProxy], kube: KubeApiStandIn, cluster: Cluster, tmp_path: Path
) -> None:
    url = proxies["basic"].url
    with pytest.raises(PrometheusError, match="HTTP 401"):
        await _measure(_settings(kube, tmp_path, url, basic_auth_username=USER, basic_auth_password="wrong"), cluster)
    settings = _settings(kube, tmp_path, url, basic_auth_username=USER, basic_auth_password=PASSWORD)
    assert await _measure(settings, cluster) == 5


async def test_tenant_header(
    proxies: dict[str, CheckingProxy], kube: KubeApiStandIn, cluster: Cluster, tmp_path: Path
) -> None:
    url = proxies["tenant"].url
    with pytest.raises(PrometheusError, match="HTTP 401"):
        await _measure(_settings(kube, tmp_path, url), cluster)
    assert await _measure(_settings(kube, tmp_path, url, headers={"X-Scope-OrgID": TENANT}), cluster) == 5


def _make_ca_and_cert(directory: Path) -> tuple[Path, Path, Path]:
    """A private CA and a certificate for 127.0.0.1 signed by it (openssl)."""
    ca_key, ca_crt = directory / "ca.key", directory / "ca.crt"
    key, csr, crt, ext = directory / "server.key", directory / "server.csr", directory / "server.crt", directory / "ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    commands = [
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            ca_key,
            "-out",
            ca_crt,
            "-days",
            "2",
            "-subj",
            "/CN=cluster-exporter test CA",
        ],
        ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
        [
            "openssl",
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            ca_crt,
            "-CAkey",
            ca_key,
            "-CAcreateserial",
            "-out",
            crt,
            "-days",
            "2",
            "-extfile",
            ext,
        ],
    ]
    for command in commands:
        subprocess.run([str(c) for c in command], check=True, capture_output=True)
    return ca_crt, crt, key


async def test_tls_with_a_private_ca(
    prometheus: PrometheusServer, kube: KubeApiStandIn, cluster: Cluster, tmp_path: Path
) -> None:
    ca, crt, key = _make_ca_and_cert(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(crt, key)
    proxy = await CheckingProxy(prometheus.url, {}, ssl_context=context).start()
    try:
        assert proxy.url.startswith("https://")
        with pytest.raises(PrometheusError, match="cannot reach"):  # the system trust store does not know the CA
            await _measure(_settings(kube, tmp_path, proxy.url), cluster)
        assert await _measure(_settings(kube, tmp_path, proxy.url, ca_file=ca), cluster) == 5
    finally:
        await proxy.stop()


async def _vector(settings: Settings) -> list[float]:
    async with PrometheusClient(settings.prometheus) as client:
        return [s.value for s in await client.vector("one", "vector(1)", LATER.timestamp())]


async def test_429_and_503_are_retried_honouring_retry_after(
    prometheus: PrometheusServer, kube: KubeApiStandIn, tmp_path: Path
) -> None:
    proxy = await CheckingProxy(prometheus.url, {}).start()
    try:
        proxy.fail_next = [(429, {"Retry-After": "1"}), (503, {})]
        started = time.monotonic()
        assert await _vector(_settings(kube, tmp_path, proxy.url, attempts=3)) == [1.0]
        assert time.monotonic() - started >= 1.0  # the backoff alone would have waited about 0.5 s + 1 s
        assert proxy.hits == 3

        proxy.fail_next = [(503, {})] * 3
        gave_up = r"query one: HTTP 503 .*injected failure \(gave up after 3 attempts\)"
        with pytest.raises(PrometheusError, match=gave_up):
            await _vector(_settings(kube, tmp_path, proxy.url, attempts=3))
        assert proxy.hits == 6
    finally:
        await proxy.stop()


async def test_a_4xx_is_final(proxies: dict[str, CheckingProxy], kube: KubeApiStandIn, tmp_path: Path) -> None:
    proxy = proxies["bearer"]
    before = proxy.refused
    with pytest.raises(PrometheusError, match="HTTP 401"):
        await _vector(_settings(kube, tmp_path, proxy.url, attempts=3))
    assert proxy.refused - before == 1
