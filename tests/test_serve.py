"""`tui-grad serve` gives browser participants the same app, and leaves no process behind.

The browser tests drive headless Chromium (Debian's `chromium`) through Playwright and read the
terminal's text from xterm.js's buffer in the page; they skip when either is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import aiohttp
import psutil
import pytest

from tui_grad.cli import main
from tui_grad.serve import app_command

CHROMIUM = Path("/usr/bin/chromium")
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", "--disable-sync"]
GONE_WITHIN = 6.0  # s: quit, 1.5 s, SIGTERM, 2 s, SIGKILL, and some slack for a busy machine
# textual.js keeps its xterm.js Terminal in a local; the tests' copy of the script exposes it.
TERMINAL_HOOK = "const t=new w(e,{ping:r});"
SCREEN_JS = """() => { const t = window.tuiGradTerminal; if (!t) return "";
  const b = t.buffer.active, rows = [];
  for (let i = 0; i < t.rows; i++) { const l = b.getLine(b.viewportY + i);
    rows.push(l ? l.translateToString(true) : ""); }
  return rows.join("\\n"); }"""


class Served:
    """A `tui-grad serve` process on a free port, its stderr collected."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tui_grad", "serve", *args, "--host", "127.0.0.1", "--port", "0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.stderr: list[str] = []
        ready, _, _ = select.select([self.process.stderr], [], [], 60)
        line = self.process.stderr.readline() if ready else ""
        self.stderr.append(line)
        match = re.search(r"http://\S+/", line)
        if match is None:
            self.stop()
            pytest.fail(f"serve did not announce its address: {line!r}")
        self.url = match.group(0)
        threading.Thread(target=lambda: self.stderr.extend(self.process.stderr), daemon=True).start()

    def apps(self) -> list[psutil.Process]:
        """The server's live descendants: the tabs' app processes."""
        try:
            children = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        return [p for p in children if _alive(p)]

    def wait_for_app(self, page, timeout: float = 20.0) -> list[psutil.Process]:
        """The app processes once there is one and it runs the app (``page`` keeps loading)."""
        server = psutil.Process(self.process.pid).cmdline()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            apps = self.apps()
            with contextlib.suppress(psutil.Error):
                commands = [app.cmdline() for app in apps]  # empty while exec is under way
                if apps and all(command and command != server for command in commands):
                    return apps  # forked and exec'd
            page.wait_for_timeout(20)  # Playwright serves the page's routes only inside its calls
        pytest.fail("no app process started for the tab")

    def wait_until_no_app(self, within: float = GONE_WITHIN) -> list[int]:
        """The pids of the server's descendants still alive after up to ``within`` seconds."""
        deadline = time.monotonic() + within
        while (apps := self.apps()) and time.monotonic() < deadline:
            time.sleep(0.05)
        return [app.pid for app in apps]

    def stop(self) -> None:
        """SIGTERM the server; SIGKILL it if it has not gone in 15 s."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def survivors(processes: list[psutil.Process], within: float = GONE_WITHIN) -> list[int]:
    """The pids among ``processes`` still alive after waiting up to ``within`` seconds."""
    deadline = time.monotonic() + within
    while (alive := [p.pid for p in processes if _alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


@pytest.fixture(scope="module")
def server():
    """One server for the tests that open and close tabs (one tab at a time)."""
    served = Served("sigmoid-vanishing", "--steps", "100000", "--seed", "7",
                    "--set", "training.max_norm=2")
    yield served
    served.stop()


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium, or a skip saying what is missing."""
    if not CHROMIUM.exists():
        pytest.skip(f"no {CHROMIUM} (Debian package chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def open_tab(browser):
    """Open the served page in a new tab whose terminal text ``screen(page)`` can read."""
    pages = []

    def expose_terminal(route) -> None:
        response = route.fetch()
        script = response.text()
        assert TERMINAL_HOOK in script, "textual.js changed: update TERMINAL_HOOK"
        hooked = script.replace(TERMINAL_HOOK, TERMINAL_HOOK + "window.tuiGradTerminal=t.terminal;")
        route.fulfill(response=response, body=hooked)

    def open_(url: str, *, wait: bool = True):
        page = browser.new_page(viewport={"width": 1100, "height": 700})
        pages.append(page)
        page.requests = []
        page.on("request", lambda request: page.requests.append(request.url))
        page.on("websocket", lambda websocket: page.requests.append(websocket.url))
        page.route("**/static/js/textual.js", expose_terminal)
        page.goto(url, wait_until="commit" if not wait else "load")
        return page

    yield open_
    for page in pages:
        if not page.is_closed():
            page.close()


def screen(page) -> str:
    """The terminal's visible rows as text."""
    return page.evaluate(SCREEN_JS)


def wait_for_text(page, needle: str, timeout: float = 30.0, gone: bool = False) -> str:
    """The screen once it shows ``needle`` (once it no longer does, with ``gone``)."""
    deadline = time.monotonic() + timeout
    while (needle in (text := screen(page))) == gone:
        assert time.monotonic() < deadline, f"{needle!r} {'stayed' if gone else 'never appeared'}; " \
            f"the screen:\n{text}"
        time.sleep(0.1)
    return text


def test_a_tab_shows_the_app_takes_keys_and_ends_it_when_closed(server, open_tab):
    """A participant sees the app, `?` opens its help and escape closes it, and closing the tab
    late (the app up, running or still compiling) ends the app; the page fetched nothing from
    another host. Nothing here waits for a training step, so a cold kernel cache only slows it."""
    page = open_tab(server.url)
    text = wait_for_text(page, "negative_slope", timeout=60)  # the panels are drawn
    assert "sigmoid-vanishing" in text and "activation" in text
    page.locator(".xterm-helper-textarea").focus()
    page.keyboard.press("?")
    assert "escape" not in text
    wait_for_text(page, "escape", timeout=15)  # the help: "Keys (escape closes)"
    page.keyboard.press("Escape")
    wait_for_text(page, "escape", timeout=15, gone=True)
    origin = urlsplit(server.url).netloc
    assert page.requests and all(urlsplit(url).netloc == origin for url in page.requests), page.requests
    assert server.apps()
    page.close()
    assert server.wait_until_no_app() == []


def test_a_tab_closed_during_start_up_ends_its_app(server, open_tab):
    """A tab closed within a second, its app still starting, leaves no process; the app was
    exec'd without a shell with serve's --steps, --seed and --set."""
    page = open_tab(server.url, wait=False)
    apps = server.wait_for_app(page)
    assert [app.cmdline() for app in apps if app.ppid() == server.process.pid] == [
        app_command("sigmoid-vanishing", ["training.max_norm=2"], 100000, 7)]
    page.close()
    assert server.wait_until_no_app() == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stopping_the_server_with_a_tab_open_leaves_no_process(open_tab, signum):
    """Ctrl-C or SIGTERM stops the server and every app, and the page says the session ended."""
    served = Served("sigmoid-vanishing")
    try:
        page = open_tab(served.url)
        wait_for_text(page, "sigmoid-vanishing", timeout=60)
        apps = served.wait_for_app(page)
        served.process.send_signal(signum)
        assert served.process.wait(timeout=GONE_WITHIN) == 0
        assert survivors(apps, within=0.5) == []
        page.wait_for_selector("body.-closed", timeout=5000)
    finally:
        served.stop()
    assert "Traceback" not in "".join(served.stderr)


STUBBORN_APP = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # neither quits nor honours SIGTERM
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # a helper, same group
print("ready", flush=True)
time.sleep(60)
"""


def test_an_app_that_ignores_quit_and_sigterm_is_killed_with_its_group(monkeypatch):
    """The last resort works: SIGKILL to the app's whole process group, helpers included."""
    import tui_grad.serve as serve

    monkeypatch.setattr(serve, "QUIT_GRACE", 0.2)
    monkeypatch.setattr(serve, "TERM_GRACE", 0.2)

    async def start_and_end() -> tuple[list[psutil.Process], float]:
        app = await asyncio.create_subprocess_exec(sys.executable, "-c", STUBBORN_APP,
                                                   stdout=asyncio.subprocess.PIPE,
                                                   start_new_session=True)
        await app.stdout.readline()
        group = [psutil.Process(app.pid), *psutil.Process(app.pid).children()]
        started = time.monotonic()
        await serve.end_process_group(app)
        return group, time.monotonic() - started

    with ThreadPoolExecutor(1) as thread:  # asyncio.run beside Playwright's loop
        group, took = thread.submit(asyncio.run, start_and_end()).result(timeout=30)
    assert len(group) == 2 and survivors(group, within=0) == []
    assert took < 10.0  # the graces and the SIGKILL, not the 60 s the app would sleep


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs
                      if value and (name in ("src", "href") or name.endswith("-url"))]


