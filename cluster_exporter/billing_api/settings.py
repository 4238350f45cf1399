"""Settings of the billing API, from flags > ``BILLING_*`` environment variables > defaults.

Kept apart from the exporter's ``Settings`` on purpose: the receiving service runs elsewhere (one
per platform, not one per cluster) and must start without any of the exporter's configuration.
Every environment name is ``BILLING_<FIELD>`` (``BILLING_DATABASE_URL``, ``BILLING_TOKENS``...);
the Helm chart uses exactly these names.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from ..settings import Duration, HttpUrl, parse_duration
from .errors import BillingConfigError

CLUSTER_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
MIB = 1024 * 1024


def _not_negative(value: timedelta) -> timedelta:
    if value < timedelta(0):
        raise ValueError("must not be negative")
    return value


def _whole_hours(value: timedelta) -> timedelta:
    if value % timedelta(hours=1):
        raise ValueError("must be a whole number of hours")
    return value


DelayDuration = Annotated[timedelta, BeforeValidator(parse_duration), AfterValidator(_not_negative)]
HoursDuration = Annotated[Duration, AfterValidator(_whole_hours)]


class BillingSettings(BaseSettings):
    """Everything one billing API process needs; each field is also ``BILLING_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="BILLING_", extra="forbid", validate_default=True)

    host: str = Field("0.0.0.0", description="Address to listen on (0.0.0.0: every interface, as in a pod).")
    port: int = Field(8080, ge=0, le=65535, description="TCP port to listen on; 0 picks a free one (logged).")
    database_url: str = Field(
        "sqlite:///billing.db",
        description="sqlite:///relative.db, sqlite:////absolute.db or postgresql://user:pass@host:5432/db.",
    )
    database_pool_size: int = Field(10, ge=1, le=200, description="PostgreSQL connections kept open at most.")
    tokens: str = Field(
        "", description="Cluster tokens, comma-separated cluster=token pairs (flags: --token, repeatable).", repr=False
    )
    tokens_file: Path | None = Field(None, description="File with one cluster=token per line (# comments allowed).")
    admin_token: str | None = Field(None, description="Bearer token of the admin endpoints.", repr=False)
    admin_token_file: Path | None = Field(None, description="File holding the admin token (a mounted Secret).")
    pricing_file: Path | None = Field(
        None, description="TOML or JSON file with plans and prices; default: the original design's."
    )
    max_body_bytes: int = Field(8 * MIB, ge=1024, description="Largest accepted report body; larger ones get 413.")
    max_window: HoursDuration = Field(
        timedelta(hours=24),
        description="Longest report window accepted (422 beyond), whole hours: at least the longest "
        "metering.window of the exporters. Each hour of a window is stored as its own rows.",
    )
    max_customers_per_report: int = Field(
        10_000,
        ge=1,
        le=1_000_000,
        description="Customers in one report part (413 beyond). The exporter splits reports at its "
        "delivery.max_customers_per_part, 2,000 by default.",
    )
    max_rows_per_report: int = Field(
        300_000,
        ge=1,
        description="Hourly usage rows one report part may become, customers x meters x window hours (413 "
        "beyond): bounds the memory and time one request costs. The default takes 2,000 customers over 24 hours.",
    )
    max_window_age: Duration = Field(
        timedelta(days=35),
        description="Oldest window start accepted, counted back from the clock (422 beyond): Stripe takes meter "
        "events of the past 35 days only. Raise it to backfill older usage: it is stored and invoiced, and its "
        "Stripe events are marked expired, never sent with a moved timestamp.",
    )
    report_workers: int = Field(
        2,
        ge=1,
        le=64,
        description="Report parts parsed, validated and stored at once (parsing on worker threads, off the event "
        "loop); the others wait their turn, and one cluster's parts go one at a time so no cluster starves another.",
    )
    request_timeout: Duration = Field(
        timedelta(seconds=60),
        description="Time a request's body may take to arrive once its headers have (408 beyond).",
    )
    idle_timeout: Duration = Field(
        timedelta(seconds=75),
        description="A connection that has not sent a whole request head this long after it opened or after its "
        "last answer is closed: idle keep-alive connections, and heads trickling in.",
    )
    stripe_api_key: str | None = Field(None, description="Stripe secret key; without it nothing is pushed.", repr=False)
    stripe_api_base: HttpUrl = Field("https://api.stripe.com", description="Base address of the Stripe API.")
    stripe_push_interval: Duration = Field(timedelta(seconds=60), description="Pause between two Stripe push rounds.")
    stripe_settle_delay: DelayDuration = Field(
        timedelta(minutes=15),
        description="How long after a window's end its usage waits before being pushed, so the reports of every "
        "cluster for that hour are summed into one meter event per customer, meter and hour.",
    )


