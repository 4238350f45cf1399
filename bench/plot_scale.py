"""Plot wall time and peak RSS against namespaces from the lines ``scale_report.py --json`` wrote.

    .venv/bin/pip install matplotlib        # not a dependency of the project: only this plot needs it
    .venv/bin/python bench/plot_scale.py bench/out/scale.jsonl docs/scale.png

Several lines for one engine and size (repeated runs) are plotted as their median; the per-namespace
design is drawn where a run measured it.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after the backend is chosen

ENGINES = {"prometheus": "Prometheus", "victoriametrics": "VictoriaMetrics"}


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def main() -> None:
    source, target = Path(sys.argv[1]), Path(sys.argv[2])
    runs: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for line in source.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            if not row.get("separate_cores"):  # runs on shared cores only, the usual case here
                runs[(row["engine"], row["namespaces"])].append(row)
    fig, (time_ax, rss_ax) = plt.subplots(1, 2, figsize=(12, 4.8))
    for engine, label in ENGINES.items():
        sizes = sorted(n for e, n in runs if e == engine)
        if not sizes:
            continue
        style = "-" if engine == "victoriametrics" else "--"
        curves = {
            f"exporter ({label})": "exporter_s",
            f"{label}'s own time for the same queries": "engine_raw_s",
            f"per-namespace design, uncompressed ({label})": "per_namespace_s",
            f"per-namespace design, gzip as it runs ({label})": "per_namespace_gzip_s",
        }
        for name, key in curves.items():
            points = [(n, _median(runs[(engine, n)], key)) for n in sizes]
            xs = [n for n, v in points if v is not None]
            ys = [v for _, v in points if v is not None]
            if xs:
                time_ax.plot(xs, ys, style, marker="o", label=name)
        rss = [(n, _median(runs[(engine, n)], "rss_mib")) for n in sizes]
        rss_ax.plot([n for n, _ in rss], [v for _, v in rss], style, marker="o", label=f"exporter ({label})")
    time_ax.set(xscale="log", yscale="log", xlabel="namespaces", ylabel="wall time of one window (s)")
    time_ax.set_title("Wall time per hourly window")
    time_ax.legend(fontsize=7)
    time_ax.grid(True, which="both", alpha=0.3)
    rss_ax.axhline(128, color="red", linewidth=1, label="limit 128 MiB")
    rss_ax.axhline(100, color="orange", linewidth=1, linestyle=":", label="aim 100 MiB")
    rss_ax.set(xscale="log", xlabel="namespaces", ylabel="peak RSS (MiB)", ylim=(0, 140))
    rss_ax.set_title("Peak RSS of the exporter process")
    rss_ax.legend(fontsize=7)
    rss_ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(target, dpi=110)


if __name__ == "__main__":
    main()
