"""Command line: parse, call one function, turn an ExporterError into one line and an exit code.

cluster-exporter report [--dry-run] --window-end T [--window 1h] [options]
cluster-exporter run [--once] [--as-of T] [--backfill-from T] [--state-dir D] [--dry-run] [options]
cluster-exporter doctor [--window-end T] [--as-of T] [--format table|json] [options]
cluster-exporter demo [--format table|json]
cluster-exporter config-reference
cluster-exporter billing-api serve | invoice | migrate [options]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import signal
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import __version__
from .allocator import fix_mmap_threshold
from .errors import ExporterError, UsageError
from .settings import Settings, load_settings

# flag -> dotted settings path; every flag has an environment twin (see settings.env_names)
COMMON_FLAGS: dict[str, tuple[str, str]] = {
    "--cluster-id": ("cluster_id", "this cluster's id at the billing API"),
    "--prometheus-url": ("prometheus.url", "Prometheus base URL"),
    "--kubeconfig": ("kubernetes.kubeconfig", "kubeconfig file (default: in-cluster config)"),
    "--context": ("kubernetes.context", "kubeconfig context"),
    "--customer-label": ("kubernetes.customer_label", "namespace label holding the customer id"),
    "--window": ("metering.window", "window length, whole hours (default 1h)"),
    "--billing-api-url": ("billing_api.url", "billing API base URL"),
    "--billing-api-token": ("billing_api.token", "billing API bearer token"),
    "--billing-api-token-file": ("billing_api.token_file", "file holding the billing API token"),
    "--http-source": ("metering.http_source", "nginx, istio or none"),
}


# What only an extra installs (pyproject.toml's optional-dependencies): import name -> extra.
EXTRA_MODULES: dict[str, str] = {"stripe": "billing", "psycopg": "billing"}
# Commands checked for their extra before they start (the demo would otherwise fail only after
# metering its windows, when it starts the billing API): command -> import names.
COMMAND_NEEDS: dict[str, tuple[str, ...]] = {"billing-api serve": ("stripe",), "demo": ("stripe",)}


class MissingDependencyError(UsageError):
    """A dependency of this command is not installed; the message names what to install."""

    def __init__(self, module: str, command: str) -> None:
        extra = EXTRA_MODULES.get(module)
        if extra is not None:
            fix = f"pip install 'cluster-exporter[{extra}]'"
        else:  # a base dependency: the installation is incomplete (e.g. pip install --no-deps)
            fix = "reinstall it with its dependencies: pip install cluster-exporter"
        super().__init__(f"{command} needs {module}, which is not installed: {fix}")


def _check_installed(command: str) -> None:
    for module in COMMAND_NEEDS.get(command, ()):
        if importlib.util.find_spec(module) is None:
            raise MissingDependencyError(module, command)


def _command_name(args: argparse.Namespace) -> str:
    return " ".join(part for part in (args.command, getattr(args, "billing_command", None)) if part)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML config file (also CONFIG_FILE)")
    for flag, (path, help_text) in COMMON_FLAGS.items():
        parser.add_argument(flag, dest="set_" + path.replace(".", "__"), help=f"{help_text} (env {_env(path)})")


def _env(path: str) -> str:
    from .settings import env_names

    return " or ".join(env_names(path))


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in vars(args).items():
        if not key.startswith("set_") or value is None:
            continue
        parts = key[4:].split("__")
        target = values
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = value
    return values


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for the docs generator and tests)."""
    parser = _Parser(prog="cluster-exporter", description="Billing-grade per-customer usage metering for Kubernetes.")
    parser.add_argument("--version", action="version", version=f"cluster-exporter {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    report = sub.add_parser("report", help="measure one window and print or send its report")
    _add_common(report)
    report.add_argument("--window-end", required=True, help="end of the window, RFC 3339 on a whole hour")
    report.add_argument("--dry-run", action="store_true", help="print the report instead of sending it")
    report.add_argument("--format", choices=("json", "table"), default="json", help="output of --dry-run")

    doctor = sub.add_parser("doctor", help="what the data of one window holds, per meter, and what to set")
    _add_common(doctor)
    doctor.add_argument("--window-end", help="end of the window (default: the newest closed and settled one)")
    doctor.add_argument("--as-of", metavar="TIME", help="pretend the clock reads this time (RFC 3339)")
    doctor.add_argument("--format", choices=("json", "table"), default="table")

    demo = sub.add_parser("demo", help="the built-in synthetic cluster, a local Prometheus, its reports")
    demo.add_argument("--format", choices=("json", "table"), default="table")
    demo.add_argument("--workdir", type=Path, default=None, help="where to keep the demo's data (default: a temp dir)")

    run = sub.add_parser("run", help="deliver every closed window, forever or --once (see docs/delivery.md)")
    _add_common(run)
    run.add_argument("--once", action="store_true", help="one catch-up cycle, then exit (0: all delivered)")
    run.add_argument("--as-of", metavar="TIME", help="pretend the clock reads this time at start (RFC 3339)")
    run.add_argument("--dry-run", action="store_true", help="print the due windows' reports; no state, no Lease")
    for flag, (path, metavar, help_text) in RUN_FLAGS.items():
        run.add_argument(
            flag, dest="set_" + path.replace(".", "__"), metavar=metavar, help=f"{help_text} (env {_env(path)})"
        )
    run.add_argument(
        "--leader-election",
        dest="set_delivery__leader_election",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"report only while holding the Lease (env {_env('delivery.leader_election')}; default on)",
    )

    sub.add_parser("config-reference", help="print the configuration reference (Markdown)")

    from .billing_api.cli import add_arguments as add_billing_api_arguments

    add_billing_api_arguments(sub.add_parser("billing-api", help="the billing API: receive, price and bill usage"))
    return parser


# run's flags that are settings: flag -> (dotted settings path, metavar, help)
RUN_FLAGS: dict[str, tuple[str, str, str]] = {
    "--backfill-from": ("delivery.backfill_from", "TIME", "on a first start, report from this window start on"),
    "--state-dir": ("delivery.state_dir", "DIR", "keep the state in this directory (else a ConfigMap)"),
    "--state-backend": ("delivery.state_backend", "BACKEND", "auto, directory or configmap"),
    "--namespace": ("delivery.namespace", "NS", "namespace of the Lease and state ConfigMap (default: the pod's)"),
    "--max-age": ("delivery.max_age", "DURATION", "oldest window catch-up builds (default 840h = 35 days)"),
    "--retry-budget": ("delivery.retry_budget", "DURATION", "how long a cycle retries a delivery (default 2m)"),
    "--metrics-port": ("delivery.metrics_port", "PORT", "port of /metrics, /healthz, /readyz (default 9464)"),
}


def _run_report(args: argparse.Namespace, settings: Settings) -> int:
    from .commands import run_report
    from .metering.window import parse_time

    window_end = parse_time(args.window_end)
    report = asyncio.run(run_report(settings, window_end, datetime.now(UTC), dry_run=args.dry_run))
    if args.dry_run and args.format == "json":
        for chunk in report.json_chunks():  # the bytes that would be sent, written piece by piece
            sys.stdout.write(chunk)
        sys.stdout.write("\n")
    elif args.dry_run:
        print(render(report.model_dump(mode="json"), args.format))
    else:
        print(
            f"sent report {report.report_id} for {report.window_start:%Y-%m-%dT%H:%M:%SZ}: "
            f"{len(report.usage)} customers",
            file=sys.stderr,
        )
    return 0


def render(report: dict[str, Any], fmt: str) -> str:
    """A report as JSON, or as an aligned table for people."""
    if fmt == "json":
        return json.dumps(report, indent=None, separators=(",", ":"))
    rows = report["usage"]
    meters = [k for k in (rows[0] if rows else {}) if k not in ("customer_id", "namespaces")]
    header = ["customer", "namespaces", *meters]
    lines = [header] + [
        [
            r["customer_id"],
            ",".join(r["namespaces"]),
            *(f"{r[m]:.4f}" if isinstance(r[m], float) else str(r[m]) for m in meters),
        ]
        for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    title = f"{report['cluster_id']}  {report['window_start']} .. {report['window_end']}  ({report['report_id']})"
    body = "\n".join(
        "  ".join(cell.rjust(widths[i]) if i > 1 else cell.ljust(widths[i]) for i, cell in enumerate(line))
        for line in lines
    )
    return f"{title}\n{body}"


def _run_run(args: argparse.Namespace, settings: Settings) -> int:
    from .delivery.service import RunOptions, configure_logging, run_service
    from .metering.window import parse_time

    configure_logging()
    options = RunOptions(once=args.once, as_of=parse_time(args.as_of) if args.as_of else None, dry_run=args.dry_run)
    return asyncio.run(run_service(settings, options))


def _run_doctor(args: argparse.Namespace, settings: Settings) -> int:
    from .delivery.runner import newest_due_end
    from .doctor import render_table, run_doctor, to_json
    from .metering.window import parse_time

    now = parse_time(args.as_of) if args.as_of else datetime.now(UTC)
    m = settings.metering
    end = parse_time(args.window_end) if args.window_end else newest_due_end(now, m.window, m.effective_settle_delay)
    diagnosis = asyncio.run(run_doctor(settings, end, now))
    print(json.dumps(to_json(diagnosis), indent=2) if args.format == "json" else render_table(diagnosis))
    failure = diagnosis.failure()
    if failure is not None:
        raise failure  # after everything found: the one-line reason and the exit code, as report gives them
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
    "report": _run_report,
    "run": _run_run,
    "doctor": _run_doctor,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: returns the process exit code."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM unwinds like Ctrl-C
    fix_mmap_threshold()
    command = "cluster-exporter"
    try:
        args = build_parser().parse_args(argv)
        command = _command_name(args)
        _check_installed(command)
        if args.command == "config-reference":
            from .config_reference import markdown

            print(markdown())
            return 0
        if args.command == "billing-api":
            from .billing_api.cli import run as run_billing_api

            return run_billing_api(args)
        if args.command == "demo":
            from .devtools.demo import run_demo

            return run_demo(args.format, args.workdir)
        settings = load_settings(_overrides(args), config_file=args.config)
        return COMMANDS[args.command](args, settings)
    except ModuleNotFoundError as exc:
        module = (exc.name or "").partition(".")[0]
        if not module or module == __package__:
            raise  # one of our own modules: a bug, worth its traceback
        error = MissingDependencyError(module, command)
        print(f"cluster-exporter: error: {error}", file=sys.stderr)
        return error.exit_code
    except ExporterError as exc:
        print(f"cluster-exporter: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("cluster-exporter: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