def load_billing_settings(overrides: dict[str, Any]) -> BillingSettings:
    """Settings from flags (``overrides``, None values ignored) over the environment; one-line errors."""
    try:
        return BillingSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        raise BillingConfigError(f"invalid billing-api setting {where}: {first['msg']}") from exc


def _read_secret(path: Path, what: str) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise BillingConfigError(f"cannot read {what} {path}: {exc.strerror}") from exc


def _parse_pairs(entries: list[str], source: str) -> dict[str, str]:
    tokens: dict[str, str] = {}
    for entry in entries:
        cluster, sep, token = entry.partition("=")
        cluster, token = cluster.strip(), token.strip()
        if not sep or not token or not CLUSTER_ID_RE.fullmatch(cluster):
            raise BillingConfigError(f"{source}: expected cluster=token, got {cluster[:40]!r}=...")
        if tokens.get(cluster, token) != token:
            raise BillingConfigError(f"{source}: cluster {cluster} is given two different tokens")
        tokens[cluster] = token
    return tokens


def cluster_tokens(settings: BillingSettings) -> dict[str, str]:
    """cluster id -> token, from ``tokens`` and ``tokens_file`` together."""
    entries = [e for e in settings.tokens.split(",") if e.strip()]
    tokens = _parse_pairs(entries, "BILLING_TOKENS/--token")
    if settings.tokens_file is not None:
        lines = _read_secret(settings.tokens_file, "tokens file").splitlines()
        from_file = _parse_pairs([ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#")], "tokens file")
        for cluster, token in from_file.items():
            if tokens.get(cluster, token) != token:
                raise BillingConfigError(f"cluster {cluster} has different tokens in the flags and the tokens file")
            tokens[cluster] = token
    owners: dict[str, str] = {}
    for cluster, token in tokens.items():
        if token in owners:
            # A token names its cluster; sharing one would let a cluster report as another.
            raise BillingConfigError(f"clusters {owners[token]} and {cluster} share a token; give each its own")
        owners[token] = cluster
    return tokens


def admin_token(settings: BillingSettings) -> str | None:
    """The admin token, read from ``admin_token_file`` when one is given."""
    if settings.admin_token_file is not None:
        return _read_secret(settings.admin_token_file, "admin token file") or None
    return settings.admin_token or None


def _digest(token: str) -> bytes:
    # surrogatepass: a header's bytes that are not UTF-8 arrive as lone surrogates; they are
    # hashed (and match no token) instead of failing to encode, before anyone is authenticated.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True)
class Credentials:
    """Who a bearer token belongs to, looked up by the token's SHA-256.

    Comparing digests through a dict keeps the check's timing independent of how much of a
    guessed token is right, without comparing against every token one by one.
    """

    clusters_by_digest: dict[bytes, str]
    admin_digest: bytes | None

    @classmethod
    def build(cls, tokens: dict[str, str], admin: str | None) -> Credentials:
        """Credentials from cluster -> token and the admin token (BillingConfigError if the admin's is a cluster's)."""
        for cluster, token in tokens.items():
            if admin is not None and hmac.compare_digest(_digest(token), _digest(admin)):
                # That cluster would be an admin: it could rewrite any customer's terms.
                raise BillingConfigError(f"the admin token is also the token of cluster {cluster}; give each its own")
        return cls({_digest(t): c for c, t in tokens.items()}, _digest(admin) if admin else None)

    def cluster_of(self, token: str) -> str | None:
        """The cluster a token belongs to, or None."""
        return self.clusters_by_digest.get(_digest(token))

    def is_admin(self, token: str) -> bool:
        """Whether ``token`` is the admin token."""
        return self.admin_digest is not None and hmac.compare_digest(_digest(token), self.admin_digest)
