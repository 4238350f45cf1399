"""The Dockerfile: hadolint clean at its warning level, and built the way the chart expects.

These checks read the Dockerfile (multi-stage, wheels built in the first stage, a slim Python 3.11
base by default, no pip in the runtime virtualenv, the chart's uid, exec-form entrypoint, no
HEALTHCHECK); test_image_run.py builds the image with podman and runs it.
"""

from __future__ import annotations

import json
import re
import tomllib

import yaml

from .helm import EXPORTER_CHART, ROOT, run, values_of, venv_tool

DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    """The instructions of each build stage (the global ARGs before the first FROM are left out)."""
    result: list[list[tuple[str, str]]] = []
    for word, rest in instructions():
        if word == "FROM":
            result.append([])
        if result:
            result[-1].append((word, rest))
    return result


def test_hadolint_clean_at_warning_level() -> None:
    proc = run([venv_tool("hadolint"), "--failure-threshold", "warning", str(DOCKERFILE)], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_inline_hadolint_ignores_give_a_reason() -> None:
    lines = DOCKERFILE.read_text().splitlines()
    for i, line in enumerate(lines):
        if "hadolint ignore=" in line:
            reason = line.split("hadolint ignore=", 1)[1].partition(" ")[2].strip(" -:")
            above = lines[i - 1].strip() if i else ""
            assert reason or (above.startswith("#") and "hadolint" not in above), f"line {i + 1}: ignore without reason"


def test_multi_stage_slim_python_311_with_wheels_built_first() -> None:
    args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", DOCKERFILE.read_text(), re.M))
    build, final = stages()
    base = {word: rest for word, rest in build}["FROM"].split()[0]
    assert final[0] == ("FROM", base), "both stages must use the same base, so the virtualenv's python exists"
    image = base
    for name, value in args.items():
        image = image.replace("${" + name + "}", value)
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?(@sha256:[0-9a-f]{64})?", image), image
    build_runs = " ".join(rest for word, rest in build if word == "RUN")
    assert "pip wheel" in build_runs and "--no-index" in build_runs, "wheels first, then an offline install"
    assert "venv --without-pip /opt/cluster-exporter" in build_runs, "the runtime virtualenv carries no pip"
    assert not [rest for word, rest in final if word == "RUN"], "the final stage runs nothing (no shell needed)"
    assert [rest for word, rest in final if word == "COPY"] == [
        "--from=build /opt/cluster-exporter /opt/cluster-exporter"
    ]


def test_installs_the_billing_extra_so_one_image_serves_both() -> None:
    build_runs = " ".join(rest for word, rest in stages()[0] if word == "RUN")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "billing" in extras and '["optional-dependencies"]["billing"]' in build_runs


def test_pip_configuration_is_mounted_not_copied() -> None:
    """The host's index and CA bundle reach pip through a mounted file (scripts/image), never a layer."""
    build = stages()[0]
    assert ("ARG", "PIP_CONFIG_FILE") in build
    copied = " ".join(rest for word, rest in instructions() if word in ("COPY", "ADD"))
    assert "pip.conf" not in copied and ".pem" not in copied and ".crt" not in copied


def test_runs_as_the_charts_non_root_uid() -> None:
    final = stages()[-1]
    (user,) = [rest for word, rest in final if word == "USER"]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0, "USER must be a numeric non-root uid (runAsNonRoot checks numbers)"
    values = values_of(EXPORTER_CHART)
    assert int(uid) == values["podSecurityContext"]["runAsUser"] == values["securityContext"]["runAsUser"]
    assert int(gid) == values["podSecurityContext"]["runAsGroup"]
    billing = yaml.safe_load((ROOT / "charts" / "billing-api" / "values.yaml").read_text())
    assert int(uid) == billing["podSecurityContext"]["runAsUser"]


def test_exec_form_entrypoint_and_no_healthcheck() -> None:
    final = dict((word, rest) for word, rest in stages()[-1])
    assert "HEALTHCHECK" not in {word for word, _ in instructions()}
    entrypoint = json.loads(final["ENTRYPOINT"])
    assert entrypoint == ["/opt/cluster-exporter/bin/cluster-exporter"]
    assert json.loads(final["CMD"]) == ["run"]
    assert final["EXPOSE"] == str(values_of(EXPORTER_CHART)["server"]["port"])


def test_dockerignore_sends_only_the_package() -> None:
    patterns = [
        ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln.strip() and not ln.startswith("#")
    ]
    assert patterns[0] == "*", "start from nothing and allow what the build copies"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    copied = set()
    for word, rest in stages()[0]:
        if word == "COPY" and not rest.startswith("--from"):
            copied.update(rest.split()[:-1])
    assert copied <= allowed, f"COPY of files .dockerignore leaves out: {copied - allowed}"
    for path in copied:
        assert (ROOT / path).exists(), f"the Dockerfile copies {path}, which does not exist"