def test_the_page_needs_nothing_from_another_host(server):
    """Offline rooms: every URL the page references is on the server itself, and answers."""
    with urllib.request.urlopen(server.url, timeout=10) as response:
        page = response.read().decode()
    links = _Links()
    links.feed(page)
    urls = links.urls + re.findall(r"url\(\"?([^\")]+)\"?\)", page)
    assert any("fonts/RobotoMono" in url for url in urls)
    origin = urlsplit(server.url).netloc
    for url in (urljoin(server.url, url) for url in urls):
        assert urlsplit(url).netloc == origin, url
        if url.startswith("http"):
            with urllib.request.urlopen(url, timeout=10) as response:
                assert response.status == 200


async def _first_screen(url: str, needle: bytes, timeout: float = 60.0) -> bytes:
    """Open the page's websocket as a browser would and collect output until ``needle``."""
    received = b""
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        deadline = time.monotonic() + timeout
        while needle not in received and time.monotonic() < deadline:
            try:
                message = await ws.receive(timeout=5)
            except TimeoutError:
                continue
            if message.type == aiohttp.WSMsgType.BINARY:
                received += message.data
            elif message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                break
    return received


def test_the_websocket_runs_the_app_and_closing_it_ends_the_app(server):
    """Without a browser: the page's websocket runs the app, and closing the socket ends it."""
    websocket_url = server.url.replace("http://", "ws://") + "ws?width=100&height=30"
    with ThreadPoolExecutor(1) as thread:  # Playwright's loop may be running in this thread
        output = thread.submit(asyncio.run, _first_screen(websocket_url, b"sigmoid-vanishing")).result()
    assert b"sigmoid-vanishing" in output
    assert server.wait_until_no_app() == []


