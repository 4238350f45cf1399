"""Fixtures for delivery tests: a billing receiver, a threaded Kubernetes API stand-in, exporter processes.

The real Prometheus over the demo history comes from tests/conftest.py (``prometheus``). The
demo's windows 00:00-01:00, 01:00-02:00 and 02:00-03:00 on 2025-11-20 are fully covered, so a run
``--as-of 03:07 --backfill-from 00:00`` has exactly those three windows due (settle delay 6m).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cluster_exporter.devtools.demo import demo_namespaces
from cluster_exporter.devtools.kubeapi_standin import KubeApiStandIn, KubeState, write_kubeconfig
from cluster_exporter.devtools.prometheus_server import PrometheusServer
from cluster_exporter.devtools.synthetic_cluster import CUSTOMER_LABEL, Cluster
from cluster_exporter.report import report_id

from .receiver import Receiver

AS_OF = "2025-11-20T03:07:00Z"
BACKFILL_FROM = "2025-11-20T00:00:00Z"
DAY = datetime(2025, 11, 20, tzinfo=UTC)
WINDOW_ENDS = [DAY + timedelta(hours=h) for h in (1, 2, 3)]
EXPORTER_NAMESPACE = "monitoring"  # a namespace of the demo cluster: the exporter's own
TOKEN = "test-token-7f3a"
EXPORTER = [sys.executable, "-m", "cluster_exporter.cli"]
# The checkout under test, ahead of anything installed: an exporter process must run this tree's code
# whichever worktree or directory pytest was started from.
REPOSITORY = str(Path(__file__).resolve().parents[2])


def window_ids(cluster_id: str) -> list[str]:
    """report_id of the three demo windows for ``cluster_id``, oldest first."""
    return [report_id(cluster_id, end - timedelta(hours=1), end) for end in WINDOW_ENDS]


@pytest.fixture
def kube_thread(cluster: Cluster) -> Iterator[KubeApiStandIn]:
    """The Kubernetes API stand-in in its own thread (reachable while a test blocks on a subprocess)."""
    standin = KubeApiStandIn(KubeState(namespaces=demo_namespaces(cluster))).start_in_thread()
    yield standin
    standin.stop_thread()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A billing receiver that accepts everything unless scripted otherwise."""
    with Receiver(token=TOKEN) as r:
        yield r


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    """The billing token as a mounted Secret would hold it."""
    path = tmp_path / "billing-token"
    path.write_text(TOKEN + "\n")
    return path


def exporter_env(
    prometheus: PrometheusServer, kube: KubeApiStandIn, receiver: Receiver, token_file: Path, **extra: str
) -> dict[str, str]:
    """Environment for an exporter process: settings only through environment names, as in a pod."""
    kubeconfig = token_file.parent / "kubeconfig"
    if not kubeconfig.exists():
        write_kubeconfig(kubeconfig, kube.url)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DELIVERY_", "BILLING_", "PROMETHEUS_"))}
    env.update(
        CLUSTER_ID="k8s-test-1",
        PROMETHEUS_URL=prometheus.url,
        KUBECONFIG=str(kubeconfig),
        CUSTOMER_LABEL=CUSTOMER_LABEL,
        BILLING_API_URL=receiver.url,
        BILLING_API_TOKEN_FILE=str(token_file),
        BILLING_API_TIMEOUT="2s",
        DELIVERY_NAMESPACE=EXPORTER_NAMESPACE,
        DELIVERY_BACKOFF_INITIAL="50ms",
        DELIVERY_BACKOFF_MAX="500ms",
        DELIVERY_RETRY_BUDGET="20s",
        PYTHONUNBUFFERED="1",
        PYTHONPATH=os.pathsep.join([REPOSITORY, *filter(None, [os.environ.get("PYTHONPATH")])]),
    )
    env.update(extra)
    return env


def start_exporter(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``cluster-exporter run ...`` as a child process, stderr to ``log``."""
    with log.open("ab") as fh:
        return subprocess.Popen([*EXPORTER, "run", *args], env=env, stdout=fh, stderr=subprocess.STDOUT)


def kill9(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL and reap."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)


def wait_for(condition: Any, timeout: float, interval: float = 0.05, what: str = "condition") -> Any:
    """Poll ``condition()`` until truthy; return its value or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
