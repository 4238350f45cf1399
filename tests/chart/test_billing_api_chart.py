"""charts/billing-api: what only the billing API's chart does (the checks shared with the exporter's
chart, lint, kubernetes-validate, pod security and labels, run for both charts in test_chart.py)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from cluster_exporter.billing_api.pricing import load_pricing
from cluster_exporter.billing_api.settings import BillingSettings, cluster_tokens

from .helm import BILLING_CHART, NAMESPACE, ci_values, objects_of, one, pod_templates, render, run, template_args

CASES = [None, *ci_values(BILLING_CHART)]
IDS = ["default", *[p.stem for p in ci_values(BILLING_CHART)]]
CHART_MADE_SECRET = BILLING_CHART / "ci" / "01-chart-made-secret-values.yaml"


def container_of(docs: list[dict]) -> dict:
    (_, template), *_ = pod_templates(docs)
    return dict(template["spec"]["containers"][0])


def known_env_names() -> set[str]:
    prefix = BillingSettings.model_config.get("env_prefix", "")
    return {f"{prefix}{field}".upper() for field in BillingSettings.model_fields}


@pytest.mark.parametrize("values", CASES, ids=IDS)
def test_env_names_are_billing_settings(values: Path | None) -> None:
    env = container_of(render(BILLING_CHART, values))["env"]
    unknown = {e["name"] for e in env} - known_env_names()
    assert not unknown, f"the chart sets variables the billing API does not read: {sorted(unknown)}"


@pytest.mark.parametrize("values", CASES, ids=IDS)
def test_serves_the_billing_api_with_credentials_from_the_secret(values: Path | None) -> None:
    docs = render(BILLING_CHART, values)
    (_, template), *_ = pod_templates(docs)
    pod = template["spec"]
    container = pod["containers"][0]
    assert container["args"] == ["billing-api", "serve"]
    assert pod["automountServiceAccountToken"] is False, "the billing API never calls the Kubernetes API"
    assert not objects_of(docs, "Role") and not objects_of(docs, "ClusterRole")
    env = {e["name"]: e for e in container["env"]}
    secret_name = env["BILLING_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"]
    assert env["BILLING_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": secret_name, "key": "database-url"}
    for name, key in (("BILLING_ADMIN_TOKEN", "admin-token"), ("BILLING_STRIPE_API_KEY", "stripe-api-key")):
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": secret_name, "key": key, "optional": True}
    tokens_file = Path(env["BILLING_TOKENS_FILE"]["value"])
    (volume,) = [v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == secret_name]
    assert volume["secret"]["items"] == [{"key": "tokens", "path": tokens_file.name}]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert Path(mount["mountPath"]) == tokens_file.parent and mount["readOnly"] is True
    port = int(env["BILLING_PORT"]["value"])
    assert container["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}


def test_chart_made_secret_is_what_the_billing_api_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rendered Secret's tokens file and the pricing ConfigMap load with the billing API's own code."""
    docs = render(BILLING_CHART, CHART_MADE_SECRET)
    secret = one(docs, "Secret")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert set(data) == {"database-url", "tokens", "admin-token", "stripe-api-key"}
    (tmp_path / "tokens").write_text(data["tokens"])
    pricing = next(d for d in objects_of(docs, "ConfigMap") if d["metadata"]["name"].endswith("-pricing"))
    (tmp_path / "pricing.toml").write_text(pricing["data"]["pricing.toml"])

    container = container_of(docs)
    for name in known_env_names():
        monkeypatch.delenv(name, raising=False)
    for item in container["env"]:
        if "value" in item:
            monkeypatch.setenv(item["name"], item["value"])
        else:
            monkeypatch.setenv(item["name"], data[item["valueFrom"]["secretKeyRef"]["key"]])
    monkeypatch.setenv("BILLING_TOKENS_FILE", str(tmp_path / "tokens"))
    monkeypatch.setenv("BILLING_PRICING_FILE", str(tmp_path / "pricing.toml"))
    settings = BillingSettings()
    assert cluster_tokens(settings) == {
        "k8s-us-east-1": "not-a-real-token-us-east-1",
        "k8s-eu-west-2": "not-a-real-token-eu-west-2",
    }
    assert settings.database_url.startswith("postgresql://")
    assert settings.stripe_settle_delay.total_seconds() == 20 * 60
    prices = load_pricing(settings.pricing_file)  # raises on a pricing file the billing API would refuse
    starter = prices.plans["starter"]
    assert (starter.cpu_basis, starter.memory_basis, prices.prices.gpu_hour) == ("max", "requests", 2)


def test_without_pricing_the_builtin_prices_apply() -> None:
    docs = render(BILLING_CHART)
    assert not objects_of(docs, "ConfigMap") and not objects_of(docs, "Secret")
    assert "BILLING_PRICING_FILE" not in {e["name"] for e in container_of(docs)["env"]}


def test_ingress_routes_to_the_service() -> None:
    docs = render(BILLING_CHART, CHART_MADE_SECRET)
    ingress = one(docs, "Ingress")
    service = one(docs, "Service")
    backends = [p["backend"]["service"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]]
    assert backends == [{"name": service["metadata"]["name"], "port": {"name": "http"}}]
    assert one(docs, "ServiceMonitor")["spec"]["endpoints"][0]["port"] == "http"
    assert one(docs, "NetworkPolicy")["metadata"]["namespace"] == NAMESPACE


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["replicaCount=abc"], "at '/replicaCount': got string, want integer"),
        (["database=x"], "additional properties 'database' not allowed"),
        (["secret.databaseUrl=sqlite:///billing.db"], "at '/secret/databaseUrl'"),
        (["secret.clusterTokens.k8s-1=short"], "at '/secret/clusterTokens/k8s-1'"),
        (["secret.create=true"], "secret.create needs secret.databaseUrl"),
        (
            ["secret.create=true", "secret.databaseUrl=postgresql://u:p@db:5432/b"],
            "secret.create needs secret.clusterTokens",
        ),
    ],
)
def test_bad_values_fail_with_a_clear_message(sets: list[str], message: str) -> None:
    proc = run(template_args(BILLING_CHART, sets=sets), check=False)
    assert proc.returncode != 0, f"helm template accepted {sets}"
    assert message in proc.stderr, proc.stderr
