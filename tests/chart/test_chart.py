"""The charts: lint, render, validate every object, and check what they grant and run.

charts/cluster-exporter (one per cluster) and charts/billing-api (one per platform). For each chart,
each ci/*.yaml file and the default values are rendered with `helm template`, and the output is
piped through `kubernetes-validate --strict` for the oldest Kubernetes the chart supports
(Chart.yaml kubeVersion) and the newest kubernetes-validate knows. kubernetes-validate has no
schemas for CRDs and only warns about them; the two CRD kinds the chart renders (ServiceMonitor,
PrometheusRule) are validated against strict subset schemas in tests/chart/schemas/ instead, and any
other unvalidated kind fails the test.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

import cluster_exporter
from cluster_exporter import settings as exporter_settings

from .helm import (
    BILLING_CHART,
    EXPORTER_CHART,
    NAMESPACE,
    RELEASE,
    ROOT,
    ci_values,
    helm,
    merged_values,
    objects_of,
    one,
    pod_templates,
    render,
    render_text,
    run,
    system_tool,
    template_args,
    values_of,
    venv_tool,
)

SCHEMAS = Path(__file__).parent / "schemas"
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SCHEMAS / "servicemonitor-monitoring-v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): SCHEMAS / "prometheusrule-monitoring-v1.json",
}
VALUE_FILES = [None, *ci_values(EXPORTER_CHART)]
VALUE_IDS = ["default", *[p.stem for p in ci_values(EXPORTER_CHART)]]
CHARTS = [EXPORTER_CHART, BILLING_CHART]
# (chart, values file) for every chart: the defaults and each ci/ file.
ALL_CASES = [
    pytest.param(chart, values, id=f"{chart.name}/{values.stem if values else 'default'}")
    for chart in CHARTS
    for values in [None, *ci_values(chart)]
]
STANDARD_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
)


def chart_meta(chart: Path) -> dict[str, Any]:
    return yaml.safe_load((chart / "Chart.yaml").read_text())


def min_kube_version(chart: Path) -> str:
    """The lowest Kubernetes version Chart.yaml's kubeVersion admits (">=1.25.0-0" -> "1.25.0")."""
    match = re.fullmatch(r">=\s*(\d+\.\d+\.\d+)(-0)?", chart_meta(chart)["kubeVersion"].strip())
    assert match, "kubeVersion must be a plain lower bound such as >=1.25.0-0"
    return match[1]


def dockerfile_uid() -> int:
    match = re.search(r"^USER\s+(\d+)(?::(\d+))?\s*$", (ROOT / "Dockerfile").read_text(), re.M)
    assert match, "the Dockerfile has no numeric USER"
    return int(match[1])


# --- metadata -------------------------------------------------------------------------------------


@pytest.mark.parametrize("chart", CHARTS, ids=lambda c: c.name)
def test_app_version_is_the_package_version(chart: Path) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert chart_meta(chart)["appVersion"] == pyproject["project"]["version"] == cluster_exporter.__version__


# Blocks passed to Kubernetes as they are (and the Ingress hosts example); the comment on the block documents them.
LITERAL_BLOCKS = {"podSecurityContext", "securityContext", "resources", "hosts"}


@pytest.mark.parametrize("chart", CHARTS, ids=lambda c: c.name)
def test_every_value_is_commented(chart: Path) -> None:
    """Every key in values.yaml has a comment right above it, except inside the Kubernetes literal blocks."""
    lines = (chart / "values.yaml").read_text().splitlines()
    missing = []
    parents: list[tuple[int, str]] = []
    for i, line in enumerate(lines):
        match = re.match(r"^(\s*)([A-Za-z][A-Za-z0-9_]*):", line)
        if not match:
            continue
        indent, key = len(match[1]), match[2]
        parents = [(d, k) for d, k in parents if d < indent]
        inside_literal = any(k in LITERAL_BLOCKS for _, k in parents)
        if not inside_literal and not lines[i - 1].lstrip().startswith("#"):
            missing.append(".".join([k for _, k in parents] + [key]))
        parents.append((indent, key))
    assert not missing, f"values.yaml keys without a comment: {missing}"


