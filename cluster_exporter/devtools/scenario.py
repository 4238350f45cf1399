"""The workloads every layout carries, and how a layout's scrape jobs store them.

A layout (devtools/layouts.py) is a ``Flavor`` (the container runtime, the scrape jobs per kind of
endpoint with their target labels, honor_labels and honor_timestamps) applied to the same
scenario: three customers' pods, volumes, ingress traffic and mesh calls with the usual traps.
``Scenario`` turns each thing into series, one per copy the layout stores (a second job, an HA
replica), all copies drawn from one function under synthetic_cluster's conventions, so the truth
is what a correct meter bills once per thing.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from .synthetic_cluster import (
    KSM_CUSTOMER_LABEL,
    MAX_BRIDGED_GAP,
    Clock,
    Cluster,
    Copy,
    Counter,
    Labels,
    Level,
    Meter,
    Series,
    Target,
    counter_for,
    counter_reset,
    level_for,
    shared_life,
    with_outage,
)

DAY = datetime(2025, 11, 20, tzinfo=UTC)
H = DAY.timestamp()
START = H - 1800.0  # 23:30 the day before
END = H + 3 * 3600 + 900.0  # 03:15
WINDOWS = [(DAY + timedelta(hours=1), DAY + timedelta(hours=2)), (DAY + timedelta(hours=2), DAY + timedelta(hours=3))]
NAMESPACES: dict[str, str | None] = {
    "acme-prod": "cust_acme",
    "acme-dev": "cust_acme",
    "globex": "cust_globex",
    "initech": "cust_initech",
    "kube-system": None,
    "monitoring": None,
    "ingress-nginx": None,
}
STAMP_LAG = 30.0  # the longest a cAdvisor stamp is older than the scrape reading it (idle: 15 s + 100%)

Kind = Literal["cadvisor", "kubelet", "ingress", "ksm", "mesh"]


@dataclass(frozen=True)
class Node:
    """A node: its kubelet's address and the node labels ``labelmap`` copies into series."""

    name: str
    ip: str
    zone: str

    def labels(self) -> dict[str, str]:
        """``__meta_kubernetes_node_label_(.+)`` after Prometheus' label name sanitizing."""
        return {
            "beta_kubernetes_io_arch": "amd64",
            "beta_kubernetes_io_os": "linux",
            "kubernetes_io_arch": "amd64",
            "kubernetes_io_hostname": self.name,
            "kubernetes_io_os": "linux",
            "node_kubernetes_io_instance_type": "m6i.xlarge",
            "topology_kubernetes_io_region": "eu-west-1",
            "topology_kubernetes_io_zone": self.zone,
        }


@dataclass(frozen=True)
class PodEndpoint:
    """A pod scraped directly (ingress controller, sidecar, kube-state-metrics)."""

    name: str
    namespace: str
    ip: str
    node: Node
    labels: tuple[tuple[str, str], ...] = ()  # pod labels after sanitizing, for labelmap


Endpoint = Node | PodEndpoint


@dataclass(frozen=True)
class Job:
    """One scrape job as it reaches the TSDB: its target labels, and how scraped labels and
    timestamps are treated (Prometheus' honor_labels and honor_timestamps)."""

    name: str
    interval: float
    target_labels: Callable[[Endpoint], dict[str, str]]
    honor_labels: bool = False
    honor_timestamps: bool = True
    extra: tuple[tuple[str, str], ...] = ()  # external labels the query layer shows (replica, cluster)


def scraped(metric: dict[str, str], job: Job, endpoint: Endpoint) -> Labels:
    """The series' labels after the scrape: Prometheus' rules for target and scraped labels.

    With honor_labels the scraped value wins; without, a scraped label that the target also has
    is kept as ``exported_<name>``. Empty values are no labels. External labels come last and
    never override.
    """
    target = {k: v for k, v in job.target_labels(endpoint).items() if v}
    exposed = {k: v for k, v in metric.items() if v}
    if job.honor_labels:
        out = {**target, **exposed}
    else:
        out = dict(target)
        for k, v in exposed.items():
            out[f"exported_{k}" if k in target else k] = v
    for k, v in job.extra:
        out.setdefault(k, v)
    return tuple(sorted(out.items()))


