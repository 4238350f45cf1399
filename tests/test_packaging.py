"""The package as users get it: `python -m build` makes an sdist and a wheel that pass `twine check`,
the wheel carries the package alone, and a base install (no extras) runs the exporter and fails
in one line naming the extra, never a traceback, where a command needs one.

The sdist and wheel are built once per session, isolated as a user's build is (setuptools comes
from the index). The fresh virtualenv gets the wheel with --no-deps, then the base dependencies
pinned to this environment's versions, from the machine's index (a few seconds, no compiling).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

from cluster_exporter import __version__
from cluster_exporter.cli import COMMAND_NEEDS, EXTRA_MODULES
from cluster_exporter.devtools.clusters import hour_windows
from cluster_exporter.devtools.prometheus_server import PrometheusServer
from cluster_exporter.devtools.synthetic_cluster import CUSTOMER_LABEL, Cluster

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
BILLING = "pip install 'cluster-exporter[billing]'"
POSTGRES = "postgresql://127.0.0.1:1/billing"  # never reached: the driver is missing first


def clean_env() -> dict[str, str]:
    """The environment without anything that would put the source tree on a child's path."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}


def run(args: list[str | Path], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run a command; its output captured, never checked."""
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sdist and the wheel, built from this checkout with `python -m build` (the wheel from the sdist)."""
    out = tmp_path_factory.mktemp("dist")
    proc = run([sys.executable, "-m", "build", "--outdir", out, ROOT], cwd=ROOT)
    if proc.returncode != 0:
        pytest.fail(f"python -m build exited {proc.returncode}:\n{proc.stderr[-3000:]}\n{proc.stdout[-3000:]}")
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


def wheel_names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def test_twine_check_passes(dist: dict[str, Path]) -> None:
    proc = run([sys.executable, "-m", "twine", "check", "--strict", dist["sdist"], dist["wheel"]], cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_wheel_carries_the_package_and_no_test_helpers_outside_devtools(dist: dict[str, Path]) -> None:
    names = wheel_names(dist["wheel"])
    info = f"cluster_exporter-{__version__}.dist-info/"
    assert dist["wheel"].name == f"cluster_exporter-{__version__}-py3-none-any.whl"
    assert all(n.startswith(("cluster_exporter/", info)) for n in names), [
        n for n in names if not n.startswith(("cluster_exporter/", info))
    ]
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    modules = {n for n in names if n.endswith(".py")}
    source = {p.relative_to(ROOT).as_posix() for p in (ROOT / "cluster_exporter").rglob("*.py")}
    assert modules == source, f"missing from the wheel: {source - modules}; extra: {modules - source}"
    # the test helper moved out of the billing API (which ships to production) into devtools
    assert "cluster_exporter/billing_api/local_postgres.py" not in names
    assert not [n for n in names if n.startswith("cluster_exporter/billing_api/") and "standin" in n]
    assert "cluster_exporter/devtools/demo.py" in names, "cluster-exporter demo runs from the wheel"


def test_the_wheel_metadata_names_the_extras_and_the_command(dist: dict[str, Path]) -> None:
    with zipfile.ZipFile(dist["wheel"]) as archive:
        info = f"cluster_exporter-{__version__}.dist-info/"
        metadata = archive.read(info + "METADATA").decode()
        entry_points = archive.read(info + "entry_points.txt").decode()
    assert "cluster-exporter = cluster_exporter.cli:main" in entry_points
    assert f"Version: {__version__}" in metadata
    assert "Provides-Extra: billing" in metadata
    for requirement in PYPROJECT["project"]["optional-dependencies"]["billing"]:
        name = re.split(r"[\[<>=!~ ;]", requirement, maxsplit=1)[0]
        assert re.search(rf"^Requires-Dist: {re.escape(name)}\b.*extra == \"billing\"", metadata, re.M), requirement
    assert "Description-Content-Type: text/markdown" in metadata


def test_the_sdist_holds_the_package_readme_and_pyproject_only(dist: dict[str, Path]) -> None:
    with tarfile.open(dist["sdist"]) as archive:
        names = [n.split("/", 1)[1] for n in archive.getnames() if "/" in n]
    top = {n.split("/", 1)[0] for n in names}
    assert {"cluster_exporter", "README.md", "pyproject.toml", "PKG-INFO"} <= top
    assert not top & {"tests", "charts", "bench", "docs", ".venv", ".tools", "scripts"}, top


def test_the_cli_names_every_import_of_the_extras() -> None:
    """EXTRA_MODULES (the one-line messages) covers the billing extra's requirements, and nothing else."""
    extras = PYPROJECT["project"]["optional-dependencies"]
    for module, extra in EXTRA_MODULES.items():
        names = [re.split(r"[\[<>=!~ ;]", r, maxsplit=1)[0] for r in extras[extra]]
        assert module in names, f"{module} is not in the {extra} extra: {names}"
    assert {m for needs in COMMAND_NEEDS.values() for m in needs} <= set(EXTRA_MODULES)


def base_requirements(wheel: Path) -> list[str]:
    """The wheel's base dependencies, pinned to the versions installed here where they are."""
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read(f"cluster_exporter-{__version__}.dist-info/METADATA").decode()
    pinned = []
    for line in re.findall(r"^Requires-Dist: (.*)$", metadata, re.M):
        if "extra ==" in line:
            continue
        name = re.split(r"[\[<>=!~ ;]", line, maxsplit=1)[0]
        try:
            pinned.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pinned.append(line)
    return pinned


@pytest.fixture(scope="session")
def base_install(dist: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel and its base dependencies, no extra: its bin directory."""
    venv = tmp_path_factory.mktemp("base-install") / "venv"
    proc = run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=venv.parent)
    assert proc.returncode == 0, proc.stderr
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-compile"]
    for args in ([*pip, "--no-deps", dist["wheel"]], [*pip, *base_requirements(dist["wheel"])]):
        proc = run(args, cwd=venv.parent)
        if proc.returncode != 0:
            pytest.fail(f"{' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    where = run([python, "-c", "import cluster_exporter; print(cluster_exporter.__file__)"], cwd=venv.parent)
    assert where.stdout.startswith(str(venv)), f"imported from {where.stdout}{where.stderr}"
    for module in EXTRA_MODULES:
        assert run([python, "-c", f"import {module}"], cwd=venv.parent).returncode == 1, f"{module} is installed"
    return venv / "bin"


@pytest.mark.parametrize(
    "args",
    [
        ["billing-api", "serve"],
        ["demo"],
        ["billing-api", "migrate", f"--database-url={POSTGRES}"],
        ["billing-api", "invoice", f"--database-url={POSTGRES}", "--customer=c", "--month=2025-11"],
    ],
    ids=["serve", "demo", "migrate-postgresql", "invoice-postgresql"],
)
def test_a_command_that_needs_the_extra_says_so_in_one_line(base_install: Path, args: list[str]) -> None:
    proc = run([base_install / "cluster-exporter", *args], cwd=base_install.parent, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cluster-exporter: error: ") and BILLING in lines[0], lines
    assert not proc.stdout


def test_the_billing_api_tools_run_on_sqlite_without_the_extra(base_install: Path) -> None:
    database = f"sqlite:///{base_install.parent / 'billing.db'}"
    proc = run([base_install / "cluster-exporter", "billing-api", "migrate", "--database-url", database], cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("schema up to date")


def test_the_base_install_meters_a_window_like_the_development_install(
    base_install: Path, prometheus: PrometheusServer, demo_kubeconfig: Path, cluster: Cluster
) -> None:
    _, end = hour_windows(cluster)[1]
    flags = [
        "report",
        "--dry-run",
        "--window-end",
        f"{end:%Y-%m-%dT%H:%M:%SZ}",
        "--prometheus-url",
        prometheus.url,
        "--kubeconfig",
        demo_kubeconfig,
        "--cluster-id",
        "k8s-demo-1",
        "--customer-label",
        CUSTOMER_LABEL,
    ]
    fresh = run([base_install / "cluster-exporter", *flags], cwd=base_install.parent, timeout=120)
    here = run([sys.executable, "-m", "cluster_exporter.cli", *flags], cwd=ROOT, timeout=120)
    assert fresh.returncode == here.returncode == 0, fresh.stderr + here.stderr
    assert fresh.stdout == here.stdout
    assert json.loads(fresh.stdout)["usage"], "the demo window has customers"
