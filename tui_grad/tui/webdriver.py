"""The driver a served app runs under: it leaves when its tab's server lets go or sends SIGTERM.

`tui-grad serve` selects it through ``TEXTUAL_DRIVER`` (tui_grad.serve). Textual's WebDriver
ignores the end of its input, so an app whose server closed the pipe kept running; and its
SIGTERM handler only posts ``ExitApp``, which an app still starting can lose and which waits
for a worker thread busy compiling kernels. Here both end the app, and if it has not left
after ``LEAVE_GRACE`` seconds the process exits anyway.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading

from textual import messages
from textual.drivers.web_driver import WebDriver

LEAVE_GRACE = 1.0
"""Seconds the app gets to shut down cleanly after its input ended or SIGTERM arrived."""


class TabDriver(WebDriver):
    """Textual's WebDriver, plus: end of input or SIGTERM ends the app within ``LEAVE_GRACE``."""

    def start_application_mode(self) -> None:
        """Start as the WebDriver does, then take over SIGTERM."""
        super().start_application_mode()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.leave, 128 + signal.SIGTERM)

    def run_input_thread(self) -> None:
        """Read input as the WebDriver does; when it ends unasked (the server let go), leave."""
        super().run_input_thread()
        if not self.exit_event.is_set():
            self.leave(0)

    def leave(self, exit_code: int) -> None:
        """Ask the app to exit; exit the process with ``exit_code`` if it is still here later."""
        self._app.post_message(messages.ExitApp())
        deadline = threading.Timer(LEAVE_GRACE, os._exit, args=(exit_code,))
        deadline.daemon = True  # never what keeps the process alive
        deadline.start()
