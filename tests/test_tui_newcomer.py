"""A workshop's first minutes: what a newcomer meets at 80x24 and on a big screen.

Typed numbers are visible, keys do what the help says wherever the focus is, the model and
task switch together, a paused restart shows its step 0 at once, variants compare at the
same step, and everything a participant needs fits at 80x24.
"""

from __future__ import annotations

import math
import re
import time

import pytest
from tui_helpers import endless_app, screen_text, started, status, step_of, wait_for

from tui_grad.scenario import load_scenario
from tui_grad.session import Session, forensics, format_log10
from tui_grad.tui.app import VERDICT_STYLE
from tui_grad.tui.charts import integer_ticks
from tui_grad.tui.panels import ChoiceValue, NumberValue, choice_text


def line_with(text: str, needle: str) -> str:
    """The first row of the panels (left column) that holds ``needle``."""
    return next((row for row in text.splitlines() if row.startswith("│") and needle in row), "")


async def paused(pilot, app, at_least: int = 1) -> None:
    await wait_for(pilot, lambda: step_of(app) >= at_least)
    await pilot.press("space")
    await pilot.pause(0.2)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
async def test_a_typed_number_is_visible_before_enter(size):
    """l, then 0.005: the digits are on screen in the lr row, with the cursor after them."""
    app = endless_app("sigmoid-vanishing", paused=True)
    async with app.run_test(size=size) as pilot:
        await started(pilot, app)
        await pilot.pause(0.2)  # the next redraw shows it
        await pilot.press("l", "ctrl+a", "ctrl+k", *"0.005")
        await pilot.pause(0.2)
        field = app.focused
        assert isinstance(field, NumberValue) and field.cursor_position == len("0.005")
        row = line_with(screen_text(app), " lr ")
        assert "0.005" in row, row
        assert app.session.config.training.lr == 0.01  # not applied before enter