@dataclass(frozen=True)
class Outage:
    """``lost`` consecutive scrapes lost by copy ``copy`` of a ``kind`` job on ``endpoint``."""

    kind: Kind
    endpoint: str
    near: float
    lost: int
    copy: int = 0


@dataclass
class Flavor:
    """How a layout stores things: runtime, pause image and scrape jobs per kind of endpoint."""

    runtime: Literal["containerd", "crio"]
    jobs: dict[Kind, list[Job]]
    pause_image: str = "registry.k8s.io/pause:3.10"
    namespaces: dict[str, str | None] = field(default_factory=lambda: dict(NAMESPACES))


def _hex(rng: random.Random, digits: int) -> str:
    return f"{rng.getrandbits(4 * digits):0{digits}x}"


@dataclass
class _Source:
    """An endpoint's series in every copy the layout stores (one per job, and per replica)."""

    cluster: Cluster
    endpoint: Endpoint
    copies: list[tuple[Job, Target, Clock | None]]

    @property
    def sampling(self) -> list[Copy]:
        """(target, clock) of each copy: what decides its sample times."""
        return [(t, c) for _, t, c in self.copies]

    def add(
        self,
        name: str,
        metric: dict[str, str],
        life: tuple[float, float],
        fn: Counter | Level,
        meter: Meter | None = None,
        namespace: str | None = None,
        counts: bool = False,
    ) -> None:
        """One series in each copy; only the first copy counts."""
        for i, (job, target, clock) in enumerate(self.copies):
            labels = scraped(metric, job, self.endpoint)
            first_copy = counts and i == 0
            self.cluster.series.append(Series(name, labels, target, *life, fn, meter, namespace, first_copy, clock))


