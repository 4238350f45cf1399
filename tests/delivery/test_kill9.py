"""kill -9 the exporter at random points while it sends: afterwards every window is delivered, each
idempotency key only ever carried one body, and a restart on the finished state sends nothing.

Each scenario runs ``cluster-exporter run --once`` on one state directory again and again, killing
it with SIGKILL at a random instant (half the time at a random delay after start, half just after a
request of it reached the receiver, i.e. mid-send), then lets a last run finish. The receiver fails
at random too (503, cut connections, slow answers), and before every restart the cluster's
namespaces change, so a report rebuilt instead of resent from the spool would differ from what was
sent before and be caught.
"""

from __future__ import annotations

import json
import random
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cluster_exporter.delivery.state import DirectoryStore
from cluster_exporter.devtools.kubeapi_standin import KubeApiStandIn, KubeState
from cluster_exporter.devtools.prometheus_server import PrometheusServer
from cluster_exporter.devtools.synthetic_cluster import CUSTOMER_LABEL

from .conftest import AS_OF, BACKFILL_FROM, WINDOW_ENDS, exporter_env, kill9, start_exporter, wait_for, window_ids
from .receiver import Receiver

MIN_SCENARIOS = 4
MIN_KILLS = 24
KILLS_PER_SCENARIO = 6


def chaos(rng: random.Random) -> Callable[[str], tuple[object, ...]]:
    """The receiver's random failures: 15% 503, 10% cut after the body, else a slow-ish accept."""

    def pick(key: str) -> tuple[object, ...]:
        roll = rng.random()
        if roll < 0.15:
            return ("status", 503)
        if roll < 0.25:
            return ("cut",)
        return ("slow", rng.uniform(0.02, 0.15))

    return pick


def churn(kube: KubeApiStandIn, n: int) -> None:
    """Replace the previous churn namespace by a new one owned by a new customer."""

    def change(state: KubeState) -> None:
        for name in [ns for ns in state.namespaces if ns.startswith("churn-")]:
            del state.namespaces[name]
        state.namespaces[f"churn-{n}"] = {CUSTOMER_LABEL: f"cust_churn_{n}"}

    kube.mutate(change)


def sent_or_exited(receiver: Receiver, seen: int, proc: subprocess.Popen[bytes]) -> Callable[[], bool]:
    """True once the receiver got a request beyond the first ``seen``, or the process ended."""
    return lambda: len(receiver.snapshot()) > seen or proc.poll() is not None


def check_bodies(receiver: Receiver, cluster_id: str) -> int:
    """Every key only ever carried one body; every part of every window was accepted. Returns keys checked."""
    by_key = receiver.by_key()
    accepted = receiver.accepted_keys()
    checked = 0
    for rid in window_ids(cluster_id):
        keys = {k: tries for k, tries in by_key.items() if k.split("/")[0] == rid}
        assert keys, f"window {rid} never sent"
        parts = {a.report()["parts"] for tries in keys.values() for a in tries}
        assert len(parts) == 1, f"window {rid} sent with different part counts {parts}: it was rebuilt"
        expected = {f"{rid}/{p}" for p in range(1, parts.pop() + 1)}
        assert set(keys) == expected
        for key, tries in keys.items():
            assert len({a.digest for a in tries}) == 1, f"{key} sent with {len({a.digest for a in tries})} bodies"
        assert expected <= accepted, f"window {rid}: parts never accepted: {sorted(expected - accepted)}"
        checked += len(keys)
    return checked


@pytest.mark.slow
def test_kill9_at_random_points_loses_nothing_and_never_changes_a_body(
    prometheus: PrometheusServer, kube_thread: KubeApiStandIn, token_file: Path, tmp_path: Path
) -> None:
    rng = random.Random(20251120)
    kills = mid_send = 0
    started = time.monotonic()
    with Receiver(token=token_file.read_text().strip(), chaos=chaos(rng)) as receiver:
        scenario = -1
        while scenario + 1 < MIN_SCENARIOS or kills < MIN_KILLS:
            scenario += 1
            cluster_id = f"k8s-kill-{scenario}"
            state_dir = tmp_path / f"state-{scenario}"
            env = exporter_env(
                prometheus,
                kube_thread,
                receiver,
                token_file,
                CLUSTER_ID=cluster_id,
                DELIVERY_STATE_DIR=str(state_dir),
                DELIVERY_LEADER_ELECTION="false",
                DELIVERY_MAX_CUSTOMERS_PER_PART="1",  # 5 requests per window: more instants to be killed at
                BILLING_API_TIMEOUT="1s",
            )
            args = ["--once", "--as-of", AS_OF, "--backfill-from", BACKFILL_FROM]
            log = tmp_path / f"exporter-{scenario}.log"
            for run in range(KILLS_PER_SCENARIO):
                churn(kube_thread, scenario * 100 + run)
                seen = len(receiver.snapshot())
                proc = start_exporter(args, env, log)
                if run % 2 == 0:
                    time.sleep(rng.uniform(0.2, 4.0))
                else:  # mid-send: right after one of its requests reached the receiver
                    wait_for(sent_or_exited(receiver, seen, proc), 30, what="a request")
                    time.sleep(rng.uniform(0.0, 0.2))
                    mid_send += 1
                if proc.poll() is not None:
                    assert proc.returncode == 0, log.read_text()[-2000:]
                    break  # finished before the kill
                kill9(proc)
                kills += 1
            churn(kube_thread, scenario * 100 + 99)
            proc = start_exporter(args, env, log)
            assert proc.wait(90) == 0, log.read_text()[-3000:]
            check_bodies(receiver, cluster_id)
            state = DirectoryStore(state_dir).load(cluster_id, 3600)
            assert state.spool == [] and state.watermark == WINDOW_ENDS[-1]
            assert not list(state_dir.rglob(".tmp.*"))

        # Restart on a finished state: nothing already delivered is sent again.
        before = len(receiver.snapshot())
        proc = start_exporter(args, env, log)
        assert proc.wait(30) == 0
        assert len(receiver.snapshot()) == before
    elapsed = time.monotonic() - started
    assert kills >= MIN_KILLS
    print(f"\nkill -9: {kills} kills ({mid_send} mid-send) in {scenario + 1} scenarios, {elapsed:.0f}s")
    (tmp_path / "summary.json").write_text(json.dumps({"kills": kills, "mid_send": mid_send, "seconds": elapsed}))
