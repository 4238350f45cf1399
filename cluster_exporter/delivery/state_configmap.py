"""The ConfigMap state backend: no PVC needed, shared by every replica, in the exporter's namespace.

One ConfigMap holds everything::

    data.state.json                            the index (watermark, spool with sha256s)
    binaryData.spool.<window>-<id>.json.gz     the bodies of one spooled window, gzipped
    binaryData.dead-letter.<...>.json.gz       refused parts
    binaryData.owners.json.xz                  the owner history (xz-compressed, see owner_history)

Each save is one update carrying the resourceVersion we read, so the API server applies it whole or
refuses it (409) when another replica wrote in between; we then stop and reload rather than
overwrite. A ConfigMap holds at most 1 MiB: spooled bodies are gzipped (usage JSON shrinks about
fivefold, to some 55 bytes per customer), the data is kept under ``configmap_max_bytes``, dead
letters give up their bodies and then their place (oldest first, each logged) before a spooled
report would, and a spool that still does not fit raises StateTooLargeError, which stops building
new windows until the spool drains. The owner history gives way after the dead letters' bodies and
before whole dead letters (logged once): without it backlog windows are billed with the live
owners, as before it existed.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import gzip
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import KubernetesConflict, KubernetesError, KubernetesNotFound, KubernetesRefused
from ..sources.kube import api as kube_api
from .state import (
    DeadLetter,
    OwnerPacker,
    State,
    StateConflictError,
    StateError,
    StateTooLargeError,
    attach_owners,
    parse_index,
)

log = logging.getLogger(__name__)

INDEX_KEY = "state.json"
SPOOL_PREFIX = "spool."
DEAD_PREFIX = "dead-letter."
SUFFIX = ".json.gz"
OWNERS_KEY = "owners.json.xz"


def _pack(data: bytes) -> str:
    return base64.b64encode(gzip.compress(data, mtime=0)).decode()


def _unpack(text: str) -> bytes:
    return gzip.decompress(base64.b64decode(text))


def configmap_size(data: dict[str, str], binary: dict[str, str]) -> int:
    """Bytes the API server counts against the 1 MiB limit (binaryData decoded)."""
    return sum(len(k) + len(v.encode()) for k, v in data.items()) + sum(
        len(k) + len(base64.b64decode(v)) for k, v in binary.items()
    )


class ConfigMapStore:
    """State in ConfigMap ``namespace/name``, through the ``kubernetes`` client (blocking calls)."""

    def __init__(
        self,
        api_client_factory: Callable[[], Any],
        namespace: str,
        name: str,
        max_bytes: int,
        request_timeout: float = 30.0,
        on_error: Callable[[str], None] = lambda operation: None,
    ) -> None:
        self.api_client_factory = api_client_factory
        self.namespace = namespace
        self.name = name
        self.max_bytes = max_bytes
        self.request_timeout = request_timeout
        self.on_error = on_error
        self._api: Any = None
        self._rv: str | None = None
        self._data: dict[str, str] = {}
        self._binary: dict[str, str] = {}
        self._packs: dict[tuple[str, ...], str] = {}
        self._owners = OwnerPacker()
        self._told_owners_left_out = False

    def describe(self) -> str:
        """configmap/<namespace>/<name>."""
        return f"configmap {self.namespace}/{self.name}"

    def _client(self) -> Any:
        if self._api is None:
            self._api = self.api_client_factory()
        return self._api

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """No lock: resourceVersion checks on every write keep two writers apart."""
        yield

    def _call(self, operation: str, method: str, url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        what = f"{operation} {self.describe()}"
        try:
            return kube_api.request(self._client(), method, url, body=body, timeout=self.request_timeout, what=what)
        except KubernetesConflict as exc:
            raise StateConflictError(
                f"{self.describe()} was changed by someone else (another replica?); reloading"
            ) from exc
        except KubernetesRefused as exc:
            if exc.status == 422 and "too long" in exc.body.lower():
                raise StateTooLargeError(f"{self.describe()}: the API server refused it as too large") from exc
            self.on_error(operation)
            raise StateError(str(exc)) from exc
        except KubernetesNotFound as exc:
            if operation == "get_configmap":
                raise
            self.on_error(operation)
            raise StateError(str(exc)) from exc
        except KubernetesError as exc:
            self.on_error(operation)
            raise StateError(str(exc)) from exc

    def _get(self) -> dict[str, Any] | None:
        try:
            return self._call("get_configmap", "GET", self._url(self.name))
        except KubernetesNotFound:
            return None

    def load(self, cluster_id: str, window_seconds: int) -> State:
        """Read the ConfigMap (a fresh State if it does not exist yet)."""
        obj = self._get()
        if obj is None:
            self._rv, self._data, self._binary = None, {}, {}
            return State(cluster_id=cluster_id, window_seconds=window_seconds)
        self._remember(obj)
        text = self._data.get(INDEX_KEY)
        if text is None:
            return State(cluster_id=cluster_id, window_seconds=window_seconds)
        state = parse_index(text, self.describe())
        state.check_owner(cluster_id, window_seconds, self.describe())
        entries = []
        for entry in state.spool:
            key = f"{SPOOL_PREFIX}{entry.blob_name()}{SUFFIX}"
            try:
                bodies = json.loads(_unpack(self._binary[key]))["parts"]
            except (KeyError, ValueError, TypeError, OSError, binascii.Error) as exc:
                raise StateError(f"spooled report {key} in {self.describe()} is missing or unreadable") from exc
            entries.append(entry.attach(bodies, f"{self.describe()} key {key}"))
        state.spool = entries
        if state.owners_sha256 is not None:
            packed = self._binary.get(OWNERS_KEY)
            try:
                raw = base64.b64decode(packed) if packed is not None else None
            except binascii.Error:
                raw = b""
            attach_owners(state, raw, self.describe())
        return state

    def save(self, state: State) -> None:
        """One update: index, spool blobs (reusing the stored ones), dead letters kept as they are."""
        binary = {k: v for k, v in self._binary.items() if k.startswith(DEAD_PREFIX)}
        for entry in state.spool:
            key = f"{SPOOL_PREFIX}{entry.blob_name()}{SUFFIX}"
            digests = tuple(entry.digests)
            if digests not in self._packs:  # gzip is the costly part; a blob never changes once packed
                self._packs[digests] = _pack(json.dumps({"parts": entry.bodies}).encode())
            binary[key] = self._packs[digests]
        current = {tuple(e.digests) for e in state.spool}
        self._packs = {d: packed for d, packed in self._packs.items() if d in current}
        owners = self._owners.pack(state)
        if owners is not None:
            binary[OWNERS_KEY] = base64.b64encode(owners).decode()
        self._write({INDEX_KEY: state.index_json()}, binary)

    def add_dead_letter(self, letter: DeadLetter) -> None:
        """Add one dead letter to the ConfigMap as it was last read or written."""
        # Built on what we last read or wrote, with its resourceVersion: if another replica wrote
        # since, the update is refused (409) instead of carrying our view over theirs.
        binary = dict(self._binary)
        binary[f"{DEAD_PREFIX}{letter.name()}{SUFFIX}"] = _pack(letter.model_dump_json().encode())
        self._write(dict(self._data), binary)

    def _fit(self, data: dict[str, str], binary: dict[str, str]) -> None:
        dead = sorted(k for k in binary if k.startswith(DEAD_PREFIX))
        for key in dead:  # first: drop bodies of dead letters, oldest first
            if configmap_size(data, binary) <= self.max_bytes:
                return
            letter = DeadLetter.model_validate_json(_unpack(binary[key]))
            if letter.body is not None:
                binary[key] = _pack(letter.model_copy(update={"body": None}).model_dump_json().encode())
                log.warning("%s is full: dropped the body of dead letter %s", self.describe(), letter.idempotency_key)
        if OWNERS_KEY in binary and configmap_size(data, binary) > self.max_bytes:  # then: the owner history
            size = len(base64.b64decode(binary.pop(OWNERS_KEY)))
            if INDEX_KEY in data:  # the index must not name what is not there
                index = json.loads(data[INDEX_KEY])
                index["owners_sha256"] = None
                data[INDEX_KEY] = json.dumps(index, indent=1)
            if not self._told_owners_left_out:
                self._told_owners_left_out = True
                log.warning(
                    "%s is full: left out the owner history (%d bytes packed); backlog windows are billed with "
                    "the live owners (use the directory backend, or kube-state-metrics' kube_namespace_labels)",
                    self.describe(),
                    size,
                )
        for key in dead:  # then: whole dead letters, oldest first
            if configmap_size(data, binary) <= self.max_bytes:
                return
            del binary[key]
            log.warning("%s is full: dropped dead letter %s", self.describe(), key)
        size = configmap_size(data, binary)
        if size > self.max_bytes:
            raise StateTooLargeError(
                f"{self.describe()} would hold {size} bytes, over delivery.configmap_max_bytes={self.max_bytes}"
            )

    def _write(self, data: dict[str, str], binary: dict[str, str]) -> None:
        self._fit(data, binary)
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": {"app.kubernetes.io/name": "cluster-exporter", "app.kubernetes.io/component": "state"},
            },
            "data": data,
            "binaryData": binary,
        }
        if self._rv is None:
            obj = self._call("create_configmap", "POST", self._url(), body)
        else:
            body["metadata"]["resourceVersion"] = self._rv
            obj = self._call("update_configmap", "PUT", self._url(self.name), body)
        self._remember(obj)

    def _url(self, *name: str) -> str:
        return kube_api.path("/api/v1/namespaces", self.namespace, "configmaps", *name)

    def _remember(self, obj: dict[str, Any]) -> None:
        self._rv = obj.get("metadata", {}).get("resourceVersion")
        self._data = dict(obj.get("data") or {})
        self._binary = dict(obj.get("binaryData") or {})

    def dead_letters(self) -> list[DeadLetter]:
        """Every dead letter in the ConfigMap."""
        obj = self._get() or {}
        binary = obj.get("binaryData") or {}
        return [DeadLetter.model_validate_json(_unpack(binary[k])) for k in sorted(binary) if k.startswith(DEAD_PREFIX)]

    def spool_bytes(self) -> int:
        """Bytes of the gzipped spool blobs as last read or written."""
        return sum(len(base64.b64decode(v)) for k, v in self._binary.items() if k.startswith(SPOOL_PREFIX))