class Scenario:
    """One layout's cluster under construction."""

    def __init__(self, flavor: Flavor, seed: int, outages: Sequence[Outage]) -> None:
        self.flavor = flavor
        self.rng = random.Random(seed)
        self.cluster = Cluster(start=START, end=END, namespaces=dict(flavor.namespaces))
        self.outages = list(outages)
        self.nodes = [Node("node-a", "10.0.1.11", "eu-west-1a"), Node("node-b", "10.0.2.12", "eu-west-1b")]
        self.nodes.append(Node("node-c", "10.0.3.13", "eu-west-1c"))
        self._targets: dict[tuple[Kind, int, str], Target] = {}

    # -- targets and copies

    def _target(self, kind: Kind, index: int, job: Job, endpoint: Endpoint) -> Target:
        key = (kind, index, endpoint.name)
        if key not in self._targets:
            name = f"{job.name}#{index}/{endpoint.name}@{endpoint.ip}"
            target = Target(name, round(self.rng.uniform(0.5, job.interval - 0.5), 3), job.interval)
            for o in self.outages:
                if (o.kind, o.copy, o.endpoint) == key:
                    target = with_outage(target, o.near, o.lost)
            self._targets[key] = target
        return self._targets[key]

    def source(self, kind: Kind, endpoint: Endpoint, clock: Clock | None = None) -> _Source:
        """Every copy the layout stores of an endpoint's series: one per job (and replica)."""
        copies = [
            (job, self._target(kind, i, job, endpoint), clock if job.honor_timestamps else None)
            for i, job in enumerate(self.flavor.jobs.get(kind, []))
        ]
        return _Source(self.cluster, endpoint, copies)

    def _life(self, copies: Sequence[Copy], first: float, last: float) -> tuple[float, float]:
        """A life every copy sees whole where it starts or ends inside the history."""
        if len(copies) < 2 or (first <= START and last >= END):
            return first, last
        life = shared_life(copies, first, last)
        if life is None:
            raise ValueError(f"copies share no life in [{first}, {last}]")
        return (first if first <= START else life[0]), (last if last >= END else life[1])

    # -- cAdvisor

    def _cgroup_id(self, uid: str, qos: str) -> str:
        u = uid.replace("-", "_")
        if qos == "guaranteed":
            return f"/kubepods.slice/kubepods-pod{u}.slice"
        return f"/kubepods.slice/kubepods-{qos}.slice/kubepods-{qos}-pod{u}.slice"

    def cgroup(
        self,
        node: Node,
        labels: dict[str, str],
        life: tuple[float, float],
        cores: float,
        memory: float | None,
        counts: bool,
        network: float | None = None,
        idle: bool = False,
    ) -> None:
        """The container_* series of one cgroup: CPU, memory, and the pod's network if it holds it."""
        rng = self.rng
        first, last = life
        created = first if first > START else START - rng.uniform(0.0, 25.0)
        clock = Clock(rng.getrandbits(32), created, min(last, END) + 60.0, base=15.0 if idle else 10.0)
        src = self.source("cadvisor", node, clock)
        life = self._life(src.sampling, created, last)
        ns = labels["namespace"]
        old = life[0] <= START
        cpu = counter_for(rng, src.sampling, *life, cores, offset=rng.uniform(1e4, 1e6) if old else 0.0)
        src.add("container_cpu_usage_seconds_total", {**labels, "cpu": "total"}, life, cpu, "cpu", ns, counts)
        mem = level_for(rng, src.sampling, *life, memory) if memory else Level(knots=[(life[0], 700_000.0)])
        src.add("container_memory_working_set_bytes", labels, life, mem, "memory", ns, counts)
        if network:
            net: tuple[tuple[str, Meter, float], ...] = (
                ("container_network_transmit_bytes_total", "net_tx", 1.0),
                ("container_network_receive_bytes_total", "net_rx", 3.0),
            )
            for name, meter, scale in net:
                offset = rng.uniform(1e6, 1e9) if old else 0.0
                fn = counter_for(rng, src.sampling, *life, network * scale, offset=offset)
                src.add(name, {**labels, "interface": "eth0"}, life, fn, meter, ns, True)

    def pod(
        self,
        node: Node,
        namespace: str,
        pod: str,
        containers: dict[str, tuple[float, float]],
        first: float,
        last: float,
        network: float = 50_000.0,
        restart: dict[str, float] | None = None,
        qos: str = "burstable",
    ) -> None:
        """A pod as the kubelet's cAdvisor shows it on the layout's runtime.

        The pod cgroup (container="", raw handler: CPU and memory, no network); the sandbox, which
        alone carries the pod's network (containerd: container="" with the pause image; CRI-O: the
        infra container, container="POD"); one cgroup per container incarnation (a restart is a new
        container id, so a new series).
        """
        rng = self.rng
        uid = f"{_hex(rng, 8)}-{_hex(rng, 4)}-4{_hex(rng, 3)}-a{_hex(rng, 3)}-{_hex(rng, 12)}"
        pod_cg = self._cgroup_id(uid, qos)
        base = {"namespace": namespace, "pod": pod}
        total_cpu = sum(c for c, _ in containers.values())
        total_mem = sum(m for _, m in containers.values())
        self.cgroup(node, {**base, "id": pod_cg}, (first, last), total_cpu, total_mem, counts=False)
        sandbox = _hex(rng, 64)
        if self.flavor.runtime == "crio":
            infra = {
                "id": f"{pod_cg}/crio-{sandbox}.scope",
                "name": f"k8s_POD_{pod}_{namespace}_{uid}_0",
                "container": "POD",
            }
        else:
            infra = {
                "id": f"{pod_cg}/cri-containerd-{sandbox}.scope",
                "name": sandbox,
                "image": self.flavor.pause_image,
            }
        self.cgroup(node, {**base, **infra}, (first, last), 0.0005, None, False, network=network, idle=True)
        for name, (cores, memory) in containers.items():
            cut = (restart or {}).get(name)
            start = first + 1.0 if first > START else first  # containers start a moment after their sandbox
            lives = [(start, last)] if cut is None else [(start, cut), (cut + rng.uniform(2.0, 6.0), last)]
            for attempt, (a, b) in enumerate(lives):
                cid = _hex(rng, 64)
                image = f"registry.example.com/{namespace}/{name}:1.{attempt}"
                if self.flavor.runtime == "crio":
                    ids = {"id": f"{pod_cg}/crio-{cid}.scope", "name": f"k8s_{name}_{pod}_{namespace}_{uid}_{attempt}"}
                else:
                    ids = {"id": f"{pod_cg}/cri-containerd-{cid}.scope", "name": cid}
                labels = {**base, **ids, "container": name, "image": image}
                self.cgroup(node, labels, (a, b), cores, memory, counts=True)

    def short_pod(
        self, node: Node, namespace: str, pod: str, containers: dict[str, tuple[float, float]], at: float
    ) -> None:
        """A pod living about 90 s (a CronJob run), moved by a few seconds until every copy sees
        each of its cgroups start and end on the same samples."""
        for attempt in range(40):
            first = at + 7.0 * attempt
            state = self.rng.getstate()
            before = len(self.cluster.series)
            try:
                self.pod(node, namespace, pod, containers, first, first + 90.0, network=500_000.0)
                return
            except ValueError:
                del self.cluster.series[before:]
                self.rng.setstate(state)
                self.rng.random()  # another draw next time
        raise ValueError(f"no life for {pod} near {at}")

    # -- kubelet volume stats, ingress-nginx, kube-state-metrics, Istio

    def volume(self, nodes: Sequence[Node], namespace: str, pvc: str, first: float, last: float, used: float) -> None:
        """kubelet_volume_stats_used_bytes of one claim from every kubelet that mounts it (no
        exporter timestamps: the kubelet's /metrics samples carry the scrape time)."""
        sources = [self.source("kubelet", node) for node in nodes]
        fn = level_for(self.rng, [c for src in sources for c in src.sampling], first, last, used)
        metric = {"namespace": namespace, "persistentvolumeclaim": pvc}
        for i, src in enumerate(sources):
            src.add("kubelet_volume_stats_used_bytes", metric, (first, last), fn, "storage", namespace, i == 0)

    def ingress(self, ingresses: Sequence[tuple[str, str, str, float]], restart_at: float) -> None:
        """Two ingress-nginx controller replicas; the second one's process restarts (counter
        reset, labels unchanged)."""
        requests = "nginx_ingress_controller_requests"
        for r, node in enumerate(self.nodes[:2]):
            pod = f"ingress-nginx-controller-6c4b9d7f5-{'tq8zr' if r == 0 else 'w2m4k'}"
            labels = (
                ("app_kubernetes_io_component", "controller"),
                ("app_kubernetes_io_instance", "ingress-nginx"),
                ("app_kubernetes_io_name", "ingress-nginx"),
                ("pod_template_hash", "6c4b9d7f5"),
            )
            self.pod(node, "ingress-nginx", pod, {"controller": (0.2, 150e6)}, START, END)
            src = self.source("ingress", PodEndpoint(pod, "ingress-nginx", f"10.244.{r + 1}.17", node, labels))
            for ns, ingress, service, rps in ingresses:
                for status, share in (("200", 0.9), ("404", 0.07), ("503", 0.03)):
                    metric = {
                        "canary": "",
                        "controller_class": "k8s.io/ingress-nginx",
                        "controller_namespace": "ingress-nginx",
                        "controller_pod": pod,
                        "ingress": ingress,
                        "method": "GET",
                        "namespace": ns,
                        "path": "/",
                        "service": service,
                        "status": status,
                    }
                    base = rps * share / 2
                    if r == 1:
                        old, new, split = counter_reset(self.rng, src.sampling, START, restart_at, END, base, 1e5)
                        src.add(requests, metric, (START, split), old, "http", ns, True)
                        src.add(requests, metric, (split + 0.001, END), new, "http", ns, True)
                    else:
                        fn = counter_for(self.rng, src.sampling, START, END, base, self.rng.uniform(1e4, 1e6))
                        src.add(requests, metric, (START, END), fn, "http", ns, True)

    def ksm(self) -> None:
        """kube-state-metrics' kube_namespace_labels, the customer label allow-listed."""
        src = self.source(
            "ksm", PodEndpoint("kube-state-metrics-7f9c8b6d4-hx2lp", "monitoring", "10.244.3.9", self.nodes[2])
        )
        for ns, customer in self.cluster.namespaces.items():
            metric = {"namespace": ns, KSM_CUSTOMER_LABEL: customer or ""}
            src.add("kube_namespace_labels", metric, (START, END), Level(knots=[(START, 1.0)]), None, ns)

    def mesh(self, calls: Sequence[tuple[PodEndpoint, PodEndpoint, str, float]]) -> None:
        """istio_requests_total: each call reported by the client's sidecar (reporter="source") and
        the server's (reporter="destination"); only the destination report counts."""
        for source, dest, service, rps in calls:
            reports = {"destination": self.source("mesh", dest), "source": self.source("mesh", source)}
            both = reports["destination"].sampling + reports["source"].sampling  # one count, two reports
            for code, share in (("200", 0.95), ("503", 0.05)):
                fn = counter_for(self.rng, both, START, END, rps * share, offset=self.rng.uniform(1e4, 1e6))
                for reporter, src in reports.items():
                    metric = _istio_labels(source, dest, service, code, reporter)
                    counts = reporter == "destination"
                    src.add("istio_requests_total", metric, (START, END), fn, "istio", dest.namespace, counts)


