"""The terminal UI's charts, panels, dialogs and probes in Chinese: what they say, and that
Chinese text (two cells a character) still fits, at 80x24 too."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from rich.cells import cell_len
from rich.text import Text
from tui_helpers import endless_app, rendered, screen_text, wait_for

from tui_grad import engine_text
from tui_grad.config import Config
from tui_grad.engine import probe
from tui_grad.i18n import tr
from tui_grad.lesson import load_lesson
from tui_grad.scenario import load_scenario
from tui_grad.tui import charts, probes, screens
from tui_grad.tui.panels import GROUPS, SHORT_TITLES


def widths(drawn: str) -> list[int]:
    """The terminal cells of each line of a figure (its colour codes not counted)."""
    return [Text.from_ansi(line).cell_len for line in drawn.splitlines()]


def histograms(quantity: str = "weight_grad") -> list[probe.Histogram]:
    edges = np.linspace(-3.0, 1.0, 11)
    return [probe.Histogram(layer, quantity, edges, np.arange(10) * (layer + 1), 3, 1, True)
            for layer in (0, 4, 9)]


def net(**fields) -> SimpleNamespace:
    """What spectrum_note reads of a config."""
    values = {"model": "mlp", "init": "xavier_normal", "batch_norm": False, "residual": False,
              "activation": "tanh", "depth": 10} | fields
    return SimpleNamespace(network=SimpleNamespace(**values))


# ------------------------------------------------------------------ key bindings
@pytest.mark.parametrize("make", [
    lambda: screens.HelpScreen([]),
    lambda: screens.NotesScreen("title", "notes", "讲解"),
    lambda: screens.ExportScreen(Config.from_overrides({}), load_scenario("default")),
    lambda: screens.MapScreen("default", Config.from_overrides({})),
    lambda: screens.LessonPromptScreen(load_lesson("vanishing-and-exploding"), 0, "en"),
    lambda: probes.ProbeScreen(session=None),
], ids=["help", "notes", "export", "map", "lesson", "probes"])
def test_every_screens_footer_words_follow_the_language(language, make):
    """translated_bindings: the node's bindings in Chinese, the class's left in English (the
    next screen, or an English process, translates again from them)."""
    english = {b.id: (b.description, b.tooltip) for _, b in make()._bindings if b.id}
    language("zh")
    screen = make()
    shown = {b.id: (b.description, b.tooltip) for _, b in screen._bindings if b.id}
    assert shown == {key: (tr(description), tr(tooltip)) for key, (description, tooltip) in english.items()}
    assert {"关闭", "取消"} & {description for description, _ in shown.values()}
    for binding in type(screen).BINDINGS:  # the class keeps the marked English
        assert binding.description == english[binding.id][0]


def test_panel_titles_and_footer_words_have_chinese(language):
    language("zh")
    for group in GROUPS:
        assert tr(group.title) != group.title and cell_len(tr(group.title)) <= 12, group.title
        assert tr(group.short) != group.short and cell_len(tr(group.short)) <= 6, group.short
    assert set(SHORT_TITLES) <= {g.title for g in GROUPS}


# ------------------------------------------------------------------ plotext and wide characters
def test_wide_characters_keep_their_two_cells_in_plotext(language):
    """plotext gives each character one cell: without the padding a Chinese legend pushes the
    frame of the figure out by one cell per character."""
    import plotext as plt

    language("zh")
    for text, padded in ((tr("pinned"), True), ("||dL/dW||", False)):
        plt.clf()
        plt.plotsize(40, 10)
        plt.theme("clear")
        plt.plot([1, 2, 3], [1, 2, 3], label=charts.pad_wide(text))
        plt.xlabel(charts.pad_wide(tr("layer")))
        drawn = charts.unpad(plt.build())
        assert text in drawn and charts.WIDE_PAD not in drawn
        assert set(widths(drawn)) == {40}, (text, widths(drawn))
        assert (charts.pad_wide(text) != text) == padded
    styled = Text("a") + Text("宽" + charts.WIDE_PAD, style="red") + Text("b")
    assert charts.unpad_text(styled).plain == "a宽b" and charts.unpad_text(styled).cell_len == 4


def test_probe_figures_in_chinese_fit_their_width(language):
    language("zh")
    drawn = probes.draw_distributions(histograms(), "weight_grad", 60, 16, False, "layer")
    assert "第 1 层" in drawn and "第 10 层" in drawn and "权重梯度 dL/dW" in drawn and "计数" in drawn
    assert "恰为零的值（不在对数轴上）：第 1 层: 3" in drawn and "NaN 或 inf：" in drawn
    figure = drawn.split("\n恰为零")[0]
    assert max(widths(figure)) <= 60 and charts.WIDE_PAD not in drawn
    steps = probes.draw_distributions(histograms("signal"), "signal", 60, 16, False, "time step")
    assert "时间步 1" in steps and "反向传播信号" in steps

    config = SimpleNamespace(network=SimpleNamespace(model="mlp", depth=10, init="orthogonal",
                                                     batch_norm=False, residual=False,
                                                     activation="tanh"))
    spectrum = probe.Spectrum(np.array([2.0, 1.0, 0.5]), 0, 9, None)
    drawn = probes.draw_spectrum(spectrum, config, 60, 14, False)
    assert "log10 奇异值，dh_10/dh_1（9 层，样本 0）" in drawn and "最大 2，最小 0.5" in drawn
    assert max(widths(drawn.split("\n0 处的横线")[0])) <= 60

    result = probe.Sharpness(150.0, 12, 1e-4, False)
    drawn = probes.draw_sharpness(result, [(0, 100.0), (5, 150.0)], 0.02, "adam", 60, 14, False)
    assert "最大特征值 150 = 1.50 x 2/lr（2/lr = 100）；幂迭代 12 次" in drawn and "（未收敛）" in drawn
    assert "使用 adam 时阈值不同" in drawn and "黑塞矩阵最大特征值" in drawn
    assert max(widths(drawn.split("\n最大特征值")[0])) <= 60


def test_probe_figures_stay_english_in_english():
    drawn = probes.draw_distributions(histograms(), "weight_grad", 60, 16, False, "layer")
    assert "layer 1" in drawn and "exact zeros (not on the log axis): layer 1: 3" in drawn
    result = probe.Sharpness(150.0, 12, 1e-4, True)
    drawn = probes.draw_sharpness(result, [(0, 150.0)], 0.02, "sgd", 60, 14, False)
    assert "top eigenvalue 150 = 1.50 x 2/lr (2/lr = 100); 12 power iterations" in drawn
    assert drawn.endswith("above 2/lr plain gradient descent diverges along that direction")


@pytest.mark.parametrize("fields", [
    {"model": "lstm"}, {"model": "rnn"}, {"batch_norm": True}, {"activation": "linear"},
    {"activation": "linear", "init": "orthogonal"}, {"activation": "tanh"}, {"activation": "relu"},
    {"activation": "sigmoid"}])
def test_every_spectrum_note_is_in_chinese(language, fields):
    english = probes.spectrum_note(net(**fields))
    language("zh")
    chinese = probes.spectrum_note(net(**fields))
    assert english.startswith("theory: ") and chinese.startswith("理论：") and chinese == tr(english)


def test_what_the_engine_refuses_is_said_in_chinese(language, make_sim):
    """Every reason the engine's probes give the probe screen has a Chinese sentence."""
    refused = probe.jacobian_not_covered(Config.from_overrides({"network.norm": "layer_norm"}))
    with pytest.raises(RuntimeError) as no_batch:
        make_sim(network__depth=2, network__width=4).layer_values()
    reasons = [refused, str(no_batch.value)]
    assert all(reason in engine_text.PROBE_REASONS for reason in reasons)
    assert probes.reason(RuntimeError(reasons[1])).startswith("no step taken yet")
    language("zh")
    assert probes.reason(ValueError(refused)).startswith("雅可比矩阵探针暂不支持层归一化")
    assert probes.reason(RuntimeError(reasons[1])).startswith("还没有训练步")
    assert probes.reason(ValueError("something else")) == "something else"


