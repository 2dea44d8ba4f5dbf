"""`tui-grad serve` gives browser participants the same app over textual-serve."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
import urllib.request

import aiohttp


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_page(url: str, timeout: float = 60.0) -> str:
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read().decode()
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.2)


async def first_screen(url: str, needle: bytes, timeout: float = 60.0) -> bytes:
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
            elif message.type == aiohttp.WSMsgType.TEXT:
                received += message.data.encode()
            elif message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                break
    return received


def test_serve_page_and_app_over_loopback():
    """The page loads over loopback and its websocket runs the app on the chosen scenario."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "tui_grad", "serve", "sigmoid-vanishing",
                               "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        page = wait_for_page(f"http://127.0.0.1:{port}/")
        assert "textual" in page.lower()
        output = asyncio.run(first_screen(f"ws://127.0.0.1:{port}/ws?width=100&height=30",
                                          b"sigmoid-vanishing"))
        assert b"sigmoid-vanishing" in output
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_serve_refuses_a_bad_scenario_before_listening():
    """A bad scenario fails at once with the usual one-line error, not in every browser tab."""
    result = subprocess.run([sys.executable, "-m", "tui_grad", "serve", "no-such-scenario"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("tui-grad: error: no-such-scenario: no such file")
