"""The main screen in the interface's language: status bar, footer, theory line, messages."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from tui_helpers import endless_app, screen_text, status

from tui_grad.config import Config
from tui_grad.engine import theory
from tui_grad.engine_text import THEORY_REASONS, describe_theory

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


@pytest.mark.parametrize("argv", [["--lang", "zh", "scenarios"], ["scenarios", "--lang", "zh"],
                                  ["--lang=en", "--lang", "zh", "scenarios"]])
def test_lang_goes_before_or_after_the_command_and_the_last_one_wins(argv, capsys):
    from tui_grad.cli import main
    from tui_grad.scenario import load_scenario

    assert main(argv) == 0
    assert load_scenario("sigmoid-vanishing").title_zh in capsys.readouterr().out


def test_an_abbreviated_lang_is_refused_not_ignored(capsys):
    from tui_grad.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["run", "default", "--headless", "--lan", "zh"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("tui-grad: error: unrecognized arguments: --lan zh") and err.count("\n") == 1


def test_a_run_of_zero_steps_says_so(capsys):
    from tui_grad.cli import main

    assert main(["run", "default", "--headless", "--steps", "0"]) == 0
    assert capsys.readouterr().out == "default: 0 steps, final loss -, -\n"


def test_the_locale_chooses_chinese_for_a_program_started_without_lang(monkeypatch):
    """LC_ALL wins over LANG; a zh locale gives Chinese errors, C gives English."""
    import subprocess
    import sys

    for lc_all, expected in (("zh_CN.UTF-8", "错误"), ("C.UTF-8", "error")):
        monkeypatch.setenv("LC_ALL", lc_all)
        result = subprocess.run([sys.executable, "-m", "tui_grad", "run", "no-such", "--headless"],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2 and f"tui-grad: {expected}: " in result.stderr


ASCII_TEXTS = ["the quick brown fox  jumps over\tthe lazy dog ", "  leading spaces and a-long-word_x",
               "x", "", "a  b", "chi_1 = 0.500: the squared gradient shrinks; ordered phase (y hides it)"]


def test_english_wraps_exactly_as_rich_and_textual_wrap_it():
    """The Chinese line-break patterns split text without Chinese exactly as the originals."""
    import re

    from tui_grad.tui import linebreak

    rich_word, textual_chunk = re.compile(r"\s*\S+\s*"), re.compile(r"\S+\s*|\s+")  # theirs
    for text in ASCII_TEXTS:
        assert [m.span() for m in linebreak.RICH_WORD.finditer(text)] == [
            m.span() for m in rich_word.finditer(text)]
        assert [m.span() for m in linebreak.TEXTUAL_CHUNK.finditer(text)] == [
            m.span() for m in textual_chunk.finditer(text)]


def test_chinese_wraps_between_characters_not_before_a_comma():
    """The app breaks a Chinese sentence where the width ends (both Rich's and Textual's
    wrappers), never before closing punctuation; the patterns it replaces are still there."""
    import rich._wrap
    import textual._wrap
    from rich.text import Text
    from textual.content import Content

    import tui_grad.tui.app  # noqa: F401  (enables the line breaks)
    from tui_grad.tui import linebreak

    assert rich._wrap.re_word is linebreak.RICH_WORD
    assert textual._wrap.re_chunk is linebreak.TEXTUAL_CHUNK
    sentence = "理论：chi_1 = 0.056，梯度的平方每层乘以此因子（缩小）；深度尺度 xi = 0.346 层；有序相。"
    rich_lines = [line.plain for line in Text(sentence).wrap(_console(), 24)]
    textual_lines = [line.plain for line in Content(sentence).wrap(24)]
    for lines in (rich_lines, textual_lines):
        assert "".join(lines).replace(" ", "") == sentence.replace(" ", "")
        assert all(rendered_width(line) <= 24 for line in lines)
        assert all(rendered_width(line) >= 20 for line in lines[:-1]), lines  # full lines
        assert not any(line.lstrip()[:1] in linebreak.CLOSING for line in lines)


def _console():
    import io

    from rich.console import Console

    return Console(width=24, file=io.StringIO())


def rendered_width(text: str) -> int:
    from rich.cells import cell_len

    return cell_len(text.rstrip())


def test_a_line_break_inside_a_chinese_paragraph_is_not_a_space():
    """Lines of one paragraph join; headings, new list items, code blocks and hard breaks
    stay on their own lines."""
    from tui_grad.tui.linebreak import join_chinese_lines

    assert join_chinese_lines("梯度缩小，\n曲线变平\n- 列表\n- 一项\n接着\nReLU 和\nsigmoid") == (
        "梯度缩小，曲线变平\n- 列表\n- 一项接着\nReLU 和\nsigmoid")
    kept = "## 标题\n正文\n```\n代码\n代码\n```\n硬换行  \n下一行\n| 表 |\n| 格 |"
    assert join_chinese_lines(kept) == kept


@pytest.mark.parametrize("command", [[], ["run"], ["lesson"], ["serve"], ["sweep"], ["coord-check"]])
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_help_fits_80_columns(command, lang, monkeypatch, capsys):
    """argparse counts characters; tui-grad's help counts cells (a Chinese character is two)
    and breaks Chinese between characters, the usage's lines stay aligned, and the examples
    fit as they are (one command a line, to copy)."""
    from rich.cells import cell_len

    from tui_grad.cli import main

    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit):
        main([*command, "--lang", lang, "--help"])
    lines = capsys.readouterr().out.splitlines()
    assert max(cell_len(line) for line in lines) <= 80
    assert "  tui-grad run default --headless --steps 200 --set network.depth=100 --csv -" in lines
    if lang == "en":
        return
    assert lines[0].startswith("用法：tui-grad")
    assert "选项:" in lines or "选项：" in lines
    second = lines[1]
    if not second.strip():  # the usage fits one line
        return
    prog = " ".join(["tui-grad", *command])
    assert len(second) - len(second.lstrip()) == cell_len(f"用法：{prog} ")  # under its first option
