"""What the main screen looks like (SVG snapshots): fixed scenario, seed, step and size."""

from __future__ import annotations

import pytest

from tui_grad.scenario import load_scenario
from tui_grad.tui.app import GradApp, SimulationEvent

STEPS = 40


def paused_app(name: str) -> GradApp:
    """The app with no worker: the test advances the session by exactly STEPS steps."""
    app = GradApp(load_scenario(name), autostart=False)
    app.session.running = False
    return app


async def advance(pilot) -> None:
    session = pilot.app.session
    for _ in range(STEPS):
        session.request_step()
        for event in session.advance(1.0):  # what the worker would post
            pilot.app.post_message(SimulationEvent(event))
    pilot.app.redraw(force=True)
    await pilot.pause()


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
@pytest.mark.parametrize("name", ["sigmoid-vanishing", "clipping"])
def test_main_screen(snap_compare, name, size):
    """The gradient profile, status bar, panels and footer as a participant sees them."""
    assert snap_compare(paused_app(name), terminal_size=size, run_before=advance)


@pytest.mark.parametrize("view", ["main", "panel", "help", "forensics"])
def test_chinese_at_80x24(snap_compare, language, view):
    """In Chinese (two columns a character) the main screen, a panel, the help and the
    divergence report still fit and read at 80x24."""
    language("zh")
    name = "exploding-init" if view == "forensics" else "sigmoid-vanishing"
    keys = {"panel": ["i"], "help": ["question_mark"]}.get(view, [])
    assert snap_compare(paused_app(name), terminal_size=(80, 24), run_before=advance, press=keys)
