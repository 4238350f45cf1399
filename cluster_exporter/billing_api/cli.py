"""``cluster-exporter billing-api serve | invoice | migrate``: parse, call one function.

Every flag has a ``BILLING_*`` environment twin (see ``settings.BillingSettings``); flags win.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .settings import BillingSettings, load_billing_settings

# flag -> (settings field, type, help)
SERVE_FLAGS: dict[str, tuple[str, type, str]] = {
    "--host": ("host", str, "address to listen on"),
    "--port": ("port", int, "port to listen on (0: a free one)"),
    "--tokens-file": ("tokens_file", Path, "file with one cluster=token per line"),
    "--admin-token": ("admin_token", str, "bearer token of the admin endpoints"),
    "--admin-token-file": ("admin_token_file", Path, "file holding the admin token"),
    "--max-body-bytes": ("max_body_bytes", int, "largest report body accepted"),
    "--max-window": ("max_window", str, "longest report window accepted, whole hours, e.g. 24h"),
    "--max-customers-per-report": ("max_customers_per_report", int, "customers in one report part at most"),
    "--max-rows-per-report": ("max_rows_per_report", int, "hourly usage rows one report part may become"),
    "--max-window-age": ("max_window_age", str, "oldest window start accepted, e.g. 840h (raise to backfill)"),
    "--report-workers": ("report_workers", int, "report parts parsed and stored at once"),
    "--request-timeout": ("request_timeout", str, "time a request body may take to arrive, e.g. 60s"),
    "--idle-timeout": ("idle_timeout", str, "idle or incomplete connections are closed after, e.g. 75s"),
    "--stripe-api-key": ("stripe_api_key", str, "Stripe secret key (without it nothing is pushed)"),
    "--stripe-api-base": ("stripe_api_base", str, "Stripe API base address"),
    "--stripe-push-interval": ("stripe_push_interval", str, "pause between Stripe push rounds, e.g. 60s"),
    "--stripe-settle-delay": ("stripe_settle_delay", str, "wait after a window before pushing it, e.g. 15m"),
    "--database-pool-size": ("database_pool_size", int, "PostgreSQL connections at most"),
}
COMMON_FLAGS: dict[str, tuple[str, type, str]] = {
    "--database-url": ("database_url", str, "sqlite:///billing.db or postgresql://..."),
    "--pricing-file": ("pricing_file", Path, "TOML/JSON plans and prices"),
}


def _env(field: str) -> str:
    prefix = BillingSettings.model_config.get("env_prefix", "")
    return f"{prefix}{field}".upper()


def _add(parser: argparse.ArgumentParser, flags: dict[str, tuple[str, type, str]]) -> None:
    for flag, (field, kind, help_text) in flags.items():
        parser.add_argument(flag, dest=f"b_{field}", type=kind, help=f"{help_text} (env {_env(field)})")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``billing-api`` subcommands and their flags."""
    sub = parser.add_subparsers(dest="billing_command", required=True)
    serve = sub.add_parser("serve", help="receive reports, serve invoices, push usage to Stripe")
    _add(serve, COMMON_FLAGS)
    _add(serve, SERVE_FLAGS)
    serve.add_argument(
        "--token",
        dest="b_tokens",
        action="append",
        metavar="CLUSTER=TOKEN",
        help="a cluster's bearer token, repeatable (env BILLING_TOKENS, comma-separated)",
    )
    invoice = sub.add_parser("invoice", help="print a customer's invoice for a month")
    _add(invoice, COMMON_FLAGS)
    invoice.add_argument("--customer", required=True, help="customer id")
    invoice.add_argument("--month", required=True, help="calendar month, e.g. 2025-11")
    invoice.add_argument("--format", choices=("table", "json"), default="table")
    migrate = sub.add_parser("migrate", help="create or upgrade the database schema, then exit")
    _add(migrate, COMMON_FLAGS)


def _settings(args: argparse.Namespace) -> BillingSettings:
    overrides: dict[str, Any] = {k[2:]: v for k, v in vars(args).items() if k.startswith("b_") and v is not None}
    if "tokens" in overrides:
        overrides["tokens"] = ",".join(overrides["tokens"])
    return load_billing_settings(overrides)


def run(args: argparse.Namespace) -> int:
    """Run one ``billing-api`` subcommand; returns the exit code (errors are raised as ExporterError)."""
    settings = _settings(args)
    logging.basicConfig(level=logging.INFO, format="billing-api: %(message)s", stream=sys.stderr)
    if args.billing_command == "serve":
        from .server import serve

        asyncio.run(serve(settings))
        return 0
    if args.billing_command == "invoice":
        invoice = asyncio.run(_invoice(settings, args.customer, args.month))
        if args.format == "json":
            print(json.dumps(invoice, indent=2))
        else:
            from .pricing import render_invoice

            print(render_invoice(invoice))
        return 0
    applied = asyncio.run(_migrate(settings))
    print(f"schema up to date (applied: {', '.join(map(str, applied)) or 'none'})", file=sys.stderr)
    return 0


async def _invoice(settings: BillingSettings, customer: str, month: str) -> dict[str, Any]:
    from .app import invoice_for
    from .pricing import load_pricing
    from .storage import open_storage

    pricing = load_pricing(settings.pricing_file)
    storage = await open_storage(settings.database_url, 1)
    try:
        await storage.migrate(int(datetime.now(UTC).timestamp()))
        return (await invoice_for(storage, pricing, customer, month)).to_dict()
    finally:
        await storage.close()


async def _migrate(settings: BillingSettings) -> list[int]:
    from .storage import open_storage

    storage = await open_storage(settings.database_url, 1)
    try:
        return await storage.migrate(int(datetime.now(UTC).timestamp()))
    finally:
        await storage.close()
