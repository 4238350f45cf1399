"""Kubernetes API -> {namespace: customer_id}: who owns which namespace right now.

A namespace belongs to the customer named by its ``customer_label`` value; unlabeled namespaces
are never listed (the API filters with a label selector, so system namespaces never reach us).
The list is paged with limit/continue, so thousands of namespaces cost a few small requests.
The ``kubernetes`` client is synchronous; calls run in a worker thread.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...errors import KubernetesError, clip
from ...settings import KubernetesSettings
from . import api as kube_api

_CUSTOMER_ID = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$")


def make_api_client(settings: KubernetesSettings) -> Any:
    """A kubernetes ApiClient from the kubeconfig, or the in-cluster config inside a pod."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    configuration = client.Configuration()
    try:
        if settings.kubeconfig is not None:
            path = Path(settings.kubeconfig).expanduser()
            if not path.is_file():
                raise KubernetesError(f"kubeconfig {path} does not exist")
            config.load_kube_config(config_file=str(path), context=settings.context, client_configuration=configuration)
        else:
            try:
                config.load_incluster_config(client_configuration=configuration)
            except ConfigException as exc:
                raise KubernetesError(
                    "no kubeconfig given and not running in a pod (set --kubeconfig or KUBECONFIG)"
                ) from exc
    except ConfigException as exc:
        raise KubernetesError(f"bad kubeconfig: {clip(str(exc))}") from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise KubernetesError(
            f"bad kubeconfig {settings.kubeconfig}: {exc.__class__.__name__}: {clip(str(exc))}"
        ) from exc
    configuration.retries = False  # kube_api.request is the one retry loop (urllib3's would multiply it)
    return client.ApiClient(configuration)


def list_customer_namespaces(api_client: Any, settings: KubernetesSettings) -> dict[str, str]:
    """All namespaces carrying the customer label, as {namespace: customer id} (blocking).

    Raises ``KubernetesError`` (the typed subclasses of ``kube_api.request``: refused, unavailable
    after its retries) or a plain one when the answer is not a namespace list."""
    owners: dict[str, str] = {}
    ids: dict[str, str] = {}  # one string per customer id, however many namespaces it owns
    token: str | None = None
    pages = 0
    while True:
        query: dict[str, str | int] = {"labelSelector": settings.customer_label, "limit": settings.page_size}
        if token:
            query["continue"] = token
        # Raw JSON, not V1Namespace objects: 100,000 of those would cost seconds and megabytes.
        page = kube_api.request(
            api_client,
            "GET",
            "/api/v1/namespaces",
            query=query,
            timeout=settings.timeout.total_seconds(),
            what="listing namespaces",
        )
        if not isinstance(page.get("items", []), list):  # (kube_api.request answers a JSON object)
            raise KubernetesError("namespace list answer is not a NamespaceList")
        pages += 1
        for item in page.get("items") or []:
            metadata = item.get("metadata") if isinstance(item, dict) else None
            if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str) or not metadata["name"]:
                raise KubernetesError("namespace list holds an item without a name")
            name: str = metadata["name"]
            labels = metadata.get("labels") or {}
            customer = labels.get(settings.customer_label) if isinstance(labels, dict) else None
            if customer is None:
                continue  # the selector should have filtered it; never bill what we did not ask for
            if not isinstance(customer, str) or not _CUSTOMER_ID.match(customer):
                raise KubernetesError(f"namespace {name}: customer label value {customer!r} is not a valid id")
            owners[name] = ids.setdefault(customer, customer)
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return owners
        if pages > 100_000:
            raise KubernetesError("namespace list did not end after 100000 pages")


async def discover_customers(
    settings: KubernetesSettings, api_client_factory: Callable[[KubernetesSettings], Any] = make_api_client
) -> dict[str, str]:
    """{namespace: customer id} for every labeled namespace (runs the client in a thread)."""

    def work() -> dict[str, str]:
        api_client = api_client_factory(settings)
        try:
            return list_customer_namespaces(api_client, settings)
        finally:
            close = getattr(api_client, "close", None)
            if close is not None:
                close()

    return await asyncio.to_thread(work)
