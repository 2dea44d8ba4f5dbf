"""The real program in a real terminal (tmux), at 80x24 and 160x48, driven key by key.

This is the newcomer's walkthrough kept as a test: start, read the status bar, type into a
number field and see it, open the help, switch a variant, quit. It reads the screen as the
participant does, with `tmux capture-pane`.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
import uuid

import pytest

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


class Terminal:
    """A tmux session of its own running one command."""

    def __init__(self, command: list[str], width: int, height: int) -> None:
        self.name = f"tui-grad-test-{uuid.uuid4().hex[:8]}"
        script = f"{shlex.join(command)}; echo EXIT=$?; sleep 30"
        subprocess.run(["tmux", "new-session", "-d", "-s", self.name, "-x", str(width), "-y",
                        str(height), script], check=True, env=None)

    def screen(self) -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", self.name], capture_output=True,
                              text=True, check=True).stdout

    def press(self, *keys: str) -> None:
        for key in keys:
            subprocess.run(["tmux", "send-keys", "-t", self.name, key], check=True)
            time.sleep(0.15)

    def wait_for(self, needle: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            if needle in text:
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} not on screen:\n{text}")
            time.sleep(0.1)

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


@pytest.fixture
def terminal():
    opened: list[Terminal] = []

    def open_terminal(scenario: str, width: int, height: int) -> Terminal:
        term = Terminal([sys.executable, "-m", "tui_grad", scenario], width, height)
        opened.append(term)
        return term

    yield open_terminal
    for term in opened:
        term.close()


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_walkthrough_in_a_real_terminal(terminal, size):
    """Start, pause, type a learning rate (visible before enter), help with keys as typed,
    the other variant at the same step, quit with exit code 0."""
    term = terminal("relu-init", *size)
    screen = term.wait_for("  step ")  # after the verdict badge
    assert "VANISHING" in screen.splitlines()[0] or "HEALTHY" in screen.splitlines()[0]
    term.press("Space")
    screen = term.wait_for("PAUSED")
    step = screen.splitlines()[0].split(" step ")[1].split()[0]
    term.press("l", "C-a", "C-k", "0", ".", "0", "0", "5")
    screen = term.wait_for("0.005")
    assert any(" lr " in row and "0.005" in row for row in screen.splitlines())
    term.press("Enter", "Escape", "?")
    screen = term.wait_for("Keys (escape closes)")
    assert " ? " in screen and "question_mark" not in screen
    term.press("Escape", "v")
    screen = term.wait_for("[kaiming]")
    assert f" step {step} " in screen.splitlines()[0]  # the other variant, at the same step
    term.press("q")
    term.wait_for("EXIT=0", timeout=10)


def test_ctrl_c_quits_like_q(terminal):
    """Ctrl-C ends the program at once, with the terminal restored and exit code 0."""
    term = terminal("default", 80, 24)
    term.wait_for("  step ")
    term.press("C-c")
    screen = term.wait_for("EXIT=0", timeout=10)
    assert "loss" not in screen  # the app's screen is gone: the terminal is restored
