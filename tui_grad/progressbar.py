"""A one-line progress bar on a terminal (rich.progress), for headless runs and sweeps.

Refreshed by its owner's calls, never by a thread of its own, so there is nothing to stop
when a run is interrupted except the bar itself (``close``, also registered with atexit so
the cursor always comes back).
"""

from __future__ import annotations

import atexit
import sys
import time
from typing import TextIO

REFRESH_SECONDS = 0.1


class TerminalProgress:
    """``done/total`` with a bar, the rate in ``unit``/s and the time left."""

    def __init__(self, total: int, unit: str, stream: TextIO = sys.stderr, done: int = 0) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn(f"{unit}"), MofNCompleteColumn(), BarColumn(bar_width=30),
            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
            TimeRemainingColumn(), console=Console(file=stream, stderr=stream is sys.stderr),
            auto_refresh=False, redirect_stdout=False, redirect_stderr=False)
        self._unit = unit
        self._task = self._progress.add_task("", total=total, completed=done, rate="")
        self._started = time.perf_counter()
        self._first = done
        self._last = 0.0
        self._closed = False
        self._progress.start()
        atexit.register(self.close)

    def update(self, done: int, total: int | None = None, force: bool = False) -> None:
        """Show ``done`` of ``total``; redraws at most every 0.1 s unless ``force``."""
        now = time.perf_counter()
        if not force and now - self._last < REFRESH_SECONDS:
            return
        self._last = now
        rate = (done - self._first) / max(now - self._started, 1e-9)
        self._progress.update(self._task, completed=done, total=total, rate=f"{rate:.2f} {self._unit}/s")
        self._progress.refresh()

    def close(self) -> None:
        """Leave the bar as it is on its own line and give the cursor back (idempotent)."""
        if not self._closed:
            self._closed = True
            self._progress.stop()
            atexit.unregister(self.close)
