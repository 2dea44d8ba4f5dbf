"""The terminal UI driven with keys, as a participant would: every key and panel does its job."""

from __future__ import annotations

import pytest
from tui_helpers import endless_app, rendered, screen_text, started, status, step_of, wait_for

from tui_grad.config import OPTIONS_BY_NAME
from tui_grad.scenario import load_scenario
from tui_grad.tui.app import CHARTS, GradApp
from tui_grad.tui.panels import GROUPS, ChoiceValue, NumberValue, OptionRow
from tui_grad.tui.screens import ExportScreen, HelpScreen, NotesScreen


async def test_starts_running_and_shows_step_loss_verdict_and_rate():
    """Bare start: the status bar names the scenario, step, loss, verdict (as text) and steps/s."""
    app = endless_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: step_of(app) >= 5)
        await pilot.pause(0.2)
        text = status(app)
        assert text.startswith(" HEALTHY  step ") and "loss" in text and "steps/s" in text
        assert text.endswith("| default")
        assert "HEALTHY" in text


@pytest.mark.parametrize("group", GROUPS, ids=[g.title for g in GROUPS])
async def test_every_panel_key_focuses_its_panel(group):
    """Each panel is one key away, and the key lands on that panel's first option."""
    app = endless_app(paused=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press(group.key)
        await pilot.pause()
        focused = app.focused
        assert isinstance(focused, (ChoiceValue, NumberValue))
        assert focused.row.option.name == group.options[0]


async def test_changing_activation_restarts_and_changes_the_engine():
    """a, right: tanh -> relu; the running config and the simulator's network change."""
    app = endless_app(paused=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await started(pilot, app)
        await pilot.press("a", "right")
        await wait_for(pilot, lambda: app.session.sim.config.network.activation == "relu")
        assert app.session.config.network.activation == "relu"
        await wait_for(pilot, lambda: app.session.history.latest is not None
                       and app.session.history.latest.act_mean[0] > 0)  # relu outputs are >= 0


async def test_typed_learning_rate_applies_live_without_restart():
    """l, type 0.05, enter: lr changes mid-run and the step count keeps going."""
    app = endless_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: step_of(app) >= 10)
        await pilot.press("space")  # typing while it trains works too; paused, Pilot is quicker
        await pilot.press("l", "ctrl+a", "ctrl+k", *"0.05", "enter", "escape", "space")
        await wait_for(pilot, lambda: app.session.sim.config.training.lr == 0.05)
        before = step_of(app)
        await wait_for(pilot, lambda: step_of(app) > before)
        assert step_of(app) > 10  # not restarted


async def test_keys_typed_right_after_a_panel_key_go_into_its_field():
    """Keys that arrive together (a browser sends l 0.005 so; a busy machine queues typed
    keys) go into the field the panel key focuses: the app takes a panel key as it reads it,
    and moves the focus at once (0.005 became .005: the 0 went to what had focus before)."""
    from textual import events

    app = endless_app(paused=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        keys = [("l", "l"), *[(c if c != "." else "full_stop", c) for c in "0.005"]]
        for key, character in keys:  # all read in one go, as from one write to the terminal
            event = events.Key(key, character)
            event.set_sender(app)
            app._driver.send_message(event)
        await pilot.pause(0.2)
        assert isinstance(app.focused, NumberValue)
        assert app.focused.row.option.name == "training.lr" and app.focused.value == "0.005"


async def test_a_panel_key_in_a_number_field_drops_its_unapplied_edit():
    """z in the weight-decay field with 5 typed (no enter): the batch-size panel, and the
    weight decay shows its value again."""
    app = endless_app(paused=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        await pilot.press("w", "ctrl+a", "ctrl+k", "5", "z")
        assert app.focused.row.option.name == "training.batch_size"
        weight_decay = app.query_one("#opt-training-weight_decay").query_one(NumberValue)
        assert weight_decay.value == "0" and app.session.config.training.weight_decay == 0.0


async def test_invalid_typed_value_shows_inline_error_and_changes_nothing():
    """A bad number is explained next to the field; the config stays as it was."""
    app = endless_app(paused=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("d", "ctrl+a", "ctrl+k", *"0", "enter")
        await pilot.pause()
        row = app.query_one("#opt-network-depth", OptionRow)
        assert "must be 1..5000 (got '0')" in str(row.query_one(".error").render())
        assert app.session.config.network.depth == 20
        await pilot.press("ctrl+a", "ctrl+k", *"2.5", "enter")
        await pilot.pause()
        assert "must be an integer" in str(row.query_one(".error").render())


async def test_locked_option_cannot_be_changed():
    """Options a scenario locks are shown but refuse changes, with the reason."""
    app = endless_app("relu-init", paused=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("a", "right")
        await pilot.pause()
        row = app.query_one("#opt-network-activation", OptionRow)
        assert "locked" in str(row.query_one(".error").render())
        assert app.session.config.network.activation == "relu"


async def test_space_pauses_n_steps_x_resets_s_new_seed():
    """space pauses, n advances exactly one step, x restarts at step 0, s changes the seed."""
    app = endless_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: step_of(app) >= 5)
        first_loss = app.session.history.frame().loss[0]
        await pilot.press("space")
        await pilot.pause(0.3)
        paused_at = step_of(app)
        await pilot.pause(0.3)
        assert step_of(app) == paused_at and "PAUSED" in status(app)
        await pilot.press("n")
        await wait_for(pilot, lambda: step_of(app) == paused_at + 1)
        await pilot.press("x")  # back to step 0, still paused (the user paused), shown at once
        await wait_for(pilot, lambda: step_of(app) == 0)
        await pilot.pause(0.3)
        assert step_of(app) == 0 and "PAUSED" in status(app)
        assert app.session.history.frame().loss[0] == first_loss  # same seed, same numbers
        await pilot.press("n")  # the step on screen is taken, and the next one shown
        await wait_for(pilot, lambda: step_of(app) == 1)
        assert app.session.history.frame().loss[0] == first_loss
        await pilot.press("s")
        await wait_for(pilot, lambda: app.session.sim.config.run.seed == 1 and step_of(app) == 0)


async def test_divergence_pauses_reports_and_rewind_then_remedy_continues():
    """A diverging run stops with a report naming where it blew up; u rewinds; lowering the
    learning rate then lets it continue without diverging."""
    app = endless_app("learning-rate")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.session.sim is not None and app.session.sim.diverged_at is not None)
        await pilot.pause(0.3)
        assert "DIVERGED at step" in status(app) and not app.session.running
        report = str(app._report_widget.render())
        assert "DIVERGED at step" in report and ("layer" in report or "loss" in report)
        await pilot.press("u")
        await wait_for(pilot, lambda: app.session.sim.diverged_at is None)
        await pilot.press("l", "ctrl+a", "ctrl+k", *"0.005", "enter", "escape", "space")
        await wait_for(pilot, lambda: step_of(app) >= 20)
        assert app.session.sim.diverged_at is None


async def test_variant_key_shows_the_other_variant_at_the_same_step():
    """v shows the next [[compare]] variant at the step the first one is at: the variants train
    in lock-step, so switching compares them, and nothing restarts."""
    app = endless_app("relu-init")
    async with app.run_test(size=(100, 30)) as pilot:
        assert app.session.variant_name == "xavier"
        await wait_for(pilot, lambda: step_of(app) >= 15)
        await pilot.press("space")
        await pilot.pause(0.3)
        at = step_of(app)
        await pilot.press("v")
        await pilot.pause(0.3)
        assert app.session.sim.config.network.init == "kaiming_normal"
        assert step_of(app) == at and "[kaiming]" in status(app)
        assert f"variant kaiming at step {at}" in screen_text(app)
        first, second = (run.history.frame() for run in app.session.runs)
        assert first.loss.size == second.loss.size == at + 1
        assert first.latest.grad_norm_log10[0] < second.latest.grad_norm_log10[0]  # He init
        await pilot.press("v")
        await pilot.pause(0.2)
        assert "[xavier]" in status(app) and step_of(app) == at


async def test_variant_key_without_variants_says_so():
    """A scenario without [[compare]] answers v with a message instead of nothing."""
    app = endless_app("default")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: step_of(app) >= 1)
        await pilot.press("v")
        await pilot.pause(0.2)
        assert "no [[compare]] variants" in screen_text(app)


async def test_pin_keeps_a_baseline_and_g_switches_quantity():
    """p pins the current run for comparison; g switches dW and dh on the gradient chart."""
    app = endless_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: step_of(app) >= 3)
        await pilot.press("space", "p")
        assert app.baseline is not None and app.baseline.latest is not None
        await pilot.press("g")
        assert app.show_signal


async def test_notes_help_and_export_dialogs(tmp_path, monkeypatch):
    """o shows the notes (t: Chinese), ? lists every key and option, e writes a scenario file."""
    monkeypatch.chdir(tmp_path)
    app = endless_app("sigmoid-vanishing", paused=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("o")
        assert isinstance(app.screen, NotesScreen)
        await pilot.press("t")
        await pilot.press("escape")
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        options = app.screen.query_one("#help-options").render().plain
        for name in OPTIONS_BY_NAME:
            assert name in options
        keys = rendered(app.screen._keys_table(), 76)
        for binding in app.BINDINGS:  # as a person types them: ?, [, ], not question_mark
            assert f" {binding.key_display or binding.key} " in keys
            assert "question_mark" not in keys and "square_bracket" not in keys
        await pilot.press("escape")
        await pilot.press("e")
        assert isinstance(app.screen, ExportScreen)
        await pilot.press("enter")
        await pilot.pause()
        written = tmp_path / "sigmoid-vanishing-export.toml"
        assert written.exists()
        assert load_scenario(written).config == app.session.config


async def test_the_key_bar_lists_the_shown_keys_and_a_click_presses_one():
    """The last line lists each shown key once (as Textual's Footer did: key, then what it
    does), follows focus without changing, and a click on a key does what the key does."""
    from textual.widgets import Footer

    from tui_grad.tui.keybar import KeyBar

    app = endless_app("default", paused=True)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(pilot, lambda: step_of(app) >= 0)
        assert not app.query(Footer)  # (a widget per key, composed again at every focus move)
        bar = app.query_one(KeyBar)
        shown = [b for b in app.BINDINGS if b.show and not b.action.startswith("lesson_step")]
        expected = " ".join(f"{b.key_display or b.key} {b.description}" for b in shown)
        line = screen_text(app).splitlines()[-1]
        assert line.rstrip() == expected[:160].rstrip()
        await pilot.press("l")  # into the learning-rate field, which takes e (as in 1e-3):
        await pilot.pause(0.1)  # e is off the bar there, the app's other keys stay
        in_field = screen_text(app).splitlines()[-1]
        assert " e export" in line and " e export" not in in_field
        assert in_field.startswith(line.split(" e export")[0]) and " q quit" in in_field
        await pilot.press("escape")
        await pilot.click(KeyBar, offset=(0, 0))  # on "?"
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        await pilot.press("escape")
        start = line.index(" n step") + 1
        before = step_of(app)
        await pilot.click(bar, offset=(start + 3, 0))  # on "step" (after n): one step
        await wait_for(pilot, lambda: step_of(app) == before + 1)


async def test_resizing_from_80x24_to_large_and_back_never_crashes():
    """Narrow screens show one chart at a time (1-5 choose); wide ones show all."""
    app = endless_app(paused=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        assert app._main.has_class("narrow")
        for number in range(1, len(CHARTS) + 1):
            await pilot.press(str(number))
            await pilot.pause(0.1)
            assert app._charts[CHARTS[number - 1][0]].display
        await pilot.resize_terminal(200, 60)
        await pilot.pause(0.3)
        assert not app._main.has_class("narrow")
        await pilot.resize_terminal(60, 15)
        await pilot.pause(0.3)
        await pilot.resize_terminal(80, 24)
        await pilot.pause(0.3)


async def test_speed_keys_change_the_step_rate_limit():
    """[ and ] step through the speed limits."""
    app = endless_app(paused=True)
    async with app.run_test(size=(100, 30)) as pilot:
        limit = app.session.max_rate
        await pilot.press("left_square_bracket")
        assert app.session.max_rate < limit
        await pilot.press("right_square_bracket", "right_square_bracket")
        assert app.session.max_rate > limit


async def test_theory_overlay_and_status_text():
    """The status area states chi_1 and the phase; y toggles the overlay; configurations the
    theory does not cover say so instead of drawing a line."""
    app = GradApp(load_scenario("default").with_overrides({
        "network.activation": "relu", "network.init": "xavier_normal", "data.input_dim": 64,
        "run.steps": 10_000_000}))
    app.session.running = False  # step 0 is shown at once; Pilot is quick while nothing trains
    async with app.run_test(size=(160, 48)) as pilot:
        await started(pilot, app)
        await pilot.pause(0.2)
        text = str(app._report_widget.render())
        assert "chi_1 = 0.500" in text and "ordered phase" in text
        await pilot.press("y")
        await pilot.pause(0.2)
        assert not app.show_theory and "chi_1" not in str(app._report_widget.render())
        await pilot.press("y", "b", "right")  # batch norm on: relu + BN is covered
        await wait_for(pilot, lambda: app.session.sim.config.network.batch_norm)
        await pilot.pause(0.2)
        assert "batch norm + relu" in str(app._report_widget.render())
        await pilot.press("escape", "a", "left")  # relu -> leaky_relu with BN: not covered
        await wait_for(pilot, lambda: app.session.sim.config.network.activation != "relu")
        await pilot.pause(0.2)
        assert "not covered" in str(app._report_widget.render())


def test_forensics_names_where_the_blow_up_started():
    """The divergence report says which pass and layer first went non-finite, and the norms
    before it."""
    from tui_grad.session import Diverged, Session
    session = Session(load_scenario("exploding-init"))
    session.running = False
    session.request_step()
    events = session.advance(1.0)
    report = next(e for e in events if isinstance(e, Diverged)).report
    assert report.startswith("DIVERGED at step 0: activations overflowed first at layer ")
    assert "(forward pass)" in report


def different_value(opt, current):
    """A valid value other than ``current`` for ``opt``, as a user would pick or type it."""
    if opt.kind is bool or opt.choices:
        return None  # changed with the right arrow
    if opt.kind is int:
        return current + 1 if opt.high is None or current + 1 <= opt.high else current - 1
    candidate = current * 0.5 if current else 0.5
    return candidate if opt.low is None or candidate > opt.low else current * 2


async def test_every_panel_option_reaches_the_engine():
    """Each option in every panel, changed from the keyboard, becomes the simulator's config
    (or, when the combination is invalid, is refused with the reason beside it)."""
    from tui_grad.config import ConfigError, fit_change
    app = endless_app("default", paused=True)  # changes reach the engine paused too
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        for group in GROUPS:
            for name in group.options:
                opt = OPTIONS_BY_NAME[name]
                row = app.query_one(f"#opt-{name.replace('.', '-')}", OptionRow)
                current = app.session.config[name]
                value = different_value(opt, current)
                if value is None:
                    values = (False, True) if opt.kind is bool else opt.choices
                    value = values[(values.index(current) + 1) % len(values)]
                try:  # model, task and loss bring along what fits them
                    expected, _ = fit_change(app.session.config, name, value)
                except ConfigError:
                    expected = None
                widget = row.query_one("ChoiceValue, NumberValue")
                widget.focus()
                if opt.kind is bool or opt.choices:
                    await pilot.press("right")
                else:
                    widget.value = str(value)  # typing key by key is tested elsewhere
                    await pilot.press("enter")
                if expected is None:
                    await pilot.pause()
                    assert str(row.query_one(".error").render()), name
                    continue
                await wait_for(pilot, lambda e=expected: app.session.sim.config == e)


async def test_the_status_bar_is_redrawn_only_when_it_changes_and_without_a_layout():
    """Paused, the status bar is left alone; running, it changes without a layout of the
    whole screen (at every tick, 12 a second, that took a third of a core from the training
    and from a first start's compiling)."""
    app = endless_app(paused=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: "PAUSED" in app._status.text.plain)
        calls: list[dict] = []
        refresh = app._status.refresh
        app._status.refresh = lambda *args, **kwargs: (calls.append(kwargs), refresh(*args, **kwargs))
        await pilot.pause(1.0)
        assert calls == []
        await pilot.press("space")
        await wait_for(pilot, lambda: step_of(app) >= 3)
        assert calls and not any(call.get("layout") for call in calls)
