"""The bodies of the CLI's commands: wire settings to sources, metering and delivery."""

from __future__ import annotations

from datetime import datetime

from .delivery.sender import send_report
from .errors import UsageError
from .metering.window import measure_window
from .report import UsageReport
from .settings import Settings
from .sources.prometheus import PrometheusClient


async def run_report(settings: Settings, window_end: datetime, now: datetime, dry_run: bool) -> UsageReport:
    """Measure the window ending at ``window_end``; send it unless ``dry_run``."""
    if not settings.cluster_id:
        raise UsageError("no cluster id: set --cluster-id or CLUSTER_ID")
    if not dry_run and not settings.billing_api.url:
        raise UsageError("no billing API: set --billing-api-url or BILLING_API_URL, or use --dry-run")
    async with PrometheusClient(settings.prometheus) as prometheus:
        report = await measure_window(settings, window_end, now, prometheus)
    if not dry_run:
        # One report now, with the run command's retries but no spool: `report` keeps no state.
        await send_report(settings.billing_api, settings.delivery, report)
    return report
