"""The platform cluster: what GPU and internal platforms sell, with exact ground truth.

Namespaces that change hands inside the measured windows, GPU pods (whole GPUs and a MIG slice)
in every phase, requests above and below usage, and dcgm-exporter's utilization, built with
synthetic_cluster's model and conventions. History runs from 22:00 the day before to 03:10, so
the windows 00:00-01:00, 01:00-02:00 and 02:00-03:00 of ``day`` are covered; measured at 03:10
they are a backlog spanning every change of owner.

THE OWNERSHIP RULE. kube-state-metrics' ``kube_namespace_labels`` carries the customer label
(``label_billing_example_com_customer_id``) while the namespace has it; a relabel ends one series
and starts another, an unlabel starts one without the label. The owner of a namespace at t is
the customer label value of its latest kube_namespace_labels sample at or before t ("" or no
label: nobody; metering/ownership.py). A change of owner therefore happens at the first
kube-state-metrics scrape showing the new value (``Cluster.owners`` holds these instants), and the truth gives each
owner exactly the part of the namespace's usage inside its ownership: a counter's increase
between its values at the cut (it is straight between its own samples, so interpolation at the
cut is exact), a gauge's integral up to and from the cut. Usage while no one owns the namespace
is billed to nobody.

THE GATED RULE. kube-state-metrics exposes a pod's requests as long as the API has the pod,
Succeeded pods included (kubernetes/kube-state-metrics#1051, closed as intended), so a request
counts only while the pod is Running: for each ``kube_pod_container_resource_requests`` sample
at t_i, p(t_i) = request(t_i) x the pod's ``kube_pod_status_phase{phase="Running"}`` sample at
t_i (same scrape, same timestamp); p is integrated like any gauge, a line between samples at most
MAX_BRIDGED_GAP apart, nothing before the first sample or after the last. Requests are constant
over a pod's life, so the truth is request x the integral of the line through the Running
samples (``Series.gate``). Running exactly 180 s from off the 30 s scrape grid shows 6 Running
samples and integrates to exactly 180 s; in general the line gives a multiple of the scrape
interval within one interval of the true run time. gpu_hours weighs each GPU resource by
``GPU_WEIGHTS`` (a MIG 1g slice is 1/7 GPU), cpu_request_hours is core-seconds / 3600,
memory_request_gb_hours byte-seconds / 2**30 / 3600; gpu_utilized_hours integrates dcgm-exporter's
``DCGM_FI_PROF_GR_ENGINE_ACTIVE`` (``DCGM_FI_DEV_GPU_UTIL`` / 100 is the same function), cut by
ownership like the rest.

Sources, as these series look in Prometheus:
- kube-state-metrics (commit c92fe0c): docs/metrics/workload/pod-metrics.md and
  internal/store/pod.go. ``kube_pod_container_resource_requests{namespace, pod, uid, container,
  node, resource, unit}``: unit "core" for cpu, "byte" for memory, "integer" for extended
  resources; the resource name goes through SanitizeLabelName (nvidia.com/gpu -> nvidia_com_gpu,
  nvidia.com/mig-1g.5gb -> nvidia_com_mig_1g_5gb); ``node`` is the pod's spec.nodeName, empty for
  an unscheduled pod, and Prometheus drops empty labels. ``kube_pod_status_phase{namespace, pod,
  uid, phase}``: one series per phase (Pending, Succeeded, Failed, Unknown, Running), 1 for the
  current one, 0 for the others.
- dcgm-exporter (NVIDIA/dcgm-exporter, commit d5e5f51): etc/default-counters.csv enables
  DCGM_FI_DEV_GPU_UTIL ("GPU utilization (in %)") and DCGM_FI_PROF_GR_ENGINE_ACTIVE ("Ratio of
  time the graphics engine is active") and DCGM_FI_DRIVER_VERSION as a label;
  internal/pkg/rendermetrics/render_metrics.go writes gpu, UUID, pci_bus_id, device, modelName,
  the host name, then the labels, then the pod attributes; internal/pkg/transformation
  (const.go, kubernetes.go) adds pod, namespace and container of the pod the GPU is assigned to
  (pod_uid only with enablePodUID). The host name label is ``Hostname`` in the releases in use
  (the newest commit, #655, renames it ``hostname``). The chart's ServiceMonitor
  (deployment/values.yaml: interval 15s, honorLabels: false) makes Prometheus keep the exporter's
  pod, namespace and container as exported_pod, exported_namespace, exported_container. A GPU no
  pod holds is reported without pod labels (not billable). The MIG pod has no dcgm series here:
  DCGM_FI_DEV_GPU_UTIL is not reported for MIG instances (NVIDIA/dcgm-exporter#216, #105: use the
  DCGM_FI_PROF_* metrics), so the two sources would not describe the same thing.
- MIG weight: NVIDIA MIG user guide, "Supported MIG Profiles" (A100: 1g.5gb has 1/7 of the SMs,
  7 instances per GPU; H100 likewise).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime

from .clusters import _check_boundaries
from .synthetic_cluster import (
    GIB,
    KSM_CUSTOMER_LABEL,
    Cluster,
    Level,
    Meter,
    Series,
    Target,
    _Builder,
    _labels,
    sample_times,
)

PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")
KSM_INTERVAL = 30.0
DCGM_INTERVAL = 15.0
TRAINING_RUN = 180.0  # seconds the training job runs
_UNITS = {"cpu": "core", "memory": "byte"}  # anything else is an extended resource: "integer"
_METERS: dict[str, Meter] = {
    "cpu": "cpu_request",
    "memory": "memory_request",
    "nvidia_com_gpu": "gpu",
    "amd_com_gpu": "gpu",
    "nvidia_com_mig_1g_5gb": "gpu",
}


@dataclass(frozen=True)
class Pod:
    """What kube-state-metrics knows of a pod: where it runs, what it requests, its phases."""

    namespace: str
    name: str
    uid: str
    node: str | None  # None: not scheduled (the label is empty, so absent)
    requests: dict[str, dict[str, float]]  # container -> resource -> amount
    phases: tuple[tuple[float, str], ...]  # (from_time, phase), sorted
    first: float  # the pod object appears
    last: float  # ... and is gone

    def phase_at(self, t: float) -> str:
        """The phase at t (the latest change at or before t)."""
        current = self.phases[0][1]
        for since, phase in self.phases:
            if since <= t:
                current = phase
        return current


def ksm_pod(ksm: Target, pod: Pod) -> list[Series]:
    """The pod's phase series and its gated requests series, from one kube-state-metrics target."""
    times = sample_times(ksm, None, pod.first, pod.last)
    ident = {"namespace": pod.namespace, "pod": pod.name, "uid": pod.uid, "instance": ksm.name}
    ident["job"] = "kube-state-metrics"
    lines = {phase: Level(knots=[(t, 1.0 if pod.phase_at(t) == phase else 0.0) for t in times]) for phase in PHASES}
    out = [
        Series("kube_pod_status_phase", _labels(**ident, phase=p), ksm, times[0], times[-1], lines[p], counts=False)
        for p in PHASES
    ]
    node = {"node": pod.node} if pod.node else {}
    for container, requests in pod.requests.items():
        for resource, amount in requests.items():
            labels = _labels(
                **ident, **node, container=container, resource=resource, unit=_UNITS.get(resource, "integer")
            )
            out.append(
                Series(
                    "kube_pod_container_resource_requests",
                    labels,
                    ksm,
                    times[0],
                    times[-1],
                    Level(knots=[(times[0], amount)]),
                    _METERS.get(resource),
                    pod.namespace,
                    counts=resource in _METERS,
                    gate=lines["Running"],
                )
            )
    return out


