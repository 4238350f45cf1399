"""Every layout real installations store, metered end to end with default settings.

Each layout (devtools/layouts.py) is backfilled into a real Prometheus and loaded into a real
VictoriaMetrics; its namespaces are served by the Kubernetes API stand-in; ``measure_window``
runs with default settings (cluster id, Prometheus URL, kubeconfig, customer label, and
``http_source = "istio"`` for the Istio layout) for the windows ending 02:00 and 03:00 of
2025-11-20, and every customer and meter must match the layout's exact truth: within 0.01%, and
integer meters within 1. A failure lists every meter that is off and by how much.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from cluster_exporter.devtools import layouts as L
from cluster_exporter.devtools.demo import demo_namespaces, prepare
from cluster_exporter.devtools.kubeapi_standin import KubeApiStandIn, KubeState, write_kubeconfig
from cluster_exporter.devtools.prometheus_server import (
    PrometheusServer,
    VictoriaMetricsServer,
    import_into_victoriametrics,
)
from cluster_exporter.devtools.synthetic_cluster import CUSTOMER_LABEL
from cluster_exporter.metering.window import measure_window
from cluster_exporter.meters import ALWAYS as BUILTIN_METERS
from cluster_exporter.report import INTEGER_METERS, UsageReport
from cluster_exporter.settings import Settings, load_settings
from cluster_exporter.sources.prometheus import PrometheusClient

from .conftest import LATER

RELATIVE = 1e-4  # 0.01%
ENGINES = ("prometheus", "victoriametrics")


@dataclass
class Deployed:
    layout: L.Layout
    urls: dict[str, str]
    kubeconfig: Path


@pytest.fixture(scope="module", params=list(L.LAYOUTS))
def deployed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    """One layout's history in a real Prometheus and a real VictoriaMetrics, its namespaces in
    the Kubernetes API stand-in."""
    layout = L.layout(request.param)
    workdir = tmp_path_factory.mktemp(request.param)
    data = prepare(workdir, layout.cluster)
    kube = KubeApiStandIn(KubeState(namespaces=demo_namespaces(layout.cluster))).start_in_thread()
    try:
        with PrometheusServer(data) as prom, VictoriaMetricsServer(workdir / "vm") as vm:
            import_into_victoriametrics(vm.url, layout.cluster)
            time.sleep(1)  # let the freshly flushed parts become searchable
            kubeconfig = write_kubeconfig(workdir / "kubeconfig", kube.url)
            yield Deployed(layout, {"prometheus": prom.url, "victoriametrics": vm.url}, kubeconfig)
    finally:
        kube.stop_thread()


def default_settings(url: str, kubeconfig: Path, spec: L.LayoutSpec) -> Settings:
    """Default settings: nothing about the layout but, for Istio, where HTTP requests come from."""
    raw: dict[str, object] = {
        "cluster_id": f"layout-{spec.name}",
        "prometheus": {"url": url},
        "kubernetes": {"kubeconfig": str(kubeconfig), "customer_label": CUSTOMER_LABEL},
    }
    if spec.http_source != "nginx":
        raw["metering"] = {"http_source": spec.http_source}
    return load_settings(raw)


def mismatches(report: UsageReport, truth: dict[str, dict[str, float]]) -> list[str]:
    """Every customer and meter the report gets wrong, with the relative error."""
    got = {r.customer_id: r.amounts() for r in report.usage}
    out = [] if set(got) == set(truth) else [f"customers {sorted(got)} != {sorted(truth)}"]
    for customer, expected in sorted(truth.items()):
        for meter in BUILTIN_METERS:
            want, value = expected[meter], got.get(customer, {}).get(meter)
            if value is None:
                out.append(f"{customer}.{meter}: missing (want {want:.6g})")
                continue
            if meter in INTEGER_METERS:
                ok = abs(value - want) <= 1.0
            else:
                ok = abs(value - want) <= RELATIVE * abs(want) if want else value == 0
            if not ok:
                rel = f"{(value - want) / want:+.4%}" if want else "want 0"
                out.append(f"{customer}.{meter}: got {value:.6g} want {want:.6g} ({rel})")
    return out


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("window", [0, 1], ids=["01-02", "02-03"])
async def test_layout_is_metered_exactly_with_default_settings(deployed: Deployed, window: int, engine: str) -> None:
    spec = deployed.layout.spec
    start, end = L.WINDOWS[window]
    settings = default_settings(deployed.urls[engine], deployed.kubeconfig, spec)
    async with PrometheusClient(settings.prometheus) as client:
        report = await measure_window(settings, end, LATER, client)
    assert (report.window_start, report.window_end) == (start, end)
    wrong = mismatches(report, deployed.layout.truth(start, end))
    assert not wrong, f"{spec.name} {start:%H:%M}-{end:%H:%M} on {engine}:\n" + "\n".join(wrong)


def test_windows_are_the_two_fully_covered_hours() -> None:
    assert L.WINDOWS == [
        (datetime.fromisoformat("2025-11-20T01:00:00+00:00"), datetime.fromisoformat("2025-11-20T02:00:00+00:00")),
        (datetime.fromisoformat("2025-11-20T02:00:00+00:00"), datetime.fromisoformat("2025-11-20T03:00:00+00:00")),
    ]


async def test_doctor_finds_each_layout_meterable_as_configured(deployed: Deployed) -> None:
    """doctor on every layout: the window can be metered with the defaults, nothing to set, and
    it names where each meter found the namespace."""
    from cluster_exporter.doctor import diagnose, to_json

    spec = deployed.layout.spec
    end = L.WINDOWS[0][1]
    settings = default_settings(deployed.urls["prometheus"], deployed.kubeconfig, spec)
    async with PrometheusClient(settings.prometheus) as client:
        found = to_json(await diagnose(settings, end, LATER, client))
    assert found["ok"] and found["exit_code"] == 0, found["error"]
    has_ksm = any(s.name == "kube_namespace_labels" for s in deployed.layout.cluster.series)
    # without kube-state-metrics' namespace labels (this GMP layout has none), the one thing to set
    wanted = [] if has_ksm else [("kube-state-metrics", "--metric-labels-allowlist")]
    assert [(r["kind"], r["setting"]) for r in found["recommendations"]] == wanted, found["recommendations"]
    meters = {m["name"]: m for m in found["meters"]}
    for meter in BUILTIN_METERS:
        assert meters[meter]["series"] > 0 and meters[meter]["unattributed_series"] == 0, meter
    http_label = "destination_service_namespace" if spec.http_source == "istio" else HTTP_NAMESPACE_LABEL[spec.name]
    assert set(meters["http_requests"]["label_used"]) == {http_label}


# Where each layout's ingress-nginx requests carry the Ingress' namespace (docs/layouts.md).
HTTP_NAMESPACE_LABEL = {
    "kube-prometheus-stack": "exported_namespace",
    "kube-prometheus-stack-10s": "exported_namespace",
    "kube-prometheus-stack-honorlabels": "namespace",
    "gmp": "exported_namespace",
    "openshift": "exported_namespace",
    "k3s": "exported_namespace",
    "prometheus-community-chart": "namespace",
    "thanos-ha-no-dedup": "exported_namespace",
    "cadvisor-two-jobs": "exported_namespace",
}