@pytest.mark.parametrize(("option", "value", "expected"), [
    ("--port", "99999", "--port: must be 0..65535 (got 99999)"),
    ("--host", "10.255.255.1", "--host: 10.255.255.1 is not an address of this machine"),
    ("--host", "no such host", "--host: cannot find host 'no such host'"),  # no DNS query: spaces
    ("--host", "bad..host", "--host: 'bad..host' is not a host name"),
])
def test_bad_serve_options_are_one_line_errors(capsys, option, value, expected):
    """An impossible port, an address or a host this machine lacks: one line, exit 2."""
    args = ["serve", "default", "--port", "0", option, value]
    with ThreadPoolExecutor(1) as thread:  # asyncio.run beside Playwright's loop
        code = thread.submit(main, args).result(timeout=60)
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"tui-grad: error: {expected}") and err.count("\n") == 1, err


def test_a_busy_port_is_a_one_line_error():
    """A port another server holds: one line naming it, exit 2, no traceback."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "tui_grad", "serve", "--port", str(port)],
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr == (f"tui-grad: error: --port: {port} is already in use on 127.0.0.1: "
                             "another server listens there; pick another port\n")


def test_serve_refuses_a_bad_scenario_before_listening():
    """A bad scenario fails at once with the usual one-line error, not in every browser tab."""
    result = subprocess.run([sys.executable, "-m", "tui_grad", "serve", "no-such-scenario"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("tui-grad: error: no-such-scenario: no such file")


def test_a_served_lesson_shows_its_prompt_and_moves_on_in_chinese(open_tab):
    """`serve --lesson NAME --lang zh`: a tab opens the lesson's first step with its Chinese
    prompt; space starts it, N opens the next step's prompt; the status bar and footer are in
    Chinese too; closing the tab ends the app."""
    served = Served("--lesson", "vanishing-and-exploding", "--lang", "zh")
    try:
        page = open_tab(served.url)
        text = wait_for_text(page, "第 1/13 步", timeout=60)
        assert "深度" in text and "预测" in text
        page.locator(".xterm-helper-textarea").focus()
        page.keyboard.press("Space")
        wait_for_text(page, "第 1/13 步", timeout=15, gone=True)
        page.keyboard.press("Shift+N")
        wait_for_text(page, "第 2/13 步", timeout=30)
        page.keyboard.press("Space")
        text = wait_for_text(page, "课程 2/13", timeout=15)  # the status bar, in Chinese too
        assert "帮助" in text and "退出" in text  # and the footer
        page.close()
        assert served.wait_until_no_app() == []
    finally:
        served.stop()
