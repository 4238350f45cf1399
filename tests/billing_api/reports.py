"""Building reports for the tests with the exporter's own model, so the contract under test is the real one."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from cluster_exporter.report import build_report

GIB = 2**30


def usage(
    cpu: float = 0.0,
    memory: float = 0.0,
    sent: int = 0,
    received: int = 0,
    storage: float = 0.0,
    requests: int = 0,
    **custom: Any,
) -> dict[str, Any]:
    """One customer's usage fields as the exporter reports them."""
    return {
        "namespaces": ["ns"],
        "cpu_hours": cpu,
        "memory_gb_hours": memory,
        "network_bytes_sent": sent,
        "network_bytes_received": received,
        "storage_gb_hours": storage,
        "http_requests": requests,
        **custom,
    }


def report_body(
    cluster: str, start: datetime, customers: dict[str, dict[str, Any]], hours: int = 1, part: int = 1, parts: int = 1
) -> bytes:
    """The JSON body the exporter sends for ``cluster`` and the window starting at ``start``."""
    report = build_report(cluster, start, start + timedelta(hours=hours), customers)
    data = json.loads(report.to_json())
    data["part"], data["parts"] = part, parts
    return json.dumps(data).encode()


def report_dict(cluster: str, start: datetime, customers: dict[str, dict[str, Any]], hours: int = 1) -> dict[str, Any]:
    """The report as a dict, to be broken on purpose."""
    return json.loads(report_body(cluster, start, customers, hours))
