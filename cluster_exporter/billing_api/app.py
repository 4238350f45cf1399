"""The billing API's HTTP surface (aiohttp): reports in, customers, invoices and usage out.

Checks run cheapest first and nothing is written before all of them pass: the token (401), the
size (413, before the body is read when Content-Length says so), the JSON (400), the report's
content (422) and its cluster against the token's (403); then one transaction stores the part
(201), finds it already stored with the same content (200) or refuses it (409).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..report import format_time
from ..times import BadTime, parse_rfc3339
from .errors import RequestRejected, StorageError
from .metrics import BillingApiMetrics
from .models import check_idempotency_key, parse_customer, parse_report
from .pricing import Invoice, PricingConfig, compute_invoice, parse_month
from .settings import Credentials
from .storage import Storage

log = logging.getLogger("cluster_exporter.billing_api")

CUSTOMER_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")
MAX_USAGE_RANGE = timedelta(days=93)


@dataclass
class ApiContext:
    """Everything the handlers need, injected (no globals, no environment)."""

    storage: Storage
    pricing: PricingConfig
    credentials: Credentials
    metrics: BillingApiMetrics
    clock: Callable[[], datetime]
    max_body_bytes: int


CONTEXT = web.AppKey("context", ApiContext)
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


async def _body(request: web.Request) -> bytes:
    limit = _ctx(request).max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise RequestRejected(413, f"body of {request.content_length} bytes is over the limit of {limit}")
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise RequestRejected(413, f"body is over the limit of {limit} bytes") from exc


async def post_report(request: web.Request) -> web.Response:
    """POST /api/usage/report: store one report part exactly once."""
    ctx = _ctx(request)
    cluster = _cluster(request)
    body = await _body(request)
    now = ctx.clock()
    report = parse_report(body, ctx.pricing.meters_known(), now)
    if report.cluster_id != cluster:
        raise RequestRejected(403, f"the token of cluster {cluster} cannot report for cluster {report.cluster_id}")
    check_idempotency_key(request.headers.get("Idempotency-Key"), report)
    digest = report.content_digest()
    with ctx.metrics.batches_in_progress.track_inprogress(), ctx.metrics.store_duration.time():
        verdict = await ctx.storage.store_report(report, digest, int(now.timestamp()))
    if verdict == "created":
        ctx.metrics.usage_rows_stored.inc(report.hours * sum(len(r.amounts()) for r in report.usage))
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
    terms = parse_customer(await _body(request), ctx.pricing)
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
    """A customer's invoice for a calendar month (404 unknown customer, 409 usage but no plan)."""
    start, end = parse_month(month)
    terms = await storage.get_customer(customer_id)
    if terms is None:
        if await storage.customer_known(customer_id):
            raise RequestRejected(
                409, f"customer {customer_id} has usage but no plan: PUT /api/customers/{customer_id}"
            )
        raise RequestRejected(404, f"no customer {customer_id}")
    totals = await storage.usage_totals(customer_id, int(start.timestamp()), int(end.timestamp()))
    return compute_invoice(customer_id, month, terms, pricing, totals)


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
    return moment


def _number(amount: Decimal) -> int | float:
    return int(amount) if amount == amount.to_integral_value() else float(amount)


async def get_usage(request: web.Request) -> web.Response:
    """GET /api/customers/{id}/usage?from=&to=: hourly usage summed over clusters, for dashboards."""
    ctx = _ctx(request)
    _admin(request)
    customer_id = _customer_id(request)
    start, end = _hour_param(request, "from"), _hour_param(request, "to")
    if not start < end <= start + MAX_USAGE_RANGE:
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


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every refusal as ``{"error": "<one line>"}`` with its status; report statuses counted."""
    try:
        response = await handler(request)
    except RequestRejected as exc:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        response = web.json_response({"error": str(exc)}, status=exc.status, headers=headers)
    except StorageError as exc:
        log.error("storage failed on %s %s: %s", request.method, request.path, exc)
        response = web.json_response({"error": f"storage unavailable: {exc}"}, status=503)
    except web.HTTPException as exc:
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        response = web.json_response({"error": exc.reason}, status=exc.status, headers=allow)
    if request.path == "/api/usage/report":
        _ctx(request).metrics.report_requests.labels(str(response.status)).inc()
    return response


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
    return app
