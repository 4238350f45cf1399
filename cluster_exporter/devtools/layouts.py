"""Real installations' data layouts as small synthetic clusters, each with its exact truth.

The same workloads (three customers, the usual traps) laid out as each monitoring stack stores
them: its scrape jobs' target labels and relabelings, whether scraped labels win
(``honor_labels``), whether cAdvisor's own timestamps are kept (``honor_timestamps``), its scrape
intervals, copies (HA replicas, a second job), runtime-specific cgroup series. Every fact is
taken from the project's public source; docs/layouts.md cites them. ``Layout.truth`` is what a
correct meter bills with default settings: copies counted once, pod-level cgroups and pause
containers left out, each mesh request once (its destination's report).

Built by devtools/scenario.py with the model of synthetic_cluster (see its conventions); time runs from 23:30 on
2025-11-19 to 03:15 on 2025-11-20, so the hourly windows 01:00-02:00 and 02:00-03:00 are fully
covered.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from .scenario import (
    END,
    NAMESPACES,
    STAMP_LAG,
    START,
    WINDOWS,
    Endpoint,
    Flavor,
    Job,
    Kind,
    Node,
    Outage,
    PodEndpoint,
    Scenario,
    outages,
    workloads,
)
from .synthetic_cluster import Cluster

__all__ = ["END", "LAYOUTS", "STAMP_LAG", "START", "WINDOWS", "Layout", "LayoutSpec", "layout"]


@dataclass(frozen=True)
class LayoutSpec:
    """What a layout is, where its facts come from, and what its series look like."""

    name: str
    description: str
    sources: tuple[str, ...]  # "owner/repo path" of every fact used
    intervals: tuple[tuple[str, float], ...]  # (scrape job, seconds)
    timestamps: str  # whose timestamps the container_* samples carry
    label_sets: tuple[tuple[str, frozenset[frozenset[str]]], ...]  # kind of series -> label names (one set per copy)
    outages: tuple[Outage, ...]
    http_source: Literal["nginx", "istio"] = "nginx"


@dataclass
class Layout:
    """A layout's spec and its cluster (history and exact truth)."""

    spec: LayoutSpec
    cluster: Cluster

    def windows(self) -> list[tuple[datetime, datetime]]:
        """The fully covered hourly windows: 01:00-02:00 and 02:00-03:00 of 2025-11-20."""
        return list(WINDOWS)

    def truth(self, start: datetime, end: datetime) -> dict[str, dict[str, float]]:
        """Exact usage per customer, ``http_requests`` from the layout's HTTP source."""
        out = self.cluster.truth(start, end)
        if self.spec.http_source == "istio":
            for amounts in out.values():
                amounts["http_requests"] = amounts["http_requests_istio"]
        return out


def _build(spec: LayoutSpec, flavor: Flavor, seed: int, **options: bool) -> Layout:
    sc = Scenario(flavor, seed, spec.outages)
    workloads(sc, **options)
    return Layout(spec, sc.cluster)


# ---------------------------------------------------------------------------------------------
# Scrape jobs, as the sources generate them


def _kubelet_sm(service: str, path: str) -> Callable[[Endpoint], dict[str, str]]:
    """A kubelet ServiceMonitor endpoint (prometheus-operator: endpoint, namespace and service of
    the kubelet Service, node from the endpoint's target, job from jobLabel k8s-app)."""

    def labels(e: Endpoint) -> dict[str, str]:
        assert isinstance(e, Node)
        return {
            "endpoint": "https-metrics",
            "instance": f"{e.ip}:10250",
            "job": "kubelet",
            "metrics_path": path,
            "namespace": "kube-system",
            "node": e.name,
            "service": service,
        }

    return labels


def _ingress_sm(e: Endpoint) -> dict[str, str]:
    """ingress-nginx's chart ServiceMonitor on the controller's metrics Service."""
    assert isinstance(e, PodEndpoint)
    return {
        "container": "controller",
        "endpoint": "metrics",
        "instance": f"{e.ip}:10254",
        "job": "ingress-nginx-controller-metrics",
        "namespace": e.namespace,
        "pod": e.name,
        "service": "ingress-nginx-controller-metrics",
    }


