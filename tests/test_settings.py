"""Settings: precedence (flags > environment > file > defaults), names, validation, the reference doc."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from cluster_exporter.config_reference import markdown
from cluster_exporter.errors import UsageError
from cluster_exporter.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(
            (
                "PROMETHEUS_",
                "KUBERNETES_",
                "METERING_",
                "BILLING_API_",
                "CLUSTER_ID",
                "INSTANCE_ID",
                "CUSTOMER_LABEL",
                "KUBECONFIG",
                "CONFIG_FILE",
            )
        ):
            monkeypatch.delenv(name)


def test_original_design_names_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMETHEUS_URL", "http://prom:9090/")
    monkeypatch.setenv("BILLING_API_URL", "https://billing.example.com")
    monkeypatch.setenv("INSTANCE_ID", "k8s-us-east-1")
    monkeypatch.setenv("CUSTOMER_LABEL", "example.com/tenant")
    monkeypatch.setenv("METERING_MAX_GAP", "2m")
    monkeypatch.setenv("METERING__SCRAPE_INTERVAL", "30s")
    s = load_settings()
    assert s.prometheus.url == "http://prom:9090"
    assert s.billing_api.url == "https://billing.example.com"
    assert s.cluster_id == "k8s-us-east-1"
    assert s.kubernetes.customer_label == "example.com/tenant"
    assert s.metering.max_gap == timedelta(minutes=2)
    assert s.metering.scrape_interval == timedelta(seconds=30)


def test_cluster_id_beats_instance_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSTANCE_ID", "old")
    monkeypatch.setenv("CLUSTER_ID", "new")
    assert load_settings().cluster_id == "new"


def test_flags_beat_environment_beat_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        'cluster_id = "from-file"\n[prometheus]\nurl = "http://file:9090"\ntimeout = "10s"\n'
        '[[metering.custom_meters]]\nname = "pg_commits"\nselector = "pg_stat_database_xact_commit"\n'
    )
    monkeypatch.setenv("PROMETHEUS_URL", "http://env:9090")
    s = load_settings({"cluster_id": "from-flag"}, config_file=config)
    assert s.cluster_id == "from-flag"
    assert s.prometheus.url == "http://env:9090"
    assert s.prometheus.timeout == timedelta(seconds=10)
    assert [m.name for m in s.metering.custom_meters] == ["pg_commits"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"metering": {"window": "90m"}}, "whole number of hours"),
        ({"metering": {"max_gap": "10m"}}, "max_gap"),
        ({"metering": {"scrape_interval": "70s", "max_gap": "90s"}}, "1.5 scrape intervals"),
        ({"metering": {"max_gap": "60s", "scrape_interval": "30s"}}, "boundary_search"),
        ({"metering": {"custom_meters": [{"name": "cpu_hours", "selector": "x"}]}}, "taken"),
        ({"metering": {"custom_meters": [{"name": "a", "selector": "x", "query": "y"}]}}, "exactly one"),
        ({"prometheus": {"url": "prometheus:9090"}}, "http"),
        ({"kubernetes": {"customer_label": "not a label"}}, "label key"),
        ({"cluster_id": "bad id!"}, "cluster id"),
        ({"prometheus": {"timeout": "soon"}}, "duration"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_bad_settings_are_usage_errors(overrides: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(UsageError, match=message):
        load_settings(overrides)


def test_bad_config_file_is_a_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[metering\n")
    with pytest.raises(UsageError, match="not valid TOML"):
        load_settings(config_file=bad)
    with pytest.raises(UsageError, match="cannot read"):
        load_settings(config_file=tmp_path / "missing.toml")


def test_configuration_reference_is_current() -> None:
    committed = (ROOT / "docs" / "configuration.md").read_text()
    assert committed == markdown() + "\n", "regenerate: cluster-exporter config-reference > docs/configuration.md"
