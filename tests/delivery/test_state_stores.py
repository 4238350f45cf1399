"""The two state backends: a directory (atomic files, flock) and a ConfigMap (resourceVersion, 1 MiB)."""

from __future__ import annotations

import json
import os
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cluster_exporter.delivery.state import (
    DeadLetter,
    DirectoryStore,
    SpoolEntry,
    State,
    StateConflictError,
    StateError,
    StateLockedError,
    StateTooLargeError,
)
from cluster_exporter.delivery.state_configmap import ConfigMapStore
from cluster_exporter.devtools.kubeapi_standin import KubeApiStandIn, write_kubeconfig
from cluster_exporter.errors import UsageError
from cluster_exporter.report import build_report
from cluster_exporter.settings import KubernetesSettings
from cluster_exporter.sources.kube.discovery import make_api_client

from .conftest import EXPORTER_NAMESPACE

T0 = datetime(2025, 11, 20, tzinfo=UTC)


def entry(hour: int, customers: int = 3, noise: int = 0) -> SpoolEntry:
    """A spooled window; ``noise`` bytes of random namespace names make it hard to compress."""
    usage = {
        f"cust_{i}": {"namespaces": [f"ns-{i}-{secrets.token_hex(noise // 2)}" if noise else f"ns-{i}"], "cpu_hours": i}
        for i in range(customers)
    }
    report = build_report("k8s-1", T0.replace(hour=hour), T0.replace(hour=hour + 1), usage)
    return SpoolEntry.from_report(report, 2, built_at=T0.replace(hour=hour + 1, minute=5))


