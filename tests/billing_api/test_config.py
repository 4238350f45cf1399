"""Settings from flags and BILLING_* variables, tokens, pricing files and migrations."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from cluster_exporter.billing_api.cli import _settings
from cluster_exporter.billing_api.errors import BillingConfigError, StorageError
from cluster_exporter.billing_api.pricing import DEFAULT_PRICING_TOML, load_pricing
from cluster_exporter.billing_api.settings import Credentials, admin_token, cluster_tokens, load_billing_settings
from cluster_exporter.billing_api.storage import open_storage
from cluster_exporter.cli import build_parser, main


def test_every_setting_from_its_environment_name(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text("# one per line\nk8s-b = tb\n\nk8s-c=tc\n")
    admin_file = tmp_path / "admin"
    admin_file.write_text("from-file\n")
    env = {
        "BILLING_HOST": "127.0.0.2",
        "BILLING_PORT": "9999",
        "BILLING_DATABASE_URL": "postgresql://u@h/db",
        "BILLING_TOKENS": "k8s-a=ta, k8s-b=tb",
        "BILLING_TOKENS_FILE": str(tokens_file),
        "BILLING_ADMIN_TOKEN": "ignored-when-file-given",
        "BILLING_ADMIN_TOKEN_FILE": str(admin_file),
        "BILLING_PRICING_FILE": str(tmp_path / "p.toml"),
        "BILLING_MAX_BODY_BYTES": "1048576",
        "BILLING_STRIPE_API_KEY": "sk_x",
        "BILLING_STRIPE_API_BASE": "http://127.0.0.1:1/",
        "BILLING_STRIPE_PUSH_INTERVAL": "90s",
        "BILLING_STRIPE_SETTLE_DELAY": "0",
        "BILLING_MAX_WINDOW": "2h",
        "BILLING_MAX_CUSTOMERS_PER_REPORT": "5000",
        "BILLING_MAX_ROWS_PER_REPORT": "100000",
        "BILLING_MAX_WINDOW_AGE": "8760h",
        "BILLING_REPORT_WORKERS": "4",
        "BILLING_REQUEST_TIMEOUT": "30s",
        "BILLING_IDLE_TIMEOUT": "10s",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_billing_settings({})
    assert (settings.host, settings.port, settings.database_url) == ("127.0.0.2", 9999, "postgresql://u@h/db")
    assert cluster_tokens(settings) == {"k8s-a": "ta", "k8s-b": "tb", "k8s-c": "tc"}
    assert admin_token(settings) == "from-file"
    assert settings.pricing_file == tmp_path / "p.toml" and settings.max_body_bytes == 1 << 20
    assert (settings.stripe_api_key, settings.stripe_api_base) == ("sk_x", "http://127.0.0.1:1")
    assert settings.stripe_push_interval == timedelta(seconds=90) and settings.stripe_settle_delay == timedelta(0)
    assert (settings.max_window, settings.max_window_age) == (timedelta(hours=2), timedelta(days=365))
    assert (settings.max_customers_per_report, settings.max_rows_per_report, settings.report_workers) == (
        5000,
        100000,
        4,
    )
    assert (settings.request_timeout, settings.idle_timeout) == (timedelta(seconds=30), timedelta(seconds=10))

    # Flags win over the environment; --token replaces BILLING_TOKENS (the file still adds to it).
    args = build_parser().parse_args(
        ["billing-api", "serve", "--port", "0", "--token", "k8s-z=tz", "--token", "k8s-y=ty", "--host", "::1"]
    )
    flagged = _settings(args)
    assert (flagged.port, flagged.host) == (0, "::1")
    args = build_parser().parse_args(["billing-api", "serve", "--max-window", "3h", "--max-window-age", "1000h"])
    assert (_settings(args).max_window, _settings(args).max_window_age) == (timedelta(hours=3), timedelta(hours=1000))
    assert cluster_tokens(flagged) == {"k8s-z": "tz", "k8s-y": "ty", "k8s-b": "tb", "k8s-c": "tc"}


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_billing_settings({})
    assert (settings.port, settings.database_url, settings.max_body_bytes) == (8080, "sqlite:///billing.db", 8 << 20)
    assert (settings.max_window, settings.max_window_age) == (timedelta(hours=24), timedelta(days=35))
    assert (settings.max_customers_per_report, settings.max_rows_per_report) == (10_000, 300_000)
    with pytest.raises(BillingConfigError, match="max_window: Value error, must be a whole number of hours"):
        load_billing_settings({"max_window": "90m"})
    assert settings.stripe_api_base == "https://api.stripe.com" and settings.stripe_api_key is None
    assert cluster_tokens(settings) == {} and admin_token(settings) is None


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        ("k8s-a", "expected cluster=token"),
        ("k8s-a=", "expected cluster=token"),
        ("bad cluster=x", "expected cluster=token"),
        ("k8s-a=x,k8s-a=y", "two different tokens"),
        ("k8s-a=same,k8s-b=same", "share a token"),
    ],
)
def test_bad_tokens(tokens: str, message: str) -> None:
    with pytest.raises(BillingConfigError, match=message):
        cluster_tokens(load_billing_settings({"tokens": tokens}))


def test_credentials() -> None:
    credentials = Credentials.build({"k8s-a": "ta"}, "adm")
    assert credentials.cluster_of("ta") == "k8s-a" and credentials.cluster_of("tb") is None
    assert credentials.is_admin("adm") and not credentials.is_admin("ta")
    assert not Credentials.build({}, None).is_admin("")


def test_pricing_files(tmp_path: Path) -> None:
    default = load_pricing(None)
    assert default.plans["starter"].base_price == Decimal("29.00") and default.plans["professional"].vcpu == 4
    assert default.plans["enterprise"].custom and default.plans["enterprise"].network_gb is None
    assert default.prices.http_million_requests == Decimal("0.50")
    as_json = tmp_path / "p.json"
    as_json.write_text(
        '{"prices": {"cpu_core_hour": "0.1", "memory_gb_hour": "0", "storage_gb_month": "0", "network_gb": "0",'
        ' "http_million_requests": "1"}, "plans": {"basic": {"base_price": "5", "vcpu": 2, "memory_gb": 1,'
        ' "storage_gb": 1, "network_gb": "unlimited"}}, "meters": {"tpu_hours": {"price": "2.5"}}}'
    )
    custom = load_pricing(as_json)
    assert custom.plans["basic"].network_gb is None and custom.meters_known()["tpu_hours"] is False
    assert custom.stripe_meters()["tpu_hours"] == ("tpu_hours", 1000)
    assert custom.stripe_meters()["network_bytes_sent"] == ("network_bytes_sent", 1)
    broken = tmp_path / "broken.toml"
    for text, message in [
        ("[prices", "not valid"),
        ('currency = "usd"', "prices: Field required"),
        ('[prices]\ncpu_core_hour = "-1"', "greater than or equal"),
        (DEFAULT_PRICING_TOML.replace("vcpu = 4", 'vcpu = 4\ncpu_basis = "peak"'), "plans.professional.cpu_basis"),
        (DEFAULT_PRICING_TOML.replace('gpu_hour = "2.50"', 'gpu_hour = "-2.50"'), "prices.gpu_hour"),
    ]:
        broken.write_text(text)
        with pytest.raises(BillingConfigError, match=message):
            load_pricing(broken)
    with pytest.raises(BillingConfigError, match="cannot read pricing file"):
        load_pricing(tmp_path / "missing.toml")


def test_cli_errors_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["billing-api", "serve", "--port", "70000"]) == 2
    assert main(["billing-api", "serve", "--token", "nope", "--database-url", f"sqlite:///{tmp_path}/x.db"]) == 2
    migrate = ["billing-api", "migrate", "--database-url", f"sqlite:///{tmp_path}/m.db"]
    assert main([*migrate, "--pricing-file", str(tmp_path / "none.toml")]) == 0  # migrate reads no pricing
    assert main(["billing-api", "invoice", "--customer", "c", "--month", "2025-11", "--database-url", "sqlite://"]) == 2
    assert main(["billing-api"]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("cluster-exporter: error")]
    assert len(lines) == 4
    assert "port" in lines[0] and "expected cluster=token" in lines[1] and "SQLite URL" in lines[2]


async def test_migrations_are_versioned_and_idempotent(database_url: str) -> None:
    stores = [await open_storage(database_url, 2) for _ in range(3)]
    try:
        applied = await asyncio.gather(*(s.migrate(1_700_000_000) for s in stores))
        assert sorted(applied) == [[], [], [1]]  # applied once, whoever raced
        assert await stores[0].migrate(1_700_000_000) == []
        async with stores[0].transaction() as tx:
            rows = await tx.fetchall("SELECT version, name FROM schema_migrations")
        assert [r[0] for r in rows] == [1]
        async with stores[0].transaction() as tx:
            await tx.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, 'future', 0)")
        with pytest.raises(StorageError, match="newer than this program"):
            await stores[1].migrate(1_700_000_000)
    finally:
        for store in stores:
            await store.close()