# ------------------------------------------------------------------ lesson prompt and notes
def test_the_lesson_prompt_is_in_the_interface_language_and_t_switches_the_lesson(language):
    lesson = load_lesson("vanishing-and-exploding")
    language("zh")
    prompt = screens.LessonPromptScreen(lesson, 0, "en")._text()
    title = lesson.steps[0].text("en")[0]
    assert prompt.startswith(f"# 第 1/{len(lesson.steps)} 步：{title}") and "观察：" in prompt
    assert "space: 开始运行 - N: 下一步 - o: 讲解 - t: 中文 - escape: 关闭" in prompt
    assert "P: 上一步" in screens.LessonPromptScreen(lesson, 1, "zh")._text()
    language("en")
    prompt = screens.LessonPromptScreen(lesson, len(lesson.steps) - 1, "zh")._text()
    title = lesson.steps[-1].text("zh")[0]
    assert prompt.startswith(f"# step {len(lesson.steps)}/{len(lesson.steps)}: {title}")
    assert "space: start the run - last step - P: previous step - o: notes - t: English" in prompt


def test_notes_open_in_the_interface_language(language):
    assert screens.NotesScreen("t", "English notes", "中文讲解")._text().count("English notes") == 1
    assert "中文讲解" in screens.NotesScreen("t", "", "中文讲解")._text()  # rather than nothing
    language("zh")
    shown = screens.NotesScreen("t", "English notes", "中文讲解")._text()
    assert "中文讲解" in shown and "English notes" not in shown
    assert shown.endswith("*t: English / 中文 - escape: 关闭*")
    assert "English notes" in screens.NotesScreen("t", "English notes", "")._text()


