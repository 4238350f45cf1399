"""One JSON request to the Kubernetes API through a ``kubernetes`` ApiClient.

The client's configuration still does everything that is hard to get right (kubeconfig and
in-cluster auth, token refresh, TLS, proxies); only the generated API classes are skipped. In
the kubernetes 37 client each of their methods is a pydantic-validated function, and importing
``CoreV1Api`` alone costs about 21 MiB, a sixth of the exporter's memory limit, for the three
paths we call (namespaces, ConfigMaps, Leases).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote


def path(prefix: str, *segments: str) -> str:
    """``prefix`` followed by ``segments`` (names, resource kinds), each one percent-encoded."""
    return "/".join((prefix, *(quote(s, safe="") for s in segments)))


def request(
    api_client: Any,
    method: str,
    resource_path: str,
    *,
    timeout: float,
    query: Mapping[str, str | int] | None = None,
    body: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON object the API answered; ``ApiException`` for any status outside 2xx, urllib3
    errors and OSError when it cannot be reached, ValueError when the answer is not a JSON object."""
    from kubernetes.client.exceptions import ApiException

    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    serialized = api_client.param_serialize(
        method=method,
        resource_path=resource_path,
        query_params=list((query or {}).items()),
        header_params=headers,
        body=dict(body) if body is not None else None,
        auth_settings=["BearerToken"],
    )
    response = api_client.call_api(*serialized, _request_timeout=timeout)
    response.read()
    if not 200 <= response.status <= 299:
        raise ApiException.from_response(http_resp=response, body=None, data=None)
    answer = json.loads(response.data)
    if not isinstance(answer, dict):
        raise ValueError(f"{method} {resource_path}: the answer is not a JSON object")
    return answer
