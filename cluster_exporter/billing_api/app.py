"""The billing API's HTTP surface (aiohttp): reports in, customers, invoices and usage out.

Checks run cheapest first and nothing is written before all of them pass: the token (401), the
size (413, before the body is read when Content-Length says so), the time the body takes (408),
the JSON (400), the report's size in customers and rows (413), its content (422) and its cluster
against the token's (403); then one transaction stores the part (201), finds it already stored
with the same content (200) or refuses it (409). Parsing and validation run on worker threads
(``intake``), never on the event loop.

Whatever a client sends is answered with a 4xx and a one-line JSON error (the exporter retries
5xx forever, so a 5xx for a client's fault would be retried for good); only the server's own
faults are 5xx, and every answer of the report endpoint is counted by status, 500 included.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..errors import clip
from ..report import format_time
from ..times import BadTime, parse_rfc3339
from .bases import MonthUsage
from .errors import RequestRejected, StorageError
from .intake import Intake
from .metrics import BillingApiMetrics
from .models import ReportIn, ReportLimits, check_idempotency_key, parse_customer, parse_report
from .openapi import openapi_document
from .pricing import Invoice, PricingConfig, compute_invoice, parse_month
from .settings import Credentials
from .storage import Storage

log = logging.getLogger("cluster_exporter.billing_api")

CUSTOMER_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")
MAX_USAGE_RANGE = timedelta(days=93)
CUSTOMER_BODY_BYTES = 64 * 1024  # a customer's terms are a few hundred bytes


@dataclass
class ApiContext:
    """Everything the handlers need, injected (no globals, no environment)."""

    storage: Storage
    pricing: PricingConfig
    credentials: Credentials
    metrics: BillingApiMetrics
    clock: Callable[[], datetime]
    max_body_bytes: int
    limits: ReportLimits = field(default_factory=ReportLimits)
    intake: Intake = field(default_factory=Intake)
    request_timeout: float = 60.0


CONTEXT = web.AppKey("context", ApiContext)
CLUSTER = web.RequestKey("cluster", str)  # the authenticated cluster of a report request
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _ctx(request: web.Request) -> ApiContext:
    return request.app[CONTEXT]


def _bearer(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _cluster(request: web.Request) -> str:
    token = _bearer(request)
    cluster = _ctx(request).credentials.cluster_of(token) if token else None
    if cluster is None:
        raise RequestRejected(401, "a valid cluster bearer token is required")
    return cluster


def _admin(request: web.Request) -> None:
    token = _bearer(request)
    credentials = _ctx(request).credentials
    if token and credentials.is_admin(token):
        return
    if token and credentials.cluster_of(token):
        raise RequestRejected(403, "a cluster token cannot use the admin endpoints")
    raise RequestRejected(401, "a valid admin bearer token is required")


def _customer_id(request: web.Request) -> str:
    customer_id = request.match_info["customer_id"]
    if not CUSTOMER_ID_RE.fullmatch(customer_id):
        raise RequestRejected(400, "customer id must be 1-128 letters, digits or ._:@-")
    return customer_id


async def _body(request: web.Request, limit: int | None = None) -> bytes:
    """The request's body (decoded per its Content-Encoding): 413 over ``limit``, 408 too slow, 400 unreadable."""
    ctx = _ctx(request)
    limit = ctx.max_body_bytes if limit is None else limit
    if request.content_length is not None and request.content_length > limit:
        raise RequestRejected(413, f"body of {request.content_length} bytes is over the limit of {limit}")
    body = bytearray()
    try:
        async with asyncio.timeout(ctx.request_timeout):
            while chunk := await request.content.readany():
                body += chunk
                if len(body) > limit:  # also a compressed body that inflates past the limit
                    raise RequestRejected(413, f"body is over the limit of {limit} bytes")
    except TimeoutError:
        raise RequestRejected(408, f"the body did not arrive within {ctx.request_timeout:g} s") from None
    except web.RequestPayloadError as exc:  # a broken Content-Encoding, a malformed chunked body
        raise RequestRejected(400, f"unreadable body: {clip(str(exc.__cause__ or exc))}") from None
    return bytes(body)