def _ksm_sm(
    service: str, container: str = "kube-state-metrics", port: str = "http", number: int = 8080
) -> Callable[[Endpoint], dict[str, str]]:
    """kube-state-metrics' ServiceMonitor (honorLabels: its namespace label is the namespace's own)."""

    def labels(e: Endpoint) -> dict[str, str]:
        assert isinstance(e, PodEndpoint)
        return {
            "container": container,
            "endpoint": port,
            "instance": f"{e.ip}:{number}",
            "job": "kube-state-metrics",
            "namespace": e.namespace,
            "pod": e.name,
            "service": service,
        }

    return labels


def _node_labelmap(job: str, path: str | None = None) -> Callable[[Endpoint], dict[str, str]]:
    """A ``role: node`` job with ``labelmap: __meta_kubernetes_node_label_(.+)`` (instance: node name)."""

    def labels(e: Endpoint) -> dict[str, str]:
        assert isinstance(e, Node)
        return {"instance": e.name, "job": job, **e.labels(), **({"metrics_path": path} if path else {})}

    return labels


def _kps_jobs(
    interval: float, cadvisor: float | None = None, honor_ingress: bool = False, extra: tuple[tuple[str, str], ...] = ()
) -> dict[Kind, list[Job]]:
    service = "kube-prometheus-stack-kubelet"
    return {
        "cadvisor": [
            Job("kubelet", cadvisor or interval, _kubelet_sm(service, "/metrics/cadvisor"), True, extra=extra)
        ],
        "kubelet": [Job("kubelet", interval, _kubelet_sm(service, "/metrics"), True, extra=extra)],
        "ingress": [Job("ingress-nginx-controller-metrics", interval, _ingress_sm, honor_ingress, extra=extra)],
        "ksm": [
            Job("kube-state-metrics", interval, _ksm_sm("kube-prometheus-stack-kube-state-metrics"), True, extra=extra)
        ],
    }


# ---------------------------------------------------------------------------------------------
# The documented label sets (checked against the generated series by tests/test_synthetic_cluster.py)

CADVISOR_CONTAINER = {
    "container",
    "cpu",
    "id",
    "image",
    "name",
    "namespace",
    "pod",
}  # container_cpu_usage_seconds_total
CADVISOR_POD_CGROUP = {"cpu", "id", "namespace", "pod"}
CONTAINERD_SANDBOX_NET = {"id", "image", "interface", "name", "namespace", "pod"}  # pause: no container label
CRIO_INFRA_NET = {"container", "id", "interface", "name", "namespace", "pod"}  # container="POD", no image
VOLUME = {"namespace", "persistentvolumeclaim"}
NGINX = {"controller_class", "controller_namespace", "controller_pod", "ingress", "method", "path", "status"}
KPS_KUBELET = {"endpoint", "instance", "job", "metrics_path", "node", "service"}
SM_POD = {"container", "endpoint", "instance", "job", "namespace", "pod", "service"}
NODE_LABELS = set(Node("n", "0.0.0.0", "z").labels())
GMP = {"cluster", "location", "project_id"}
THANOS = {"prometheus", "prometheus_replica"}
ISTIO = {
    "connection_security_policy",
    "destination_app",
    "destination_canonical_revision",
    "destination_canonical_service",
    "destination_cluster",
    "destination_principal",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "destination_version",
    "destination_workload",
    "destination_workload_namespace",
    "reporter",
    "request_protocol",
    "response_code",
    "response_flags",
    "source_app",
    "source_canonical_revision",
    "source_canonical_service",
    "source_cluster",
    "source_principal",
    "source_version",
    "source_workload",
    "source_workload_namespace",
}


def _sets(**kinds: Sequence[set[str]]) -> tuple[tuple[str, frozenset[frozenset[str]]], ...]:
    return tuple(
        (kind.replace("_", " "), frozenset(frozenset(s) for s in sets)) for kind, sets in sorted(kinds.items())
    )