def letter(n: int, body_bytes: int) -> DeadLetter:
    """The dead letter of window n (hours after T0)."""
    body = secrets.token_hex(body_bytes // 2)
    return DeadLetter(
        idempotency_key=f"id-{n:03d}",
        report_id=f"id-{n:03d}",
        part=1,
        parts=1,
        window_start=T0 + timedelta(hours=n),
        window_end=T0 + timedelta(hours=n + 1),
        status=400,
        reason="HTTP 400: bad",
        at=T0 + timedelta(hours=n + 1, minutes=5),
        body_sha256="x",
        body=body,
    )


def state_with(*entries: SpoolEntry) -> State:
    return State(cluster_id="k8s-1", window_seconds=3600, watermark=entries[-1].window_end, spool=list(entries))


# -- directory ------------------------------------------------------------------------------------


def test_directory_round_trip_keeps_bodies_byte_for_byte(tmp_path: Path) -> None:
    first, second = entry(0), entry(1, customers=5)
    DirectoryStore(tmp_path).save(state_with(first, second))
    loaded = DirectoryStore(tmp_path).load("k8s-1", 3600)
    assert loaded.watermark == T0.replace(hour=2)
    assert [e.bodies for e in loaded.spool] == [first.bodies, second.bodies]
    assert [e.parts for e in loaded.spool] == [2, 3]
    index = json.loads((tmp_path / "state.json").read_text())
    assert "bodies" not in json.dumps(index)  # bodies live in spool/, once per window
    assert sorted(p.name for p in (tmp_path / "spool").iterdir()) == [
        f"{first.blob_name()}.json",
        f"{second.blob_name()}.json",
    ]


def test_directory_drops_leftovers_of_interrupted_writes(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    kept = entry(0)
    store.save(state_with(kept))
    orphan = entry(1)  # its blob was written, the index write that would have named it never happened
    (tmp_path / "spool" / f"{orphan.blob_name()}.json").write_text(json.dumps({"parts": orphan.bodies}))
    (tmp_path / ".tmp.state.json.4242").write_text("{half")
    loaded = DirectoryStore(tmp_path).load("k8s-1", 3600)
    assert [e.report_id for e in loaded.spool] == [kept.report_id]
    assert not (tmp_path / "spool" / f"{orphan.blob_name()}.json").exists()
    assert not (tmp_path / ".tmp.state.json.4242").exists()


def test_directory_removes_a_delivered_window_blob_after_the_index(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    first, second = entry(0), entry(1)
    store.save(state_with(first, second))
    state = store.load("k8s-1", 3600)
    state.spool.pop(0)
    store.save(state)
    assert [p.name for p in (tmp_path / "spool").iterdir()] == [f"{second.blob_name()}.json"]


def test_directory_refuses_a_changed_body_and_foreign_state(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    spooled = entry(0)
    store.save(state_with(spooled))
    with pytest.raises(UsageError, match="belongs to cluster 'k8s-1'"):
        DirectoryStore(tmp_path).load("k8s-2", 3600)
    with pytest.raises(UsageError, match="3600s windows"):
        DirectoryStore(tmp_path).load("k8s-1", 7200)
    blob = tmp_path / "spool" / f"{spooled.blob_name()}.json"
    blob.write_text(json.dumps({"parts": [b.replace("cust_1", "cust_9") for b in spooled.bodies]}))
    with pytest.raises(StateError, match="does not match its checksum"):
        DirectoryStore(tmp_path).load("k8s-1", 3600)


def test_directory_lock_keeps_a_second_process_out(tmp_path: Path) -> None:
    with DirectoryStore(tmp_path).session():
        pid = os.fork()
        if pid == 0:  # another process: the flock must refuse it
            try:
                with DirectoryStore(tmp_path).session():
                    os._exit(1)
            except StateLockedError:
                os._exit(0)
            os._exit(2)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    with DirectoryStore(tmp_path).session():  # released
        pass


def test_directory_dead_letters_one_file_per_part(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    store.add_dead_letter(letter(0, 100))
    store.add_dead_letter(letter(0, 100))  # refused again after a restart: overwrites itself
    store.add_dead_letter(letter(1, 100))
    assert [x.idempotency_key for x in store.dead_letters()] == ["id-000", "id-001"]


# -- ConfigMap ------------------------------------------------------------------------------------


def api_factory(kube: KubeApiStandIn, tmp_path: Path) -> object:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube.url)
    settings = KubernetesSettings(kubeconfig=kubeconfig)  # type: ignore[call-arg]
    return lambda: make_api_client(settings)


def cm_store(kube: KubeApiStandIn, tmp_path: Path, max_bytes: int = 900_000) -> ConfigMapStore:
    return ConfigMapStore(api_factory(kube, tmp_path), EXPORTER_NAMESPACE, "exporter-state", max_bytes)  # type: ignore[arg-type]


def test_configmap_round_trip_create_then_replace(kube_thread: KubeApiStandIn, tmp_path: Path) -> None:
    store = cm_store(kube_thread, tmp_path)
    assert store.load("k8s-1", 3600).watermark is None  # no ConfigMap yet
    first, second = entry(0), entry(1)
    store.save(state_with(first))
    store.save(state_with(first, second))
    assert [(m, s) for m, _, s in kube_thread.state.writes] == [("POST", 201), ("PUT", 200)]
    loaded = cm_store(kube_thread, tmp_path).load("k8s-1", 3600)
    assert [e.bodies for e in loaded.spool] == [first.bodies, second.bodies]
    cm = kube_thread.state.get("configmaps", EXPORTER_NAMESPACE, "exporter-state")
    assert cm is not None
    assert sorted(cm["binaryData"]) == [f"spool.{first.blob_name()}.json.gz", f"spool.{second.blob_name()}.json.gz"]
    assert store.spool_bytes() > 0


def test_configmap_refuses_to_overwrite_another_writer(kube_thread: KubeApiStandIn, tmp_path: Path) -> None:
    ours, theirs = cm_store(kube_thread, tmp_path), cm_store(kube_thread, tmp_path)
    ours.save(state_with(entry(0)))
    ours.load("k8s-1", 3600)
    theirs.load("k8s-1", 3600)
    theirs.save(state_with(entry(0), entry(1)))
    with pytest.raises(StateConflictError):
        ours.save(state_with(entry(0)))
    assert [e.window_end.hour for e in cm_store(kube_thread, tmp_path).load("k8s-1", 3600).spool] == [1, 2]
    assert kube_thread.state.writes[-1][2] == 409


def test_configmap_over_budget_drops_dead_letter_bodies_then_letters_then_refuses_spool(
    kube_thread: KubeApiStandIn, tmp_path: Path
) -> None:
    store = cm_store(kube_thread, tmp_path, max_bytes=20_000)
    store.save(state_with(entry(0)))
    for hour in range(3):  # 3 x ~8 kB gzipped (random hex): the oldest must give up its body
        store.add_dead_letter(letter(hour, 16_000))
    letters = store.dead_letters()
    assert [x.idempotency_key for x in letters] == ["id-000", "id-001", "id-002"]
    assert letters[0].body is None and letters[2].body is not None
    assert letters[0].status == 400 and letters[0].reason == "HTTP 400: bad"  # what happened is kept
    for n in range(3, 150):  # then whole letters go, oldest first; the newest always stays
        store.add_dead_letter(letter(n, 100))
    kept = [x.idempotency_key for x in store.dead_letters()]
    assert kept[-1] == "id-149" and "id-000" not in kept and len(kept) < 150
    assert kept == sorted(kept)
    with pytest.raises(StateTooLargeError):  # a spooled report is never dropped to make room
        store.save(state_with(entry(0), entry(1, customers=40, noise=800)))
    assert [e.window_end.hour for e in cm_store(kube_thread, tmp_path).load("k8s-1", 3600).spool] == [1]


def test_configmap_limit_of_the_api_server_maps_to_too_large(kube_thread: KubeApiStandIn, tmp_path: Path) -> None:
    kube_thread.state.configmap_max_bytes = 5_000  # the API server's own check, below our budget
    store = cm_store(kube_thread, tmp_path, max_bytes=900_000)
    with pytest.raises(StateTooLargeError, match="refused it as too large"):
        store.save(state_with(entry(0, customers=20, noise=600)))
    assert kube_thread.state.writes[-1][2] == 422


# -- the owner history, in both backends ----------------------------------------------------------


def with_history(state: State, namespaces: int = 3, noise: int = 0) -> State:
    """``state`` with two observations of ``namespaces`` namespaces; ``noise`` random bytes in each name."""
    owners = {f"tenant-{i:05d}{secrets.token_hex(noise)}": f"cust-{i:05d}" for i in range(namespaces)}
    state.owners.observe(T0, owners)
    state.owners.observe(T0 + timedelta(hours=2), {**owners, min(owners): "cust-moved"})
    return state


def test_directory_keeps_the_owner_history_beside_the_index(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    saved = with_history(state_with(entry(0)))
    store.save(saved)
    store.save(saved)  # unchanged: the same file
    assert [p.name for p in tmp_path.glob("owners-*")] == [f"owners-{saved.owners_sha256}.json.xz"]
    loaded = DirectoryStore(tmp_path).load("k8s-1", 3600)
    assert (loaded.owners.current, loaded.owners.runs, loaded.owners.changes) == (
        saved.owners.current,
        saved.owners.runs,
        saved.owners.changes,
    )
    loaded.owners.observe(T0 + timedelta(hours=3), {})
    store.save(loaded)  # the new history is written before the index naming it, the old one dropped after
    assert [p.name for p in tmp_path.glob("owners-*")] == [f"owners-{loaded.owners_sha256}.json.xz"]


def test_directory_loads_state_written_before_the_owner_history(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    store.save(state_with(entry(0)))
    index = json.loads((tmp_path / "state.json").read_text())
    del index["owners_sha256"]  # as an exporter without it wrote it
    (tmp_path / "state.json").write_text(json.dumps(index))
    (tmp_path / "owners-0123.json.xz").write_bytes(b"left by an interrupted write")
    loaded = DirectoryStore(tmp_path).load("k8s-1", 3600)
    assert not loaded.owners and loaded.watermark == T0.replace(hour=1)
    assert not list(tmp_path.glob("owners-*"))


def test_a_damaged_owner_history_is_started_afresh_not_fatal(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    saved = with_history(state_with(entry(0)))
    DirectoryStore(tmp_path).save(saved)
    (tmp_path / f"owners-{saved.owners_sha256}.json.xz").write_bytes(b"garbage")
    loaded = DirectoryStore(tmp_path).load("k8s-1", 3600)
    assert not loaded.owners and [e.report_id for e in loaded.spool] == [saved.spool[0].report_id]
    assert "does not match its checksum; starting it afresh" in caplog.text


def test_configmap_keeps_the_owner_history_in_the_same_update(kube_thread: KubeApiStandIn, tmp_path: Path) -> None:
    store = cm_store(kube_thread, tmp_path)
    saved = with_history(state_with(entry(0)))
    store.save(saved)
    cm = kube_thread.state.get("configmaps", EXPORTER_NAMESPACE, "exporter-state")
    assert cm is not None and "owners.json.xz" in cm["binaryData"]
    assert json.loads(cm["data"]["state.json"])["owners_sha256"] == saved.owners_sha256
    loaded = cm_store(kube_thread, tmp_path).load("k8s-1", 3600)
    assert loaded.owners.current == saved.owners.current and loaded.owners.changes == saved.owners.changes


def test_configmap_full_leaves_the_owner_history_out_before_a_spooled_report(
    kube_thread: KubeApiStandIn, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = cm_store(kube_thread, tmp_path, max_bytes=20_000)
    big = with_history(state_with(entry(0)), namespaces=5_000, noise=4)  # some 40 kB packed: over this budget
    store.save(big)
    assert "left out the owner history" in caplog.text
    loaded = cm_store(kube_thread, tmp_path).load("k8s-1", 3600)
    assert not loaded.owners and loaded.owners_sha256 is None and len(loaded.spool) == 1
