"""Every built-in query, rendered: a PromQL change is a visible diff in tests/golden/queries.promql.

Regenerate after an intended change with ``UPDATE_GOLDEN=1 pytest tests/test_queries_golden.py``
and review the diff like code.
"""

from __future__ import annotations

import os
from pathlib import Path

from cluster_exporter.devtools.demo import CUSTOM_METERS
from cluster_exporter.metering import plan as q
from cluster_exporter.settings import load_settings

GOLDEN = Path(__file__).parent / "golden" / "queries.promql"
T0, T1 = 1763600400.0, 1763604000.0  # 2025-11-20T01:00:00Z .. 02:00:00Z


def render() -> str:
    lines: list[str] = []
    for http_source in ("nginx", "istio"):
        settings = load_settings(
            {"cluster_id": "golden", "metering": {"http_source": http_source, "custom_meters": CUSTOM_METERS}}
        )
        m = settings.metering
        w = q.Window(T0, T1, m.max_gap.total_seconds(), m.boundary_search.total_seconds(), 7200.0)
        meters = q.builtin_meters(m) + q.custom_meters(m)
        if http_source == "istio":
            meters = [meter for meter in meters if meter.name == "http_requests"]
        lines.append(f"# http_source = {http_source}")
        for meter in meters:
            for query in q.meter_queries(meter, w):
                lines.append(f"{query.name} @{query.at:.3f} [{query.role}]\n  {query.expr}")
            unit = (("namespace", "acme-prod"), ("pod", "web-0"))
            matchers = q.raw_chunks([unit], settings.prometheus.max_query_length, 10)[0][1]
            if meter.template is None:
                raw = [q.raw_samples_query(meter, w, matchers)]
                if meter.kind == "counter":  # a counter's last value before the raw span
                    raw.append(q.raw_lookback_query(meter, w, matchers))
                for query in raw:
                    lines.append(f"{query.name} @{query.at:.3f} [{query.role}]\n  {query.expr}")
        owners = q.namespace_owners(settings.kubernetes.customer_label, w)
        lines.append(f"{owners.name} @{owners.at:.3f} [{owners.role}]\n  {owners.expr}")
    return "\n".join(lines) + "\n"


def test_every_built_in_query_is_pinned() -> None:
    rendered = render()
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(rendered)
    assert GOLDEN.read_text() == rendered, "a query changed: review, then UPDATE_GOLDEN=1 to accept"
