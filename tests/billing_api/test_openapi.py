"""The OpenAPI document against the server: every route described, and a schemathesis fuzz run.

The fuzz run sends what schemathesis derives from the document, valid and invalid alike (wrong
types, missing fields, out-of-range numbers, odd strings in paths, queries and headers, missing
or wrong tokens, unsupported methods) to a live server in its own process, and checks every
answer: never a 5xx, a status the document lists for that operation, the documented content type
and body schema, 401s with their WWW-Authenticate header, invalid requests refused with a 4xx.
Bounded in examples per operation and with no shrinking deadline, it takes a few seconds.
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from prometheus_client import CollectorRegistry
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from cluster_exporter.billing_api.app import ApiContext, build_app
from cluster_exporter.billing_api.metrics import BillingApiMetrics
from cluster_exporter.billing_api.openapi import openapi_document
from cluster_exporter.billing_api.pricing import load_pricing
from cluster_exporter.billing_api.settings import Credentials

from .conftest import ADMIN, TOKENS, Server
from .process import ServerProcess

EAST = "k8s-us-east-1"
SCHEMA = schemathesis.openapi.from_dict(openapi_document())
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,
    unsupported_method,
]


async def test_served_as_it_is_written(server: Server) -> None:
    status, document = await server.request("GET", "/openapi.json")
    assert (status, document) == (200, openapi_document())


def test_every_route_is_described_and_nothing_else() -> None:
    metrics = BillingApiMetrics(CollectorRegistry())
    ctx = ApiContext(None, load_pricing(None), Credentials.build({}, None), metrics, None, 1024)  # type: ignore[arg-type]
    served = {
        (route.resource.canonical, route.method.lower())
        for route in build_app(ctx).router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    described = {
        (path, method)
        for path, item in openapi_document()["paths"].items()
        for method in item
        if method != "parameters"
    }
    assert served == described


@pytest.fixture(scope="module")
def live_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A billing API in its own process, its database a fresh SQLite file; the example report's day allowed."""
    database = Path(tmp_path_factory.mktemp("fuzz")) / "billing.db"
    server = ServerProcess(f"sqlite:///{database}", "--max-window-age", "876000h")
    yield server.url
    assert server.terminate() == 0, server.log[-5:]


@SCHEMA.parametrize()
@settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
)
def test_fuzz_no_5xx_and_every_answer_documented(case: schemathesis.Case, live_url: str) -> None:
    token = TOKENS[EAST] if case.path == "/api/usage/report" else ADMIN
    case.call_and_validate(base_url=live_url, headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)


def test_the_fuzz_run_reached_the_server(live_url: str) -> None:
    """A guard against a vacuous run: the reports the fuzzer sent were answered, with many statuses."""
    text = urllib.request.urlopen(live_url + "/metrics", timeout=10).read().decode()
    answered = {
        match.group(1): float(match.group(2))
        for match in re.finditer(r'report_requests_total\{status="(\d+)"\} (\S+)', text)
    }
    assert sum(answered.values()) >= 100 and {"201", "400", "401", "422"} <= set(answered), answered
    assert not any(status.startswith("5") for status in answered), answered
