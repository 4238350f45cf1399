"""``cluster-exporter run`` as a process: progress output, SIGTERM, /metrics through promtool, --dry-run,
a first start without --backfill-from, and a window that cannot be built.
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from prometheus_client import CollectorRegistry

from cluster_exporter.delivery.state import DirectoryStore
from cluster_exporter.devtools.kubeapi_standin import KubeApiStandIn
from cluster_exporter.devtools.prometheus_server import PrometheusServer, free_port, require_binary
from cluster_exporter.observability.metrics import ExporterMetrics

from .conftest import (
    AS_OF,
    BACKFILL_FROM,
    EXPORTER,
    WINDOW_ENDS,
    exporter_env,
    start_exporter,
    wait_for,
    window_ids,
)
from .receiver import Receiver

ONCE = ["--once", "--as-of", AS_OF, "--backfill-from", BACKFILL_FROM]


def local_env(
    prometheus: PrometheusServer, kube: KubeApiStandIn, receiver: Receiver, token_file: Path, **extra: str
) -> dict[str, str]:
    """A directory-state, no-Lease exporter (local use)."""
    return exporter_env(
        prometheus,
        kube,
        receiver,
        token_file,
        DELIVERY_STATE_DIR=str(token_file.parent / "state"),
        DELIVERY_LEADER_ELECTION="false",
        **extra,
    )


def test_backfill_logs_one_line_per_window_when_not_a_tty(
    prometheus: PrometheusServer, kube_thread: KubeApiStandIn, receiver: Receiver, token_file: Path
) -> None:
    env = local_env(prometheus, kube_thread, receiver, token_file)
    proc = subprocess.run([*EXPORTER, "run", *ONCE], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if " delivered: " in line]
    assert len(lines) == 3
    for n, (line, end) in enumerate(zip(lines, WINDOW_ENDS, strict=True), start=1):
        assert f"window {(end.replace(hour=end.hour - 1)):%Y-%m-%dT%H:%M:%SZ}..{end:%H:%M:%SZ} delivered" in line
        assert line.endswith(f"[{n}/3]")
    assert "1 part" in lines[0] and "5 customers" in lines[0]
    assert "cycle done: 3 delivered, 0 dead-lettered, 3 built, 0 pending" in proc.stderr
    assert "\r" not in proc.stderr


def test_backfill_draws_a_progress_bar_on_a_tty(
    prometheus: PrometheusServer, kube_thread: KubeApiStandIn, receiver: Receiver, token_file: Path
) -> None:
    env = local_env(prometheus, kube_thread, receiver, token_file)
    leader_fd, follower_fd = pty.openpty()
    proc = subprocess.Popen([*EXPORTER, "run", *ONCE], env=env, stdout=subprocess.DEVNULL, stderr=follower_fd)
    os.close(follower_fd)
    output = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader_fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(leader_fd, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
        elif proc.poll() is not None:
            break
    os.close(leader_fd)
    assert proc.wait(10) == 0, output.decode(errors="replace")
    text = output.decode()
    assert "\rcatch-up [" in text
    assert "] 1/3 windows delivered 2025-11-20T00:00:00Z..01:00:00Z" in text
    assert "[" + "#" * 30 + "] 3/3 windows" in text
    assert " delivered: " not in text  # no per-window log lines under a bar


def test_sigterm_finishes_the_request_in_flight_then_exits_zero(
    prometheus: PrometheusServer, kube_thread: KubeApiStandIn, token_file: Path, tmp_path: Path
) -> None:
    with Receiver(token=token_file.read_text().strip(), chaos=lambda key: ("slow", 1.0)) as receiver:
        env = local_env(prometheus, kube_thread, receiver, token_file, DELIVERY_MAX_CUSTOMERS_PER_PART="1")
        env["DELIVERY_METRICS_PORT"] = "0"
        log = tmp_path / "exporter.log"
        proc = start_exporter(["--as-of", AS_OF, "--backfill-from", BACKFILL_FROM], env, log)
        wait_for(lambda: receiver.snapshot(), 60, what="the first request")
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(10) == 0, log.read_text()[-2000:]
        first_run = receiver.snapshot()
        assert len(first_run) == 1  # nothing started after SIGTERM...
        assert first_run[0].accepted  # ...and the one in flight was finished
        assert "received SIGTERM: stopping after the current request" in log.read_text()

        state = DirectoryStore(token_file.parent / "state").load("k8s-test-1", 3600)
        assert [e.report_id for e in state.spool] == [window_ids("k8s-test-1")[0]]
        assert state.spool[0].done == {1: "delivered"}  # the finished request was recorded

        receiver.chaos = None
        proc = start_exporter(ONCE, env, log)
        assert proc.wait(120) == 0, log.read_text()[-2000:]
        resent = [a.key for a in receiver.snapshot()[1:]]
    assert first_run[0].key not in resent
    assert len(resent) == 13  # 5 + 5 + 4 customers, one part each, minus the one delivered


def test_metrics_health_and_promtool(
    prometheus: PrometheusServer, kube_thread: KubeApiStandIn, receiver: Receiver, token_file: Path, tmp_path: Path
) -> None:
    port = free_port()
    env = local_env(
        prometheus,
        kube_thread,
        receiver,
        token_file,
        DELIVERY_METRICS_PORT=str(port),
        DELIVERY_METRICS_ADDRESS="127.0.0.1",
    )
    log = tmp_path / "exporter.log"
    proc = start_exporter(["--as-of", AS_OF, "--backfill-from", BACKFILL_FROM], env, log)
    try:
        wait_for(lambda: "cycle done" in log.read_text(), 120, what="the first cycle")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            body = resp.read()
            assert resp.headers["Content-Type"].startswith("text/plain; version=")
        for path in ("/healthz", "/readyz"):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
                assert resp.status == 200
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(10) == 0
    check = subprocess.run([require_binary("promtool"), "check", "metrics"], input=body, capture_output=True)
    assert check.returncode == 0, check.stdout + check.stderr
    text = body.decode()
    names = {
        m.name
        for m in ExporterMetrics(CollectorRegistry()).registry.collect()  # every metric the exporter defines
    }
    for name in names:
        assert f"# TYPE {name}" in text, name
    assert "cluster_exporter_delivery_windows_delivered_total 3.0" in text
    assert "cluster_exporter_delivery_last_delivered_window_end_timestamp_seconds 1.7636076e+09" in text
    assert 'cluster_exporter_delivery_attempts_total{outcome="success"} 3.0' in text
    queried = [
        line
        for line in text.splitlines()
        if line.startswith("cluster_exporter_prometheus_query_duration_seconds_count{")
    ]
    assert len(queried) >= 6 and all(float(line.split()[-1]) >= 1 for line in queried)  # the on_query hook
    assert "cluster_exporter_spool_depth_reports 0.0" in text
    assert "process_resident_memory_bytes" in text


def test_dry_run_needs_no_state_no_lease_and_sends_nothing(
    prometheus: PrometheusServer, kube_thread: KubeApiStandIn, receiver: Receiver, token_file: Path
) -> None:
    env = exporter_env(prometheus, kube_thread, receiver, token_file)
    for name in ("DELIVERY_NAMESPACE", "BILLING_API_URL", "BILLING_API_TOKEN_FILE"):
        env.pop(name)
    proc = subprocess.run(
        [*EXPORTER, "run", "--dry-run", "--as-of", AS_OF, "--backfill-from", BACKFILL_FROM],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=token_file.parent,
    )
    assert proc.returncode == 0, proc.stderr
    reports = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["report_id"] for r in reports] == window_ids("k8s-test-1")
    assert [len(r["usage"]) for r in reports] == [5, 5, 4]
    assert receiver.snapshot() == []
    assert kube_thread.state.objects == {}  # no Lease, no ConfigMap
    assert not (token_file.parent / "state").exists()


def test_first_start_begins_at_the_current_window_and_a_window_without_data_waits(
    prometheus: PrometheusServer, kube_thread: KubeApiStandIn, receiver: Receiver, token_file: Path
) -> None:
    env = local_env(prometheus, kube_thread, receiver, token_file)
    first = subprocess.run([*EXPORTER, "run", "--once", "--as-of", AS_OF], env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert "first start: reporting windows from 2025-11-20T03:00:00Z on" in first.stderr
    store = DirectoryStore(token_file.parent / "state")
    assert store.load("k8s-test-1", 3600).watermark == WINDOW_ENDS[-1]

    # An hour later the 03:00-04:00 window is due, but the demo history ends at 03:10: it cannot be closed.
    later = subprocess.run(
        [*EXPORTER, "run", "--once", "--as-of", "2025-11-20T04:07:00Z"], env=env, capture_output=True, text=True
    )
    assert later.returncode == 3, later.stderr  # WindowNotReadyError's exit code
    assert "window 2025-11-20T03:00:00Z..04:00:00Z cannot be built" in later.stderr
    assert store.load("k8s-test-1", 3600).watermark == WINDOW_ENDS[-1]  # not moved past it
    assert receiver.snapshot() == []


def test_once_without_lease_rights_says_why_and_exits_1(
    prometheus: PrometheusServer, kube_thread: KubeApiStandIn, receiver: Receiver, token_file: Path
) -> None:
    kube_thread.state.fail_status = 403  # e.g. the Role lost its Lease rights
    env = exporter_env(
        prometheus,
        kube_thread,
        receiver,
        token_file,
        DELIVERY_LEASE_DURATION="2s",
        DELIVERY_LEASE_RENEW_DEADLINE="1s",
        DELIVERY_LEASE_RETRY_PERIOD="200ms",
    )
    proc = subprocess.run([*EXPORTER, "run", *ONCE], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert "cannot acquire lease monitoring/cluster-exporter: get_lease: HTTP 403" in proc.stderr
    assert receiver.snapshot() == []