def namespace_labels(ksm: Target, namespace: str, history: list[tuple[float, str | None]], end: float) -> list[Series]:
    """kube_namespace_labels of a namespace whose customer label changes at the times in ``history``
    (each a kube-state-metrics scrape time): one series per run."""
    out = []
    for i, (since, customer) in enumerate(history):
        until = history[i + 1][0] - 0.001 if i + 1 < len(history) else end
        extra = {KSM_CUSTOMER_LABEL: customer} if customer else {}
        labels = _labels(namespace=namespace, instance=ksm.name, job="kube-state-metrics", **extra)
        out.append(
            Series("kube_namespace_labels", labels, ksm, since, until, Level([(since, 1.0)]), None, namespace, False)
        )
    return out


@dataclass(frozen=True)
class Gpu:
    """One GPU as dcgm-exporter labels it."""

    index: int
    uuid: str
    host: str

    def labels(self, dcgm: Target, holder: tuple[str, str, str] | None) -> dict[str, str]:
        """Labels of its series as Prometheus stores them (chart ServiceMonitor, honorLabels: false)."""
        out = {
            "gpu": str(self.index),
            "UUID": self.uuid,
            "pci_bus_id": f"00000000:{0x17 + 0x10 * self.index:02X}:00.0",
            "device": f"nvidia{self.index}",
            "modelName": "NVIDIA A100-SXM4-80GB",
            "Hostname": self.host,
            "DCGM_FI_DRIVER_VERSION": "550.127.08",
            "instance": dcgm.name,
            "job": "nvidia-dcgm-exporter",
            "namespace": "gpu-operator",
            "pod": f"nvidia-dcgm-exporter-{self.host[-1]}x7kq",
            "container": "nvidia-dcgm-exporter",
        }
        if holder is not None:
            ns, pod, container = holder
            out |= {"exported_namespace": ns, "exported_pod": pod, "exported_container": container}
        return out