def _kps_sets(
    extra: frozenset[str] = frozenset(), ingress: set[str] | None = None
) -> tuple[tuple[str, frozenset[frozenset[str]]], ...]:
    return _sets(
        container=[CADVISOR_CONTAINER | KPS_KUBELET | extra],
        pod_cgroup=[CADVISOR_POD_CGROUP | KPS_KUBELET | extra],
        sandbox_network=[CONTAINERD_SANDBOX_NET | KPS_KUBELET | extra],
        volume=[VOLUME | KPS_KUBELET | extra],
        ingress=[
            (ingress if ingress is not None else NGINX | SM_POD | {"exported_namespace", "exported_service"}) | extra
        ],
    )


# ---------------------------------------------------------------------------------------------
# The layouts

CADVISOR_SOURCES = (
    "kubernetes/kubernetes vendor/github.com/google/cadvisor/metrics/prometheus.go",
    "kubernetes/kubernetes pkg/kubelet/server/server.go",
    "kubernetes/kubernetes pkg/kubelet/cadvisor/cadvisor_linux.go",
    "google/cadvisor manager/container.go",
    "google/cadvisor container/raw/handler.go",
    "prometheus/prometheus config/config.go",
)
CONTAINERD_SOURCES = ("google/cadvisor container/containerd/handler.go", "containerd/cri issue #922")
KPS_SOURCES = (
    "prometheus-community/helm-charts charts/kube-prometheus-stack/templates/exporters/kubelet/servicemonitor.yaml",
    "prometheus-community/helm-charts charts/kube-prometheus-stack/values.yaml",
    "prometheus-operator/prometheus-operator pkg/prometheus/promcfg.go",
)
NGINX_SOURCES = (
    "kubernetes/ingress-nginx internal/ingress/metric/collectors/socket.go",
    "kubernetes/ingress-nginx charts/ingress-nginx/templates/controller-servicemonitor.yaml",
)


def kube_prometheus_stack(interval: float = 30.0, cadvisor_interval: float | None = None, seed: int = 101) -> Layout:
    """kube-prometheus-stack: the kubelet ServiceMonitor's cAdvisor and /metrics endpoints
    (honorLabels, honorTimestamps), ingress-nginx's ServiceMonitor (Ingress namespace in
    exported_namespace). ``cadvisor_interval=10`` is the chart since 67.2.0 (cAdvisorInterval)."""
    cad = cadvisor_interval or interval
    name = "kube-prometheus-stack" if cadvisor_interval is None else f"kube-prometheus-stack-{cad:g}s"
    spec = LayoutSpec(
        name=name,
        description="kube-prometheus-stack on containerd: kubelet ServiceMonitor (cAdvisor with its own timestamps), "
        "ingress-nginx ServiceMonitor without honorLabels",
        sources=(
            *CADVISOR_SOURCES,
            *CONTAINERD_SOURCES,
            *KPS_SOURCES,
            *NGINX_SOURCES,
        ),
        intervals=(("kubelet /metrics/cadvisor", cad), ("kubelet /metrics", interval), ("ingress-nginx", interval)),
        timestamps="cAdvisor housekeeping times (honorTimestamps: true)",
        label_sets=_kps_sets(),
        outages=tuple(outages(cad, True, interval)),
    )
    return _build(spec, Flavor("containerd", _kps_jobs(interval, cad)), seed)