def _leaves(values: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and key not in LITERAL_BLOCKS:
            out += _leaves(value, path + ".")
        else:
            out.append(path)
    return out


@pytest.mark.parametrize("chart", CHARTS, ids=lambda c: c.name)
def test_every_value_is_in_the_installation_guide(chart: Path) -> None:
    """docs/installation.md lists every value of both charts (so the guide cannot drift from values.yaml)."""
    guide = (ROOT / "docs" / "installation.md").read_text()
    missing = [key for key in _leaves(values_of(chart)) if f"| `{key}` |" not in guide]
    assert not missing, f"docs/installation.md does not list {missing}"


# --- lint and schema ------------------------------------------------------------------------------


@pytest.mark.parametrize(("chart", "values"), ALL_CASES)
def test_helm_lint(chart: Path, values: Path | None) -> None:
    args = [helm(), "lint", "--strict", str(chart), "--namespace", NAMESPACE]
    if values is not None:
        args += ["--values", str(values)]
    proc = run(args)
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["replicaCount=abc"], "at '/replicaCount': got string, want integer"),
        (["replicaCount=0"], "at '/replicaCount': minimum"),
        (["replicas=2"], "additional properties 'replicas' not allowed"),
        (["serviceMonitor.enable=true"], "additional properties 'enable' not allowed"),
        (["mode=daemonset"], "at '/mode'"),
        (["prometheus.url=prometheus:9090"], "at '/prometheus/url'"),
        (["customerLabel=not a label"], "at '/customerLabel'"),
        (["customMeters[0].name=BadName,customMeters[0].selector=up"], "at '/customMeters/0/name'"),
        (["customMeters[0].name=twice,customMeters[0].selector=up,customMeters[0].query=up"], "at '/customMeters/0'"),
        (["podSecurityContext.runAsNonRoot=false"], "at '/podSecurityContext/runAsNonRoot'"),
        (["server.port=70000"], "at '/server/port'"),
    ],
)
def test_schema_rejects_bad_values(sets: list[str], message: str) -> None:
    proc = run(template_args(EXPORTER_CHART, sets=sets), check=False)
    assert proc.returncode != 0, f"helm template accepted {sets}"
    assert "values don't meet the specifications of the schema" in proc.stderr
    assert message in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["mode=cronjob", "serviceMonitor.enabled=true"], "mode: cronjob has no long-running pod to scrape"),
        (["mode=cronjob", "prometheusRule.enabled=true"], "mode: cronjob has no long-running pod to scrape"),
        (["leaderElection.enabled=false"], "replicaCount > 1 needs leaderElection.enabled: true"),
        (["state.backend=directory"], "state.backend: directory needs state.persistentVolumeClaim"),
    ],
)
def test_impossible_combinations_fail_with_a_clear_message(sets: list[str], message: str) -> None:
    proc = run(template_args(EXPORTER_CHART, sets=sets), check=False)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr


# --- every object validates -----------------------------------------------------------------------


def kubernetes_validate(manifests: str, versions: list[str]) -> tuple[int, list[str]]:
    """Pipe manifests through `kubernetes-validate --strict` once per version; (worst exit code, output lines)."""
    code, lines = 0, []
    for version in versions:
        args = [venv_tool("kubernetes-validate"), "--strict", "--kubernetes-version", version, "-"]
        proc = run(args, check=False, stdin=manifests)
        code = max(code, proc.returncode)
        lines += proc.stdout.splitlines() + proc.stderr.splitlines()
    return code, lines


def latest_kube_version() -> str:
    from kubernetes_validate import utils

    return str(utils.latest_version())


@pytest.mark.parametrize(("chart", "values"), ALL_CASES)
def test_rendered_objects_validate(chart: Path, values: Path | None) -> None:
    manifests = render_text(chart, values)
    docs = [d for d in yaml.safe_load_all(manifests) if d]
    versions = [min_kube_version(chart), latest_kube_version()]
    code, lines = kubernetes_validate(manifests, versions)
    errors = [ln for ln in lines if not ln.startswith(("INFO", "WARN"))]
    assert code == 0 and not errors, "\n".join(lines)

    crd_docs = [d for d in docs if (d["apiVersion"], d["kind"]) in CRD_SCHEMAS]
    builtin = [d for d in docs if (d["apiVersion"], d["kind"]) not in CRD_SCHEMAS]
    # kubernetes-validate only warns when it has no schema: accept that for our CRDs and nothing else.
    passed = [ln for ln in lines if ln.startswith("INFO") and " passed for resource " in ln]
    assert len(passed) == len(builtin) * len(versions), "\n".join(lines)
    warned_kinds = {m[1] for ln in lines if (m := re.search(r"schema for kind (\w+) with api version", ln))}
    assert warned_kinds == {d["kind"] for d in crd_docs}, "\n".join(lines)
    for doc in crd_docs:
        schema = json.loads(CRD_SCHEMAS[(doc["apiVersion"], doc["kind"])].read_text())
        jsonschema.validate(doc, schema)


