"""A lesson's claims to watch, evaluated live on the run shown, as `run --check` would."""

from __future__ import annotations

import dataclasses

import pytest

from tui_grad import headless
from tui_grad.config import ConfigError
from tui_grad.expect import parse_expectation
from tui_grad.lesson import load_lesson
from tui_grad.scenario import load_scenario
from tui_grad.session import Session

CLAIMS = ["grad_norm[layer=1, step=0] / grad_norm[layer=last, step=0] < 1e-15",
          "loss[step=last] < loss[step=0]", "loss_rises < 3", "status[step=5] == vanishing",
          "loss[step=12] < 0.5 * loss[step=0]"]


def session_after(name: str, steps: int, claims: list[str], run_steps: int | None = None) -> Session:
    """``steps`` steps of the scenario, its run.steps set to ``run_steps`` (default: steps)."""
    scenario = load_scenario(name).with_overrides({"run.steps": run_steps or max(steps, 1)})
    parsed = [parse_expectation({"check": text}, []) for text in claims]
    session = Session(scenario, parsed)
    session.running = False
    for _ in range(steps):
        session.request_step()
        session.advance(1.0)
    return session


@pytest.mark.parametrize("steps", [1, 8])
def test_a_watched_claim_reads_what_check_reads_after_as_many_steps(steps):
    """Once the steps a claim reads are taken, its verdict and measured value are those of
    `run --check` after the same number of steps; until then it waits."""
    session = session_after("sigmoid-vanishing", steps, CLAIMS)
    scenario = load_scenario("sigmoid-vanishing").with_overrides({"run.steps": steps})
    scenario = dataclasses.replace(scenario, expects=tuple(session.claims))  # kept as --check keeps
    results = headless.run(scenario, steps)
    for item in session.watched():
        if any(step >= steps for step in item.claim.steps()):  # step=5, step=12: not yet reached
            assert item.state == "waiting", item.claim.text
            continue
        passed, measured = headless.evaluate(
            item.claim, lambda ref, step: headless.lookup(results[0], ref, step))
        assert (item.state, item.measured) == ("pass" if passed else "fail", measured), item.claim.text
        assert item.so_far == (-1 in item.claim.steps())


def test_nothing_is_decided_before_the_first_step_and_a_rewind_forgets():
    session = session_after("sigmoid-vanishing", 0, CLAIMS)
    assert {item.state for item in session.watched()} == {"waiting"}
    session = session_after("sigmoid-vanishing", 14, CLAIMS, run_steps=100)
    assert session.watched()[4].state in ("pass", "fail")  # step 12 was taken
    assert session.watched()[1].state == "waiting"  # step=last: the run is not at run.steps yet
    session.request_rewind()
    session.advance(1.0)  # back to the rewind point at step 10: step 12 is to come again
    assert session.watched()[4].state == "waiting"
    assert session.watched()[0].state in ("pass", "fail")  # step 0 stays
    losses = session.run.history.frame().loss
    assert session.run.history.loss_rises == int((losses[1:] > losses[:-1]).sum())  # recounted


def test_a_claim_that_cannot_be_computed_fails_with_the_reason_instead_of_crashing():
    session = session_after("default", 2, ["diverged_at / 10 < 5"])
    [item] = session.watched()
    assert item.state == "fail" and "only numbers" in item.measured


def test_a_probe_metric_cannot_be_watched(tmp_path):
    path = tmp_path / "lesson.toml"
    path.write_text('[lesson]\ntitle = "L"\n[[step]]\nscenario = "default"\nprompt = "p"\n'
                    'watch = ["sharpness[step=0] < 2 / lr"]\n')
    with pytest.raises(ConfigError, match="sharpness is measured on request, not live"):
        load_lesson(str(path))


async def test_the_status_bar_and_a_message_give_the_verdict():
    """In a lesson, the status bar counts the watched claims that hold, and the message line
    says a claim's verdict when it is known."""
    from tui_helpers import screen_text, status, wait_for

    from tui_grad.tui.app import GradApp
    from tui_grad.tui.screens import LessonPromptScreen

    lesson = load_lesson("vanishing-and-exploding")
    app = GradApp(lesson=lesson, lesson_step=1)  # sigmoid-vanishing, a claim on step 0
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, LessonPromptScreen))
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.session.history.latest is not None)
        assert "watch 0/1" in status(app)
        await pilot.press("n")
        await wait_for(pilot, lambda: "watch 1/1" in status(app))
        await wait_for(pilot, lambda: "watch: PASS" in screen_text(app))


async def test_the_prompt_hides_step_0_until_it_closes():
    """Step 0 of exploding-init diverges: while the prompt asks for a prediction the status bar
    must not say so; escape closes it and shows step 0 (paused), as anywhere else."""
    from tui_helpers import status, wait_for

    from tui_grad.tui.app import GradApp
    from tui_grad.tui.screens import LessonPromptScreen

    app = GradApp(lesson=load_lesson("vanishing-and-exploding"), lesson_step=3)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, LessonPromptScreen))
        await pilot.pause(1.5)
        assert app.session.history.latest is None and "DIVERGED" not in status(app)
        await pilot.press("escape")
        await wait_for(pilot, lambda: "DIVERGED at step 0" in status(app))
        assert not app.session.running
