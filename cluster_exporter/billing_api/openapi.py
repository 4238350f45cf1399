"""The OpenAPI description of the billing API (served at /openapi.json)."""

from __future__ import annotations

from typing import Any


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document."""
    return {"openapi": "3.1.0", "info": {"title": "cluster-exporter billing API", "version": "1"}, "paths": {}}