def test_crd_schemas_are_strict() -> None:
    """The hand-written CRD schemas reject what the real CRDs reject (so the check above can fail)."""
    docs = render(EXPORTER_CHART, ci_values(EXPORTER_CHART)[0])
    monitor = one(docs, "ServiceMonitor")
    schema = json.loads(CRD_SCHEMAS[("monitoring.coreos.com/v1", "ServiceMonitor")].read_text())
    jsonschema.validate(monitor, schema)
    broken = json.loads(json.dumps(monitor))
    broken["spec"]["endpoints"][0]["intervall"] = "30s"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)
    broken = json.loads(json.dumps(monitor))
    broken["spec"]["endpoints"][0]["interval"] = "30 seconds"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_prometheusrule_passes_promtool(tmp_path: Path) -> None:
    """The PrometheusRule the chart renders (with alertLabels and runbook links) is a valid rule file."""
    rule = one(render(EXPORTER_CHART, ci_values(EXPORTER_CHART)[0]), "PrometheusRule")
    path = tmp_path / "rendered.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    run([system_tool("promtool", "prometheus"), "check", "rules", str(path)])
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    assert all(r["labels"]["team"] == "billing" for r in alerts)
    assert all(r["annotations"]["runbook_url"].endswith("#" + r["alert"].lower()) for r in alerts)


# --- what runs, and with which rights ---------------------------------------------------------------


@pytest.mark.parametrize(("chart", "values"), ALL_CASES)
def test_every_pod_is_locked_down(chart: Path, values: Path | None) -> None:
    docs = render(chart, values)
    templates = pod_templates(docs)
    assert len(templates) == 1
    uid = dockerfile_uid()
    for where, template in templates:
        pod = template["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"]["runAsUser"] == uid, f"{where}: pod uid differs from the Dockerfile's USER"
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert pod.get("hostNetwork") is not True and pod.get("hostPID") is not True, where
        for container in pod["containers"] + pod.get("initContainers", []):
            ctx = container["securityContext"]
            assert ctx["allowPrivilegeEscalation"] is False, where
            assert ctx["readOnlyRootFilesystem"] is True, where
            assert ctx["runAsNonRoot"] is True, where
            assert ctx["capabilities"]["drop"] == ["ALL"] and not ctx["capabilities"].get("add"), where
            assert ctx.get("privileged") is not True, where
            assert container["resources"]["requests"] and container["resources"]["limits"], where
            mounts = {m["mountPath"] for m in container["volumeMounts"]}
            assert "/tmp" in mounts, f"{where}: a read-only root needs a writable /tmp"


def test_default_resources_are_the_original_designs() -> None:
    (_, template), *_ = pod_templates(render(EXPORTER_CHART))
    assert template["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "50m", "memory": "64Mi"},
        "limits": {"cpu": "100m", "memory": "128Mi"},
    }


