"""The image, built with podman (./scripts/image, once per session) and run the way the charts run it.

Every container runs as the image's user with a read-only root filesystem, no capabilities and
no-new-privileges, on the host's network so that it reaches the test Prometheus and the Kubernetes
API stand-in on loopback. The first build on a machine also makes the Debian base image (about
a minute); later sessions reuse it and the cached layers (seconds).

Skipped, saying why, only where podman cannot run at all (not installed, or `podman info` fails).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from cluster_exporter import __version__
from cluster_exporter.devtools.clusters import hour_windows
from cluster_exporter.devtools.demo import CUSTOM_METERS
from cluster_exporter.devtools.prometheus_server import PrometheusServer, free_port
from cluster_exporter.devtools.synthetic_cluster import CUSTOMER_LABEL, Cluster

from .helm import ROOT

TAG = f"localhost/cluster-exporter:{__version__}"
CONF = ROOT / ".tools" / "containers" / "containers.conf"  # written by scripts/image
UID = 65532
# How the charts run the pod (securityContext), plus the host's network for the loopback servers.
CONFINED = ["--read-only", "--cap-drop=ALL", "--security-opt=no-new-privileges", "--network=host"]


def podman_env() -> dict[str, str]:
    env = dict(os.environ)
    if CONF.is_file():
        env.setdefault("CONTAINERS_CONF", str(CONF))
    return env


def podman(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run podman with the private configuration scripts/image wrote; output captured, not checked."""
    return subprocess.run(
        ["podman", *map(str, args)], env=podman_env(), capture_output=True, text=True, timeout=timeout
    )


