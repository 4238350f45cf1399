"""A Prometheus that breaks its promises: the exporter fails the window in one line, within 128 MiB.

`cluster-exporter report --dry-run` runs as its own process against the hostile endpoint
(devtools/hostile_prometheus.py) and the Kubernetes API stand-in; its peak RSS is sampled while it
runs. Every case must end non-zero with one line on stderr naming what was wrong, never a
traceback, never a report.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from cluster_exporter.devtools.hostile_prometheus import HostilePrometheus
from cluster_exporter.devtools.kubeapi_standin import KubeApiStandIn, KubeState, write_kubeconfig
from cluster_exporter.devtools.synthetic_cluster import CUSTOMER_LABEL

LIMIT_MIB = 128
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    namespaces = {f"ns-{i}": {CUSTOMER_LABEL: f"cust_{i}"} for i in range(3)}
    standin = KubeApiStandIn(KubeState(namespaces=namespaces)).start_in_thread()
    try:
        yield write_kubeconfig(tmp_path_factory.mktemp("kube") / "kubeconfig", standin.url)
    finally:
        standin.stop_thread()


def run_exporter(url: str, kubeconfig: Path, **env: str) -> tuple[int, str, float]:
    """(exit code, stderr, peak RSS in MiB) of one `report --dry-run` against ``url``."""
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),
        "PROMETHEUS_URL": url,
        "PROMETHEUS_ATTEMPTS": "2",
        "PROMETHEUS_TIMEOUT": "60s",
        "KUBECONFIG": str(kubeconfig),
        "CUSTOMER_LABEL": CUSTOMER_LABEL,
        "CLUSTER_ID": "hostile",
        **env,
    }
    args = ["report", "--dry-run", "--window-end", "2025-11-20T02:00:00Z"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "cluster_exporter.cli", *args],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak, watched = 0, psutil.Process(proc.pid)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            peak = max(peak, watched.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    assert out == "", "no report is printed"
    return proc.returncode, err, peak / 2**20


@pytest.mark.parametrize(
    ("behaviour", "env", "message"),
    [
        ("endless-5xx", {}, "HTTP 503"),
        ("endless-200", {}, "prometheus.max_item_bytes"),
        ("endless-series", {}, "prometheus.max_item_bytes"),
        ("endless-list", {"PROMETHEUS_MAX_ANSWER_BYTES": str(32 * 2**20)}, "prometheus.max_answer_bytes"),
        ("endless-list", {"PROMETHEUS_MAX_WINDOW_BYTES": str(48 * 2**20)}, "prometheus.max_window_bytes"),
        ("huge-label", {}, "prometheus.max_item_bytes"),
        ("disorder", {}, "not in strictly increasing time order"),
        ("duplicate", {}, "the same series twice in one answer"),
        ("number-values", {}, "malformed sample"),
        ("cut", {}, "cut off"),
    ],
)
def test_a_hostile_answer_fails_the_window_in_one_line_within_128_mib(
    kubeconfig: Path, behaviour: str, env: dict[str, str], message: str
) -> None:
    with HostilePrometheus(behaviour) as url:
        code, err, peak = run_exporter(url, kubeconfig, **env)
    lines = err.strip().splitlines()
    assert code == 1, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert message in lines[0], lines[0]
    assert peak < LIMIT_MIB, f"{behaviour}: peak RSS {peak:.1f} MiB"


def test_an_error_body_is_read_only_as_far_as_its_message(kubeconfig: Path) -> None:
    """An endless 5xx body is not read whole: each attempt reads its first 64 KiB."""
    hostile = HostilePrometheus("endless-5xx")
    with hostile as url:
        code, err, _ = run_exporter(url, kubeconfig)
    assert code == 1 and "gave up after 2 attempts" in err, err
    # two attempts by each of the window's first queries in flight (prometheus.max_concurrency 4),
    # each stopped after 64 KiB: far from the endless body's gigabytes
    assert hostile.bytes_sent < 64 * 2**20, hostile.bytes_sent