def _istio_labels(source: PodEndpoint, dest: PodEndpoint, service: str, code: str, reporter: str) -> dict[str, str]:
    def workload(p: PodEndpoint) -> str:
        return p.name.rsplit("-", 2)[0] if p.name.count("-") >= 2 else p.name.rsplit("-", 1)[0]

    return {
        "connection_security_policy": "mutual_tls" if reporter == "destination" else "unknown",
        "destination_app": workload(dest),
        "destination_canonical_revision": "v1",
        "destination_canonical_service": workload(dest),
        "destination_cluster": "Kubernetes",
        "destination_principal": f"spiffe://cluster.local/ns/{dest.namespace}/sa/{workload(dest)}",
        "destination_service": f"{service}.{dest.namespace}.svc.cluster.local",
        "destination_service_name": service,
        "destination_service_namespace": dest.namespace,
        "destination_version": "v1",
        "destination_workload": workload(dest),
        "destination_workload_namespace": dest.namespace,
        "grpc_response_status": "",
        "reporter": reporter,
        "request_protocol": "http",
        "response_code": code,
        "response_flags": "-",
        "source_app": workload(source),
        "source_canonical_revision": "v1" if source.namespace != "istio-system" else "latest",
        "source_canonical_service": workload(source),
        "source_cluster": "Kubernetes",
        "source_principal": f"spiffe://cluster.local/ns/{source.namespace}/sa/{workload(source)}",
        "source_version": "v1" if source.namespace != "istio-system" else "unknown",
        "source_workload": workload(source),
        "source_workload_namespace": source.namespace,
    }