def test_default_is_two_replicas_with_leader_election_and_probes() -> None:
    docs = render(EXPORTER_CHART)
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert not objects_of(docs, "CronJob")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["run"]
    assert container["ports"] == [{"name": "http-metrics", "containerPort": 9464, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http-metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http-metrics"}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["DELIVERY_LEADER_ELECTION"] == "true"
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1


def test_cronjob_mode_runs_once_hourly_behind_the_lease() -> None:
    docs = render(EXPORTER_CHART, ROOT / "charts/cluster-exporter/ci/02-cronjob-values.yaml")
    cron = one(docs, "CronJob")
    assert not objects_of(docs, "Deployment") and not objects_of(docs, "Service")
    assert not objects_of(docs, "PodDisruptionBudget")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert re.fullmatch(r"\d+ \* \* \* \*", cron["spec"]["schedule"]), "not hourly"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    container = pod["containers"][0]
    assert container["args"] == ["run", "--once"]
    assert "ports" not in container and "livenessProbe" not in container, "run --once serves no HTTP"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["DELIVERY_LEADER_ELECTION"] == "true"
    assert "DELIVERY_METRICS_PORT" not in env


def _rules_as_set(rules: list[dict[str, Any]]) -> set[tuple[str, str, str, str]]:
    return {
        (group, resource, verb, name)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
        for name in rule.get("resourceNames", ["*"])
    }


@pytest.mark.parametrize("values", VALUE_FILES, ids=VALUE_IDS)
def test_rbac_is_minimal(values: Path | None) -> None:
    docs = render(EXPORTER_CHART, values)
    (cluster_role,) = objects_of(docs, "ClusterRole")
    assert _rules_as_set(cluster_role["rules"]) == {("", "namespaces", v, "*") for v in ("get", "list", "watch")}
    (binding,) = objects_of(docs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == cluster_role["metadata"]["name"]

    (_, template), *_ = pod_templates(docs)
    sa = template["spec"]["serviceAccountName"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}]
    env = {e["name"]: e.get("value") for e in template["spec"]["containers"][0]["env"]}

    allowed: set[tuple[str, str, str, str]] = set()
    if env.get("DELIVERY_LEADER_ELECTION") == "true":
        lease = env["DELIVERY_LEASE_NAME"]
        allowed |= {("coordination.k8s.io", "leases", "create", "*")}
        allowed |= {("coordination.k8s.io", "leases", v, lease) for v in ("get", "update")}
    if env.get("DELIVERY_STATE_BACKEND") == "configmap":
        state = env["DELIVERY_CONFIGMAP_NAME"]
        allowed |= {("", "configmaps", "create", "*")}
        allowed |= {("", "configmaps", v, state) for v in ("get", "update")}
    roles = objects_of(docs, "Role")
    granted = _rules_as_set(roles[0]["rules"]) if roles else set()
    assert granted == allowed, "the Role grants other rights than the Lease and state ConfigMap the pod uses"
    for role in roles:
        assert role["metadata"]["namespace"] == NAMESPACE
        (rb,) = [b for b in objects_of(docs, "RoleBinding") if b["roleRef"]["name"] == role["metadata"]["name"]]
        assert rb["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}]


@pytest.mark.parametrize(("chart", "values"), ALL_CASES)
def test_labels_and_selectors_agree(chart: Path, values: Path | None) -> None:
    docs = render(chart, values)
    for doc in docs:
        labels = doc["metadata"].get("labels", {})
        missing = [k for k in STANDARD_LABELS if k not in labels]
        assert not missing, f"{doc['kind']}/{doc['metadata']['name']} lacks {missing}"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert len(doc["metadata"]["name"]) <= (63 if doc["kind"] in ("Service", "Deployment", "CronJob") else 253)
    (_, template), *_ = pod_templates(docs)
    pod_labels = template["metadata"]["labels"]
    for doc in docs:
        spec = doc.get("spec", {})
        selector = spec.get("selector", {}).get("matchLabels") or (
            spec.get("selector") if doc["kind"] == "Service" else None
        )
        if doc["kind"] == "NetworkPolicy":
            selector = spec["podSelector"]["matchLabels"]
        if selector and doc["kind"] != "ServiceMonitor":
            assert selector.items() <= pod_labels.items(), f"{doc['kind']} selects no pod of the chart"
    for monitor in objects_of(docs, "ServiceMonitor"):
        service = one(docs, "Service")
        assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
        ports = {p["name"] for p in service["spec"]["ports"]}
        assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports
        assert monitor["spec"]["namespaceSelector"]["matchNames"] == [NAMESPACE]


def test_fullname_is_cut_to_63_characters() -> None:
    docs = render(EXPORTER_CHART, ROOT / "charts/cluster-exporter/ci/04-external-serviceaccount-values.yaml")
    name = one(docs, "Deployment")["metadata"]["name"]
    assert len(name) == 63 and not name.endswith("-")
    assert not objects_of(docs, "ServiceAccount")
    assert pod_templates(docs)[0][1]["spec"]["serviceAccountName"] == "cluster-exporter-irsa"


def test_billing_token_is_a_mounted_file_never_an_env_value() -> None:
    docs = render(EXPORTER_CHART, ci_values(EXPORTER_CHART)[0])
    secret = one(docs, "Secret")
    (_, template), *_ = pod_templates(docs)
    container = template["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert "BILLING_API_TOKEN" not in env and "not-a-real-token" not in json.dumps(template)
    path = Path(env["BILLING_API_TOKEN_FILE"]["value"])
    (volume,) = [
        v for v in template["spec"]["volumes"] if v.get("secret", {}).get("secretName") == secret["metadata"]["name"]
    ]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["readOnly"] is True and path.parent == Path(mount["mountPath"])
    assert volume["secret"]["items"] == [{"key": "token", "path": path.name}]

    docs = render(EXPORTER_CHART, ROOT / "charts/cluster-exporter/ci/02-cronjob-values.yaml")
    assert not objects_of(docs, "Secret"), "existingSecret must not create a Secret"
    (_, template), *_ = pod_templates(docs)
    (volume,) = [v for v in template["spec"]["volumes"] if "secret" in v]
    assert volume["secret"]["secretName"] == "cluster-exporter-billing-token"
    assert volume["secret"]["items"] == [{"key": "api-token", "path": "token"}]


def test_dashboard_configmap_for_the_grafana_sidecar() -> None:
    docs = render(EXPORTER_CHART, ci_values(EXPORTER_CHART)[0])
    (cm,) = [d for d in objects_of(docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["namespace"] == "monitoring"
    source = json.loads((EXPORTER_CHART / "dashboards" / "cluster-exporter.json").read_text())
    assert json.loads(cm["data"]["cluster-exporter.json"]) == source


def test_switches_off_by_default() -> None:
    kinds = {d["kind"] for d in render(EXPORTER_CHART)}
    assert not kinds & {"ServiceMonitor", "PrometheusRule", "NetworkPolicy", "Secret"}
    assert kinds >= {"Deployment", "Service", "ServiceAccount", "ClusterRole", "Role", "PodDisruptionBudget"}


# --- the exporter accepts what the chart configures ---------------------------------------------------


def known_env_names() -> set[str]:
    """Every environment variable the exporter's settings read (settings.env_names), plus CONFIG_FILE."""
    names = {"CONFIG_FILE"}
    for name in exporter_settings.Settings.model_fields:
        if name in exporter_settings.GROUPS:
            for field in exporter_settings.GROUPS[name].model_fields:
                names.update(exporter_settings.env_names(f"{name}.{field}"))
        else:
            names.update(exporter_settings.env_names(name))
    return names


@pytest.mark.parametrize("values", VALUE_FILES, ids=VALUE_IDS)
def test_exporter_settings_accept_the_rendered_env_and_config(
    values: Path | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The container's environment and the ConfigMap's config.toml load into the real Settings model."""
    docs = render(EXPORTER_CHART, values)
    (_, template), *_ = pod_templates(docs)
    container = template["spec"]["containers"][0]
    chart_values = merged_values(EXPORTER_CHART, values)
    extra = {e["name"] for e in chart_values.get("extraEnv", [])}

    known = known_env_names()
    unknown = {e["name"] for e in container["env"]} - known - extra
    assert not unknown, f"the chart sets environment variables the exporter does not read: {sorted(unknown)}"

    config = next(d for d in objects_of(docs, "ConfigMap") if d["metadata"]["name"].endswith("-config"))
    config_file = tmp_path / "config.toml"
    config_file.write_text(config["data"]["config.toml"])
    for name in known:
        monkeypatch.delenv(name, raising=False)
    for item in container["env"]:
        if "value" in item:
            monkeypatch.setenv(item["name"], item["value"])
        else:
            assert item["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace", item
            monkeypatch.setenv(item["name"], NAMESPACE)
    monkeypatch.setenv("CONFIG_FILE", str(config_file))
    loaded = exporter_settings.load_settings()

    assert loaded.cluster_id == (chart_values.get("clusterId") or "")
    assert loaded.prometheus.url == chart_values["prometheus"]["url"].rstrip("/")
    assert loaded.kubernetes.customer_label == chart_values["customerLabel"]
    assert [m.name for m in loaded.metering.custom_meters] == [m["name"] for m in chart_values["customMeters"]]
    for group, table in chart_values["config"].items():
        for key, value in table.items():
            got = getattr(getattr(loaded, group), key)
            assert got == value or str(value) in (str(got), _duration_text(got)), f"{group}.{key}"
    if chart_values["mode"] == "deployment":
        assert loaded.delivery.metrics_port == chart_values["server"]["port"]
        (port,) = container["ports"]
        assert port["containerPort"] == chart_values["server"]["port"]
    assert loaded.delivery.leader_election == chart_values["leaderElection"]["enabled"]
    if loaded.delivery.leader_election:
        assert loaded.delivery.lease_name == (
            chart_values["leaderElection"]["leaseName"] or f"{RELEASE}-cluster-exporter-leader"
        )
    assert loaded.delivery.backend == chart_values["state"]["backend"]
    if loaded.delivery.backend == "directory":
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert str(loaded.delivery.state_dir) in mounts


def _duration_text(value: Any) -> str:
    from datetime import timedelta

    if isinstance(value, timedelta):
        seconds = int(value.total_seconds())
        return f"{seconds // 60}m" if seconds % 60 == 0 and seconds < 3600 else f"{seconds}s"
    return str(value)
