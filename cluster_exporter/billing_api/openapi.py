"""The OpenAPI 3.1 description of the billing API, served at ``/openapi.json``.

Written by hand rather than generated from the models: it is the contract for clients (the
exporter, dashboards, scripts), and it must say what the models cannot, such as each status an
operation answers and why. It is pinned to the server by the tests: every route is described
(``tests/billing_api/test_openapi.py``), and a schemathesis run against a live server checks
that every answer is one the document lists, with the body and headers it describes, and that no
request, however malformed, gets a 5xx.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from .. import meters
from ..report import report_id
from .decimals import PLACES
from .models import MAX_AMOUNT, MAX_COUNT, MAX_PARTS, OPTIONAL_METERS

ERROR = {"$ref": "#/components/schemas/Error"}
AMOUNT = {
    "type": "number",
    "minimum": 0,
    "maximum": int(MAX_AMOUNT),
    "description": f"Exact decimal, at most {PLACES} decimal places (read from the JSON text, never as a float).",
}
COUNT = {"type": "integer", "minimum": 0, "maximum": MAX_COUNT}
HOUR_TIME = {"type": "string", "format": "date-time", "description": "RFC 3339 with a timezone, a whole hour."}
CUSTOMER_ID = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"}
DECIMAL_TEXT = {"type": "string", "description": "A decimal number as text (never a float)."}


def _error(description: str, **headers: Any) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": ERROR}},
    }
    if headers:
        response["headers"] = headers
    return response


RESPONSES: dict[str, Any] = {
    "BadRequest": _error("Not JSON, nested too deeply, an unreadable body (Content-Encoding), a bad parameter."),
    "Unauthorized": _error(
        "No token, or a token that is not one of this endpoint's.",
        **{"WWW-Authenticate": {"required": True, "schema": {"type": "string", "const": "Bearer"}}},
    ),
    "Forbidden": _error("A known token without the right: a cluster's on an admin endpoint, or another cluster's."),
    "NotFound": _error("No such customer."),
    "Conflict": _error("What the request asks contradicts what is stored."),
    "RequestTimeout": _error("The body did not arrive within BILLING_REQUEST_TIMEOUT."),
    "PayloadTooLarge": _error(
        "The body is over BILLING_MAX_BODY_BYTES (also once inflated), or the report part over "
        "BILLING_MAX_CUSTOMERS_PER_REPORT or BILLING_MAX_ROWS_PER_REPORT: split it."
    ),
    "UnprocessableEntity": _error("JSON that is not valid for this endpoint; the message names the first problem."),
    "InternalError": _error("A fault of the server (logged with its traceback); retry later."),
    "Unavailable": _error("The database did not answer; retry later."),
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/responses/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _schema(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string", "description": "One line saying what was wrong."}},
    },
    "UsageRecord": {
        "type": "object",
        "required": [
            "customer_id",
            "namespaces",
            "cpu_hours",
            "memory_gb_hours",
            "network_bytes_sent",
            "network_bytes_received",
            "storage_gb_hours",
            "http_requests",
        ],
        "properties": {
            "customer_id": CUSTOMER_ID,
            "namespaces": {"type": "array", "maxItems": 10_000, "items": {"type": "string", "maxLength": 253}},
            "cpu_hours": AMOUNT,
            "memory_gb_hours": AMOUNT,
            "network_bytes_sent": COUNT,
            "network_bytes_received": COUNT,
            "storage_gb_hours": AMOUNT,
            "http_requests": COUNT,
            **{
                name: AMOUNT
                | {
                    "description": f"Optional, in {meters.BY_NAME[name].unit}s: {meters.BY_NAME[name].description}. "
                    "Absent when the exporter did not measure it (not the same as 0); a plan billing on "
                    "requests refuses to invoice hours without the request meter."
                }
                for name in OPTIONAL_METERS
            },
        },
        "additionalProperties": AMOUNT | {"description": "A custom meter declared in the pricing file."},
    },
    "Report": {
        "type": "object",
        "description": "One cluster's usage in [window_start, window_end), or one part of it.",
        "required": ["report_id", "cluster_id", "window_start", "window_end", "schema_version", "usage"],
        "additionalProperties": False,
        "properties": {
            "report_id": {
                "type": "string",
                "format": "uuid",
                "description": "The exporter's id of (cluster_id, window): a UUIDv5, see cluster_exporter.report.",
            },
            "cluster_id": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"},
            "window_start": HOUR_TIME
            | {"description": "A whole hour, at most BILLING_MAX_WINDOW_AGE ago (35 days: Stripe's limit)."},
            "window_end": HOUR_TIME
            | {"description": "A whole hour, at most BILLING_MAX_WINDOW (24 h) after window_start, not in the future."},
            "schema_version": {"type": "integer", "const": 1},
            "part": {"type": "integer", "minimum": 1, "maximum": MAX_PARTS, "default": 1},
            "parts": {"type": "integer", "minimum": 1, "maximum": MAX_PARTS, "default": 1},
            "usage": {
                "type": "array",
                "items": _schema("UsageRecord"),
                "description": "At most BILLING_MAX_CUSTOMERS_PER_REPORT customers (10,000), each once.",
            },
        },
    },
    "Stored": {
        "type": "object",
        "required": ["status", "report_id", "part", "parts", "customers"],
        "properties": {
            "status": {"type": "string", "enum": ["stored", "duplicate"]},
            "report_id": {"type": "string"},
            "part": {"type": "integer"},
            "parts": {"type": "integer"},
            "customers": {"type": "integer"},
        },
    },
    "Limit": {
        "oneOf": [
            {"type": "string", "description": "A decimal as text, or 'unlimited'."},
            {"type": "number", "minimum": 0},
            {"type": "null"},
        ]
    },
    "CustomerTerms": {
        "type": "object",
        "required": ["plan"],
        "additionalProperties": False,
        "properties": {
            "plan": {"type": "string", "description": "A plan of the pricing file: starter, professional, enterprise."},
            "base_price": {
                "oneOf": [{"type": "string"}, {"type": "number", "minimum": 0}, {"type": "null"}],
                "description": f"Custom plans only: 0 to 10^12, at most {PLACES} decimal places.",
            },
            "limits": {
                "type": ["object", "null"],
                "additionalProperties": False,
                "properties": {k: _schema("Limit") for k in ("vcpu", "memory_gb", "storage_gb", "network_gb")},
                "description": f"Custom plans only: 0 to 10^15, at most {PLACES} decimal places, or unlimited.",
            },
            "stripe_customer_id": {"type": ["string", "null"], "pattern": "^[A-Za-z0-9_]{1,255}$"},
        },
    },
    "Customer": {
        "type": "object",
        "required": ["customer_id", "plan", "base_price", "limits", "stripe_customer_id"],
        "properties": {
            "customer_id": {"type": "string"},
            "plan": {"type": "string"},
            "base_price": {"type": ["string", "null"]},
            "limits": {"type": ["object", "null"], "additionalProperties": {"type": "string"}},
            "stripe_customer_id": {"type": ["string", "null"]},
        },
    },
    "Invoice": {
        "type": "object",
        "required": ["customer_id", "month", "plan", "currency", "hours_in_month", "base_price", "lines", "total"],
        "properties": {
            "customer_id": {"type": "string"},
            "month": {"type": "string"},
            "plan": {"type": "string"},
            "currency": {"type": "string"},
            "hours_in_month": {"type": "integer"},
            "base_price": DECIMAL_TEXT,
            "total": DECIMAL_TEXT | {"description": "Rounded half up to cents, once."},
            "lines": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["meter", "unit", "basis", "used", "included", "overage", "unit_price", "amount"],
                    "properties": {
                        "meter": {"type": "string"},
                        "unit": {"type": "string"},
                        "basis": {
                            "type": "string",
                            "enum": ["usage", "requests", "max(usage, requests)"],
                            "description": "What `used` is: the usage meter's total, the request meter's, or the "
                            "sum over the month's hours of the larger of the two (the plan's cpu_basis, memory_basis).",
                        },
                        "used": DECIMAL_TEXT | {"description": "The quantity billed, on `basis`."},
                        "usage_total": DECIMAL_TEXT
                        | {"description": "CPU and memory lines not on usage: the month's usage meter total."},
                        "requests_total": DECIMAL_TEXT
                        | {"description": "CPU and memory lines not on usage: the month's request meter total."},
                        "included": {"type": "string", "description": "A decimal as text, or 'unlimited'."},
                        "overage": DECIMAL_TEXT,
                        "unit_price": DECIMAL_TEXT,
                        "amount": DECIMAL_TEXT,
                    },
                },
            },
        },
    },
    "Usage": {
        "type": "object",
        "required": ["customer_id", "from", "to", "hours"],
        "properties": {
            "customer_id": {"type": "string"},
            "from": {"type": "string"},
            "to": {"type": "string"},
            "hours": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["hour"],
                    "properties": {"hour": {"type": "string"}},
                    "additionalProperties": {"type": "number", "description": "meter -> amount, over clusters"},
                },
            },
        },
    },
    "Outbox": {
        "type": "object",
        "additionalProperties": {"type": "integer"},
        "required": [
            "reports",
            "usage_rows",
            "customers",
            "reports_not_expanded",
            "events_pending",
            "events_sent",
            "events_failed",
            "events_expired",
        ],
    },
}

_START, _END = datetime(2025, 11, 3, 10, tzinfo=UTC), datetime(2025, 11, 3, 11, tzinfo=UTC)
REPORT_EXAMPLE = {
    "report_id": report_id("k8s-us-east-1", _START, _END),
    "cluster_id": "k8s-us-east-1",
    "window_start": "2025-11-03T10:00:00Z",
    "window_end": "2025-11-03T11:00:00Z",
    "schema_version": 1,
    "part": 1,
    "parts": 1,
    "usage": [
        {
            "customer_id": "cust_acme",
            "namespaces": ["acme-prod"],
            "cpu_hours": 1.5,
            "memory_gb_hours": 3.25,
            "network_bytes_sent": 1000,
            "network_bytes_received": 2000,
            "storage_gb_hours": 10.0,
            "http_requests": 42,
            "cpu_request_hours": 2.0,
            "memory_request_gb_hours": 4.0,
        }
    ],
}
ADMIN: list[dict[str, list[str]]] = [{"adminToken": []}]
CUSTOMER_PARAM = {"name": "customer_id", "in": "path", "required": True, "schema": CUSTOMER_ID}
ADMIN_ERRORS = {"400": _ref("BadRequest"), "401": _ref("Unauthorized"), "403": _ref("Forbidden")}
ALWAYS = {"500": _ref("InternalError")}
DATABASE = {"503": _ref("Unavailable")}
BODY_ERRORS = {"408": _ref("RequestTimeout"), "413": _ref("PayloadTooLarge"), "422": _ref("UnprocessableEntity")}

PATHS: dict[str, Any] = {
    "/api/usage/report": {
        "post": {
            "operationId": "postReport",
            "summary": "Store one report part exactly once.",
            "security": [{"clusterToken": []}],
            "parameters": [
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string"},
                    "description": "<report_id>, or <report_id>/<part>; when sent it must name this part (422).",
                }
            ],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _schema("Report"), "example": REPORT_EXAMPLE}},
            },
            "responses": {
                "201": _json(_schema("Stored"), "Stored: every hour of usage of this part, in one transaction."),
                "200": _json(_schema("Stored"), "Already stored with the same content; nothing new."),
                "400": _ref("BadRequest"),
                "401": _ref("Unauthorized"),
                "403": _ref("Forbidden"),
                "409": _ref("Conflict")
                | {
                    "description": "The same (report_id, part) with different content, parts that disagree on "
                    "`parts`, or usage of this cluster for a customer and hour already stored by another report."
                },
                **BODY_ERRORS,
                **ALWAYS,
                **DATABASE,
            },
        }
    },
    "/api/customers/{customer_id}": {
        "parameters": [CUSTOMER_PARAM],
        "put": {
            "operationId": "putCustomer",
            "summary": "Set a customer's plan, custom terms and Stripe customer id.",
            "security": ADMIN,
            "requestBody": {"required": True, "content": {"application/json": {"schema": _schema("CustomerTerms")}}},
            "responses": {
                "201": _json(_schema("Customer"), "Created."),
                "200": _json(_schema("Customer"), "Replaced (the customer's failed Stripe events are retried)."),
                **ADMIN_ERRORS,
                **BODY_ERRORS,
                **ALWAYS,
                **DATABASE,
            },
        },
        "get": {
            "operationId": "getCustomer",
            "summary": "A customer's terms.",
            "security": ADMIN,
            "responses": {
                "200": _json(_schema("Customer"), "The terms."),
                "404": _ref("NotFound"),
                **ADMIN_ERRORS,
                **ALWAYS,
                **DATABASE,
            },
        },
    },
    "/api/customers/{customer_id}/invoice": {
        "parameters": [CUSTOMER_PARAM],
        "get": {
            "operationId": "getInvoice",
            "summary": "A customer's invoice for a calendar month (UTC).",
            "security": ADMIN,
            "parameters": [
                {
                    "name": "month",
                    "in": "query",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$"},
                    "description": "YYYY-MM, years 1970 to 9998.",
                }
            ],
            "responses": {
                "200": _json(_schema("Invoice"), "The invoice."),
                "404": _ref("NotFound"),
                "409": _ref("Conflict")
                | {
                    "description": "The customer has usage but no plan (PUT it first), or its plan bills CPU or "
                    "memory on requests (or max of usage and requests) and an hour of its usage in the month was "
                    "reported without the request meter (enable metering.requests on that cluster's exporter); "
                    "the message names the hour and cluster. Never billed as if nothing had been requested."
                },
                **ADMIN_ERRORS,
                **ALWAYS,
                **DATABASE,
            },
        },
    },
    "/api/customers/{customer_id}/usage": {
        "parameters": [CUSTOMER_PARAM],
        "get": {
            "operationId": "getUsage",
            "summary": "Hourly usage summed over clusters, for dashboards.",
            "security": ADMIN,
            "parameters": [
                {"name": name, "in": "query", "required": True, "schema": HOUR_TIME}
                | {"description": "A whole hour, years 1970 to 9998; to - from at most 93 days."}
                for name in ("from", "to")
            ],
            "responses": {
                "200": _json(_schema("Usage"), "One entry per hour with usage."),
                **ADMIN_ERRORS,
                **ALWAYS,
                **DATABASE,
            },
        },
    },
    "/api/stripe/outbox": {
        "get": {
            "operationId": "getOutbox",
            "summary": "Counts of reports, usage rows, customers and Stripe meter events by state.",
            "security": ADMIN,
            "responses": {"200": _json(_schema("Outbox"), "The counts."), **ADMIN_ERRORS, **ALWAYS, **DATABASE},
        }
    },
    "/healthz": {
        "get": {
            "operationId": "healthz",
            "summary": "Liveness: the process serves HTTP.",
            "security": [],
            "responses": {
                "200": _json({"type": "object", "properties": {"status": {"const": "ok"}}}, "Serving."),
                **ALWAYS,
            },
        }
    },
    "/readyz": {
        "get": {
            "operationId": "readyz",
            "summary": "Readiness: the database answers.",
            "security": [],
            "responses": {
                "200": _json({"type": "object", "properties": {"status": {"const": "ready"}}}, "Ready."),
                "503": _json(
                    {"type": "object", "properties": {"status": {"const": "unavailable"}, "error": {"type": "string"}}},
                    "The database does not answer.",
                ),
                **ALWAYS,
            },
        }
    },
    "/metrics": {
        "get": {
            "operationId": "metrics",
            "summary": "Prometheus metrics (cluster_exporter_billing_api_*).",
            "security": [],
            "responses": {
                "200": {"description": "Prometheus text exposition.", "content": {"text/plain": {"schema": {}}}},
                **ALWAYS,
            },
        }
    },
    "/openapi.json": {
        "get": {
            "operationId": "openapi",
            "summary": "This document.",
            "security": [],
            "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1."), **ALWAYS},
        }
    },
}


_DOCUMENT = {
    "openapi": "3.1.0",
    "info": {
        "title": "cluster-exporter billing API",
        "version": "1",
        "description": "Receives every cluster's usage reports, stores each hour once, prices it by plan and "
        'pushes it to Stripe meters. Every refusal is a 4xx with {"error": "<one line>"}; a client\'s '
        "request never gets a 5xx. See docs/billing-api.md.",
    },
    "security": ADMIN,
    "paths": PATHS,
    "components": {
        "securitySchemes": {
            "clusterToken": {"type": "http", "scheme": "bearer", "description": "A cluster's token."},
            "adminToken": {"type": "http", "scheme": "bearer", "description": "BILLING_ADMIN_TOKEN."},
        },
        "schemas": SCHEMAS,
        "responses": RESPONSES,
    },
}


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document (a new dict each call)."""
    return copy.deepcopy(_DOCUMENT)
