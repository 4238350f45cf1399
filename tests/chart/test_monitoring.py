"""The Grafana dashboard and the alert rules: valid PromQL, only metrics the exporter exposes, tested alerts.

The exposed metric names come from a live exporter: `cluster-exporter run` is started with the
environment and arguments the chart renders for its container (URLs and paths pointed at loopback
and a temporary directory), against the real Prometheus over the demo history (tests/conftest.py),
the Kubernetes API stand-in and a billing receiver; the test waits until it has delivered the demo's
windows and reads /metrics. Metric names are taken from the exposition's TYPE lines, so a labelled
metric that has not been touched yet (an error counter) still counts as exposed.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from cluster_exporter.devtools.demo import demo_namespaces
from cluster_exporter.devtools.kubeapi_standin import KubeApiStandIn, KubeState, write_kubeconfig
from cluster_exporter.devtools.prometheus_server import PrometheusServer, free_port
from cluster_exporter.devtools.synthetic_cluster import CUSTOMER_LABEL, Cluster

from .helm import EXPORTER_CHART, ROOT, one, pod_templates, render, run, system_tool

DASHBOARD = EXPORTER_CHART / "dashboards" / "cluster-exporter.json"
RULES = EXPORTER_CHART / "rules" / "cluster-exporter.rules.yaml"
RULE_TESTS = Path(__file__).parent / "rules_test.yaml"
RUNBOOK = ROOT / "docs" / "runbook.md"

# The demo history's three fully covered windows: --as-of 03:07 --backfill-from 00:00 makes all three due (settle 6m).
AS_OF = "2025-11-20T03:07:00Z"
BACKFILL_FROM = "2025-11-20T00:00:00Z"
DEMO_WINDOWS = 3

# What the issue asks the dashboard to show, as the metric families that carry it.
DASHBOARD_MUST_SHOW = {
    "last delivered window age": "cluster_exporter_delivery_last_delivered_window_end_timestamp_seconds",
    "deliveries": "cluster_exporter_delivery_windows_delivered_total",
    "retries": "cluster_exporter_delivery_attempts_total",
    "dead letters": "cluster_exporter_delivery_windows_dead_lettered_total",
    "spool depth": "cluster_exporter_spool_depth_reports",
    "query latency by query": "cluster_exporter_prometheus_query_duration_seconds_bucket",
    "customers reported": "cluster_exporter_report_customers",
    "namespaces reported": "cluster_exporter_report_namespaces",
    "leader": "cluster_exporter_leader_is_leader",
    "unattributed usage per meter": "cluster_exporter_metering_unattributed_amount",
    "unattributed series per meter": "cluster_exporter_metering_unattributed_series",
    "series seen per meter": "cluster_exporter_metering_series",
}

# --- PromQL ---------------------------------------------------------------------------------------

_KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "inf",
    "nan",
    "atan2",
}
# Grafana's template variables, replaced by values PromQL accepts (they only appear in ranges and matchers).
_GRAFANA_VARS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1d"}


def grafana_to_promql(expr: str) -> str:
    """A panel's expression with Grafana's variables replaced by sample values."""
    for var, value in _GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    expr = re.sub(r"\$\{?\w+\}?", ".*", expr)  # $namespace, ${job}: only inside =~ matchers
    assert "$" not in expr, expr
    return expr


def metric_names(expr: str) -> set[str]:
    """Names of the series selectors in a PromQL expression (not functions, labels or keywords)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\boffset\s+-?\d+[a-z]+", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", text):
        word, call = match[1], match[2]
        if call or word.lower() in _KEYWORDS:
            continue
        names.add(word)
    return names


def test_metric_names_extraction() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (query, le) (increase(a_bucket{job=~"x", le!="y"}[1h]))) '
        "/ on (job) group_left (pod) b unless c offset 1h or time() - max(d) > 2 * 3600 and absent(e)"
    )
    assert metric_names(expr) == {"a_bucket", "b", "c", "d", "e"}


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def panel_targets() -> list[tuple[str, str]]:
    """(panel title/refId, PromQL) of every query of every panel."""
    out = []
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            out.append((f"{panel['title']}/{target['refId']}", target["expr"]))
    return out


def rule_exprs() -> list[tuple[str, str]]:
    rules = yaml.safe_load(RULES.read_text())
    return [(r.get("alert") or r["record"], r["expr"]) for g in rules["groups"] for r in g["rules"]]


# --- the dashboard ------------------------------------------------------------------------------------


