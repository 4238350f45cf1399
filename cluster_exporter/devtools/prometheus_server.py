"""Run a real Prometheus (or VictoriaMetrics) over synthetic history, on a free loopback port.

Used by the tests, the demo and the benchmarks. History is written offline with
``promtool tsdb create-blocks-from openmetrics`` into a fresh data directory, then Prometheus
starts on that directory with no scrape jobs and a retention long enough to keep old demo data.
"""

from __future__ import annotations

import io
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from ..errors import ExporterError
from .synthetic_cluster import Cluster


class DevServerError(ExporterError):
    """A development server (Prometheus, promtool) could not be prepared or started."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_binary(name: str) -> str:
    """Path of an installed binary, or a clear error naming the package."""
    path = shutil.which(name)
    if path is None:
        package = {"prometheus": "prometheus", "promtool": "prometheus", "victoria-metrics": "victoria-metrics"}.get(
            name, name
        )
        raise DevServerError(f"{name} not found: install Debian's {package} package (apt-get install {package})")
    return path


def backfill(openmetrics: Path, data_dir: Path) -> None:
    """Turn an OpenMetrics file into TSDB blocks under ``data_dir``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [require_binary("promtool"), "tsdb", "create-blocks-from", "openmetrics", str(openmetrics), str(data_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise DevServerError(f"promtool backfill failed: {proc.stderr.strip()[-300:]}")


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DevServerError(f"server exited with {proc.returncode}: {log.read_text()[-400:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise DevServerError(f"server not ready after {timeout:.0f}s: {log.read_text()[-400:]}")


class _Server:
    url: str
    proc: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        """Stop the server and wait for it."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()


class PrometheusServer(_Server):
    """``with PrometheusServer(data_dir) as prom: prom.url`` — a Prometheus over ``data_dir``."""

    def __init__(self, data_dir: Path, extra_args: list[str] | None = None, start_timeout: float = 60.0) -> None:
        self.data_dir = data_dir
        self.extra_args = extra_args or []
        self.start_timeout = start_timeout

    def start(self) -> PrometheusServer:
        """Start on a free port; retried on a port race."""
        config = self.data_dir.parent / f"{self.data_dir.name}-prometheus.yml"
        config.write_text("global:\n  scrape_interval: 15s\nscrape_configs: []\n")
        log = self.data_dir.parent / f"{self.data_dir.name}-prometheus.log"
        for _attempt in range(5):
            port = free_port()
            self.url = f"http://127.0.0.1:{port}"
            with log.open("wb") as fh:
                self.proc = subprocess.Popen(
                    [
                        require_binary("prometheus"),
                        f"--config.file={config}",
                        f"--storage.tsdb.path={self.data_dir}",
                        f"--web.listen-address=127.0.0.1:{port}",
                        "--storage.tsdb.retention.time=100y",
                        "--web.enable-admin-api",
                        *self.extra_args,
                    ],
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                )
            try:
                _wait_ready(f"{self.url}/-/ready", self.proc, log, self.start_timeout)
                return self
            except DevServerError:
                self.stop()
                if "address already in use" not in log.read_text():
                    raise
        raise DevServerError("could not bind a free port for Prometheus")

    def __enter__(self) -> PrometheusServer:
        return self.start()


class VictoriaMetricsServer(_Server):
    """A single-node VictoriaMetrics on a free port; load it with ``import_openmetrics``."""

    def __init__(self, data_dir: Path, start_timeout: float = 60.0, extra_args: list[str] | None = None) -> None:
        self.data_dir = data_dir
        self.start_timeout = start_timeout
        self.extra_args = extra_args or []

    def start(self) -> VictoriaMetricsServer:
        """Start on a free port."""
        log = self.data_dir.parent / f"{self.data_dir.name}-vm.log"
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        with log.open("wb") as fh:
            self.proc = subprocess.Popen(
                [
                    require_binary("victoria-metrics"),
                    f"-storageDataPath={self.data_dir}",
                    f"-httpListenAddr=127.0.0.1:{port}",
                    "-retentionPeriod=100y",
                    "-search.disableCache",
                    "-search.latencyOffset=0s",
                    *self.extra_args,
                ],
                stdout=fh,
                stderr=subprocess.STDOUT,
            )
        _wait_ready(f"{self.url}/health", self.proc, log, self.start_timeout)
        return self

    def __enter__(self) -> VictoriaMetricsServer:
        return self.start()


def import_into_victoriametrics(url: str, cluster: Cluster, batch_lines: int = 200_000) -> int:
    """Load a synthetic cluster's history through VictoriaMetrics' import API; returns samples.

    VictoriaMetrics takes the Prometheus text format with millisecond timestamps on
    /api/v1/import/prometheus; the OpenMetrics lines are rewritten on the fly, in batches.
    """
    buffer = io.StringIO()
    count = cluster.write_openmetrics(buffer)
    batch: list[str] = []

    def send() -> None:
        body = ("\n".join(batch) + "\n").encode()
        request = urllib.request.Request(f"{url}/api/v1/import/prometheus", data=body, method="POST")
        with urllib.request.urlopen(request, timeout=120) as resp:
            if resp.status not in (200, 204):
                raise DevServerError(f"VictoriaMetrics import answered HTTP {resp.status}")
        batch.clear()

    for line in buffer.getvalue().splitlines():
        if line.startswith("#"):
            continue
        head, value, seconds = line.rsplit(" ", 2)
        batch.append(f"{head} {value} {round(float(seconds) * 1000)}")
        if len(batch) >= batch_lines:
            send()
    if batch:
        send()
    with urllib.request.urlopen(f"{url}/internal/force_flush", timeout=60):
        pass
    return count
