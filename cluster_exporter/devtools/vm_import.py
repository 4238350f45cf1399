"""Load a synthetic cluster into VictoriaMetrics, streamed from the generator.

``import_into_victoriametrics`` (prometheus_server.py) writes the whole history as text first,
fine for the demo cluster; at 100,000 namespaces that text would be about 60 GB. Here each series
becomes one line of VictoriaMetrics' JSON import format (its labels once, then its values and
millisecond timestamps), and the lines go out as chunked HTTP bodies of ``series_per_request``
series each while the next ones are computed: what is held is one request's chunk, never the
history.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator

from .prometheus_server import DevServerError
from .synthetic_cluster import Cluster, Series

CHUNK_BYTES = 1 << 20  # one HTTP chunk


def series_line(series: Series) -> bytes:
    """One series (one life of it) as a line of /api/v1/import: labels, values, timestamps in ms."""
    value = series.fn.value
    times = series.times
    metric = {"__name__": series.name, **dict(series.labels)}
    return (
        f'{{"metric":{json.dumps(metric, separators=(",", ":"))},'
        f'"values":[{",".join([repr(value(t)) for t in times])}],'
        f'"timestamps":[{",".join([str(round(t * 1000)) for t in times])}]}}\n'
    ).encode()


def _chunks(lines: Iterable[bytes]) -> Iterator[bytes]:
    pending: list[bytes] = []
    size = 0
    for line in lines:
        pending.append(line)
        size += len(line)
        if size >= CHUNK_BYTES:
            yield b"".join(pending)
            pending, size = [], 0
    if pending:
        yield b"".join(pending)


def stream_import(url: str, cluster: Cluster, series_per_request: int = 50_000, progress: bool = False) -> int:
    """Send every series of ``cluster`` to VictoriaMetrics at ``url``; returns the samples sent."""
    parts = urllib.parse.urlsplit(url)
    samples = 0
    started = time.monotonic()
    total = len(cluster.series)
    for first in range(0, total, series_per_request):
        batch = cluster.series[first : first + series_per_request]
        samples += sum(len(s.times) for s in batch)
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=600)
        try:
            conn.request("POST", "/api/v1/import", body=_chunks(map(series_line, batch)), encode_chunked=True)
            resp = conn.getresponse()
            text = resp.read()
            if resp.status not in (200, 204):
                raise DevServerError(f"VictoriaMetrics import answered HTTP {resp.status}: {text[:300]!r}")
        finally:
            conn.close()
        if progress:
            done = first + len(batch)
            print(f"imported {done}/{total} series, {samples} samples, {time.monotonic() - started:.0f}s", flush=True)
    with urllib.request.urlopen(f"{url}/internal/force_flush", timeout=600):
        pass
    return samples
