"""The per-window source checks: a meter whose series cannot be attributed, a broken pipeline."""

from __future__ import annotations

from collections import Counter

import pytest

from cluster_exporter.errors import LayoutError
from cluster_exporter.metering.checks import MeterCheck, attribution_problem, check_pipelines

NGINX = "nginx_ingress_controller_requests"
NGINX_LABELS = ["controller_class", "controller_namespace", "controller_pod", "ingress", "method", "namespace"]


def _check(series: int, unattributed: int, attributed_amount: float, unattributed_amount: float) -> MeterCheck:
    return MeterCheck(
        "http_requests",
        ("exported_namespace",),
        series=series,
        unattributed_series=unattributed,
        attributed_amount=attributed_amount,
        unattributed_amount=unattributed_amount,
        labels_found=Counter({name: unattributed for name in NGINX_LABELS}),
    )


@pytest.mark.parametrize(
    ("check", "problem"),
    [
        # ingress-nginx scraped with honorLabels: the Ingress' namespace is in `namespace`
        (
            _check(412, 412, 0.0, 170_000.0),
            "http_requests: 412 nginx_ingress_controller_requests series, none with label exported_namespace; "
            'they carry namespace, controller_namespace (set metering.nginx_namespace_label = "namespace")',
        ),
        # most usage attributed, the default backend's requests not: fine (and counted in the metric)
        (_check(412, 12, 160_000.0, 10_000.0), None),
        # most usage unattributed
        (
            _check(412, 400, 10_000.0, 90_000.0),
            "http_requests: 412 nginx_ingress_controller_requests series, only 10.0% of the usage with label "
            "exported_namespace; 400 of them carry namespace, controller_namespace "
            '(set metering.nginx_namespace_label = "namespace")',
        ),
        # series but no usage at all: judged by the share of series
        (
            _check(10, 10, 0.0, 0.0),
            "http_requests: 10 nginx_ingress_controller_requests series, none with label exported_namespace; "
            'they carry namespace, controller_namespace (set metering.nginx_namespace_label = "namespace")',
        ),
        (_check(0, 0, 0.0, 0.0), None),
        (_check(5, 0, 1.0, 0.0), None),
    ],
)
def test_attribution_problem_names_the_meter_the_label_and_the_setting(check: MeterCheck, problem: str | None) -> None:
    assert attribution_problem(check, NGINX, 0.5, "metering.nginx_namespace_label") == problem


def test_a_meter_without_a_namespace_setting_names_the_labels_found() -> None:
    check = MeterCheck("pg_commits", ("namespace",), series=3, unattributed_series=3, unattributed_amount=9.0)
    check.labels_found.update({"datname": 3, "instance": 3, "job": 3})
    assert attribution_problem(check, "pg_stat_database_xact_commit", 0.5, None) == (
        "pg_commits: 3 pg_stat_database_xact_commit series, none with label namespace; they carry datname, "
        "instance, job"
    )


def test_cpu_without_memory_in_a_labeled_namespace_is_a_broken_pipeline() -> None:
    live = {"acme": "cust_a", "globex": "cust_g", "idle": "cust_i"}
    amounts = {
        "cpu_hours": {"acme": 10.0, "globex": 5.0, "kube-system": 3.0},
        "memory_gb_hours": {"acme": 100.0},
    }
    with pytest.raises(LayoutError, match=r"1 labeled namespace\(s\) used CPU .* \(e\.g\. globex\)"):
        check_pipelines(amounts, live)
    check_pipelines({**amounts, "memory_gb_hours": {"acme": 1.0, "globex": 2.0}}, live)  # kube-system is not billed


def test_the_scrape_interval_is_the_median_spacing_and_memory_stays_bounded() -> None:
    check = MeterCheck("cpu_hours", ("namespace",))
    assert check.scrape_interval is None
    for spacing in [15.0] * 5000 + [30.0] * 10:
        check.saw_spacing(spacing)
    check.saw_spacing(105.0)
    assert check.scrape_interval == 15.0 and len(check.spacings) == 4096 and check.longest_gap == 105.0
