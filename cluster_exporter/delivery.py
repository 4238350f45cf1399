"""Sending reports to the billing API."""

from __future__ import annotations

import aiohttp

from .errors import DeliveryError, PermanentDeliveryError, clip
from .report import UsageReport
from .settings import BillingApiSettings


async def post_report(settings: BillingApiSettings, report: UsageReport) -> None:
    """POST one report to {url}/api/usage/report, keyed by its report_id."""
    assert settings.url
    headers = {"Content-Type": "application/json", "Idempotency-Key": report.report_id}
    token = settings.resolved_token()
    if token:
        headers["Authorization"] = f"Bearer {token}"
    url = f"{settings.url.rstrip('/')}/api/usage/report"
    try:
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=settings.timeout.total_seconds())
        ) as session:
            async with session.post(url, data=report.to_json().encode(), headers=headers) as resp:
                body = await resp.read()
                if resp.status in (200, 201):
                    return
                error = PermanentDeliveryError if 400 <= resp.status < 500 and resp.status != 429 else DeliveryError
                raise error(f"billing API answered HTTP {resp.status} for report {report.report_id}: {clip(body)}")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise DeliveryError(f"cannot reach the billing API at {settings.url}: {exc.__class__.__name__}") from exc
