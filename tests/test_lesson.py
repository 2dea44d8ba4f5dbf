"""Lessons: files, their errors, `tui-grad lesson` and a walk through with Pilot."""

from __future__ import annotations

import pytest

from tui_grad.cli import main
from tui_grad.config import ConfigError
from tui_grad.lesson import bundled_lessons, load_lesson

GOOD_STEP = '[[step]]\nscenario = "default"\nprompt = "Predict, then press space."\n'


def write(tmp_path, text, name="lesson.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_the_bundled_lesson_follows_the_explainer_in_both_languages():
    """Causes (depth, sigmoid, large weights), symptoms, then the remedies in order; every
    step has an English and a Chinese prompt that asks for a prediction."""
    lesson = load_lesson("vanishing-and-exploding")
    names = [step.scenario.name for step in lesson.steps]
    assert names[:4] == ["depth", "sigmoid-vanishing", "tanh-small-init", "exploding-init"]
    order = ["clipping", "weight-decay", "relu-init", "batch-norm", "residual", "rnn-vs-lstm"]
    assert [n for n in names if n in order] == order
    for step in lesson.steps:
        assert "Predict" in step.prompt and "预测" in step.prompt_zh
        assert step.title and step.title_zh
    assert "vanishing-and-exploding" in bundled_lessons()


def test_validate_checks_lessons_too(capsys, tmp_path):
    path = write(tmp_path, GOOD_STEP * 2)
    assert main(["validate", "vanishing-and-exploding", str(path), "default"]) == 0
    out = capsys.readouterr().out
    assert f"OK  {path}: lesson lesson (2 steps)" in out and "OK  default:" in out


@pytest.mark.parametrize("text,message", [
    ("[lesson]\ntitle = 'x'\n", "step: a lesson needs at least one [[step]]"),
    ('[lesson]\ntitel = "x"\n' + GOOD_STEP, ":2: lesson.titel: unknown key; did you mean 'title'?"),
    ('[[step]]\nprompt = "p"\n', ":1: step[1]: needs scenario = \"NAME\""),
    ('[[step]]\nscenario = "sigmoid-vanishin"\nprompt = "p"\n',
     ":2: step[1].scenario: scenario 'sigmoid-vanishin': sigmoid-vanishin: no such file or bundled "
     "scenario; did you mean 'sigmoid-vanishing'?"),
    (GOOD_STEP + 'set = { "network.depth" = 0 }\n',
     ":4: step[1].set: network.depth: must be 1..5000 (got 0)"),
    (GOOD_STEP + 'watch = ["los[step=1] < 2"]\n', ":4: step[1].watch: unknown metric 'los'"),
    ('[[step]]\nscenario = "default"\n', ":1: step[1].prompt: needs prompt"),
    (GOOD_STEP + 'promt = "x"\n', ":4: step[1].promt: unknown key; did you mean 'prompt'?"),
    ("[[step]\n", ":1: malformed TOML"),
])
def test_bad_lesson_files_are_one_line_errors(tmp_path, capsys, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_lesson(str(path))
    assert message in str(info.value), str(info.value)
    assert main(["lesson", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"tui-grad: error: {path}")


def test_a_step_names_a_scenario_file_beside_the_lesson(tmp_path):
    write(tmp_path, "[network]\ndepth = 7\n", "mine.toml")
    path = write(tmp_path, '[[step]]\nscenario = "mine.toml"\nprompt = "p"\nset = { "network.width" = 9 }\n')
    config = load_lesson(str(path)).steps[0].scenario.config
    assert (config.network.depth, config.network.width) == (7, 9)


def test_lesson_command_errors(capsys):
    assert main(["lesson", "vanishing-and-exploding", "--step", "99"]) == 2
    assert "--step must be 1..13 (got 99)" in capsys.readouterr().err
    assert main(["lesson", "no-such-lesson"]) == 2
    assert "no such file or bundled lesson" in capsys.readouterr().err
    assert main(["lesson", "vanishing-and-exploding"]) == 2  # pytest's stdin is no terminal
    assert "the UI needs a terminal" in capsys.readouterr().err


async def test_a_lesson_walks_forward_and_back_with_its_prompts(tmp_path):
    """The prompt comes first with the run paused; space starts it; N opens the next step
    (its scenario, paused, its prompt), P the previous; past the last step it says so; the
    status bar says which step; t shows the prompt in Chinese; no step is shown before the
    prompt closes (step 0 could give the answer away)."""
    from tui_helpers import screen_text, status, wait_for

    from tui_grad.tui.app import GradApp
    from tui_grad.tui.screens import LessonPromptScreen

    path = write(tmp_path, GOOD_STEP.replace("Predict, then", "First: predict, then")
                 + '[[step]]\nscenario = "sigmoid-vanishing"\ntitle = "Second"\nprompt = "Now the sigmoid."\n'
                 'prompt_zh = "现在是 sigmoid。"\nwatch = ["loss[step=last] < 10"]\n')
    lesson = load_lesson(str(path))
    app = GradApp(lesson=lesson)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, LessonPromptScreen))
        assert "step 1/2" in screen_text(app) and "First: predict" in screen_text(app)
        assert not app.session.running
        await pilot.pause(1.0)
        assert app.session.history.latest is None  # no step 0 on screen before the prediction
        await pilot.press("space")
        await wait_for(pilot, lambda: app.session.running and not isinstance(app.screen, LessonPromptScreen))
        assert status(app).startswith("lesson 1/2")
        await pilot.press("N")
        await wait_for(pilot, lambda: isinstance(app.screen, LessonPromptScreen))
        assert app.scenario.name == "sigmoid-vanishing" and not app.session.running
        text = screen_text(app)
        assert "step 2/2: Second" in text and "Now the sigmoid." in text and "loss[step=last] < 10" in text
        assert "last step" in text
        await pilot.press("t")
        await pilot.pause(0.2)
        assert "现在是 sigmoid。" in screen_text(app)
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.session.history.latest is not None)
        assert status(app).startswith("lesson 2/2") and "Second" in status(app)
        assert not app.session.running
        await pilot.press("N")
        await wait_for(pilot, lambda: "last step of the lesson" in screen_text(app))
        await pilot.press("P")
        await wait_for(pilot, lambda: app.scenario.name == "default"
                       and isinstance(app.screen, LessonPromptScreen))
        assert len(app.screen_stack) == 2  # the main screen and the new prompt, nothing else
        assert "step 1/2" in screen_text(app) and "P: previous" not in screen_text(app)
        await pilot.press("o")  # the prompt says o shows the notes: over it, escape comes back
        await wait_for(pilot, lambda: len(app.screen_stack) == 3)
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, LessonPromptScreen))


async def test_the_lesson_keys_are_only_in_a_lesson():
    from tui_helpers import endless_app, screen_text, wait_for

    app = endless_app("default", paused=True)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(pilot, lambda: app.session.history.latest is not None)
        footer = screen_text(app).splitlines()[-1]
        assert " next " not in footer and " prev " not in footer
        await pilot.press("N")  # nothing happens outside a lesson
        await pilot.pause(0.1)
        assert app.scenario.name == "default"