def _checked_report(
    ctx: ApiContext, body: bytes, cluster: str, idempotency_key: str | None, now: datetime
) -> tuple[ReportIn, str]:
    # On a worker thread: everything proportional to the body's size.
    report = parse_report(body, ctx.pricing.meters_known(), now, ctx.limits)
    if report.cluster_id != cluster:
        raise RequestRejected(403, f"the token of cluster {cluster} cannot report for cluster {report.cluster_id}")
    check_idempotency_key(idempotency_key, report)
    return report, report.content_digest()


async def post_report(request: web.Request) -> web.Response:
    """POST /api/usage/report: store one report part exactly once."""
    ctx = _ctx(request)
    cluster = _cluster(request)
    request[CLUSTER] = cluster
    async with ctx.intake.turn(cluster):
        body = await _body(request)
        async with ctx.intake.slot():
            now = ctx.clock()
            key = request.headers.get("Idempotency-Key")
            report, digest = await ctx.intake.run(_checked_report, ctx, body, cluster, key, now)
            del body
            with ctx.metrics.batches_in_progress.track_inprogress(), ctx.metrics.store_duration.time():
                verdict = await ctx.storage.store_report(report, digest, int(now.timestamp()))
    if verdict == "created":
        ctx.metrics.usage_rows_stored.inc(report.row_count)
    return web.json_response(
        {
            "status": "stored" if verdict == "created" else "duplicate",
            "report_id": report.report_id,
            "part": report.part,
            "parts": report.parts,
            "customers": len(report.usage),
        },
        status=201 if verdict == "created" else 200,
    )


async def put_customer(request: web.Request) -> web.Response:
    """PUT /api/customers/{id}: set a customer's plan, custom terms and Stripe customer id."""
    ctx = _ctx(request)
    _admin(request)
    customer_id = _customer_id(request)
    terms = parse_customer(await _body(request, CUSTOMER_BODY_BYTES), ctx.pricing)
    created = await ctx.storage.put_customer(customer_id, terms, int(ctx.clock().timestamp()))
    return web.json_response(_terms_json(customer_id, terms), status=201 if created else 200)


async def get_customer(request: web.Request) -> web.Response:
    """GET /api/customers/{id}: a customer's terms."""
    ctx = _ctx(request)
    _admin(request)
    customer_id = _customer_id(request)
    terms = await ctx.storage.get_customer(customer_id)
    if terms is None:
        raise RequestRejected(404, f"no customer {customer_id}")
    return web.json_response(_terms_json(customer_id, terms))


def _terms_json(customer_id: str, terms: Any) -> dict[str, Any]:
    limits = None
    if terms.limits is not None:
        limits = {k: "unlimited" if v is None else str(v) for k, v in terms.limits.items()}
    return {
        "customer_id": customer_id,
        "plan": terms.plan,
        "base_price": None if terms.base_price is None else str(terms.base_price),
        "limits": limits,
        "stripe_customer_id": terms.stripe_customer_id,
    }


async def invoice_for(storage: Storage, pricing: PricingConfig, customer_id: str, month: str) -> Invoice:
    """A customer's invoice for a calendar month.

    404 unknown customer; 409 usage but no plan, or a plan billing CPU or memory on requests (or
    the larger of usage and requests) for a month with hours whose reports lack the request meter.
    """
    start, end = parse_month(month)
    terms = await storage.get_customer(customer_id)
    if terms is None:
        if await storage.customer_known(customer_id):
            raise RequestRejected(
                409, f"customer {customer_id} has usage but no plan: PUT /api/customers/{customer_id}"
            )
        raise RequestRejected(404, f"no customer {customer_id}")
    rows = await storage.usage_rows(customer_id, int(start.timestamp()), int(end.timestamp()))
    return compute_invoice(customer_id, month, terms, pricing, MonthUsage.from_rows(rows))


async def get_invoice(request: web.Request) -> web.Response:
    """GET /api/customers/{id}/invoice?month=2025-11."""
    ctx = _ctx(request)
    _admin(request)
    invoice = await invoice_for(ctx.storage, ctx.pricing, _customer_id(request), request.query.get("month", ""))
    return web.json_response(invoice.to_dict())


