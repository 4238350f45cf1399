"""Where one window's time goes: pyinstrument over measure_window on the cached 10,000-namespace data.

.venv/bin/python bench/scale_report.py --namespaces 10000 --skip-baseline   # once, generates the data
.venv/bin/python bench/profile_window.py
"""

import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from pyinstrument import Profiler

from cluster_exporter.devtools.kubeapi_standin import KubeApiStandIn, write_kubeconfig
from cluster_exporter.devtools.prometheus_server import PrometheusServer
from cluster_exporter.devtools.synthetic_cluster import CUSTOMER_LABEL
from cluster_exporter.metering.window import measure_window
from cluster_exporter.settings import load_settings
from cluster_exporter.sources.prometheus import PrometheusClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale_report import kube_state

root = Path(__file__).resolve().parent / "out" / "scale-10000"
labeled = json.loads((root / "truth.json").read_text())["namespaces"]
kube = KubeApiStandIn(kube_state(labeled)).start_in_thread()
with PrometheusServer(root / "tsdb") as prom:
    s = load_settings(
        {
            "cluster_id": "b",
            "prometheus": {"url": prom.url, "timeout": "600s"},
            "kubernetes": {
                "kubeconfig": str(write_kubeconfig(Path("/tmp/cluster-exporter-profile-kubeconfig"), kube.url)),
                "customer_label": CUSTOMER_LABEL,
            },
            "metering": {"scrape_interval": "30s"},
        }
    )

    async def main():
        async with PrometheusClient(s.prometheus) as c:
            return await measure_window(s, datetime(2025, 11, 20, 2, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC), c)

    p = Profiler(async_mode="enabled")
    p.start()
    r = asyncio.run(main())
    p.stop()
    print(p.output_text(unicode=False, color=False, show_all=False)[:3500])