def test_dashboard_is_well_formed() -> None:
    dash = dashboard()
    assert dash["uid"] == "cluster-exporter" and dash["title"]
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    panels = dash["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        area = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not area & cells, f"panel {panel['title']!r} overlaps another"
        cells |= area
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"] and panel.get("description"), panel["title"]
        for target in panel["targets"]:
            assert '{namespace=~"$namespace", job=~"$job"}' in target["expr"], f"{panel['title']}: not filtered"


def test_dashboard_promql_parses(tmp_path: Path) -> None:
    """Every panel's query, wrapped as a recording rule, passes `promtool check rules`."""
    rules = [
        {"record": f"dashboard:panel_{i}", "expr": grafana_to_promql(expr)}
        for i, (_, expr) in enumerate(panel_targets())
    ]
    path = tmp_path / "dashboard.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    proc = run([system_tool("promtool", "prometheus"), "check", "rules", str(path)])
    assert f"SUCCESS: {len(rules)} rules found" in proc.stdout


def test_dashboard_names_only_exposed_metrics(exposed_metrics: set[str]) -> None:
    for where, expr in panel_targets():
        unknown = metric_names(grafana_to_promql(expr)) - exposed_metrics
        assert not unknown, f"panel {where} names metrics the exporter does not expose: {sorted(unknown)}"


def test_dashboard_shows_what_the_issue_lists() -> None:
    named = set().union(*(metric_names(grafana_to_promql(expr)) for _, expr in panel_targets()))
    missing = {what: metric for what, metric in DASHBOARD_MUST_SHOW.items() if metric not in named}
    assert not missing, f"the dashboard does not show {missing}"
    latency = [e for _, e in panel_targets() if "prometheus_query_duration_seconds_bucket" in e]
    assert any(re.search(r"by \(query\b", e) for e in latency), "query latency must be split by query"
    unattributed = [e for _, e in panel_targets() if "cluster_exporter_metering_unattributed_amount" in e]
    assert any(re.search(r"by \(meter\b", e) for e in unattributed), "unattributed usage must be split by meter"


# --- the alerts ---------------------------------------------------------------------------------------


def test_rules_file_passes_promtool_check() -> None:
    run([system_tool("promtool", "prometheus"), "check", "rules", str(RULES)])


def test_rules_name_only_exposed_metrics(exposed_metrics: set[str]) -> None:
    for alert, expr in rule_exprs():
        unknown = metric_names(expr) - exposed_metrics
        assert not unknown, f"{alert} names metrics the exporter does not expose: {sorted(unknown)}"


def test_alert_unit_tests_pass() -> None:
    """`promtool test rules` on tests/chart/rules_test.yaml (input series, expected alerts)."""
    proc = run([system_tool("promtool", "prometheus"), "test", "rules", str(RULE_TESTS)], check=False)
    assert proc.returncode == 0 and "SUCCESS" in proc.stdout, proc.stdout + proc.stderr


def test_every_alert_is_tested_firing_and_silent() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())
    assert tests["rule_files"] == [str(Path("../..") / RULES.relative_to(ROOT))]
    cases = [case for test in tests["tests"] for case in test.get("alert_rule_test", [])]
    for alert, _ in rule_exprs():
        fired = [c for c in cases if c["alertname"] == alert and c.get("exp_alerts")]
        silent = [c for c in cases if c["alertname"] == alert and not c.get("exp_alerts")]
        assert fired and silent, f"{alert} needs a test where it fires and one where it does not"


def test_every_alert_has_a_runbook_section() -> None:
    headings = {line.lstrip("#").strip() for line in RUNBOOK.read_text().splitlines() if line.startswith("## ")}
    for alert, _ in rule_exprs():
        assert alert in headings, f"docs/runbook.md has no '## {alert}' section"


def test_alerts_have_severity_and_summary() -> None:
    rules = yaml.safe_load(RULES.read_text())
    for rule in (r for g in rules["groups"] for r in g["rules"]):
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


# --- a live exporter, configured by the chart ----------------------------------------------------------


class _Receiver:
    """A billing API stand-in that accepts every report (200), in its own thread."""

    def __init__(self) -> None:
        self.reports = 0
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop: Any = None
        self._ready = threading.Event()

    async def _accept(self, request: web.Request) -> web.Response:
        await request.read()
        self.reports += 1
        return web.json_response({"status": "accepted"})

    def __enter__(self) -> _Receiver:
        import asyncio

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            app = web.Application()
            app.router.add_post("/api/usage/report", self._accept)
            runner = web.AppRunner(app, access_log=None)
            self._loop.run_until_complete(runner.setup())
            self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
            self._ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(runner.cleanup())

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "receiver did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _sample(text: str, name: str) -> float | None:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(match[1]) if match else None