def kube_prometheus_stack_honorlabels(interval: float = 15.0, seed: int = 102) -> Layout:
    """kube-prometheus-stack with ingress-nginx's ServiceMonitor set to honorLabels: true, so the
    Ingress' namespace is in ``namespace`` and there is no exported_namespace."""
    spec = LayoutSpec(
        name="kube-prometheus-stack-honorlabels",
        description="kube-prometheus-stack, ingress-nginx ServiceMonitor with honorLabels: true (15 s everywhere)",
        sources=(
            *CADVISOR_SOURCES,
            *CONTAINERD_SOURCES,
            *KPS_SOURCES,
            *NGINX_SOURCES,
        ),
        intervals=(
            ("kubelet /metrics/cadvisor", interval),
            ("kubelet /metrics", interval),
            ("ingress-nginx", interval),
        ),
        timestamps="cAdvisor housekeeping times (honorTimestamps: true)",
        label_sets=_kps_sets(ingress=NGINX | {"namespace", "service"} | (SM_POD - {"service"})),
        outages=tuple(outages(interval, True, interval)),
    )
    return _build(spec, Flavor("containerd", _kps_jobs(interval, honor_ingress=True)), seed)


def gmp(interval: float = 30.0, seed: int = 103) -> Layout:
    """Google Cloud Managed Service for Prometheus: OperatorConfig kubeletScraping (job="kubelet",
    instance="<node>:cadvisor" or ":metrics", node; honor_timestamps false), ingress-nginx through
    the chart's PodMonitoring, and the project_id, location and cluster labels."""
    extra = (("cluster", "prod-eu-1"), ("location", "europe-west1"), ("project_id", "example-billing-project"))

    def kubelet(suffix: str) -> Callable[[Endpoint], dict[str, str]]:
        return lambda e: {"instance": f"{e.name}:{suffix}", "job": "kubelet", "node": e.name}

    def podmonitoring(e: Endpoint) -> dict[str, str]:
        assert isinstance(e, PodEndpoint)
        return {
            "container": "controller",
            "instance": f"{e.name}:metrics",
            "job": "ingress-nginx-controller",
            "namespace": e.namespace,
            "pod": e.name,
        }

    jobs: dict[Kind, list[Job]] = {
        "cadvisor": [Job("kubelet/cadvisor", interval, kubelet("cadvisor"), honor_timestamps=False, extra=extra)],
        "kubelet": [Job("kubelet/metrics", interval, kubelet("metrics"), honor_timestamps=False, extra=extra)],
        "ingress": [Job("ingress-nginx-controller", interval, podmonitoring, honor_timestamps=False, extra=extra)],
    }
    target = {"instance", "job", "node"} | GMP
    spec = LayoutSpec(
        name="gmp",
        description="GKE with Managed Service for Prometheus: kubeletScraping (scrape-time stamps), "
        "ingress-nginx PodMonitoring, cluster/location/project_id on every series",
        sources=(
            *CADVISOR_SOURCES,
            *CONTAINERD_SOURCES,
            "GoogleCloudPlatform/prometheus-engine pkg/operator/apis/monitoring/v1/operator_config.go",
            "GoogleCloudPlatform/prometheus-engine pkg/operator/apis/monitoring/v1/node_types_test.go",
            "GoogleCloudPlatform/prometheus-engine pkg/operator/apis/monitoring/v1/pod_config.go",
            "GoogleCloudPlatform/prometheus-engine pkg/export/export.go",
            "kubernetes/ingress-nginx charts/ingress-nginx/templates/controller-podmonitoring.yaml",
            "kubernetes/ingress-nginx internal/ingress/metric/collectors/socket.go",
            "google/cadvisor issue #3216",
        ),
        intervals=(
            ("kubelet/cadvisor", interval),
            ("kubelet/metrics", interval),
            ("PodMonitoring ingress-nginx", interval),
        ),
        timestamps="scrape times (the generated scrape configs carry honor_timestamps: false)",
        label_sets=_sets(
            container=[CADVISOR_CONTAINER | target],
            pod_cgroup=[CADVISOR_POD_CGROUP | target],
            sandbox_network=[CONTAINERD_SANDBOX_NET | target],
            volume=[VOLUME | target],
            ingress=[
                NGINX | {"service", "exported_namespace", "container", "instance", "job", "namespace", "pod"} | GMP
            ],
        ),
        outages=tuple(outages(interval, False, interval)),
    )
    flavor = Flavor("containerd", jobs, pause_image="gke.gcr.io/pause:3.8")
    return _build(spec, flavor, seed)