INGRESSES = [
    ("acme-prod", "web", "web", 40.0),
    ("globex", "api", "api", 12.0),
    ("initech", "app", "app", 3.0),
    ("kube-system", "dashboard", "kubernetes-dashboard", 1.0),
]


def workloads(sc: Scenario, sidecar: bool = False, reschedule: bool = False, ingress: bool = True) -> None:
    """The workloads every layout carries, with the usual traps.

    acme: a two-container web pod, a worker whose container restarts at 01:20, a CronJob whose
    pods live about 90 s every 30 min, a pod from 01:12 to 01:47 (through node-b's outage), one
    from 01:40 to 02:35 (across 02:00 and node-c's outage); globex: an API pod and an RWX volume
    reported by two kubelets; initech: a small app and its RWO volume (moved from node-c to node-a
    at 01:31 when ``reschedule``); system pods and volumes in unlabeled namespaces.
    """
    a, b, c = sc.nodes
    side = {"istio-proxy": (0.05, 80e6)} if sidecar else {}
    h1 = H + 3600.0
    sc.pod(
        a,
        "acme-prod",
        "web-7d9f8c6b5-abcde",
        {"app": (0.9, 400e6), "sidecar": (0.1, 60e6), **side},
        START,
        END,
        200_000.0,
    )
    sc.pod(b, "acme-prod", "worker-0", {"worker": (0.5, 300e6), **side}, START, END, 30_000.0, {"worker": h1 + 1200.0})
    for i, at in enumerate(range(int(H) + 600, int(H) + 3 * 3600, 1800)):
        suffix = ("x7k2q", "b9w4t", "m3p8z", "q5d2n", "h8c6v", "t2r7k")[i]
        sc.short_pod(a, "acme-dev", f"report-{29384060 + 30 * i}-{suffix}", {"report": (1.8, 200e6)}, at)
    sc.pod(b, "acme-dev", "migrate-1-5x2kd", {"migrate": (2.0, 1.2e9)}, h1 + 720.0, h1 + 2820.0)
    sc.pod(c, "acme-dev", "etl-2-9f7dq", {"etl": (1.5, 900e6)}, h1 + 2400.0, h1 + 3600.0 + 2100.0)
    sc.pod(b, "globex", "api-0", {"api": (0.8, 500e6), **side}, START, END, 80_000.0)
    sc.volume([a], "acme-prod", "data-postgres-0", START, END, 5.2 * 2**30)
    sc.volume([b, c], "globex", "shared-files", START, END, 20 * 2**30)
    if reschedule:
        sc.pod(c, "initech", "app-0", {"app": (0.25, 128e6), **side}, START, h1 + 1860.0)
        sc.pod(a, "initech", "app-0", {"app": (0.25, 128e6), **side}, h1 + 2280.0, END)
        sc.volume([c], "initech", "data-app-0", START, h1 + 1860.0, 3 * 2**30)
        sc.volume([a], "initech", "data-app-0", h1 + 2280.0, END, 3 * 2**30)
    else:
        sc.pod(c, "initech", "app-0", {"app": (0.25, 128e6), **side}, START, END)
        sc.volume([c], "initech", "data-app-0", START, END, 3 * 2**30)
    sc.pod(a, "kube-system", "coredns-5d78c9869d-qx2fk", {"coredns": (0.1, 70e6)}, START, END)
    sc.pod(b, "monitoring", "prometheus-0", {"prometheus": (0.6, 2e9)}, START, END)
    sc.volume([b], "monitoring", "prometheus-db-prometheus-0", START, END, 40 * 2**30)
    if ingress:
        sc.ingress(INGRESSES, h1 + 1980.0)
    if sc.flavor.jobs.get("ksm"):
        sc.ksm()


