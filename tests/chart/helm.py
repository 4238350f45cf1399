"""Helpers for the chart tests: find the tools, render a chart, read the rendered objects."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHARTS = ROOT / "charts"
EXPORTER_CHART = CHARTS / "cluster-exporter"
BILLING_CHART = CHARTS / "billing-api"
HELM = ROOT / ".tools" / "bin" / "helm"
RELEASE = "ce"
NAMESPACE = "billing"


def helm() -> str:
    """Path of the helm binary that ./scripts/install puts in .tools/bin; a clear failure without it."""
    if not HELM.is_file():
        pytest.fail(f"helm not found at {HELM.relative_to(ROOT)}: run ./scripts/install (it unpacks helm there)")
    return str(HELM)


def venv_tool(name: str) -> str:
    """A tool installed in the virtualenv next to this Python (kubernetes-validate, hadolint), or on PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.is_file():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found next to {sys.executable} or on PATH: run ./scripts/install")
    return found


def system_tool(name: str, package: str) -> str:
    """A system binary such as promtool, or a clear failure naming the Debian package."""
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found on PATH: install Debian's {package} package (./scripts/install does)")
    return found


def ci_values(chart: Path) -> list[Path]:
    """The chart's ci/*.yaml value files, sorted."""
    return sorted((chart / "ci").glob("*.yaml"))


def run(args: list[str], check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing its output; with check, fail the test showing stderr."""
    proc = subprocess.run(args, capture_output=True, text=True, input=stdin, check=False, cwd=ROOT)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}\n{proc.stdout[-3000:]}")
    return proc


def template_args(chart: Path, values: Path | None = None, sets: list[str] | None = None) -> list[str]:
    """`helm template` for one release of ``chart`` in the test namespace."""
    args = [helm(), "template", RELEASE, str(chart), "--namespace", NAMESPACE]
    if values is not None:
        args += ["--values", str(values)]
    for item in sets or []:
        args += ["--set", item]
    return args


def render_text(chart: Path, values: Path | None = None, sets: list[str] | None = None) -> str:
    """The chart's manifests as helm prints them."""
    return run(template_args(chart, values, sets)).stdout


def render(chart: Path, values: Path | None = None, sets: list[str] | None = None) -> list[dict[str, Any]]:
    """The chart's manifests as a list of objects."""
    return [doc for doc in yaml.safe_load_all(render_text(chart, values, sets)) if doc]


def objects_of(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The rendered objects of one kind."""
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The single rendered object of one kind."""
    found = objects_of(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def pod_templates(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(kind/name, pod template) of every workload."""
    out = []
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            out.append((f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]))
        elif doc["kind"] == "CronJob":
            out.append((f"CronJob/{doc['metadata']['name']}", doc["spec"]["jobTemplate"]["spec"]["template"]))
    return out


def values_of(chart: Path) -> dict[str, Any]:
    """The chart's default values."""
    return yaml.safe_load((chart / "values.yaml").read_text())


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def merged_values(chart: Path, values: Path | None) -> dict[str, Any]:
    """The chart's default values with a values file merged in, as helm merges them (maps deeply)."""
    merged = values_of(chart)
    if values is not None:
        merged = _deep_merge(merged, yaml.safe_load(values.read_text()) or {})
    return merged
