"""Raw-sample fetches select the cross product of their units' label values: a unit of another
fetch may come back too, and must be counted once, from its own fetch."""

from __future__ import annotations

import re
from collections.abc import Sequence

import pytest

from cluster_exporter.metering import fold
from cluster_exporter.metering import plan as q
from cluster_exporter.metering.checks import MeterCheck
from cluster_exporter.metering.fold import _irregular_units
from cluster_exporter.metering.plan import Meter, Window

W = Window(start=3600.0, end=7200.0, max_gap=300.0, search=90.0, lookback=7800.0)
MATCHER = re.compile(r'(\w+)=~"((?:[^"\\]|\\.)*)"')


class SelectingPrometheus:
    """Answers raw-sample queries from series held in memory, selecting by the query's regex
    matchers the way a PromQL engine does (fully anchored; an absent label is "")."""

    def __init__(self, series: Sequence[tuple[dict[str, str], list[tuple[float, float]]]]) -> None:
        self.series = series
        self.queries: list[str] = []

    def _selected(self, expr: str) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
        self.queries.append(expr)
        matchers = [(label, re.sub(r"\\(.)", r"\1", value)) for label, value in MATCHER.findall(expr)]
        return [
            (labels, samples)
            for labels, samples in self.series
            if all(re.fullmatch(pattern, labels.get(label, "")) for label, pattern in matchers)
        ]

    async def stream_matrix(self, query: q.Query, sink: object) -> None:
        for labels, samples in self._selected(query.expr):
            sink.series(dict(labels), list(samples))  # type: ignore[attr-defined]

    async def stream_vector(self, query: q.Query, sink: object) -> None:
        self._selected(query.expr)


def _series(namespace: str, pod: str) -> tuple[dict[str, str], list[tuple[float, float]]]:
    labels = {"namespace": namespace, "pod": pod, "container": "c"}
    return labels, [(3600.0 + 30 * k, 1.0) for k in range(121)]  # 1 byte-second a second, all window


async def test_a_unit_selected_by_two_fetches_is_counted_once(monkeypatch: pytest.MonkeyPatch) -> None:
    meter = Meter("memory_gb_hours", "gauge", "m", unit=("namespace", "pod", "container"))
    keys = [
        (("namespace", ns), ("pod", pod), ("container", "c")) for ns, pod in (("a", "p2"), ("b", "p1"), ("b", "p2"))
    ]
    prometheus = SelectingPrometheus([_series("a", "p2"), _series("b", "p1"), _series("b", "p2")])
    monkeypatch.setattr(fold, "RAW_UNITS_PER_QUERY", 2)
    # the first fetch asks for (a, p2) and (b, p1): namespace=~"a|b", pod=~"p1|p2" selects (b, p2) too
    totals: dict[str, float] = {}

    def add(field: str, namespace: str, customer: str | None, amount: float) -> None:
        totals[namespace] = totals.get(namespace, 0.0) + amount

    check = MeterCheck(meter.name, meter.namespace_labels)
    await _irregular_units(prometheus, meter, dict(enumerate(keys)), W, check, 4096, {}, add)  # type: ignore[arg-type]
    assert len([e for e in prometheus.queries if e.endswith("]")]) == 2, "two fetches"
    assert totals == {"a": 3600.0, "b": 7200.0}, "each unit once: an hour at 1 byte each"
