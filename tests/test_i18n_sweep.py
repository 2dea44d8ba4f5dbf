"""Sweeps, their map and coord-check in Chinese: errors, progress lines, claims, plots, help.
No Dask cluster here: sweeps run in this process (--workers 0) or not at all."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from rich.cells import cell_len

from tui_grad.cli import build_parser, main
from tui_grad.config import ConfigError
from tui_grad.coordcheck import chart, parse_widths
from tui_grad.plot import WideText, draw_map
from tui_grad.sweep.claims import evaluate_claims
from tui_grad.sweep.spec import NOT_SWEPT, load_sweep

SWEEP = """\
[scenario]
title = "tiny"

[network]
width = 8
activation = "tanh"

[data]
input_dim = 8
n_samples = 64

[training]
batch_size = 32

[sweep]
steps = 2
seeds = [0]

[sweep.grid]
"network.init_gain" = [0.5, 2.0]

[[expect]]
check = "loss_ratio < 100"
where = "network.init_gain <= 1"

[[expect]]
check = "diverged_at != none"
rows = "none"
"""
PLACEHOLDERS = re.compile("[\ue000-\uf8ff]")


def write(tmp_path: Path, text: str = SWEEP) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(text)
    return path


def grid_rows() -> list[dict[str, str]]:
    return [{"network.depth": str(d), "network.init_gain": str(g), "seed": "0",
             "loss_ratio": str(1 + i + 2 * j), "chi_1": str(0.6 * g), "xi_c": "2.0", "diverged_at": ""}
            for j, d in enumerate((2, 4)) for i, g in enumerate((0.5, 2.0))]


@pytest.mark.parametrize(("old", "new", "english", "chinese"), [
    ('"network.init_gain" = [0.5, 2.0]', '"run.seed" = [1, 2]',
     "sweep.grid.run.seed: is not swept in the grid: list seeds in [sweep] seeds = [...]",
     "sweep.grid.run.seed: 不能在网格中扫描：请把随机种子写在 [sweep] seeds = [...] 中"),
    ("[0.5, 2.0]", "[0.5, 0.5]", "lists 0.5 twice (every run must differ)",
     "0.5 出现了两次（每次运行必须各不相同）"),
    ('rows = "none"', 'rows = "some"', "expect[2]: rows must be one of all, any, none (got 'some')",
     "expect[2]: rows 必须是 all, any, none 之一（收到 'some'）"),
    ('"loss_ratio < 100"', '"loss_rat < 100"', "unknown column 'loss_rat' in 'loss_rat < 100'",
     "'loss_rat < 100' 中有未知的列 'loss_rat'"),
    ("steps = 2", "steps = 0", "sweep.steps: must be 1 or more (got 0)",
     "sweep.steps: 必须不小于 1（收到 0）"),
])
def test_a_bad_sweep_file_is_a_one_line_error_in_either_language(tmp_path, capsys, old, new, english,
                                                                  chinese):
    path = write(tmp_path, SWEEP.replace(old, new))
    assert main(["validate", str(path), "--lang", "en"]) == 2
    message = capsys.readouterr().err
    assert message.count("\n") == 1 and english in message and "tui-grad: error: " in message
    assert main(["validate", str(path), "--lang", "zh"]) == 2
    message = capsys.readouterr().err
    assert message.count("\n") == 1 and chinese in message and "tui-grad: 错误: " in message


def test_every_hint_of_an_option_that_is_not_swept_is_translated(language):
    language("zh")
    from tui_grad.i18n import tr

    for hint in NOT_SWEPT.values():
        assert tr(hint) != hint and re.search("[\u4e00-\u9fff]", tr(hint))


@pytest.mark.parametrize(("args", "chinese"), [
    (["--workers", "-1"], "--workers 必须不小于 0（收到 -1）"),
    (["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "二者只能给一个"),
    (["--scheduler", "not-an-address"], "--scheduler: 应形如 tcp://HOST:PORT（收到 'not-an-address'）"),
])
def test_bad_executor_options_are_chinese_one_line_errors(tmp_path, capsys, args, chinese):
    assert main(["sweep", str(write(tmp_path)), "--out", str(tmp_path / "r.csv"), "--lang", "zh", *args]) == 2
    message = capsys.readouterr().err
    assert message.count("\n") == 1 and chinese in message


def test_a_sweep_in_chinese_says_what_it_did_and_its_claims(tmp_path, capsys):
    """The summary line and the claims are Chinese; CSV columns and the JSON file stay English."""
    out, document = tmp_path / "r.csv", tmp_path / "r.json"
    assert main(["sweep", str(write(tmp_path)), "--out", str(out), "--workers", "0", "--check",
                 "--json", str(document), "--lang", "zh"]) == 0
    captured = capsys.readouterr()
    assert "2 次运行用时 " in captured.err and f"2 次中的 2 次已写入 {out}" in captured.err
    lines = captured.out.splitlines()
    assert lines == ["通过  满足 network.init_gain <= 1 的所有行：loss_ratio < 100  （1 行中 1 行成立）",
                     "通过  没有一行：diverged_at != none  （2 行中 0 行成立）"]
    assert out.read_text().startswith("network.init_gain,seed,steps,initial_loss,")
    checks = json.loads(document.read_text())["checks"]
    assert checks[1] == {"check": "none rows: diverged_at != none", "passed": True, "measured": "0 of 2 rows"}
    assert main(["sweep", str(write(tmp_path)), "--out", str(out), "--workers", "0", "--lang", "zh"]) == 2
    assert capsys.readouterr().err.endswith("已存在；加 --resume 接着跑，或加 --force 从头开始\n")


def test_claim_lines_read_the_same_in_english_as_before(tmp_path):
    sweep = load_sweep(write(tmp_path))
    rows = [{"network.init_gain": "0.5", "seed": "0", "loss_ratio": "200", "phase": "ordered"}]
    assert [c.line() for c in evaluate_claims(sweep.claims, rows)] == [
        "FAIL  all rows where network.init_gain <= 1: loss_ratio < 100  (0 of 1 rows)",
        "PASS  none rows: diverged_at != none  (0 of 1 rows)"]


def test_validate_and_help_of_sweep_plot_and_coord_check_in_chinese(tmp_path, capsys, language):
    assert main(["validate", str(write(tmp_path)), "--lang", "zh"]) == 0
    said = f"OK  {tmp_path / 'tiny.toml'}：tiny（扫描：2 次运行，每次 2 步，2 条预期）\n"
    assert capsys.readouterr().out == said
    language("zh")
    sweep_help = build_parser("sweep").format_help()
    assert "结果 CSV，每次运行一行" in sweep_help and "本机 Dask 工作进程数" in sweep_help
    assert "按哪一列给相图着色" in build_parser("plot").format_help()
    assert "要比较的隐藏层宽度" in build_parser("coord-check").format_help()
    language("en")
    assert "result CSV, one row per run" in build_parser("sweep").format_help()


def test_coord_check_widths_errors_in_chinese(language):
    language("zh")
    with pytest.raises(ConfigError, match="--widths 需要 2 到 12 个不同的宽度"):
        parse_widths("64")
    with pytest.raises(ConfigError, match="必须是以逗号分隔的宽度"):
        parse_widths("64,abc")


def test_the_map_in_chinese_fits_its_width(language):
    """A Chinese title takes two cells a character: the figure's lines are no wider than asked."""
    language("zh")
    text = draw_map(grid_rows(), "loss_ratio", width=60, height=16, color=False,
                    marker={"network.init_gain": 9.0, "network.depth": 2})
    lines = text.splitlines()
    assert "loss_ratio（各随机种子的中位数）" in lines[0] and not PLACEHOLDERS.search(text)
    figure = lines[:lines.index(next(line for line in lines if line.startswith("loss_ratio:")))]
    assert max(cell_len(line) for line in figure) <= 60
    assert "理论的临界线（在 network.init_gain = 0.5 与 2 之间）" in text
    assert "可训练深度的上界" in text
    assert lines[-1] == "◆ 当前配置：network.init_gain = 9, network.depth = 2（在本图之外）"
    language("en")
    english = draw_map(grid_rows(), "loss_ratio", width=60, height=16, color=False)
    assert "loss_ratio (median over seeds)" in english
    assert max(cell_len(line) for line in english.splitlines()[:-3]) <= 60
    # chi_1 = 1 exactly at the last column: the line is drawn there, between the last two values
    at_the_edge = [{**row, "chi_1": str(0.5 * float(row["network.init_gain"]))} for row in grid_rows()]
    assert "(between network.init_gain = 0.5 and 2)" in draw_map(at_the_edge, "loss_ratio", color=False)


def test_coord_check_chart_in_chinese_fits_its_width(language):
    table = [(variant, width, step, layer, 0.1 * layer * (width / 32) ** (variant == "standard"))
             for variant in ("standard", "mup") for width in (32, 64, 128) for step in (1, 2)
             for layer in range(1, 6)]
    language("zh")
    text = chart(table, ["standard", "mup"], 2, width=90)
    assert "standard，第 2 步" in text and "宽度（对数刻度）" in text and not PLACEHOLDERS.search(text)
    assert "标记：o 第 1 层，" in text and "# 输出" in text and "muP 的承诺" in text
    assert max(cell_len(line) for line in text.splitlines()[:-2]) <= 90
    language("en")
    text = chart(table, ["standard", "mup"], 2, width=90)
    assert "standard, step 2" in text and "markers: o layer 1, " in text


def test_wide_text_is_put_back_and_cut_like_its_placeholder():
    wide = WideText()
    assert wide("width") == "width"
    mark = wide("宽度（对数）")
    assert len(mark) == 12 and wide.restore(f"[{mark}]") == "[宽度（对数）]"
    assert wide.restore(f"[{mark[:5]}]") == "[宽度 ]"  # a half character becomes a space
