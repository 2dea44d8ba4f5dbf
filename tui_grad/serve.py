"""`tui-grad serve`: the app in browsers, one process per tab, each ended on every path.

Built on textual-serve, which starts each tab's app through a shell and, when the tab closes,
only asks it to quit and waits. Here an app is started without a shell in a process group of
its own, and ended when its tab closes (asked to quit, then SIGTERM, then SIGKILL to the whole
group), when the server gets SIGINT, SIGTERM or SIGHUP (every app, before the server exits),
and when the server dies (the kernel sends SIGKILL: PR_SET_PDEATHSIG). The page it serves
needs nothing but this server: no font host, and URLs built from the address the browser used.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import logging
import os
import re
import shlex
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
import textual_serve
from aiohttp import WSCloseCode, web
from textual_serve.app_service import AppService
from textual_serve.server import Server, to_int

from tui_grad.config import ConfigError
from tui_grad.i18n import tr

DRIVER = "tui_grad.tui.webdriver:TabDriver"
"""The Textual driver of a served app (``TEXTUAL_DRIVER``): it leaves when its input ends."""
QUIT_GRACE = 1.5
"""Seconds a closed tab's app gets to quit by itself before its process group gets SIGTERM."""
TERM_GRACE = 2.0
"""Seconds after SIGTERM before SIGKILL."""
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>

log = logging.getLogger("tui_grad.serve")
_prctl = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None) if sys.platform == "linux" else None

FONT_FACES = """\
    <link rel="preload" href="{{ config.static.url }}fonts/RobotoMono-VariableFont_wght.ttf"
          as="font" type="font/ttf" crossorigin />
    <style>
      @font-face { font-family: "Roboto Mono"; font-style: normal; font-weight: 100 700;
        src: url("{{ config.static.url }}fonts/RobotoMono-VariableFont_wght.ttf") format("truetype"); }
      @font-face { font-family: "Roboto Mono"; font-style: italic; font-weight: 100 700;
        src: url("{{ config.static.url }}fonts/RobotoMono-Italic-VariableFont_wght.ttf")
             format("truetype"); }
    </style>
"""


def app_command(scenario: str, overrides: Sequence[str], steps: int | None,
                seed: int | None, lang: str = "en") -> list[str]:
    """The argv of one tab's app: this Python running ``tui_grad`` with the serve options."""
    argv = [sys.executable, "-m", "tui_grad", "--lang", lang]
    for item in overrides:
        argv += ["--set", item]
    if steps is not None:
        argv += ["--steps", str(steps)]
    if seed is not None:
        argv += ["--seed", str(seed)]
    return [*argv, "--", scenario]  # a scenario named like a command or an option stays one


def check_port(port: int) -> None:
    """Refuse a port number no socket can have (0 lets the system choose a free one)."""
    if not 0 <= port <= 65535:
        raise ConfigError(tr("must be 0..65535 (got {value})", value=port), key="--port")


def offline_page() -> str:
    """textual-serve's page template without links to other hosts, with the font it ships."""
    path = Path(textual_serve.__file__).parent / "templates" / "app_index.html"
    page = re.sub(r"<link\b[^>]*\bhref=\"(?:https?:)?//[^>]*>\s*", "", path.read_text("utf-8"))
    return page.replace("<head>", "<head>\n" + FONT_FACES, 1)


def _die_with_server(server_pid: int) -> Callable[[], None]:
    """A preexec_fn for the app's child: the kernel kills it when the server dies."""
    def preexec() -> None:
        if _prctl is not None:
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != server_pid:  # the server died before prctl took effect
            os._exit(1)
    return preexec


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