def openshift(interval: float = 30.0, seed: int = 104) -> Layout:
    """OpenShift monitoring on CRI-O: cluster-monitoring-operator's kubelet ServiceMonitor (id is
    kept; only some container_* metrics are dropped), the infra container as container="POD"
    (CRI-O keeps an infra cgroup for the pod's network even when it drops the pause process),
    read through thanos-querier (prometheus external label), ingress-nginx through user-workload
    monitoring (honorLabels overridden off: exported_namespace)."""
    extra = (("prometheus", "openshift-monitoring/k8s"),)
    uwm = (("prometheus", "openshift-user-workload-monitoring/user-workload"),)
    jobs: dict[Kind, list[Job]] = {
        "cadvisor": [Job("kubelet", interval, _kubelet_sm("kubelet", "/metrics/cadvisor"), True, extra=extra)],
        "kubelet": [Job("kubelet", interval, _kubelet_sm("kubelet", "/metrics"), True, extra=extra)],
        "ingress": [Job("ingress-nginx-controller-metrics", interval, _ingress_sm, False, extra=uwm)],
        "ksm": [
            Job(
                "kube-state-metrics",
                interval,
                _ksm_sm("kube-state-metrics", "kube-rbac-proxy-main", "https-main", 8443),
                True,
                extra=extra,
            )
        ],
    }
    p = {"prometheus"}
    spec = LayoutSpec(
        name="openshift",
        description='OpenShift: CRI-O (container="POD" infra cgroup carries the network), kubelet ServiceMonitor, '
        "thanos-querier's prometheus label, ingress-nginx via user-workload monitoring",
        sources=(
            *CADVISOR_SOURCES,
            "google/cadvisor container/crio/handler.go",
            "openshift/cluster-monitoring-operator assets/control-plane/service-monitor-kubelet.yaml",
            "openshift/cluster-monitoring-operator jsonnet/components/prometheus-user-workload.libsonnet",
            "openshift/machine-config-operator pull #2177",
            "cri-o/cri-o pull #6856",
            "openshift/origin issue #23492",
            "prometheus-operator/prometheus-operator pkg/prometheus/promcfg.go",
            *NGINX_SOURCES,
        ),
        intervals=(
            ("kubelet /metrics/cadvisor", interval),
            ("kubelet /metrics", interval),
            ("ingress-nginx (UWM)", interval),
        ),
        timestamps="cAdvisor housekeeping times (honorTimestamps: true)",
        label_sets=_sets(
            container=[CADVISOR_CONTAINER | KPS_KUBELET | p],
            pod_cgroup=[CADVISOR_POD_CGROUP | KPS_KUBELET | p],
            sandbox_network=[CRIO_INFRA_NET | KPS_KUBELET | p],
            volume=[VOLUME | KPS_KUBELET | p],
            ingress=[NGINX | SM_POD | {"exported_namespace", "exported_service"} | p],
        ),
        outages=tuple(outages(interval, True, interval)),
    )
    return _build(spec, Flavor("crio", jobs), seed)


def k3s(interval: float = 15.0, seed: int = 105) -> Layout:
    """k3s (containerd, systemd cgroup driver under systemd: cgroup v2 ids like
    /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope)
    monitored by kube-prometheus-stack (kubelet.serviceMonitor.interval 15s), ingress-nginx instead of Traefik."""
    spec = LayoutSpec(
        name="k3s",
        description="k3s: containerd, cgroup v2 systemd ids, rancher's pause image, kube-prometheus-stack at 15 s",
        sources=(
            *CADVISOR_SOURCES,
            *CONTAINERD_SOURCES,
            "k3s-io/k3s pkg/agent/containerd/config_linux.go",
            "k3s-io/k3s pkg/agent/templates/templates_linux.go",
            *KPS_SOURCES,
            *NGINX_SOURCES,
        ),
        intervals=(
            ("kubelet /metrics/cadvisor", interval),
            ("kubelet /metrics", interval),
            ("ingress-nginx", interval),
        ),
        timestamps="cAdvisor housekeeping times (honorTimestamps: true)",
        label_sets=_kps_sets(),
        outages=tuple(outages(interval, True, interval)),
    )
    return _build(
        spec, Flavor("containerd", _kps_jobs(interval), pause_image="docker.io/rancher/mirrored-pause:3.6"), seed
    )


