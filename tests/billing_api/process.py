"""``cluster-exporter billing-api serve`` in a child process: for what an in-process server cannot show.

A server on the test's own event loop shares it with the test's client, so a stalled loop stalls
the stopwatch too; a kill -9 needs a process to kill. A child process has neither problem.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading

import psutil

from .conftest import ADMIN, TOKENS


class ServerProcess:
    """The billing API in a child process on a free loopback port, every test token configured."""

    def __init__(self, database_url: str, *flags: str) -> None:
        command = [sys.executable, "-c", "import sys; from cluster_exporter.cli import main; sys.exit(main())"]
        command += ["billing-api", "serve", "--host", "127.0.0.1", "--port", "0", "--database-url", database_url]
        command += ["--admin-token", ADMIN]
        for cluster, token in TOKENS.items():
            command += ["--token", f"{cluster}={token}"]
        command += flags
        env = {k: v for k, v in os.environ.items() if not k.startswith("BILLING_")}
        self.proc = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
        self.log: list[str] = []
        self._listening = threading.Event()
        self.url = ""
        threading.Thread(target=self._read_stderr, daemon=True).start()
        if not self._listening.wait(60):
            self.proc.kill()
            raise AssertionError(f"server did not start: {self.log[-5:]}")

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line.rstrip())
            match = re.search(r"listening on (http://\S+)", line)
            if match:
                self.url = match.group(1)
                self._listening.set()

    def rss_bytes(self) -> int:
        """The server's resident memory now."""
        return int(psutil.Process(self.proc.pid).memory_info().rss)

    def kill9(self) -> None:
        """SIGKILL: no cleanup of any kind."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def terminate(self) -> int:
        """SIGTERM, the graceful stop; returns the exit code."""
        self.proc.terminate()
        return self.proc.wait(60)