def dcgm_series(
    rng: random.Random, dcgm: Target, gpu: Gpu, first: float, last: float, holder: tuple[str, str, str] | None
) -> list[Series]:
    """GR_ENGINE_ACTIVE and GPU_UTIL of one GPU over [first, last], one reading per sample (whole
    percents), held by ``holder`` (namespace, pod, container) or by no pod."""
    times = sample_times(dcgm, None, first, last)
    if not times:
        return []
    percent = [(t, float(rng.randint(15, 98) if holder else 0)) for t in times]
    active = Level(knots=[(t, p / 100) for t, p in percent])
    util = Level(knots=percent)
    labels = _labels(**gpu.labels(dcgm, holder))
    ns = holder[0] if holder else None
    busy: Meter | None = "gpu_busy" if holder else None
    lo, hi = times[0], times[-1]
    return [
        Series("DCGM_FI_PROF_GR_ENGINE_ACTIVE", labels, dcgm, lo, hi, active, busy, ns, holder is not None),
        Series("DCGM_FI_DEV_GPU_UTIL", labels, dcgm, lo, hi, util, busy, ns, False),
    ]


# ---------------------------------------------------------------------------------------------
# The cluster

NAMESPACES_AT_END: dict[str, str | None] = {
    "shop": "cust_b",  # cust_a until 01:20, then cust_b
    "shop-dev": "cust_a",
    "lab": None,  # cust_c until 02:35, then unlabeled
    "newbie": "cust_d",  # unlabeled until 00:40, then cust_d
    "ml": "cust_e",
    "kube-system": None,
    "gpu-operator": None,
}