def prometheus_community_chart(interval: float = 60.0, seed: int = 106) -> Layout:
    """The prometheus chart's kubernetes-nodes-cadvisor and kubernetes-nodes jobs (role node,
    labelmap of the node labels into every series, instance = node name) at the chart's global
    1m, ingress-nginx through kubernetes-pods (honor_labels: the Ingress namespace in
    ``namespace``); an RWX volume whose two kubelets' copies differ in the node labels, and an RWO
    volume whose pod moves from node-c to node-a at 01:31 (two series of one claim)."""
    pod_labels = {
        "app_kubernetes_io_component",
        "app_kubernetes_io_instance",
        "app_kubernetes_io_name",
        "pod_template_hash",
    }

    def pods(e: Endpoint) -> dict[str, str]:
        assert isinstance(e, PodEndpoint)
        base = {"instance": f"{e.ip}:10254", "job": "kubernetes-pods", "namespace": e.namespace, "node": e.node.name}
        return {**base, "pod": e.name, **dict(e.labels)}

    def service_endpoints(e: Endpoint) -> dict[str, str]:
        assert isinstance(e, PodEndpoint)
        return {
            "app_kubernetes_io_name": "kube-state-metrics",
            "instance": f"{e.ip}:8080",
            "job": "kubernetes-service-endpoints",
            "namespace": e.namespace,
            "node": e.node.name,
            "service": "prometheus-kube-state-metrics",
        }

    jobs: dict[Kind, list[Job]] = {
        "cadvisor": [
            Job("kubernetes-nodes-cadvisor", interval, _node_labelmap("kubernetes-nodes-cadvisor", "/metrics/cadvisor"))
        ],
        "kubelet": [Job("kubernetes-nodes", interval, _node_labelmap("kubernetes-nodes"))],
        "ingress": [Job("kubernetes-pods", interval, pods, honor_labels=True)],
        "ksm": [Job("kubernetes-service-endpoints", interval, service_endpoints, honor_labels=True)],
    }
    node = NODE_LABELS | {"instance", "job"}
    spec = LayoutSpec(
        name="prometheus-community-chart",
        description="prometheus-community/prometheus chart: role-node jobs with labelmap of node labels (1m), "
        "ingress-nginx via kubernetes-pods, RWX copies differing in node labels, an RWO claim moving nodes",
        sources=(
            *CADVISOR_SOURCES,
            *CONTAINERD_SOURCES,
            "prometheus-community/helm-charts charts/prometheus/values.yaml",
            "prometheus/prometheus discovery/kubernetes/node.go",
            "kubernetes/ingress-nginx internal/ingress/metric/collectors/socket.go",
        ),
        intervals=(
            ("kubernetes-nodes-cadvisor", interval),
            ("kubernetes-nodes", interval),
            ("kubernetes-pods", interval),
        ),
        timestamps="cAdvisor housekeeping times (honor_timestamps defaults to true)",
        label_sets=_sets(
            container=[CADVISOR_CONTAINER | node | {"metrics_path"}],
            pod_cgroup=[CADVISOR_POD_CGROUP | node | {"metrics_path"}],
            sandbox_network=[CONTAINERD_SANDBOX_NET | node | {"metrics_path"}],
            volume=[VOLUME | node],
            ingress=[NGINX | {"namespace", "service", "instance", "job", "node", "pod"} | pod_labels],
        ),
        outages=tuple(outages(interval, True, interval)),
    )
    return _build(spec, Flavor("containerd", jobs), seed, reschedule=True)