async def _gone(process: asyncio.subprocess.Process, timeout: float) -> bool:
    """Whether ``process`` and everything in its process group end within ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while process.returncode is None or _group_alive(process.pid):
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def end_process_group(process: asyncio.subprocess.Process) -> None:
    """Give ``process`` QUIT_GRACE s to leave, then SIGTERM and SIGKILL its process group."""
    for signum, grace in ((signal.SIGTERM, QUIT_GRACE), (signal.SIGKILL, TERM_GRACE)):
        if await _gone(process, grace):
            return
        _signal_group(process.pid, signum)
    if not await _gone(process, 5.0):
        log.error(tr("app process {pid} outlived SIGKILL", pid=process.pid))


class TabApp(AppService):
    """One browser tab's app process: exec'd without a shell, in a process group of its own."""

    def __init__(self, argv: Sequence[str], live: set[TabApp], **kwargs: Any) -> None:
        super().__init__(shlex.join(argv), **kwargs)
        self.argv = list(argv)
        self._live = live
        self._stopping: asyncio.Future[None] | None = None
        self._started = False

    def _build_environment(self, width: int = 80, height: int = 24) -> dict[str, str]:
        environment = super()._build_environment(width=width, height=height)
        environment["TEXTUAL_DRIVER"] = DRIVER
        return environment

    async def _open_app_process(self, width: int = 80, height: int = 24) -> asyncio.subprocess.Process:
        pipe = asyncio.subprocess.PIPE
        self._process = process = await asyncio.create_subprocess_exec(
            *self.argv, stdin=pipe, stdout=pipe, stderr=pipe,
            env=self._build_environment(width=width, height=height),
            start_new_session=True, preexec_fn=_die_with_server(os.getpid()))
        self._live.add(self)
        self._stdin = process.stdin
        return process

    async def on_data(self, payload: bytes) -> None:
        """Relay the app's screen output to the tab."""
        self._started = True
        await super().on_data(payload)

    async def run(self) -> None:
        """Relay the app's output to the tab; close the tab's socket when the app has gone."""
        await super().run()
        if not self._started and self._stopping is None:
            log.error(tr("a tab's app exited before it started (its error output, if any, is above)"))
        with contextlib.suppress(Exception):
            await self.remote_close()  # the page says "Session ended" even after a crash

    async def stop(self) -> None:
        """End the app and its process group (see end_process_group); safe to call again."""
        if self._process is None:
            return
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop())
        await asyncio.shield(self._stopping)

    async def _stop(self) -> None:
        process = self._process
        assert process is not None
        try:
            await self._download_manager.cancel_app_downloads(app_service_id=self.app_service_id)
            if process.returncode is None:  # a full pipe (an app not reading) must not hold us
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.send_meta({"type": "quit"}), 0.5)
            if process.stdin is not None:
                process.stdin.close()  # end of input: TabDriver leaves even if "quit" was missed
            await end_process_group(process)
            if self._task is not None:
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(self._task, 2.0)
        finally:
            self._live.discard(self)