def outages(
    cadvisor: float, stamped: bool, other: float, other_kind: Kind = "ingress", other_endpoint: str = ""
) -> list[Outage]:
    """One short (1 scrape), one medium and one long outage of the cAdvisor scrape (node-a at
    01:05, node-b at 01:25, node-c across 02:00), and the longest one on Prometheus' own
    timestamps (19 scrapes at 15 s: 300 s) on another target at 02:27. With cAdvisor's stamps a
    gap can grow by ``STAMP_LAG``, so the long outage there is shorter."""
    medium = 6 if 7 * cadvisor + STAMP_LAG <= MAX_BRIDGED_GAP else 2
    long = int((MAX_BRIDGED_GAP - (STAMP_LAG if stamped else 0.0)) // cadvisor) - 1
    other_long = int(MAX_BRIDGED_GAP // other) - 1
    return [
        Outage("cadvisor", "node-a", H + 3900.0, 1),
        Outage("cadvisor", "node-b", H + 3600.0 + 1500.0, medium),
        Outage("cadvisor", "node-c", H + 7200.0 - (long + 1) * cadvisor / 2, long),
        Outage(
            other_kind, other_endpoint or "ingress-nginx-controller-6c4b9d7f5-tq8zr", H + 7200.0 + 1620.0, other_long
        ),
    ]