def run_image(
    *args: str | Path, mounts: tuple[str, ...] = (), entrypoint: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the image once, confined, with ``args`` as its command."""
    options = [*CONFINED, *(f"--volume={m}" for m in mounts)]
    if entrypoint:
        options.append(f"--entrypoint={entrypoint}")
    return podman("run", "--rm", *options, TAG, *args)


@pytest.fixture(scope="session")
def image() -> str:
    """The image built from this checkout by ./scripts/image (base and layers cached between sessions)."""
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (./scripts/install installs podman, runc and debootstrap)")
    info = podman("info", timeout=60)
    if info.returncode != 0:
        reason = (info.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"podman cannot run here: {reason}")
    started = time.monotonic()
    proc = subprocess.run([str(ROOT / "scripts" / "image"), TAG], cwd=ROOT, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        pytest.fail(f"./scripts/image exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    print(f"\nimage: {proc.stdout.strip()} in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return TAG


def test_help_and_the_configuration_reference(image: str) -> None:
    help_ = run_image("--help")
    assert help_.returncode == 0, help_.stderr
    assert help_.stdout.startswith("usage: cluster-exporter")
    reference = run_image("config-reference")
    assert reference.returncode == 0, reference.stderr
    here = subprocess.run(
        [sys.executable, "-m", "cluster_exporter.cli", "config-reference"], cwd=ROOT, capture_output=True, text=True
    )
    assert reference.stdout == here.stdout


PROBE = """
import importlib.util, json, os, sys
import cluster_exporter.cli, cluster_exporter.billing_api.server, cluster_exporter.delivery.service
import cluster_exporter.sources.kube.discovery, kubernetes.client, stripe, psycopg
try:
    open("/written-at-run-time", "w")
    root = "writable"
except OSError as exc:
    root = exc.strerror
uncompiled = sorted(
    m.__file__ for m in list(sys.modules.values())
    if getattr(m, "__file__", None) and m.__file__.endswith(".py")
    and not os.path.exists(importlib.util.cache_from_source(m.__file__))
)
site = os.path.dirname(os.path.dirname(kubernetes.__file__))
test_bytecode = [os.path.join(d, f) for d, _, files in os.walk(site) for f in files
                 if f.endswith(".pyc") and ({"test", "tests"} & set(d.split(os.sep)))]
print(json.dumps({"uid": os.getuid(), "gid": os.getgid(), "root": root, "uncompiled": uncompiled,
                  "pip": importlib.util.find_spec("pip") is not None, "prefix": sys.prefix,
                  "test_bytecode": test_bytecode}))
"""


def test_runs_as_65532_on_a_read_only_root_with_its_bytecode_compiled_and_no_pip_in_it(image: str) -> None:
    proc = run_image("-c", PROBE, entrypoint="/opt/cluster-exporter/bin/python")
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    assert (found["uid"], found["gid"]) == (UID, UID)
    assert found["root"] == "Read-only file system"
    assert found["prefix"] == "/opt/cluster-exporter"
    assert not found["uncompiled"], "compiled at each start (the root is read-only): " + ", ".join(
        found["uncompiled"][:10]
    )
    assert not found["pip"], "the runtime has no pip"
    assert not found["test_bytecode"], "the dependencies' tests are not compiled: " + ", ".join(
        found["test_bytecode"][:10]
    )


def demo_config(path: Path) -> Path:
    """A TOML config with the demo's custom meters (json.dumps writes valid TOML strings)."""
    lines = []
    for meter in CUSTOM_METERS:
        lines.append("[[metering.custom_meters]]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in meter.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_report_dry_run_gives_the_same_json_as_the_installed_package(
    image: str, prometheus: PrometheusServer, demo_kubeconfig: Path, cluster: Cluster, tmp_path: Path
) -> None:
    config = demo_config(tmp_path / "config.toml")
    _, end = hour_windows(cluster)[1]

    def report_flags(kube: str, conf: str) -> list[str]:
        return [
            "report",
            "--dry-run",
            f"--window-end={end:%Y-%m-%dT%H:%M:%SZ}",
            f"--prometheus-url={prometheus.url}",
            f"--kubeconfig={kube}",
            f"--config={conf}",
            "--cluster-id=k8s-demo-1",
            f"--customer-label={CUSTOMER_LABEL}",
        ]

    inside = run_image(
        *report_flags("/etc/cluster-exporter/kubeconfig", "/etc/cluster-exporter/config.toml"),
        mounts=(
            f"{demo_kubeconfig}:/etc/cluster-exporter/kubeconfig:ro",
            f"{config}:/etc/cluster-exporter/config.toml:ro",
        ),
    )
    here = subprocess.run(
        [sys.executable, "-m", "cluster_exporter.cli", *report_flags(str(demo_kubeconfig), str(config))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert inside.returncode == here.returncode == 0, inside.stderr + here.stderr
    assert inside.stdout == here.stdout
    report = json.loads(inside.stdout)
    assert {u["customer_id"] for u in report["usage"]} and all("pg_commits" in u for u in report["usage"])


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_billing_api_serve_answers_healthz_and_stops_on_sigterm(image: str) -> None:
    port = free_port()
    name = f"cluster-exporter-test-billing-{os.getpid()}"
    started = podman(
        "run",
        "--detach",
        f"--name={name}",
        *CONFINED,
        TAG,
        "billing-api",
        "serve",
        "--host=127.0.0.1",
        f"--port={port}",
        "--database-url=sqlite:////tmp/billing.db",  # /tmp: the emptyDir of the chart, a tmpfs here
    )
    assert started.returncode == 0, started.stderr
    try:
        deadline = time.monotonic() + 30
        answers: dict[str, tuple[int, str]] = {}
        while time.monotonic() < deadline:
            try:
                answers = {path: get(f"http://127.0.0.1:{port}{path}") for path in ("/healthz", "/readyz")}
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
        assert answers, "billing-api serve did not answer within 30 s:\n" + podman("logs", name).stderr[-3000:]
        assert answers["/healthz"] == (200, '{"status": "ok"}')
        assert answers["/readyz"][0] == 200, answers["/readyz"]
        stopped = podman("stop", "--time=10", name)
        assert stopped.returncode == 0, stopped.stderr
        exit_code = podman("inspect", "--format={{.State.ExitCode}}", name).stdout.strip()
        logs = podman("logs", name)
        assert exit_code == "0", logs.stderr[-3000:]
        assert "Traceback" not in logs.stderr + logs.stdout
    finally:
        podman("rm", "--force", name)