def thanos_ha_no_dedup(interval: float = 15.0, seed: int = 107) -> Layout:
    """An HA pair of kube-prometheus-stack Prometheus replicas read through Thanos Query without
    deduplication: every series twice, differing in prometheus_replica (prometheus-operator's
    default replica label, Thanos' --query.replica-label), each replica scraping at its own phase.
    cAdvisor's series of both replicas carry stamps of one housekeeping sequence."""
    jobs: dict[Kind, list[Job]] = {}
    for r in (0, 1):
        extra = (
            ("prometheus", "monitoring/kube-prometheus-stack-prometheus"),
            ("prometheus_replica", f"prometheus-kube-prometheus-stack-prometheus-{r}"),
        )
        for kind, js in _kps_jobs(interval, extra=extra).items():
            jobs.setdefault(kind, []).extend(js)
    spec = LayoutSpec(
        name="thanos-ha-no-dedup",
        description="two Prometheus replicas through Thanos Query with deduplication off: every series twice "
        "(prometheus_replica), at two scrape phases",
        sources=(
            *CADVISOR_SOURCES,
            *CONTAINERD_SOURCES,
            *KPS_SOURCES,
            *NGINX_SOURCES,
        ),
        intervals=(
            ("kubelet /metrics/cadvisor", interval),
            ("kubelet /metrics", interval),
            ("ingress-nginx", interval),
        ),
        timestamps="cAdvisor housekeeping times (honorTimestamps: true); other series at each replica's scrape times",
        label_sets=_kps_sets(extra=frozenset(THANOS)),
        outages=tuple(outages(interval, True, interval)),
    )
    return _build(spec, Flavor("containerd", jobs), seed)


def cadvisor_two_jobs(interval: float = 10.0, second_interval: float = 30.0, seed: int = 108) -> Layout:
    """cAdvisor scraped twice: kube-prometheus-stack's kubelet ServiceMonitor (cAdvisorInterval
    10s) and an extra ``kubernetes-cadvisor`` job copied from Prometheus' example configuration
    (role node, labelmap of node labels, the global 30 s)."""
    jobs = _kps_jobs(second_interval, cadvisor=interval)
    jobs["cadvisor"].append(Job("kubernetes-cadvisor", second_interval, _node_labelmap("kubernetes-cadvisor")))
    second = NODE_LABELS | {"instance", "job"}
    spec = LayoutSpec(
        name="cadvisor-two-jobs",
        description="cAdvisor scraped by the kubelet ServiceMonitor (10 s) and a kubernetes-cadvisor job (30 s)",
        sources=(
            *CADVISOR_SOURCES,
            *CONTAINERD_SOURCES,
            *KPS_SOURCES,
            "prometheus/prometheus documentation/examples/prometheus-kubernetes.yml",
            *NGINX_SOURCES,
        ),
        intervals=(
            ("kubelet /metrics/cadvisor", interval),
            ("kubernetes-cadvisor", second_interval),
            ("kubelet /metrics", second_interval),
            ("ingress-nginx", second_interval),
        ),
        timestamps="cAdvisor housekeeping times for both jobs (honor_timestamps: true)",
        label_sets=_sets(
            container=[CADVISOR_CONTAINER | KPS_KUBELET, CADVISOR_CONTAINER | second],
            pod_cgroup=[CADVISOR_POD_CGROUP | KPS_KUBELET, CADVISOR_POD_CGROUP | second],
            sandbox_network=[CONTAINERD_SANDBOX_NET | KPS_KUBELET, CONTAINERD_SANDBOX_NET | second],
            volume=[VOLUME | KPS_KUBELET],
            ingress=[NGINX | SM_POD | {"exported_namespace", "exported_service"}],
        ),
        outages=tuple(outages(interval, True, second_interval)),
    )
    return _build(spec, Flavor("containerd", jobs), seed)