async def test_a_panel_key_in_a_number_field_reaches_the_app():
    """A number field takes only what can be part of a number: z (a panel key) goes to the
    batch-size panel instead of into weight_decay, and space still runs and pauses."""
    app = endless_app(paused=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        await pilot.pause(0.2)  # the next redraw shows it
        await pilot.press("w", "ctrl+a", "ctrl+k", *"0.1", "z")
        await pilot.pause(0.2)
        assert isinstance(app.focused, NumberValue)
        assert app.focused.row.option.name == "training.batch_size"
        weight_decay = app.query_one("#opt-training-weight_decay").query_one(NumberValue)
        assert weight_decay.value == "0"  # the unapplied edit was put back, no 'z' in it
        assert app.session.config.training.weight_decay == 0.0
        await pilot.press("space")  # from the batch-size field: space runs
        await pilot.pause(0.2)
        assert app.session.running
        await pilot.press("space")
        assert "z" in line_with(screen_text(app), "batch")  # the footer still lists panel keys


async def test_a_locked_number_says_so_when_typed_into():
    """sigmoid-vanishing locks the depth: d reaches it, typing explains instead of changing."""
    app = endless_app("sigmoid-vanishing", paused=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        await pilot.pause(0.2)  # the next redraw shows it
        await pilot.press("d", "5")
        await pilot.pause(0.2)
        assert app.focused.row.option.name == "network.depth"
        assert "locked by this scenario" in screen_text(app)
        assert app.session.config.network.depth == 30


async def test_up_and_down_move_between_values():
    """Inside the panels up/down go to the previous/next value, across panels."""
    app = endless_app(paused=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        await pilot.pause(0.2)  # the next redraw shows it
        await pilot.press("i")
        names = [app.focused.row.option.name]
        for key in ("down", "down", "up", "up", "up"):
            await pilot.press(key)
            names.append(app.focused.row.option.name)
        assert names == ["network.init", "network.init_std", "network.init_a", "network.init_std",
                         "network.init", "network.prelu_init"]


async def test_switching_the_model_brings_a_task_that_fits_and_back():
    """k, right: mlp -> rnn picks the adding task and says so; t: choosing teacher brings the
    model back to mlp. Neither panel blocks the other."""
    app = endless_app(paused=True)
    async with app.run_test(size=(160, 48)) as pilot:
        await started(pilot, app)
        await pilot.pause(0.2)  # the next redraw shows it
        await pilot.press("k", "right")
        await wait_for(pilot, lambda: app.session.sim.config.network.model == "rnn")
        assert app.session.sim.config.data.task == "adding"
        assert "data.task = adding" in screen_text(app)
        await pilot.press("t")  # the task panel shows the task now in force
        assert "< adding >" in line_with(screen_text(app), "task ")
        await pilot.press("left")  # adding -> blobs: a feed-forward task
        await wait_for(pilot, lambda: app.session.sim.config.network.model == "mlp")
        assert app.session.sim.config.data.task == "blobs"
        assert "network.model = mlp" in screen_text(app)


@pytest.mark.parametrize("keys", [("x",), ("s",), ("d", "ctrl+a", "ctrl+k", "5", "enter")],
                         ids=["reset", "new-seed", "depth"])
async def test_a_paused_restart_shows_its_step_0_at_once(keys):
    """While paused, x, s or a structural change show the new run's step 0 without n or space,
    and the run stays paused."""
    app = endless_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await paused(pilot, app, at_least=12)
        await pilot.press(*keys)
        await wait_for(pilot, lambda: step_of(app) == 0, timeout=10)
        await pilot.pause(0.3)
        assert step_of(app) == 0 and not app.session.running
        assert "PAUSED" in status(app) and "waiting" not in screen_text(app)


async def test_rewind_while_paused_shows_the_rewind_point_and_goes_further_back():
    """u shows the step before the rewind point at once; u again goes one point further."""
    app = endless_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await paused(pilot, app, at_least=25)
        point = step_of(app) // 10 * 10  # the newest rewind point (taken before that step)
        await pilot.press("u")
        await wait_for(pilot, lambda: step_of(app) == point - 1)
        await pilot.press("u")
        await wait_for(pilot, lambda: step_of(app) == point - 11)
        while (shown := step_of(app)) > 0:  # back to the start: step 0 is shown, not taken
            await pilot.press("u")  # (a loaded machine may have paused a point further on)
            await wait_for(pilot, lambda shown=shown: step_of(app) == max(shown - 10, 0))
        assert app.session.sim.step_index == 0 and "PAUSED" in status(app)


def test_variants_train_in_lock_step_and_changes_reach_every_variant():
    """Each step advances every variant; a live change reaches all of them except where a
    variant sets that option itself (the compared one)."""
    session = Session(load_scenario("learning-rate"))
    session.running = False
    for _ in range(3):
        session.request_step()
        session.advance(5.0)
    assert [run.sim.step_index for run in session.runs] == [3] * len(session.runs)
    rates = [run.config.training.lr for run in session.runs]
    assert len(set(rates)) > 1  # the variants compare learning rates
    reached = session.request(session.config.replace(training__clipping="clip_grad_norm"))
    assert reached == len(session.runs)
    session.request(session.config.replace(training__lr=0.003))
    assert [run.config.training.lr for run in session.runs] == [0.003, *rates[1:]]


def test_the_rate_never_bursts_past_its_limit():
    """Right after a start the measured rate stays at the limit (no catch-up burst)."""
    session = Session(load_scenario("default").with_overrides({"network.depth": 2}))
    session.advance(0.05)  # builds the simulators
    started = time.perf_counter()
    taken = 0
    while time.perf_counter() - started < 1.0:
        before = session.sim.step_index
        session.advance(0.04)
        taken += session.sim.step_index - before
        time.sleep(0.01)
    assert taken <= 30 + 3, taken  # 30 steps/s by default, a step or two of slack


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
async def test_everything_a_participant_needs_fits(size):
    """Choice rows stay on one line, the status bar keeps verdict, step and run state, an
    inline error is readable in full, every chart has a title, and messages cover nothing."""
    app = endless_app("sigmoid-vanishing", paused=True)
    async with app.run_test(size=size) as pilot:
        await started(pilot, app)
        await pilot.pause(0.2)  # the next redraw shows it
        text = screen_text(app)
        for name, value in (("init", "xavier_normal"), ("activation", "sigmoid")):
            assert f"< {value} >" in line_with(text, value), (name, line_with(text, value))
        for choice in app.query(ChoiceValue):  # dtype, clipping, task...: one line each
            assert choice.size.height == 1 and "< " in choice.render().plain
        assert text.splitlines()[0].startswith("  VANISHING  step ") and "PAUSED" in text.splitlines()[0]
        await pilot.press("d", "down", "ctrl+a", "ctrl+k", "0", "enter")
        await pilot.pause(0.2)
        error = " ".join(row.split("│")[1].strip() for row in screen_text(app).splitlines()
                         if row.startswith("│") and row.count("│") >= 2)
        assert "must be 1..4096 (got '0')" in error
        await pilot.press("escape", "x")
        await pilot.pause(0.3)
        message = app.query_one("#message")
        assert message.display and "reset" in str(message.render())
        for chart in app.query(".chart"):
            assert chart.border_title and len(chart.border_title) > 3
            if chart.display:
                assert not chart.region.overlaps(message.region)
        assert not app._report_widget.region.overlaps(message.region)


async def test_divergence_report_stays_readable_and_v_does_not_repeat_it():
    """The divergence is reported once in the report area (numbers as 1.2e+05 at step N), the
    message is short, and switching variants brings no new pop-up."""
    app = endless_app("learning-rate")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.session.run.report != "" or any(
            run.report for run in app.session.runs))
        await wait_for(pilot, lambda: not app.session.running)
        await pilot.pause(0.3)
        report = str(app._report_widget.render())
        assert "DIVERGED at step" in report and "Global gradient norm before: " in report
        assert re.search(r"\d\.\de[+-]\d\d at step \d", report)
        assert not re.search(r"1e\d+\.\d", report)  # not 1e17.4
        assert not app._notifications  # no toast covering the charts
        await pilot.press("v")
        await pilot.pause(0.2)
        assert not app._notifications


def test_numbers_read_as_people_write_them():
    """Forensics and axes: 10^17.4 is 2.5e+17; layer and step ticks are whole numbers; the
    verdict badge names its own background and foreground (readable on any theme)."""
    assert format_log10(17.4, 1) == "2.5e+17" and format_log10(-3.0, 1) == "1.0e-03"
    assert format_log10(9.999, 1) == "1.0e+10" and format_log10(-math.inf, 1) == "0"
    for low, high in ((1, 31), (0, 7), (1, 1001), (5, 5)):
        ticks = integer_ticks(low, high)
        assert ticks[0] == low and ticks[-1] == high and all(isinstance(t, int) for t in ticks)
    assert all(" on " in style for style in VERDICT_STYLE.values())
    from tui_grad.config import Config
    from tui_grad.engine import Simulator
    sim = Simulator(Config.from_overrides({"network.depth": 2}))
    text = forensics(sim.step(), [(3, 17.4), (4, 18.0)])
    assert "2.5e+17 at step 3, 1.0e+18 at step 4" in text


async def test_a_chart_waiting_for_its_first_step_has_no_axis_of_fractions():
    """Before the first step (a cold start compiles for seconds) a chart shows its message
    and no ticks: an axis of layers from 0.00 to 1.00 reads as nonsense."""
    from tui_grad.tui.app import GradApp
    from tui_grad.tui.charts import GradientChart

    app = GradApp(load_scenario("default"), autostart=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.2)
        chart = app.query(GradientChart).first()
        chart._inputs = None  # (as before the first step: nothing to draw yet)
        rendered = chart.render()
        text = getattr(rendered, "plain", str(rendered))
        assert "waiting for the first step" in text
        assert not any(tick in text for tick in ("0.00", "0.25", "0.50", "1.00"))


def test_choice_rows_fit_their_width():
    """A choice row gives way by shortening the name, never by wrapping the value."""
    assert choice_text("init", "xavier_normal", 26) == "init     < xavier_normal >"
    assert len(choice_text("clipping", "clip_grad_norm", 26)) <= 26
    assert "clip_grad_norm" in choice_text("clipping", "clip_grad_norm", 26)
    assert choice_text("activation", "sigmoid", 34).startswith("activation")


async def test_status_bar_at_80_columns_keeps_the_run_state():
    """At 80 columns the end of the status bar is what gives way, not the run state."""
    app = endless_app("learning-rate")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.session.sim is not None
                       and app.session.sim.diverged_at is not None and not app.session.running)
        await pilot.pause(0.2)
        first = screen_text(app).splitlines()[0]
        assert first.lstrip().startswith("DIVERGED at step") and "PAUSED" in first
        assert isinstance(app.query(ChoiceValue).first(), ChoiceValue)
