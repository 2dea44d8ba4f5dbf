"""The main screen in the interface's language: status bar, footer, theory line, messages."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from tui_helpers import endless_app, screen_text, status

from tui_grad.config import Config
from tui_grad.engine import theory
from tui_grad.tui.texts import THEORY_REASONS, describe_theory

ENGINE = Path(theory.__file__).parent

THEORY_CASES = {
    "ordered": {"network.activation": "tanh", "network.init_gain": 0.5},
    "chaotic": {"network.activation": "tanh", "network.init_gain": 2.0},
    "critical": {"network.activation": "relu", "network.init": "he_normal"},
    "bn-explosion": {"network.activation": "relu", "network.norm": "batch_norm"},
    "residual": {"network.residual": True},
    "mup": {"network.parametrization": "mup"},
    "layer norm": {"network.norm": "layer_norm"},
    "bn + tanh": {"network.activation": "tanh", "network.norm": "batch_norm"},
}


@pytest.mark.parametrize("case", THEORY_CASES)
def test_the_theory_line_says_what_the_engine_says(case):
    """In English the UI's line is the engine's own describe(); in Chinese it is translated
    and keeps the numbers."""
    prediction = theory.predict(Config.from_overrides(THEORY_CASES[case]), 0.0, 1.0)
    assert describe_theory(prediction) == prediction.describe()


@pytest.mark.parametrize("case", ["ordered", "residual", "mup"])
def test_the_theory_line_in_chinese_keeps_the_numbers(case, language):
    prediction = theory.predict(Config.from_overrides(THEORY_CASES[case]), 0.0, 1.0)
    english = describe_theory(prediction)
    language("zh")
    chinese = describe_theory(prediction)
    assert chinese.startswith("理论：") and "theory" not in chinese
    numbers = [word for word in english.replace(",", " ").replace(";", " ").split()
               if word[:1].isdigit() or word.startswith("x")]
    assert all(number.rstrip(":") in chinese for number in numbers if number[1:2].isdigit())


def test_every_reason_the_engine_gives_for_no_theory_is_translated():
    """A new not_covered(..., "reason") in the engine needs its entry in THEORY_REASONS."""
    reasons = set()
    for path in ENGINE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", ""))
                    == "not_covered" and len(node.args) == 2):
                assert isinstance(node.args[1], ast.Constant), f"{path.name}:{node.lineno}"
                reasons.add(node.args[1].value)
    assert len(reasons) >= 5
    assert reasons == set(THEORY_REASONS)


async def test_the_main_screen_in_chinese(language):
    """Status bar, footer, chart titles and the theory line in Chinese at 80x24; option keys
    and values stay as they are typed."""
    language("zh")
    app = endless_app("sigmoid-vanishing", paused=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.5)
        while app.session.history.latest is None:
            await pilot.pause(0.1)
        app.redraw(force=True)
        await pilot.pause()
        line = status(app)
        assert "第 0 步" in line and "已暂停" in line and "损失" in line
        assert "梯度消失" in line or "健康" in line
        text = screen_text(app)
        assert "帮助" in text and "退出" in text  # the footer
        assert "sigmoid" in text  # an option value stays English
        await pilot.press("space")
        await pilot.pause(0.3)
        assert "步/秒" in status(app)
        await pilot.press("v")
        await pilot.pause()
        assert "（2/2）" in screen_text(app)  # "variant relu at step k (2 of 2)"


async def test_the_main_screen_in_english_says_it_in_english():
    app = endless_app("sigmoid-vanishing", paused=True)
    async with app.run_test(size=(80, 24)) as pilot:
        while app.session.history.latest is None:
            await pilot.pause(0.1)
        line = status(app)
        assert "step 0" in line and "PAUSED" in line
        assert not any("\u4e00" <= ch <= "\u9fff" for ch in line)


def test_export_keeps_the_chinese_title_and_notes(tmp_path, capsys):
    """`tui-grad export` writes a file that still has the scenario's Chinese texts, and
    `tui-grad scenarios` lists the titles in the language in use."""
    from tui_grad.cli import main
    from tui_grad.scenario import load_scenario

    assert main(["export", "sigmoid-vanishing", "-o", str(tmp_path / "mine.toml")]) == 0
    original, exported = load_scenario("sigmoid-vanishing"), load_scenario(str(tmp_path / "mine.toml"))
    assert exported.title_zh == original.title_zh and exported.title_zh
    assert exported.notes_zh == original.notes_zh and exported.notes_zh
    capsys.readouterr()
    assert main(["scenarios", "--lang", "zh"]) == 0
    assert original.title_zh in capsys.readouterr().out