# ------------------------------------------------------------------ the screens at 80x24
def assert_fits(app, *words: str) -> str:
    """The screen shows ``words`` and every row is the terminal's 80 cells, no more."""
    text = screen_text(app)
    for word in words:
        assert word in text, word
    assert charts.WIDE_PAD not in text
    assert {cell_len(line) for line in text.splitlines()} == {80}, [
        line for line in text.splitlines() if cell_len(line) != 80]
    return text


async def test_the_screens_in_chinese_at_80x24(language, tmp_path, monkeypatch):
    """A panel, help, notes, export, the map and the probes, in Chinese on an 80x24 terminal:
    their Chinese words on screen, nothing past the edge, the charts' figures within their
    frames."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TUI_GRAD_STATE_DIR", str(tmp_path))
    (tmp_path / "taken.toml").write_text("")
    language("zh")
    app = endless_app("sigmoid-vanishing", paused=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.session.history.latest is not None)
        await pilot.pause(0.2)
        chart = app.query_one("#chart-grad")
        assert_fits(app, "激活函数 (a)", "各层 ||dL/dW||，log10", "第 0 步", "层")
        figure = chart.render()
        assert charts.WIDE_PAD not in figure.plain
        assert max(cell_len(line) for line in figure.plain.splitlines()) <= chart.size.width

        await pilot.press("i")  # the init panel: its rows, its title
        await pilot.pause(0.1)
        assert_fits(app, "初始化 (i)", "init")

        await pilot.press("escape", "question_mark")
        await pilot.pause(0.2)
        assert_fits(app, "按键（escape 关闭）")
        options = app.screen.query_one("#help-options").render().plain
        assert "选项" in options and "需重启" in options and "即时生效" in options
        table = rendered(app.screen._keys_table(), 76)
        assert "激活函数面板" in table and "在各个值之间移动" in table and "其他键" in table

        await pilot.press("escape", "o")
        await pilot.pause(0.3)
        assert_fits(app, "为什么 sigmoid 堆叠会梯度消失")  # the Chinese notes first

        await pilot.press("escape", "e")
        await pilot.pause(0.1)
        assert_fits(app, "将当前配置导出为场景文件")
        await pilot.press("ctrl+a", "ctrl+k", "enter")
        await pilot.pause(0.1)
        assert_fits(app, "请输入文件名")
        await pilot.press(*"taken.toml", "enter")
        await pilot.pause(0.1)
        assert_fits(app, "taken.toml 已存在：再按一次 enter 将覆盖它")

        await pilot.press("escape", "M")
        await wait_for(pilot, lambda: "还没有做过扫描" in screen_text(app), timeout=5)
        assert_fits(app, "tui-grad sweep FILE --out results.csv", "escape: 关闭")

        await pilot.press("escape", "D")
        await wait_for(pilot, lambda: "第 0 步" in screen_text(app) and "测量..." not in screen_text(app),
                       timeout=30)
        await pilot.pause(0.2)
        assert_fits(app, "1 分布，第 0 步", "预激活", "第 1 层", "计数", "k 下一个观测量")
        await pilot.press("escape")
