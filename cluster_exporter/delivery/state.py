"""Durable delivery state: the watermark, the spool of built-but-undelivered reports, dead letters.

The state also keeps the owners discovery saw at each cycle (``owner_history``), stored beside the
index like a spooled body (by its sha256), so a catch-up bills each backlog window with the owners
seen closest to it.

The watermark is the end of the newest window whose report was built; every window up to it is
either delivered, dead-lettered or in the spool. A report enters the spool in the same write that
moves the watermark past its window, and it is sent from the spool only after that write, so:

* a report is built once: after a crash it is resent from the spool byte for byte, never rebuilt
  (a rebuild could bill different numbers under the same idempotency key);
* a window is never skipped: the watermark only moves together with the spooled report.

Each write replaces the old state whole (temp file, fsync, rename, fsync of the directory; or one
ConfigMap update guarded by resourceVersion), so a kill -9 at any instant leaves the old state or
the new one, never a mix. Every body is stored with its sha256, checked on load.

This module holds the model and the directory backend; ``state_configmap`` the ConfigMap one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ExporterError, UsageError
from ..report import UsageReport, window_label
from .owner_history import OwnerHistory, OwnerHistoryError
from .sender import idempotency_key, split_report

log = logging.getLogger(__name__)

# The index's format. Adding an optional field does not change it: an older exporter ignores the
# field (the owner history then starts afresh) instead of refusing to run after a rollback.
STATE_FORMAT = 1


class StateError(ExporterError):
    """The durable state could not be read or written, or does not belong to this exporter."""


class StateConflictError(StateError):
    """Someone else changed the state since we read it (another replica): reload, do not overwrite."""


class StateTooLargeError(StateError):
    """The state would exceed what its backend can hold (a ConfigMap's 1 MiB)."""


class StateLockedError(StateError):
    """Another process is using this state directory."""


def sha256(text: str) -> str:
    """Hex sha256 of a body as sent (UTF-8)."""
    return hashlib.sha256(text.encode()).hexdigest()


class SpoolEntry(BaseModel):
    """One window's report, as the exact request bodies of its parts, and which parts are done."""

    window_start: datetime
    window_end: datetime
    report_id: str
    customers: int = 0
    namespaces: int = 0
    bodies: list[str] = Field(default_factory=list, exclude=True)  # stored apart from the index
    digests: list[str]
    done: dict[int, Literal["delivered", "dead-lettered"]] = Field(default_factory=dict)
    built_at: datetime

    @classmethod
    def from_report(cls, report: UsageReport, max_customers: int, built_at: datetime) -> SpoolEntry:
        """Split and serialise a freshly built report, once."""
        bodies = [part.to_json() for part in split_report(report, max_customers)]
        return cls(
            window_start=report.window_start,
            window_end=report.window_end,
            report_id=report.report_id,
            customers=len(report.usage),
            namespaces=sum(len(u.namespaces) for u in report.usage),
            bodies=bodies,
            digests=[sha256(b) for b in bodies],
            built_at=built_at,
        )

    @property
    def parts(self) -> int:
        """Number of parts (requests) of this window's report."""
        return len(self.digests)

    def pending(self) -> list[int]:
        """Part numbers not yet delivered or dead-lettered, in order."""
        return [p for p in range(1, self.parts + 1) if p not in self.done]

    def key(self, part: int) -> str:
        """Idempotency-Key of one part."""
        return idempotency_key(self.report_id, part, self.parts)

    def blob_name(self) -> str:
        """Stable name of this entry's bodies in a backend."""
        return f"{_stamp(self.window_end)}-{self.report_id}"

    def attach(self, bodies: list[str], where: str) -> SpoolEntry:
        """This entry with its bodies loaded from a backend, after checking them against the digests."""
        if [sha256(b) for b in bodies] != self.digests:
            raise StateError(f"spooled report {self.report_id} in {where} does not match its checksum; not sending it")
        return self.model_copy(update={"bodies": bodies})


class DeadLetter(BaseModel):
    """A report part the billing API refused for good, kept for a human to look at."""

    idempotency_key: str
    report_id: str
    part: int
    parts: int
    window_start: datetime
    window_end: datetime
    status: int | None
    reason: str
    at: datetime
    body_sha256: str
    body: str | None = None  # None when a backend had to drop it for space

    def name(self) -> str:
        """Stable name in a backend: one per part, so a repeated refusal overwrites itself."""
        return f"{_stamp(self.window_end)}-{self.report_id}-part{self.part}"


class State(BaseModel):
    """Everything delivery must not forget."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    format: int = STATE_FORMAT
    cluster_id: str
    window_seconds: int
    watermark: datetime | None = None
    last_delivered: datetime | None = None
    spool: list[SpoolEntry] = Field(default_factory=list)
    # the owners seen over time: stored apart from the index, named there by the sha256 of its packed form
    owners: OwnerHistory = Field(default_factory=OwnerHistory, exclude=True)
    owners_sha256: str | None = None

    def index_json(self) -> str:
        """The state without report bodies (they are stored one blob per window)."""
        return self.model_dump_json(indent=1)

    def check_owner(self, cluster_id: str, window_seconds: int, where: str) -> None:
        """Refuse state written for another cluster id or window length."""
        if self.cluster_id != cluster_id:
            raise UsageError(f"state in {where} belongs to cluster {self.cluster_id!r}, not {cluster_id!r}")
        if self.window_seconds != window_seconds:
            raise UsageError(
                f"state in {where} was written for {self.window_seconds}s windows, not {window_seconds}s; "
                "use a new state location to change the window length"
            )


def parse_index(text: str, where: str) -> State:
    """A State from its index JSON (bodies not attached yet)."""
    try:
        state = State.model_validate_json(text)
    except ValidationError as exc:
        raise StateError(f"state in {where} is unreadable: {exc.errors()[0]['msg']}") from exc
    if state.format != STATE_FORMAT:
        raise StateError(f"state in {where} has format {state.format}; this exporter reads {STATE_FORMAT}")
    return state


class OwnerPacker:
    """Packs a state's owner history for a backend, once per revision (xz is the costly part)."""

    def __init__(self) -> None:
        self._packed: tuple[int, int, bytes] | None = None  # (id of the history, its revision, packed)

    def pack(self, state: State) -> bytes | None:
        """The packed history (None when it is empty); sets ``state.owners_sha256`` to match."""
        history = state.owners
        if not history:
            state.owners_sha256 = None
            return None
        key = (id(history), history.revision)
        if self._packed is None or self._packed[:2] != key:
            self._packed = (*key, history.pack())
        packed = self._packed[2]
        state.owners_sha256 = hashlib.sha256(packed).hexdigest()
        return packed


def attach_owners(state: State, packed: bytes | None, where: str) -> None:
    """Give ``state`` the history its index names, from ``packed`` (None: not found). A history that
    is missing, altered or unreadable is logged and started afresh: it refines whom a backlog window
    is billed to, and is no reason to stop billing."""
    if state.owners_sha256 is None:
        return
    problem = None
    if packed is None:
        problem = "is missing"
    elif hashlib.sha256(packed).hexdigest() != state.owners_sha256:
        problem = "does not match its checksum"
    else:
        try:
            state.owners = OwnerHistory.unpack(packed)
        except OwnerHistoryError as exc:
            problem = f"is unreadable ({exc})"
    if problem is not None:
        log.warning(
            "the owner history in %s %s; starting it afresh (backlog windows before the next cycles are "
            "billed with the live owners)",
            where,
            problem,
        )
        state.owners_sha256 = None


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


class StateStore(Protocol):
    """A backend. Methods block (file or Kubernetes API I/O); callers run them in a thread."""

    def describe(self) -> str:
        """Where the state lives, for messages."""
        ...

    def session(self) -> contextlib.AbstractContextManager[None]:
        """Exclusive use of the state for one cycle (a lock where the backend needs one)."""
        ...

    def load(self, cluster_id: str, window_seconds: int) -> State:
        """The current state with spooled bodies attached (a fresh State if there is none)."""
        ...

    def save(self, state: State) -> None:
        """Replace the stored state with ``state``, atomically."""
        ...

    def add_dead_letter(self, letter: DeadLetter) -> None:
        """Keep a refused report part."""
        ...

    def dead_letters(self) -> list[DeadLetter]:
        """Every dead letter kept, oldest window first."""
        ...

    def spool_bytes(self) -> int:
        """Bytes the spooled bodies take in the backend."""
        ...


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old file or the new one: temp, fsync, rename."""
    tmp = path.with_name(f".tmp.{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename or unlink in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DirectoryStore:
    """State in a directory::

    state.json                          watermark, last delivered window, spool index with sha256s
    spool/<window end>-<report id>.json the bodies of one spooled window, written once
    owners-<sha256>.json.xz             the owner history the index names (written before it)
    dead-letter/<...>-part<n>.json      refused parts with status, reason and body
    lock                                flock'ed for the length of a cycle
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.index = root / "state.json"
        self.spool_dir = root / "spool"
        self.dead_dir = root / "dead-letter"
        self._written: dict[str, list[str]] = {}  # spool blob name -> digests known to be on disk
        self._owners = OwnerPacker()

    def describe(self) -> str:
        """The directory."""
        return str(self.root)

    def _prepare(self) -> None:
        try:
            for directory in (self.root, self.spool_dir, self.dead_dir):
                directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(f"cannot create state directory {self.root}: {exc.strerror}") from exc

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Hold an exclusive flock on ``lock`` (released by the kernel if we are killed)."""
        self._prepare()
        fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise StateLockedError(f"state directory {self.root} is in use by another process") from exc
                raise StateError(f"cannot lock state directory {self.root}: {exc.strerror}") from exc
            yield
        finally:
            os.close(fd)

    def load(self, cluster_id: str, window_seconds: int) -> State:
        """Read state.json and the spooled bodies; drop leftovers of interrupted writes."""
        self._prepare()
        try:
            text = self.index.read_text()
        except FileNotFoundError:
            state = State(cluster_id=cluster_id, window_seconds=window_seconds)
        except OSError as exc:
            raise StateError(f"cannot read {self.index}: {exc.strerror}") from exc
        else:
            state = parse_index(text, str(self.index))
            state.check_owner(cluster_id, window_seconds, str(self.root))
        entries = []
        for entry in state.spool:
            path = self.spool_dir / f"{entry.blob_name()}.json"
            try:
                bodies = json.loads(path.read_text())["parts"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise StateError(f"spooled report {path} is missing or unreadable: {exc}") from exc
            entries.append(entry.attach(bodies, str(path)))
        state.spool = entries
        self._written = {e.blob_name(): e.digests for e in entries}
        if state.owners_sha256 is not None:
            try:
                packed: bytes | None = self._owners_path(state.owners_sha256).read_bytes()
            except OSError:
                packed = None
            attach_owners(state, packed, str(self.root))
        self._remove_leftovers(state.owners_sha256)
        return state

    def _owners_path(self, digest: str) -> Path:
        return self.root / f"owners-{digest}.json.xz"

    def _remove_leftovers(self, owners_sha256: str | None) -> None:
        # Temp files of interrupted writes, and blobs written for a window whose index write never
        # happened (a crash between the two): never sent, so safe to drop; the window is rebuilt.
        # Likewise owner histories the index does not name.
        for directory in (self.root, self.spool_dir, self.dead_dir):
            for path in directory.glob(".tmp.*"):
                path.unlink(missing_ok=True)
        for path in self.spool_dir.glob("*.json"):
            if path.stem not in self._written:
                path.unlink(missing_ok=True)
        self._drop_owners_but(owners_sha256)

    def _drop_owners_but(self, digest: str | None) -> None:
        keep = self._owners_path(digest) if digest else None
        for path in self.root.glob("owners-*.json.xz"):
            if path != keep:
                path.unlink(missing_ok=True)

    def save(self, state: State) -> None:
        """Write new spool blobs and owner history, then the index (the commit point), then drop
        blobs no longer indexed."""
        self._prepare()
        try:
            for entry in state.spool:
                name = entry.blob_name()
                if self._written.get(name) != entry.digests:
                    atomic_write(self.spool_dir / f"{name}.json", json.dumps({"parts": entry.bodies}).encode())
                    self._written[name] = entry.digests
            packed = self._owners.pack(state)
            if packed is not None and state.owners_sha256 is not None:
                path = self._owners_path(state.owners_sha256)
                if not path.exists():
                    atomic_write(path, packed)
            atomic_write(self.index, state.index_json().encode())
            keep = {e.blob_name() for e in state.spool}
            for name in [n for n in self._written if n not in keep]:
                (self.spool_dir / f"{name}.json").unlink(missing_ok=True)
                del self._written[name]
            self._drop_owners_but(state.owners_sha256)
        except OSError as exc:
            raise StateError(f"cannot write state in {self.root}: {exc.strerror}") from exc

    def add_dead_letter(self, letter: DeadLetter) -> None:
        """Write dead-letter/<name>.json."""
        self._prepare()
        try:
            atomic_write(self.dead_dir / f"{letter.name()}.json", letter.model_dump_json(indent=1).encode())
        except OSError as exc:
            raise StateError(f"cannot write dead letter in {self.dead_dir}: {exc.strerror}") from exc

    def dead_letters(self) -> list[DeadLetter]:
        """Every dead letter in dead-letter/."""
        if not self.dead_dir.is_dir():
            return []
        return [DeadLetter.model_validate_json(p.read_text()) for p in sorted(self.dead_dir.glob("[!.]*.json"))]

    def spool_bytes(self) -> int:
        """Bytes of the spool directory's blobs."""
        return sum(p.stat().st_size for p in self.spool_dir.glob("[!.]*.json")) if self.spool_dir.is_dir() else 0


def entry_label(entry: SpoolEntry) -> str:
    """``2025-11-20T00:00:00Z..01:00:00Z`` for messages."""
    return window_label(entry.window_start, entry.window_end)
