"""Helpers for driving the terminal UI in tests: waiting, reading the screen as text."""

from __future__ import annotations

import io
import time

from rich.console import Console

from tui_grad.scenario import load_scenario
from tui_grad.tui.app import GradApp


async def wait_for(pilot, condition, timeout: float = 30.0) -> None:
    """Let the app run until ``condition()`` holds (the worker runs in real time)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await pilot.pause(0.05)


async def started(pilot, app) -> None:
    """Wait for the first step on screen and every option panel (those below the first
    screen are mounted after it is drawn)."""
    from tui_grad.tui.panels import GROUPS, Panel

    await wait_for(pilot, lambda: step_of(app) >= 0 and len(app.query(Panel)) == len(GROUPS))


def status(app) -> str:
    return app.status_line(200).plain


def rendered(renderable, width: int) -> str:
    """A Rich renderable as plain text at ``width`` columns."""
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def screen_text(app) -> str:
    """The characters on the active screen, row by row, as the terminal shows them."""
    update = app.screen._compositor.render_full_update()
    return "\n".join("".join(segment.text for strip in line for segment in strip)
                     for line in update.strips)


def step_of(app) -> int:
    latest = app.session.history.latest
    return -1 if latest is None else latest.step


def endless_app(name: str = "default", *, paused: bool = False) -> GradApp:
    """The scenario with no step limit, at the default 30 steps/s (tests wait for conditions).

    While a run trains the process is never idle, and Pilot then waits about 2 s after every
    key: tests that only need keys start ``paused`` (step 0 is shown at once)."""
    app = GradApp(load_scenario(name).with_overrides({"run.steps": 10_000_000}))
    app.session.running = not paused
    return app