def platform_cluster(day: datetime | None = None, seed: int = 13) -> Cluster:
    """Ownership over time, GPU pods in every phase, requests and dcgm-exporter utilization.

    History from 22:00 the day before ``day`` (default 2025-11-20) to 03:10. The owners change at
    the first kube-state-metrics scrape at or after 00:40 (newbie: nobody -> cust_d), 01:20
    (shop: cust_a -> cust_b) and 02:35 (lab: cust_c -> nobody); ``Cluster.owners`` has the exact
    instants. Pods: shop/gpu-infer-0 (1 GPU, Running all along), lab/notebook-0 (a MIG 1g.5gb
    slice, Running), ml/train-0 (2 GPUs: created a minute before it runs for exactly 180 s from
    off the scrape grid across 02:00, then Succeeded and still exposed), ml/train-queued-0 (4 GPUs,
    Pending and unscheduled all along), ml/prep-data-0 (1 GPU, Succeeded before the history
    starts), shop-dev/api-0 (uses more CPU than it requests, less memory), newbie/etl-0 (the
    opposite) and kube-system/coredns-0 (unlabeled).
    """
    day = (day or datetime(2025, 11, 20, tzinfo=UTC)).astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    h = day.timestamp()
    start, end = h - 2 * 3600, h + 3 * 3600 + 600
    rng = random.Random(seed)
    cluster = Cluster(start=start, end=end, namespaces=dict(NAMESPACES_AT_END))
    b = _Builder(cluster, rng)
    ksm = Target("10.0.4.1:8080", round(rng.uniform(0.5, KSM_INTERVAL - 0.5), 3), KSM_INTERVAL)
    dcgm = Target("10.0.5.11:9400", round(rng.uniform(0.5, DCGM_INTERVAL - 0.5), 3), DCGM_INTERVAL)
    cpu_node, gpu_node, mig_node = b.target("10.0.0.1:10250"), b.target("10.0.0.11:10250"), b.target("10.0.0.12:10250")
    s = cluster.series

    def snap(t: Target, x: float) -> float:
        return b.snap(t, x)

    def last_before(t: Target, x: float) -> float:
        return t.time_at(t.index_at_or_before(x))

    # Ownership: the change instants are kube-state-metrics scrape times.
    first = snap(ksm, start)
    t_newbie, t_shop, t_lab = snap(ksm, h + 2400), snap(ksm, h + 3600 + 1200), snap(ksm, h + 2 * 3600 + 2100)
    cluster.owners = {
        "newbie": [(first, None), (t_newbie, "cust_d")],
        "shop": [(first, "cust_a"), (t_shop, "cust_b")],
        "lab": [(first, "cust_c"), (t_lab, None)],
    }
    for ns, customer in cluster.namespaces.items():
        s += namespace_labels(ksm, ns, cluster.owners.get(ns, [(first, customer)]), end)

    def uid() -> str:
        return f"{rng.getrandbits(32):08x}-{rng.getrandbits(16):04x}-{rng.getrandbits(16):04x}"

    def workload(node: Target, pod: Pod, usage: dict[str, tuple[float, float]], lo: float, hi: float) -> None:
        """The pod's cAdvisor series while its containers run (cores, working-set bytes)."""
        pre = lo <= start
        for name, (cores, mem) in usage.items():
            s.extend(b.container(node, pod.namespace, pod.name, name, lo, hi, cores, mem, pod.uid, pre))
        cores, mem = sum(c for c, _ in usage.values()), sum(m for _, m in usage.values())
        s.extend(b.sandbox(node, pod.namespace, pod.name, pod.uid, lo, hi, cores, mem, 100_000.0, pre))

    def running(ns: str, name: str, node: str, requests: dict[str, dict[str, float]]) -> Pod:
        return Pod(ns, name, uid(), node, requests, ((start - 86400, "Running"),), start, end)

    gpus = [Gpu(i, f"GPU-{rng.getrandbits(32):08x}-{rng.getrandbits(16):04x}", "gpu-node-1") for i in range(3)]

    # shop: one GPU serving all along; cust_a's until 01:20, cust_b's after.
    serving = {"server": {"nvidia_com_gpu": 1.0, "cpu": 4.0, "memory": 16 * GIB}}
    infer = running("shop", "gpu-infer-0", "gpu-node-1", serving)
    s += ksm_pod(ksm, infer)
    workload(gpu_node, infer, {"server": (2.5, 10e9)}, start, end)
    s += dcgm_series(rng, dcgm, gpus[0], start, end, ("shop", infer.name, "server"))

    # lab: a MIG slice all along; cust_c's until 02:35, nobody's after.
    notebook = running(
        "lab", "notebook-0", "gpu-node-2", {"jupyter": {"nvidia_com_mig_1g_5gb": 1, "cpu": 1, "memory": 4 * GIB}}
    )
    s += ksm_pod(ksm, notebook)
    workload(mig_node, notebook, {"jupyter": (0.4, 3e9)}, start, end)

    # newbie: requests above CPU use and below memory use; nobody's until 00:40.
    etl = running("newbie", "etl-0", "cpu-node-1", {"etl": {"cpu": 2, "memory": 1 * GIB}})
    s += ksm_pod(ksm, etl)
    workload(cpu_node, etl, {"etl": (0.3, 2e9)}, start, end)

    # shop-dev: the other way round.
    api = running("shop-dev", "api-0", "cpu-node-1", {"api": {"cpu": 0.5, "memory": 512 * 2**20}})
    s += ksm_pod(ksm, api)
    workload(cpu_node, api, {"api": (0.9, 300e6)}, start, end)

    # kube-system: requests nobody pays for.
    dns = running("kube-system", "coredns-0", "cpu-node-1", {"coredns": {"cpu": 0.1, "memory": 70 * 2**20}})
    s += ksm_pod(ksm, dns)
    workload(cpu_node, dns, {"coredns": (0.05, 40e6)}, start, end)

    # ml: a training job on GPUs 1 and 2, Running exactly TRAINING_RUN seconds across 02:00, from
    # 13.7 s after a scrape; Pending the minute before; Succeeded after, its requests still exposed.
    run_start = snap(ksm, h + 2 * 3600 - 75) + 13.7
    run_end = run_start + TRAINING_RUN
    job = Pod(
        "ml",
        "train-0",
        uid(),
        "gpu-node-1",
        {"trainer": {"nvidia_com_gpu": 2, "cpu": 8, "memory": 32 * GIB}},
        ((run_start - 60, "Pending"), (run_start, "Running"), (run_end, "Succeeded")),
        run_start - 60,
        end,
    )
    s += ksm_pod(ksm, job)
    workload(gpu_node, job, {"trainer": (7.0, 20e9)}, snap(gpu_node, run_start), last_before(gpu_node, run_end - 0.001))
    for gpu in gpus[1:]:
        s += dcgm_series(rng, dcgm, gpu, start, run_start - 0.001, None)
        s += dcgm_series(rng, dcgm, gpu, run_start, run_end - 0.001, ("ml", job.name, "trainer"))
        s += dcgm_series(rng, dcgm, gpu, run_end, end, None)
    # ...one that never gets a node, and one that finished before the history starts.
    queued = Pod(
        "ml",
        "train-queued-0",
        uid(),
        None,
        {"trainer": {"nvidia_com_gpu": 4, "cpu": 16}},
        ((h + 1207.0, "Pending"),),
        h + 1207.0,
        end,
    )
    done = Pod(
        "ml",
        "prep-data-0",
        uid(),
        "gpu-node-1",
        {"prep": {"nvidia_com_gpu": 1, "cpu": 2, "memory": 8 * GIB}},
        ((start - 7200, "Succeeded"),),
        start,
        end,
    )
    s += ksm_pod(ksm, queued) + ksm_pod(ksm, done)
    _check_boundaries(cluster)
    return cluster