def istio(interval: float = 30.0, mesh_interval: float = 15.0, seed: int = 109) -> Layout:
    """Istio sidecars scraped by Istio's PodMonitor (envoy-stats-monitor, 15s) next to
    kube-prometheus-stack: every request reported by the client's sidecar (reporter="source") and
    the server's (reporter="destination"), the server's namespace in destination_service_namespace.
    Metered with ``metering.http_source = "istio"``; the sidecars' CPU and memory are the tenant's."""
    jobs = _kps_jobs(interval)
    del jobs["ingress"]

    def podmonitor(e: Endpoint) -> dict[str, str]:
        assert isinstance(e, PodEndpoint)
        return {
            "container": "istio-proxy",
            "instance": f"{e.ip}:15020",
            "job": "istio-system/envoy-stats-monitor",
            "namespace": e.namespace,
            "pod": e.name,
            "pod_name": e.name,
        }

    jobs["mesh"] = [Job("istio-system/envoy-stats-monitor", mesh_interval, podmonitor)]
    web = "web-7d9f8c6b5-abcde"
    spec = LayoutSpec(
        name="istio",
        description="Istio sidecars (PodMonitor envoy-stats-monitor) with both reporters; http_source = istio",
        sources=(
            *CADVISOR_SOURCES,
            *CONTAINERD_SOURCES,
            *KPS_SOURCES,
            "istio/istio samples/addons/extras/prometheus-operator.yaml",
            "istio/istio.io content/en/docs/reference/config/metrics/index.md",
        ),
        intervals=(
            ("kubelet /metrics/cadvisor", interval),
            ("kubelet /metrics", interval),
            ("envoy-stats-monitor", mesh_interval),
        ),
        timestamps="cAdvisor housekeeping times (honorTimestamps: true); sidecars at scrape times",
        label_sets=_sets(
            container=[CADVISOR_CONTAINER | KPS_KUBELET],
            pod_cgroup=[CADVISOR_POD_CGROUP | KPS_KUBELET],
            sandbox_network=[CONTAINERD_SANDBOX_NET | KPS_KUBELET],
            volume=[VOLUME | KPS_KUBELET],
            mesh=[ISTIO | {"container", "instance", "job", "namespace", "pod", "pod_name"}],
        ),
        outages=tuple(outages(interval, True, mesh_interval, "mesh", web)),
        http_source="istio",
    )
    sc = Scenario(Flavor("containerd", jobs, namespaces={**NAMESPACES, "istio-system": None}), seed, spec.outages)
    workloads(sc, sidecar=True, ingress=False)
    a, b, c = sc.nodes
    gateway = PodEndpoint("istio-ingressgateway-5b8d7c9f4-zx7lm", "istio-system", "10.244.1.30", a)
    sc.pod(a, "istio-system", gateway.name, {"istio-proxy": (0.3, 120e6)}, START, END)
    pods = {
        "web": PodEndpoint(web, "acme-prod", "10.244.1.21", a),
        "worker": PodEndpoint("worker-0", "acme-prod", "10.244.2.22", b),
        "api": PodEndpoint("api-0", "globex", "10.244.2.23", b),
        "app": PodEndpoint("app-0", "initech", "10.244.3.24", c),
    }
    sc.mesh(
        [
            (gateway, pods["web"], "web", 40.0),
            (gateway, pods["api"], "api", 12.0),
            (pods["web"], pods["api"], "api", 6.0),
            (pods["worker"], pods["app"], "app", 2.0),
        ]
    )
    return Layout(spec, sc.cluster)


LAYOUTS: dict[str, Callable[[], Layout]] = {
    "kube-prometheus-stack": kube_prometheus_stack,
    "kube-prometheus-stack-10s": lambda: kube_prometheus_stack(cadvisor_interval=10.0),
    "kube-prometheus-stack-honorlabels": kube_prometheus_stack_honorlabels,
    "gmp": gmp,
    "openshift": openshift,
    "k3s": k3s,
    "prometheus-community-chart": prometheus_community_chart,
    "thanos-ha-no-dedup": thanos_ha_no_dedup,
    "cadvisor-two-jobs": cadvisor_two_jobs,
    "istio": istio,
}


def layout(name: str) -> Layout:
    """The named layout with its default intervals."""
    return LAYOUTS[name]()
