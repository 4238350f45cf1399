"""The concrete synthetic clusters: the demo's (every trap, small) and the benchmarks' (large).

Built with the model and builders of synthetic_cluster; see that module for the conventions that
make the generated samples and the analytic truth the same thing. The platform cluster (owners
changing over time, GPUs, requests) is in platform_cluster.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

from .synthetic_cluster import GIB, KSM_CUSTOMER_LABEL, Cluster, Counter, Level, Series, Target, _Builder, _labels

# ---------------------------------------------------------------------------------------------
# The demo cluster


def demo_cluster(day: datetime | None = None, seed: int = 7) -> Cluster:
    """The built-in demo: 5 customers, every trap, history from 22:00 the day before to 03:10.

    Windows 00:00-01:00, 01:00-02:00 and 02:00-03:00 of ``day`` (default 2025-11-20) are fully covered.
    """
    day = (day or datetime(2025, 11, 20, tzinfo=UTC)).astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    h = day.timestamp()
    start, end = h - 2 * 3600, h + 3 * 3600 + 600
    rng = random.Random(seed)
    cluster = Cluster(
        start=start,
        end=end,
        namespaces={
            "acme-prod": "cust_acme",
            "acme-dev": "cust_acme",
            "globex": "cust_globex",
            "initech": "cust_initech",
            "hooli": "cust_hooli",
            "kube-system": None,
            "monitoring": None,
            "ingress-nginx": None,
            "istio-system": None,
        },
        deleted={"umbrella-tmp": ("cust_umbrella", h + 5400)},
    )
    b = _Builder(cluster, rng)
    node_a = b.target("10.0.0.1:10250")
    node_b = b.target("10.0.0.2:10250", gaps=((h + 3600 + 1500, h + 3600 + 1560),))  # 3 scrapes lost at 01:25
    node_c = b.target("10.0.0.3:10250")
    node_c_dup = b.target("10.0.0.3:10250")  # the same node scraped again by a second job
    s = cluster.series

    def snap(t: Target, x: float) -> float:
        return b.snap(t, x)

    def last_before(t: Target, x: float) -> float:
        return t.time_at(t.index_at_or_before(x))

    # cust_acme / acme-prod: a two-container web pod all along, on a node scraped by two jobs.
    s += b.pod(
        node_c,
        "acme-prod",
        "web-7d9f-abcde",
        {"app": (0.9, 400e6), "sidecar": (0.1, 60e6)},
        start,
        end,
        net_bytes_per_s=200_000,
        extra_targets=[node_c_dup],
    )
    # a worker whose container restarts at 01:20 (new series: new id/name, counter from zero)
    uid = "a1b2c3d4-0001"
    restart = last_before(node_a, h + 3600 + 1200)
    s += b.container(node_a, "acme-prod", "worker-0", "worker", start, restart, 0.5, 300e6, uid, True)
    s += b.container(node_a, "acme-prod", "worker-0", "worker", snap(node_a, restart + 1), end, 0.7, 350e6, uid, False)
    s += b.sandbox(node_a, "acme-prod", "worker-0", uid, start, end, 0.6, 320e6, 30_000, True)
    # a batch pod that crosses the 01:00 and 02:00 boundaries: 00:40 -> 02:20
    s += b.pod(
        node_b,
        "acme-prod",
        "batch-xyz",
        {"batch": (1.5, 900e6)},
        snap(node_b, h + 2400),
        last_before(node_b, h + 2 * 3600 + 1200),
    )
    s += b.volume([node_c], "acme-prod", "data-postgres-0", start, end, 5.2 * GIB)
    # acme-dev: a CronJob every 10 minutes, pods living 90 seconds
    t = h - 3600
    i = 0
    while t < end - 300:
        first = snap(node_a, t + rng.uniform(0, 20))
        s += b.pod(
            node_a, "acme-dev", f"report-{i:04d}-x", {"job": (1.8, 200e6)}, first, first + 90.0, net_bytes_per_s=500_000
        )
        t += 600
        i += 1

    # cust_globex: counter reset with unchanged labels (runtime labels dropped by relabeling)
    uid = "b1b2c3d4-0002"
    reset_at = last_before(node_b, h + 3600 + 2400)
    s += b.container(
        node_b, "globex", "api-0", "api", start, reset_at, 0.8, 500e6, uid, True, keep_runtime_labels=False
    )
    s += b.container(
        node_b,
        "globex",
        "api-0",
        "api",
        snap(node_b, reset_at + 1),
        end,
        0.8,
        500e6,
        uid,
        False,
        keep_runtime_labels=False,
    )
    s += b.sandbox(node_b, "globex", "api-0", uid, start, end, 0.8, 500e6, 80_000, True)
    # a pod created at 01:12 and deleted at 01:47 (on the node with the scrape gap)
    s += b.pod(
        node_b,
        "globex",
        "migrate-1",
        {"migrate": (2.0, 1.2e9)},
        snap(node_b, h + 3600 + 720),
        last_before(node_b, h + 3600 + 2820),
    )
    # an RWX volume mounted on two nodes: two kubelets report the same PVC
    s += b.volume([node_b, node_a], "globex", "shared-files", start, end, 20 * GIB)

    # cust_hooli: a small steady pod and the custom meters' sources
    s += b.pod(node_a, "hooli", "svc-0", {"svc": (0.25, 128e6)}, start, end)

    # cust_umbrella: namespace deleted at 01:30; its pod ran until then
    s += b.pod(node_c, "umbrella-tmp", "load-0", {"load": (1.2, 700e6)}, start, last_before(node_c, h + 5400 - 30))
    # cust_initech: labeled, no workload at all.

    # unlabeled system namespaces: never billed
    s += b.pod(node_a, "kube-system", "coredns-1", {"coredns": (0.1, 70e6)}, start, end)
    s += b.pod(node_b, "monitoring", "prometheus-0", {"prometheus": (0.6, 2e9)}, start, end)
    s += b.volume([node_b], "monitoring", "prometheus-db", start, end, 40 * GIB)

    # nginx-ingress: two replicas; replica 1's process restarts at 01:33 (counter reset, same labels)
    ingresses = [
        ("acme-prod", "web", 40.0),
        ("globex", "api", 12.0),
        ("hooli", "svc", 3.0),
        ("umbrella-tmp", "load", 5.0),
        ("kube-system", "dashboard", 1.0),
    ]
    for replica in (0, 1):
        tgt = b.target(f"10.0.1.{replica + 1}:10254")
        pod = f"ingress-nginx-controller-{replica}"
        cut = last_before(tgt, h + 3600 + 1980) if replica == 1 else end
        for ns, ing, rps in ingresses:
            for status, share in (("200", 0.9), ("404", 0.07), ("503", 0.03)):
                end_ns = min(end, cluster.deleted.get(ns, (None, end))[1])
                labels = _labels(
                    exported_namespace=ns,
                    ingress=ing,
                    status=status,
                    method="GET",
                    namespace="ingress-nginx",
                    pod=pod,
                    instance=tgt.name,
                    job="ingress-nginx",
                    controller_class="k8s.io/ingress-nginx",
                )
                lives = [(start, min(cut, end_ns))] + ([(snap(tgt, cut + 1), end_ns)] if cut < end_ns else [])
                for j, (lo, hi) in enumerate(lives):
                    lo_s, hi_s = snap(tgt, lo), last_before(tgt, hi)
                    if hi_s <= lo_s:
                        continue
                    fn = b.cpu_counter(tgt, lo_s, hi_s, rps * share / 2, offset=1e5 if j == 0 else 0.0)
                    if j == 1:
                        fn = Counter(
                            start=lo_s - tgt.interval,
                            offset=0.0,
                            rates=[(lo_s - tgt.interval, fn.rates[0][1]), *fn.rates[1:]],
                        )
                    s.append(Series("nginx_ingress_controller_requests", labels, tgt, lo_s, hi_s, fn, "http", ns))

    # Istio: every request reported by the client's and the server's sidecar (reporter label)
    mesh = b.target("10.0.2.1:15090")
    for ns, rps in (("acme-prod", 20.0), ("globex", 6.0)):
        fn = b.cpu_counter(mesh, snap(mesh, start), end, rps, offset=5e4)
        for reporter in ("destination", "source"):
            s.append(
                Series(
                    "istio_requests_total",
                    _labels(
                        reporter=reporter,
                        destination_service_namespace=ns,
                        destination_workload="app",
                        source_workload="ingressgateway",
                        instance=mesh.name,
                        job="istio-mesh",
                        namespace="istio-system",
                    ),
                    mesh,
                    snap(mesh, start),
                    last_before(mesh, end),
                    fn,
                    "istio",
                    ns,
                    counts=reporter == "destination",
                )
            )

    # custom meters: PostgreSQL commits (counter) and MQTT connected clients (gauge)
    pg = b.target("10.0.3.1:9187")
    for ns, cps in (("acme-prod", 35.0), ("hooli", 4.0)):
        fn = b.cpu_counter(pg, snap(pg, start), end, cps, offset=7e6)
        s.append(
            Series(
                "pg_stat_database_xact_commit",
                _labels(namespace=ns, datname="app", instance=pg.name, job="pg"),
                pg,
                snap(pg, start),
                last_before(pg, end),
                fn,
                "pg_commits",
                ns,
            )
        )
    mq = b.target("10.0.3.2:9234")
    lvl = b.level(mq, snap(mq, start), last_before(mq, end), 250.0)
    s.append(
        Series(
            "mqtt_connected_clients",
            _labels(namespace="hooli", instance=mq.name, job="mqtt"),
            mq,
            snap(mq, start),
            last_before(mq, end),
            lvl,
            "mqtt_clients",
            "hooli",
        )
    )

    # kube-state-metrics: namespace labels, including the namespace deleted at 01:30
    ksm = b.target("10.0.4.1:8080")
    for ns, customer in [*cluster.namespaces.items(), *((n, d[0]) for n, d in cluster.deleted.items())]:
        last = cluster.deleted[ns][1] if ns in cluster.deleted else end
        extra = {KSM_CUSTOMER_LABEL: customer} if customer else {}
        s.append(
            Series(
                "kube_namespace_labels",
                _labels(namespace=ns, instance=ksm.name, job="kube-state-metrics", **extra),
                ksm,
                snap(ksm, start),
                last_before(ksm, last),
                Level(knots=[(start, 1.0)]),
                None,
                ns,
                counts=False,
            )
        )
    _check_boundaries(cluster)
    return cluster


def _check_boundaries(cluster: Cluster) -> None:
    """A new counter's start and its first sample must fall in the same hour (see module docstring)."""
    for s in cluster.series:
        if isinstance(s.fn, Counter) and s.fn.offset == 0.0:
            if math.floor(s.fn.start / 3600) != math.floor(s.first / 3600):
                s.fn.start = math.floor(s.first / 3600) * 3600.0