def _hour_param(request: web.Request, name: str) -> datetime:
    text = request.query.get(name, "")
    try:
        moment = parse_rfc3339(text)
    except BadTime:
        raise RequestRejected(400, f"{name} must be an RFC 3339 time such as 2025-11-01T00:00:00Z") from None
    if moment.minute or moment.second or moment.microsecond:
        raise RequestRejected(400, f"{name} must be a whole hour with a timezone")
    if moment.year < 1970 or moment.year > 9998:  # hours are stored as Unix seconds
        raise RequestRejected(400, f"{name} must be between the years 1970 and 9998")
    return moment


def _number(amount: Decimal) -> int | float:
    return int(amount) if amount == amount.to_integral_value() else float(amount)


async def get_usage(request: web.Request) -> web.Response:
    """GET /api/customers/{id}/usage?from=&to=: hourly usage summed over clusters, for dashboards."""
    ctx = _ctx(request)
    _admin(request)
    customer_id = _customer_id(request)
    start, end = _hour_param(request, "from"), _hour_param(request, "to")
    if not start < end or end - start > MAX_USAGE_RANGE:
        raise RequestRejected(400, f"to must be after from, at most {MAX_USAGE_RANGE.days} days later")
    hours = await ctx.storage.hourly_usage(customer_id, int(start.timestamp()), int(end.timestamp()))
    return web.json_response(
        {
            "customer_id": customer_id,
            "from": format_time(start),
            "to": format_time(end),
            "hours": [
                {"hour": format_time(datetime.fromtimestamp(hour, UTC))}
                | {meter: _number(amount) for meter, amount in sorted(meters.items())}
                for hour, meters in sorted(hours.items())
            ],
        }
    )


async def get_outbox(request: web.Request) -> web.Response:
    """GET /api/stripe/outbox: counts of reports and meter events by state."""
    ctx = _ctx(request)
    _admin(request)
    return web.json_response(await ctx.storage.stats())


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process serves HTTP."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the database answers."""
    try:
        await _ctx(request).storage.ping()
    except StorageError as exc:
        return web.json_response({"status": "unavailable", "error": str(exc)}, status=503)
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition of the injected registry."""
    body = generate_latest(_ctx(request).metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 description of this API."""
    return web.json_response(openapi_document())


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every refusal as ``{"error": "<one line>"}`` with its status; report statuses counted."""
    try:
        response = await handler(request)
    except RequestRejected as exc:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        response = web.json_response({"error": str(exc)}, status=exc.status, headers=headers)
        if exc.status in (400, 408, 413):  # the rest of the body may be unread: do not reuse the connection
            response.force_close()
    except StorageError as exc:
        log.error("storage failed on %s %s: %s", request.method, request.path, exc)
        response = web.json_response({"error": f"storage unavailable: {exc}"}, status=503)
    except web.HTTPException as exc:
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        response = web.json_response({"error": exc.reason}, status=exc.status, headers=allow)
    except Exception:
        # Our fault, never the client's: the one place a traceback is logged.
        log.exception("internal error on %s %s", request.method, request.path)
        response = web.json_response({"error": "internal error (logged)"}, status=500)
    if request.path == "/api/usage/report":
        _ctx(request).metrics.report_requests.labels(str(response.status)).inc()
        if 400 <= response.status < 500 and CLUSTER in request:
            # Authenticated clusters only (an unknown token is not worth a line): the exporter
            # keeps a refused part as a dead letter, and this line says which cluster and why.
            log.warning(
                "report of cluster %s refused: HTTP %d %s", request[CLUSTER], response.status, _error_of(response)
            )
    return response


def _error_of(response: web.StreamResponse) -> str:
    body = getattr(response, "text", None)
    return clip(str(body or ""), 300)


def build_app(ctx: ApiContext) -> web.Application:
    """The aiohttp application over an injected context."""
    app = web.Application(client_max_size=ctx.max_body_bytes, middlewares=[errors_middleware])
    app[CONTEXT] = ctx
    app.router.add_post("/api/usage/report", post_report)
    app.router.add_put("/api/customers/{customer_id}", put_customer)
    app.router.add_get("/api/customers/{customer_id}", get_customer)
    app.router.add_get("/api/customers/{customer_id}/invoice", get_invoice)
    app.router.add_get("/api/customers/{customer_id}/usage", get_usage)
    app.router.add_get("/api/stripe/outbox", get_outbox)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi)
    return app
