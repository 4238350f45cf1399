"""Two exporter processes, one Lease: only the holder sends; kill it and the other takes over within the
lease duration and continues from the shared watermark and spool (a ConfigMap) without resending.

Both talk to the Kubernetes API stand-in (Leases and ConfigMaps with resourceVersion conflicts).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cluster_exporter.devtools.kubeapi_standin import KubeApiStandIn
from cluster_exporter.devtools.prometheus_server import PrometheusServer, free_port

from .conftest import (
    AS_OF,
    BACKFILL_FROM,
    EXPORTER,
    EXPORTER_NAMESPACE,
    exporter_env,
    kill9,
    start_exporter,
    wait_for,
    window_ids,
)
from .receiver import Receiver

LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD = 3.0, 2.0, 0.5
CLUSTER = "k8s-ha-1"


def holder(kube: KubeApiStandIn) -> str:
    lease = kube.state.get("leases", EXPORTER_NAMESPACE, "cluster-exporter")
    return str((lease or {}).get("spec", {}).get("holderIdentity") or "")


def scrape(port: int, path: str = "/metrics") -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def metric(port: int, name: str) -> float:
    _, text = scrape(port)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and not s.labels:
                return float(s.value)
    raise AssertionError(f"{name} not exposed on :{port}")


@pytest.mark.slow
def test_only_the_leader_sends_and_the_standby_takes_over(
    prometheus: PrometheusServer, kube_thread: KubeApiStandIn, token_file: Path, tmp_path: Path
) -> None:
    with Receiver(token=token_file.read_text().strip(), chaos=lambda key: ("slow", 0.25)) as receiver:
        procs: dict[str, subprocess.Popen[bytes]] = {}
        ports: dict[str, int] = {}
        logs: dict[str, Path] = {}
        for name in ("exporter-a", "exporter-b"):
            ports[name] = free_port()
            logs[name] = tmp_path / f"{name}.log"
            env = exporter_env(
                prometheus,
                kube_thread,
                receiver,
                token_file,
                CLUSTER_ID=CLUSTER,
                DELIVERY_IDENTITY=name,
                DELIVERY_METRICS_ADDRESS="127.0.0.1",
                DELIVERY_METRICS_PORT=str(ports[name]),
                DELIVERY_LEASE_DURATION=f"{LEASE_DURATION}s",
                DELIVERY_LEASE_RENEW_DEADLINE=f"{RENEW_DEADLINE}s",
                DELIVERY_LEASE_RETRY_PERIOD=f"{RETRY_PERIOD}s",
                DELIVERY_MAX_CUSTOMERS_PER_PART="1",  # 14 slow requests: time to kill the leader mid-way
            )
            procs[name] = start_exporter(["--as-of", AS_OF, "--backfill-from", BACKFILL_FROM], env, logs[name])
        try:
            leader = wait_for(lambda: holder(kube_thread), 30, what="a Lease holder")
            standby = next(n for n in procs if n != leader)
            wait_for(lambda: len(receiver.accepted_keys()) >= 3, 60, what="the leader's first deliveries")

            # While both live, every request comes from the Lease holder.
            assert {a.user_agent.split("(")[-1].rstrip(")") for a in receiver.snapshot()} == {leader}
            assert metric(ports[leader], "cluster_exporter_leader_is_leader") == 1
            assert metric(ports[standby], "cluster_exporter_leader_is_leader") == 0
            assert scrape(ports[standby], "/readyz")[0] == 200  # a healthy standby
            assert scrape(ports[standby], "/healthz")[0] == 200

            # A CronJob-style --once run meanwhile finds the Lease held and does nothing. (The receiver
            # answers 503 in the meantime, so the leader keeps work for its successor.)
            receiver.chaos = lambda key: ("status", 503)
            once_env = exporter_env(
                prometheus,
                kube_thread,
                receiver,
                token_file,
                CLUSTER_ID=CLUSTER,
                DELIVERY_IDENTITY="exporter-once",
                DELIVERY_LEASE_DURATION=f"{LEASE_DURATION}s",
                DELIVERY_LEASE_RENEW_DEADLINE=f"{RENEW_DEADLINE}s",
                DELIVERY_LEASE_RETRY_PERIOD=f"{RETRY_PERIOD}s",
            )
            once = subprocess.run(
                [*EXPORTER, "run", "--once", "--as-of", AS_OF], env=once_env, capture_output=True, text=True, timeout=60
            )
            assert once.returncode == 1, once.stderr
            assert "is held by another replica" in once.stderr
            assert not any("exporter-once" in a.user_agent for a in receiver.snapshot())
            receiver.chaos = lambda key: ("slow", 0.25)
            time.sleep(0.5)

            kill9(procs[leader])
            killed_at = time.monotonic()
            accepted_from_leader = {a.key for a in receiver.snapshot() if a.accepted}
            wait_for(lambda: holder(kube_thread) == standby, 2 * LEASE_DURATION + 5, 0.02, what="the takeover")
            takeover = time.monotonic() - killed_at
            # The standby waits until the record stood still for a lease duration on its own clock; its
            # polling adds at most one retry period on each side.
            assert takeover <= LEASE_DURATION + 2 * RETRY_PERIOD + 0.5, takeover

            every_key = {
                f"{rid}/{p}" for rid, n in zip(window_ids(CLUSTER), (5, 5, 4), strict=True) for p in range(1, n + 1)
            }
            wait_for(lambda: every_key <= receiver.accepted_keys(), 60, what="the new leader to finish")
            attempts = receiver.snapshot()
            by_new = [a for a in attempts if a.user_agent.endswith(f"({standby})")]
            assert by_new and min(a.at for a in by_new) > killed_at
            # Continues from the shared state: at most the request in flight at the kill is sent again.
            assert len({a.key for a in by_new} & accepted_from_leader) <= 1
            for key in every_key:
                assert len({a.digest for a in attempts if a.key == key}) == 1, key
            assert metric(ports[standby], "cluster_exporter_leader_is_leader") == 1
            assert metric(ports[standby], "cluster_exporter_delivery_windows_delivered_total") >= 1

            cm = kube_thread.state.get("configmaps", EXPORTER_NAMESPACE, "cluster-exporter-state")
            assert cm is not None
            index = json.loads(cm["data"]["state.json"])
            assert index["watermark"] == "2025-11-20T03:00:00Z" and index["spool"] == []

            os.kill(procs[standby].pid, signal.SIGTERM)
            assert procs[standby].wait(15) == 0, logs[standby].read_text()[-2000:]
            assert holder(kube_thread) == ""  # released on the way out
            print(f"\nleader takeover after kill -9: {takeover:.2f}s (lease duration {LEASE_DURATION}s)")
        finally:
            for proc in procs.values():
                kill9(proc)