def hour_windows(cluster: Cluster, day: datetime | None = None) -> list[tuple[datetime, datetime]]:
    """The demo's fully covered hourly windows."""
    day = (day or datetime(2025, 11, 20, tzinfo=UTC)).replace(hour=0, minute=0, second=0, microsecond=0)
    return [(day + timedelta(hours=i), day + timedelta(hours=i + 1)) for i in range(3)]


# ---------------------------------------------------------------------------------------------
# The scale cluster (benchmarks)


def scale_cluster(
    namespaces: int = 10_000,
    window_end: datetime | None = None,
    interval: float = 30.0,
    nodes: int = 50,
    seed: int = 11,
) -> Cluster:
    """``namespaces`` labeled namespaces, two per customer, one or two pods each.

    Every pod has the full cAdvisor layout (its containers, the pause container, the pod-level
    cgroup, network on both) and every namespace one PVC and ingress traffic from two controller
    replicas. One pod in ten starts or stops inside the window. History covers the hour before
    ``window_end`` (default 2025-11-20T02:00Z) plus five minutes on each side.
    """
    end_h = (window_end or datetime(2025, 11, 20, 2, tzinfo=UTC)).timestamp()
    start, end = end_h - 3600 - 300, end_h + 300
    rng = random.Random(seed)
    names = {f"tenant-{i:06d}-{'a' if i % 2 == 0 else 'b'}": f"cust_{i // 2:06d}" for i in range(namespaces)}
    cluster = Cluster(start=start, end=end, namespaces={**names, "kube-system": None})
    b = _Builder(cluster, rng, interval=interval)
    targets = [b.target(f"10.1.{i // 250}.{i % 250}:10250") for i in range(nodes)]
    ingress = [b.target(f"10.2.0.{i}:10254") for i in (1, 2)]
    s = cluster.series
    for i, ns in enumerate(names):
        node = targets[i % nodes]
        for p in range(1 + (i % 2)):
            first, last = start, end
            if rng.random() < 0.1:  # starts or stops inside the window
                if rng.random() < 0.5:
                    first = b.snap(node, start + 300 + rng.uniform(60, 3000))
                else:
                    last = node.time_at(node.index_at_or_before(start + 300 + rng.uniform(600, 3500)))
            containers = {"app": (rng.uniform(0.05, 2.0), rng.uniform(5e7, 2e9))}
            if p == 1:
                containers["sidecar"] = (rng.uniform(0.01, 0.2), rng.uniform(1e7, 1e8))
            s += b.pod(node, ns, f"app-{p}-{i:06d}", containers, first, last, net_bytes_per_s=rng.uniform(1e3, 1e6))
        s += b.volume([node], ns, f"data-{i:06d}", start, end, rng.uniform(1e8, 5e10))
        for r, tgt in enumerate(ingress):
            fn = b.cpu_counter(tgt, b.snap(tgt, start), end, rng.uniform(0.1, 20.0), offset=rng.uniform(0, 1e6))
            labels = _labels(
                exported_namespace=ns,
                ingress="web",
                status="200",
                method="GET",
                namespace="ingress-nginx",
                pod=f"ingress-nginx-controller-{r}",
                instance=tgt.name,
                job="ingress-nginx",
            )
            s.append(Series("nginx_ingress_controller_requests", labels, tgt, start, end, fn, "http", ns))
    return cluster