class TabServer(Server):
    """textual-serve's Server with TabApp processes, an offline page and one-line errors."""

    def __init__(self, argv: Sequence[str], *, host: str, port: int, title: str) -> None:
        super().__init__(shlex.join(argv), host=host, port=port, title=title)
        self.argv = list(argv)
        self.tabs: set[TabApp] = set()
        """The live app processes, one per open tab: all of them end before the server does."""
        self.sockets: set[web.WebSocketResponse] = set()
        self.on_listening: Callable[[str], None] = lambda url: None
        """Called with the URL once the server listens (tests and the start-up line use it)."""

    async def _make_app(self) -> web.Application:
        app = await super()._make_app()
        aiohttp_jinja2.setup(app, loader=jinja2.DictLoader({"app_index.html": offline_page()}))
        return app

    async def on_startup(self, app: web.Application) -> None:
        """Print nothing here: ``run`` announces the address once it is bound."""

    async def on_shutdown(self, app: web.Application) -> None:
        """Close every tab's socket and end every app process."""
        for websocket in list(self.sockets):
            await websocket.close(code=WSCloseCode.GOING_AWAY, message=b"server stopped")
        await self.stop_tabs()

    async def stop_tabs(self) -> None:
        """End every live app process, all at once."""
        await asyncio.gather(*(tab.stop() for tab in list(self.tabs)), return_exceptions=True)

    @aiohttp_jinja2.template("app_index.html")
    async def handle_index(self, request: web.Request) -> dict[str, Any]:
        """The page, its URLs on the host and port the browser asked for (not 0.0.0.0)."""
        scheme = "wss" if request.secure else "ws"
        return {"font_size": to_int(request.query.get("fontsize", "16"), 16),
                "app_websocket_url": f"{scheme}://{request.host}/ws",
                "config": {"static": {"url": "/static/"}},
                "application": {"name": self.title}}

    async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
        """One tab: start its app, relay keys and sizes, and end the app when the tab goes."""
        websocket = web.WebSocketResponse(heartbeat=15)
        width = to_int(request.query.get("width", "80"), 80)
        height = to_int(request.query.get("height", "24"), 24)
        await websocket.prepare(request)
        self.sockets.add(websocket)
        tab = TabApp(self.argv, self.tabs, write_bytes=websocket.send_bytes,
                     write_str=websocket.send_str, close=websocket.close,
                     download_manager=self.download_manager)
        try:
            await tab.start(width, height)
            await self._process_messages(websocket, tab)
        except Exception:
            log.exception(tr("tab failed"))
        finally:
            self.sockets.discard(websocket)
            await tab.stop()
        return websocket

    async def run(self) -> None:
        """Listen until SIGINT, SIGTERM or SIGHUP; then end every app before returning."""
        runner = web.AppRunner(await self._make_app(), handle_signals=False, shutdown_timeout=5.0,
                               access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            try:
                await site.start()
            except (OSError, UnicodeError) as exc:  # UnicodeError: a name IDNA cannot encode
                raise bind_error(exc, self.host, self.port) from None
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.add_signal_handler(signum, stop.set)
            self.on_listening(listening_url(runner, self.host))  # signals are handled from here
            await stop.wait()
        finally:
            await runner.cleanup()
            await self.stop_tabs()  # a tab whose app was still being started


def listening_url(runner: web.AppRunner, host: str) -> str:
    """The URL to open: the bound port; this machine's name when listening on every address."""
    port = runner.addresses[0][1]
    if host in ("", "0.0.0.0", "::"):
        host = socket.gethostname()
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


def bind_error(exc: OSError | UnicodeError, host: str, port: int) -> ConfigError:
    """The one-line error for a host or port the server cannot listen on."""
    if isinstance(exc, UnicodeError):
        return ConfigError(tr("{host} is not a host name", host=repr(host)), key="--host")
    if isinstance(exc, socket.gaierror):
        return ConfigError(tr("cannot find host {host} ({reason})", host=repr(host), reason=exc.strerror),
                           key="--host")
    if exc.errno == errno.EADDRINUSE:
        return ConfigError(tr("{port} is already in use on {host}: another server listens "
                              "there; pick another port", port=port, host=host), key="--port")
    if exc.errno == errno.EADDRNOTAVAIL:
        return ConfigError(tr("{host} is not an address of this machine (use 127.0.0.1, or "
                              "0.0.0.0 for every network interface)", host=host), key="--host")
    if exc.errno == errno.EACCES:
        return ConfigError(tr("{port} needs root (ports below 1024 are privileged)", port=port),
                           key="--port")
    return ConfigError(tr("cannot listen on {host} port {port} ({reason})", host=host, port=port,
                          reason=exc.strerror or exc), key="--host")


def serve(argv: Sequence[str], *, scenario: str, host: str, port: int) -> int:
    """Serve the app started by ``argv`` until a signal; raise ConfigError for a bad host or port."""
    check_port(port)
    logging.basicConfig(level=logging.WARNING, format="tui-grad serve: %(message)s")
    # textual-serve says this of every tab closed before its app started; TabApp.run says
    # it only of an app that failed by itself
    logging.getLogger("textual-serve").addFilter(
        lambda record: record.getMessage() != "Application failed to start")
    server = TabServer(argv, host=host, port=port, title=f"tui-grad {scenario}")
    server.on_listening = lambda url: print(
        "tui-grad: " + tr("serving {scenario} at {url} (one app per browser tab, ended when its tab "
                          "closes); Ctrl-C stops the server and every app", scenario=scenario, url=url),
        file=sys.stderr, flush=True)
    asyncio.run(server.run())
    return 0
