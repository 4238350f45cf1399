"""Catch-up progress: a bar redrawn in place on a terminal, one log line per window otherwise.

A backfill of 35 days is 840 windows; on a terminal one line each would bury the warnings, in a
pod's log a bar would be 840 carriage returns on one line. So the mode follows the stream.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal, TextIO

log = logging.getLogger("cluster_exporter.delivery.runner")

BAR_WIDTH = 30


class Progress:
    """Counts windows done in a cycle and shows it; ``mode`` auto picks by ``stream.isatty()``."""

    def __init__(self, mode: Literal["auto", "bar", "lines"] = "auto", stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        if mode == "auto":
            isatty = getattr(self.stream, "isatty", None)
            mode = "bar" if isatty is not None and isatty() else "lines"
        self.mode = mode
        self.total = 0
        self.done = 0
        self._drawn = False

    def start(self, total: int) -> None:
        """A cycle with ``total`` windows to build and deliver begins."""
        self.total, self.done = total, 0
        if total and self.mode == "bar":
            self._draw("")

    def window(self, label: str, outcome: str, detail: str) -> None:
        """One window is finished (delivered or dead-lettered)."""
        self.done += 1
        if self.mode == "bar":
            self._draw(f"{outcome} {label}")
        else:
            log.info("window %s %s: %s [%d/%d]", label, outcome, detail, self.done, max(self.total, self.done))

    def _draw(self, last: str) -> None:
        total = max(self.total, self.done, 1)
        filled = round(BAR_WIDTH * self.done / total)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        self.stream.write(f"\rcatch-up [{bar}] {self.done}/{total} windows {last}".ljust(100))
        self.stream.flush()
        self._drawn = True

    def finish(self) -> None:
        """End the cycle's bar with a newline so later log lines start on their own line."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
