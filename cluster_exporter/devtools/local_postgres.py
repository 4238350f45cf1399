"""A throwaway PostgreSQL 15 server for the tests and the benchmark: temp dir, free loopback port.

A test helper, so it lives in devtools and not in billing_api (the receiving service never starts
its own database).

``initdb`` refuses to run as root, so when we are root the server's processes run as the
``postgres`` user (the Debian package creates it) and the data directory is handed to it. The
unix socket lives in the temp dir too, so nothing outside it is touched.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg

from .prometheus_server import DevServerError, free_port

BINDIR_CANDIDATES = ("/usr/lib/postgresql/15/bin",)


class LocalPostgresError(DevServerError):
    """The local PostgreSQL server could not be prepared or started."""


def postgres_bindir() -> Path:
    """Directory of PostgreSQL 15's initdb/postgres, or a clear error naming the package."""
    for candidate in (os.environ.get("BILLING_TEST_PG_BINDIR"), *BINDIR_CANDIDATES):
        if candidate and (Path(candidate) / "initdb").is_file():
            return Path(candidate)
    raise LocalPostgresError(
        "PostgreSQL 15 binaries not found in /usr/lib/postgresql/15/bin: run ./scripts/install "
        "(apt-get install postgresql-15) or set BILLING_TEST_PG_BINDIR"
    )


class LocalPostgres:
    """Start with ``with LocalPostgres() as pg:``; ``pg.create_database()`` gives a fresh URL."""

    def __init__(self, *, fsync: bool = True) -> None:
        self.fsync = fsync
        self.dir: Path | None = None
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._databases = 0

    def _as_postgres(self) -> dict[str, Any]:
        if os.geteuid() != 0:
            return {}
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise LocalPostgresError("running as root but there is no postgres user to run PostgreSQL as") from None
        return {"user": "postgres", "group": "postgres", "extra_groups": []}

    def start(self) -> LocalPostgres:
        """initdb into a temp dir and start the server; returns when it accepts connections."""
        bindir = postgres_bindir()
        self.dir = Path(tempfile.mkdtemp(prefix="billing-pg-"))
        as_user = self._as_postgres()
        if as_user:
            shutil.chown(self.dir, "postgres", "postgres")
        data, log = self.dir / "data", self.dir / "postgres.log"
        init = subprocess.run(
            [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C"]
            + ([] if self.fsync else ["--no-sync"]),
            capture_output=True,
            check=False,
            **as_user,
        )
        if init.returncode != 0:
            raise LocalPostgresError(f"initdb failed: {init.stderr.decode(errors='replace').strip()[-300:]}")
        self.port = free_port()
        settings = ["listen_addresses=127.0.0.1", "max_connections=200", f"fsync={'on' if self.fsync else 'off'}"]
        options = ["-D", str(data), "-p", str(self.port), "-k", str(self.dir)]
        for setting in settings:
            options += ["-c", setting]
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [str(bindir / "postgres"), *options], stdout=out, stderr=subprocess.STDOUT, **as_user
            )
        self._wait_ready(log)
        return self

    @property
    def admin_url(self) -> str:
        """URL of the server's ``postgres`` database."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _wait_ready(self, log: Path, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise LocalPostgresError(f"postgres exited with {self.proc.returncode}: {log.read_text()[-400:]}")
            try:
                with psycopg.connect(self.admin_url, connect_timeout=2):
                    return
            except psycopg.OperationalError:
                time.sleep(0.1)
        raise LocalPostgresError(f"postgres not ready after {timeout:.0f}s: {log.read_text()[-400:]}")

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database; returns its URL."""
        self._databases += 1
        name = name or f"billing_{os.getpid()}_{self._databases}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        """Fast shutdown (SIGINT), then remove the temp dir."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
