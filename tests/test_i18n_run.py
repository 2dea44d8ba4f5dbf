"""Chinese texts of scenario and lesson files, claims, headless runs, the session, the
warm-up and serve; the scenario's title_zh. English stays as it was (the other tests)."""

from __future__ import annotations

import errno
import itertools
import re
import socket
import sys
import textwrap
import time

import pytest

from tui_grad import engine_text, headless, i18n, warmup
from tui_grad.config import Config, ConfigError, option
from tui_grad.engine.probe import jacobian_not_covered
from tui_grad.expect import parse_expectation
from tui_grad.lesson import load_lesson
from tui_grad.scenario import bundled_paths, load_scenario, to_toml
from tui_grad.serve import bind_error, check_port
from tui_grad.session import Restarted, Session, forensics

TINY = "[network]\ndepth = 2\nwidth = 8\n\n[run]\nsteps = 3\n"


def write(tmp_path, text: str, name: str = "s.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(load, source) -> str:
    with pytest.raises(ConfigError) as info:
        load(source)
    return str(info.value)


# ------------------------------------------------------------------ title_zh
def test_every_bundled_scenario_has_a_chinese_title_shown_in_chinese(language):
    for name, path in bundled_paths().items():
        scenario = load_scenario(path)
        assert scenario.title_zh and scenario.title_zh != scenario.title, name
        assert scenario.heading() == scenario.title, name  # English by default
        assert scenario.heading("zh") == scenario.title_zh, name
    language("zh")
    scenario = load_scenario("sigmoid-vanishing")
    assert scenario.heading() == scenario.title_zh and "梯度消失" in scenario.heading()
    assert scenario.heading("en") == scenario.title


def test_a_scenario_without_title_zh_shows_its_english_title_in_chinese(tmp_path, language):
    language("zh")
    scenario = load_scenario(write(tmp_path, '[scenario]\ntitle = "Only English"\n' + TINY))
    assert scenario.title_zh == "" and scenario.heading() == "Only English"
    assert scenario.with_overrides({"network.depth": 3}).heading() == "Only English"


def test_title_zh_survives_overrides_and_export(tmp_path):
    scenario = load_scenario("relu-init").with_overrides({"network.depth": 5})
    assert scenario.title_zh == load_scenario("relu-init").title_zh
    text = to_toml(scenario.config, name="mine", title="T", title_zh="标题 \"引号\"",
                   notes_zh="说明\n第二行")
    back = load_scenario(write(tmp_path, text))
    assert (back.title, back.title_zh, back.notes_zh) == ("T", "标题 \"引号\"", "说明\n第二行")
    assert back.config == scenario.config
    assert "title_zh" not in to_toml(scenario.config)  # written only when there is one


def test_a_title_zh_that_is_not_text_is_refused_in_either_language(tmp_path, language):
    path = write(tmp_path, "[scenario]\ntitle_zh = 3\n")
    assert error_of(load_scenario, path) == f"{path}:2: scenario.title_zh: must be a string (got 3)"
    language("zh")
    assert error_of(load_scenario, path) == f"{path}:2: scenario.title_zh: 必须是字符串（收到 3）"


def test_a_misspelt_title_zh_is_suggested(tmp_path, language):
    language("zh")
    path = write(tmp_path, '[scenario]\ntitle_zn = "x"\n')
    assert error_of(load_scenario, path) == f"{path}:2: scenario.title_zn: 未知的键；是不是想写 'title_zh'？"


def test_a_lesson_step_without_its_own_title_takes_the_scenarios_in_both_languages(tmp_path):
    lesson = write(tmp_path, textwrap.dedent("""\
        [[step]]
        scenario = "relu-init"
        prompt = "Guess."

        [[step]]
        scenario = "relu-init"
        title = "My own title"
        prompt = "Guess again."
        """), "lesson.toml")
    first, second = load_lesson(lesson).steps
    scenario = load_scenario("relu-init")
    assert first.text("zh")[0] == scenario.title_zh and first.text("en")[0] == scenario.title
    assert second.text("zh")[0] == "My own title"  # not the scenario's Chinese title


# ------------------------------------------------------------------ loading errors
def test_scenario_file_errors_in_chinese_and_english(tmp_path, language):
    table = write(tmp_path, "[netwrk]\ndepth = 3\n", "table.toml")
    broken = write(tmp_path, "[network\n", "broken.toml")
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(b"[scenario]\ntitle = '\xe9'\n")
    compare = write(tmp_path, "[[compare]]\nnetwork.depth = 3\n", "compare.toml")
    english = [error_of(load_scenario, p) for p in (table, latin1, compare, tmp_path, "sigmoid-vanish")]
    assert english == [f"{table}:1: unknown table [netwrk]; did you mean [network]?",
                       f"{latin1}:2: not UTF-8 text",
                       f"{compare}:1: compare[1]: every [[compare]] needs a name = \"...\"",
                       f"{tmp_path}: is a directory, not a scenario file",
                       "sigmoid-vanish: no such file or bundled scenario; did you mean 'sigmoid-vanishing'?"]
    assert error_of(load_scenario, broken).startswith(f"{broken}:1: malformed TOML: ")
    language("zh")
    chinese = [error_of(load_scenario, p) for p in (table, latin1, compare, tmp_path, "sigmoid-vanish")]
    assert chinese == [f"{table}:1: 未知的表 [netwrk]；是不是想写 [network]？",
                       f"{latin1}:2: 不是 UTF-8 文本",
                       f"{compare}:1: compare[1]: 每个 [[compare]] 都需要 name = \"...\"",
                       f"{tmp_path}: 这是目录，不是场景文件",
                       "sigmoid-vanish: 没有这个文件，也没有这个内置场景；是不是想写 'sigmoid-vanishing'？"]
    assert error_of(load_scenario, broken).startswith(f"{broken}:1: TOML 格式错误：")
    assert error_of(load_scenario, "zzzzzz").endswith("`tui-grad scenarios` 可列出全部内置场景")
    assert "\n" not in "".join(chinese)


def test_lesson_errors_in_chinese(tmp_path, language):
    language("zh")
    empty = write(tmp_path, '[lesson]\ntitle = "x"\n', "empty.toml")
    assert error_of(load_lesson, empty) == f"{empty}: step: 课程至少需要一个 [[step]]"
    bad_set = write(tmp_path, '[[step]]\nscenario = "default"\nprompt = "p"\nset = 3\n', "set.toml")
    assert error_of(load_lesson, bad_set) == (
        f'{bad_set}:4: step[1].set: 必须是表，例如 set = {{ "network.depth" = 30 }}')
    missing = write(tmp_path, '[[step]]\nscenario = "nope-nope"\nprompt = "p"\n', "missing.toml")
    assert error_of(load_lesson, missing).startswith(f"{missing}:2: step[1].scenario: 场景 'nope-nope'：")
    assert error_of(load_lesson, "vanishing-and-explodin") == (
        "vanishing-and-explodin: 没有这个文件，也没有这个内置课程；是不是想写 'vanishing-and-exploding'？")
    assert error_of(load_lesson, tmp_path) == f"{tmp_path}: 这是目录，不是课程文件"


@pytest.mark.parametrize(("check", "english", "chinese"), [
    ("grad_norm < 1", "grad_norm is per layer: say which, e.g. grad_norm[layer=1]",
     "grad_norm 是逐层指标：请指明哪一层，例如 grad_norm[layer=1]"),
    ("loss[step=0] < 1 < 2", "needs exactly one comparison (< <= > >= == !=) in 'loss[step=0] < 1 < 2'",
     "'loss[step=0] < 1 < 2' 中必须恰好有一个比较运算符（< <= > >= == !=）"),
    ("los < 1", "unknown metric 'los' (known: ", "未知的指标 'los'（可用："),
    ("loss[step=x] < 1", "step must be a number, first or last (got 'x')",
     "step 必须是数字、first 或 last（收到 'x'）"),
    ("loss[step=0 < 1", "missing ']' to close loss[ in 'loss[step=0 < 1'",
     "'loss[step=0 < 1' 中的 loss[ 缺少闭合的 ']'"),
])
def test_claim_errors_in_chinese_and_english(check, english, chinese, language):
    with pytest.raises(ConfigError, match="^" + re.escape(english)):
        parse_expectation({"check": check}, [])
    language("zh")
    with pytest.raises(ConfigError) as info:
        parse_expectation({"check": check}, [])
    assert info.value.message.startswith(chinese)


# ------------------------------------------------------------------ headless
def test_check_lines_in_chinese_keep_the_claim_as_written(tmp_path, language):
    scenario = load_scenario(write(tmp_path, TINY + textwrap.dedent("""
        [[expect]]
        check = "loss[step=last] < 1e9"

        [[expect]]
        check = "status[step=0] == diverged"
        """)))
    results = headless.run(scenario, 3)
    english = [c.line(False) for c in headless.check(scenario, results)]
    assert english[0].startswith("PASS  loss[step=last] < 1e9  (measured ")
    assert english[1].startswith("FAIL  status[step=0] == diverged  (measured ")
    language("zh")
    chinese = [c.line(True) for c in headless.check(scenario, results)]
    assert chinese[0].startswith(f"通过  [{scenario.name}] loss[step=last] < 1e9  （测得 ")
    assert chinese[1].startswith(f"失败  [{scenario.name}] status[step=0] == diverged  （测得 ")


def test_every_reason_the_jacobian_probe_gives_has_a_chinese_entry():
    reasons = set()
    for norm, position, residual in itertools.product(option("network.norm").choices,
                                                      option("network.norm_position").choices,
                                                      (False, True)):
        try:
            config = Config.from_overrides({"network.norm": norm, "network.norm_position": position,
                                            "network.residual": residual})
        except ConfigError:
            continue
        reasons.add(jacobian_not_covered(config))
    reasons.discard(None)
    assert reasons and reasons <= set(engine_text.PROBE_REASONS)
    assert all(text in i18n.catalogue() for text in engine_text.PROBE_REASONS.values())


def test_a_refused_jacobian_says_why_in_chinese(tmp_path, language):
    language("zh")
    scenario = load_scenario(write(tmp_path, '[network]\ndepth = 2\nwidth = 8\nnorm = "layer_norm"\n'))
    with pytest.raises(ConfigError) as info:
        headless.run(scenario, 1, jacobian=True)
    assert str(info.value).startswith("雅可比矩阵探针暂不支持层归一化")
    assert "（--jacobian、jacobian_* 预期；变体 " in str(info.value)


def test_the_headless_progress_line_in_chinese(language):
    import io

    language("zh")
    stream = io.StringIO()
    bar = headless.ProgressBar(stream)
    assert stream.getvalue().startswith("正在计算第一步")
    bar(2, 2)
    assert "步" in stream.getvalue().split("...", 1)[1]


# ------------------------------------------------------------------ the session
def test_divergence_report_in_chinese(language):
    from tui_grad.engine import Simulator

    language("zh")
    sim = Simulator(Config.from_overrides({"network.depth": 2}))
    text = forensics(sim.step(), [(3, 17.4), (4, 18.0)])
    assert text.startswith("第 0 步发散：")
    assert "此前的全局梯度范数：第 3 步 2.5e+17，第 4 步 1.0e+18。" in text
    assert forensics(sim.step(), []).endswith("无（这是第一步）。")
    exploding = Simulator(load_scenario("exploding-init").variants[0].config)
    assert "激活值最先在第 " in forensics(exploding.step(), [])


def test_restart_reasons_in_chinese(tmp_path, language):
    language("zh")
    session = Session(load_scenario(write(tmp_path, TINY)))
    session.running = False
    session.advance(0.0)
    session.request_reset()
    assert [e.reason for e in session.advance(0.0) if isinstance(e, Restarted)] == [
        "重置：同一随机种子，回到第 0 步"]
    session.request(session.config.replace(network__depth=3))
    assert [e.reason for e in session.advance(0.0) if isinstance(e, Restarted)] == [
        "已重新开始：network.depth 已更改"]


# ------------------------------------------------------------------ the warm-up
def test_fit_counts_terminal_cells_not_characters(language):
    language("zh")
    long_name = "renormalize_with_column_sums_and_a_very_long_name_indeed"
    from rich.cells import cell_len

    text = warmup.fit(warmup.N_("compiling {name} ({count}), {seconds}; first start only"), long_name,
                      count="3/~125", seconds="12 s")
    assert text.startswith("正在编译 renormaliz") and "...（3/~125），12 s；仅首次启动时" in text
    assert cell_len(text) <= warmup.TEXT_WIDTH < len(text) * 2
    wide = warmup.fit(warmup.N_("warm-up failed, compiling here: {name}"), "内存不足" * 20)
    assert cell_len(wide) <= warmup.TEXT_WIDTH and wide.endswith("...")


def test_warmup_progress_in_chinese_fits_its_cells(tmp_path, monkeypatch, language):
    from rich.cells import cell_len

    language("zh")
    monkeypatch.setattr(warmup, "cache_dir", lambda: tmp_path)
    monkeypatch.setattr(warmup.Warmup, "command", (sys.executable, "-c", textwrap.dedent("""
        import json, sys, time
        sys.stdin.readline()
        print(json.dumps({"k": 3, "name": "renormalize_with_column_sums_and_a_very_long_name"}), flush=True)
        time.sleep(120)
        """)))
    with warmup.Warmup([Config()]) as warm:
        warm.start()
        deadline = time.monotonic() + 30
        while "正在编译" not in (progress := warm.poll()).text:
            assert time.monotonic() < deadline, progress
            time.sleep(0.05)
    assert "（3/~" in progress.text and "s；仅首次启动时" in progress.text
    assert cell_len(progress.text) <= warmup.TEXT_WIDTH


# ------------------------------------------------------------------ serve
def test_serve_errors_in_chinese_and_english(language):
    in_use = OSError(errno.EADDRINUSE, "Address already in use")
    english = str(bind_error(in_use, "127.0.0.1", 8000))
    assert english.startswith("--port: 8000 is already in use on 127.0.0.1")
    language("zh")
    assert str(bind_error(in_use, "127.0.0.1", 8000)) == (
        "--port: 127.0.0.1 上的端口 8000 已被占用：另一个服务器正在监听；请换一个端口")
    unknown = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    assert str(bind_error(unknown, "nowhere.invalid", 80)) == (
        "--host: 找不到主机 'nowhere.invalid'（Name or service not known）")
    with pytest.raises(ConfigError, match="^--port: 必须在 0..65535 之间（收到 70000）$"):
        check_port(70000)