def exposed_names(text: str) -> set[str]:
    """Every series name an exposition can carry, from its TYPE lines and its samples."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
        "info": ("_info",),
    }
    names = set()
    for family in text_string_to_metric_families(text):
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


@pytest.fixture(scope="module")
def live_exporter(
    prometheus: PrometheusServer, cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Base URL of `cluster-exporter run` started with the chart's container env and args."""
    port = free_port()
    work = tmp_path_factory.mktemp("live-exporter")
    sets = [
        "clusterId=k8s-chart-test",
        f"prometheus.url={prometheus.url}",
        f"customerLabel={CUSTOMER_LABEL}",
        "billingApi.url=http://placeholder",
        "billingApi.token=chart-test-token",
        "replicaCount=1",
        "leaderElection.enabled=false",
        "state.backend=directory",
        "state.persistentVolumeClaim=unused",
        f"server.port={port}",
    ]
    docs = render(EXPORTER_CHART, sets=sets)
    (_, template), *_ = pod_templates(docs)
    container = template["spec"]["containers"][0]
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-config"))
    secret = one(docs, "Secret")

    kube = KubeApiStandIn(KubeState(namespaces=demo_namespaces(cluster))).start_in_thread()
    try:
        with _Receiver() as receiver:
            # The pod's files, at temporary paths: the config file, the mounted token, the state directory.
            # PYTHONPATH: the package of this tree, whatever copy the interpreter has installed.
            env: dict[str, str] = {"PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1", "HOME": str(work)}
            env["PYTHONPATH"] = str(ROOT)
            env.update({item["name"]: item["value"] for item in container["env"] if "value" in item})
            (work / "config.toml").write_text(config["data"]["config.toml"])
            (work / "token").write_text(base64.b64decode(secret["data"]["token"]).decode())
            env.update(
                CONFIG_FILE=str(work / "config.toml"),
                BILLING_API_TOKEN_FILE=str(work / "token"),
                DELIVERY_STATE_DIR=str(work / "state"),
                BILLING_API_URL=receiver.url,
                # In a pod the in-cluster config is used; here the stand-in, through a kubeconfig.
                KUBECONFIG=str(write_kubeconfig(work / "kubeconfig", kube.url)),
            )
            args = [*container["args"], "--as-of", AS_OF, "--backfill-from", BACKFILL_FROM]
            log = work / "exporter.log"
            with log.open("wb") as fh:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "cluster_exporter.cli", *args],
                    env=env,
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    cwd=work,
                )
            try:
                base = f"http://127.0.0.1:{port}"
                _wait_for_deliveries(proc, base, log)
                assert receiver.reports >= DEMO_WINDOWS
                yield base
            finally:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    finally:
        kube.stop_thread()


def _wait_for_deliveries(proc: subprocess.Popen[bytes], base: str, log: Path) -> None:
    """Poll /metrics until the demo's windows are delivered; fail with the exporter's log otherwise."""
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            pytest.fail(f"cluster-exporter run exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            status, text = _get(f"{base}/metrics")
            if status == 200 and _sample(text, "cluster_exporter_delivery_windows_delivered_total") == DEMO_WINDOWS:
                return
        except (TimeoutError, urllib.error.URLError, ConnectionError):
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"the exporter did not deliver {DEMO_WINDOWS} windows:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def exposed_metrics(live_exporter: str) -> set[str]:
    """Series names the live exporter's /metrics exposes."""
    status, text = _get(f"{live_exporter}/metrics")
    assert status == 200
    return exposed_names(text)


def test_live_exporter_answers_the_charts_probes(live_exporter: str) -> None:
    (_, template), *_ = pod_templates(render(EXPORTER_CHART))
    container = template["spec"]["containers"][0]
    for probe in ("livenessProbe", "readinessProbe"):
        status, body = _get(live_exporter + container[probe]["httpGet"]["path"])
        assert status == 200, f"{probe}: {status} {body}"


def test_live_exporter_exposes_every_exporter_metric(exposed_metrics: set[str]) -> None:
    """Every metric ExporterMetrics registers is on /metrics (so the checks above compare with all of them)."""
    from prometheus_client import CollectorRegistry, generate_latest

    from cluster_exporter.observability.metrics import ExporterMetrics

    registry = CollectorRegistry()
    ExporterMetrics(registry)
    declared = exposed_names(generate_latest(registry).decode())
    assert declared <= exposed_metrics, sorted(declared - exposed_metrics)


def test_live_exporter_reports_what_metering_saw_per_meter(live_exporter: str) -> None:
    """After its windows, the exporter has per-meter samples (service.py hands measure_window the hook)."""
    status, text = _get(f"{live_exporter}/metrics")
    assert status == 200
    samples = {
        (sample.name, sample.labels.get("meter")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("cluster_exporter_metering_")
    }
    for meter in ("cpu_hours", "memory_gb_hours"):
        assert samples.get(("cluster_exporter_metering_series", meter), 0) > 0, meter
        for name in (
            "cluster_exporter_metering_unattributed_series",
            "cluster_exporter_metering_unattributed_amount",
            "cluster_exporter_metering_windows_with_unattributed_usage_total",
        ):
            assert (name, meter) in samples, (name, meter)
