"""Options and file writing in Chinese: help texts, allowed values and every refusal; the
English run keeps its English words, and option keys and values stay as typed."""

from __future__ import annotations

import re

import pytest

from tui_grad import i18n
from tui_grad.cli import main
from tui_grad.config import LEGACY_OPTIONS, OPTIONS, Config, ConfigError, option
from tui_grad.files import FileExists, open_output, write_new_file

CJK = re.compile(r"[\u4e00-\u9fff]")


def refusal(overrides) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        Config.from_overrides(overrides)
    return info.value


def test_every_help_text_is_shown_in_the_language_in_use(language):
    """help keeps the English (the README's table); help_text follows the language."""
    for opt in (*OPTIONS, *LEGACY_OPTIONS.values()):
        assert opt.help_text == opt.help and not CJK.search(opt.help)
    language("zh")
    for opt in (*OPTIONS, *LEGACY_OPTIONS.values()):
        assert opt.help_text == i18n.catalogue()[opt.help] and CJK.search(opt.help_text), opt.name
        assert not CJK.search(opt.help)
    assert option("training.lr").help_text == "学习率"
    assert "mlp" in option("network.model").help_text and "lstm" in option("network.model").help_text


def test_allowed_values_in_chinese_keep_the_values_as_typed(language):
    language("zh")
    assert option("network.norm").describe_range() == "none, batch_norm, layer_norm 之一"
    assert option("network.residual").describe_range() == "true 或 false"
    assert option("network.depth").describe_range() == "1..5000"
    assert option("training.max_norm").describe_range() == "(0..1e+12"


@pytest.mark.parametrize(("name", "value", "english", "chinese"), [
    ("network.depth", 0, "must be 1..5000 (got 0)", "必须为 1..5000（收到 0）"),
    ("network.depth", 2.5, "must be an integer (got 2.5)", "必须是整数（收到 2.5）"),
    ("network.depth", True, "must be an integer (got True)", "必须是整数（收到 True）"),
    ("training.lr", "fast", "must be a number (got 'fast')", "必须是数字（收到 'fast'）"),
    ("training.lr", float("nan"), "must be a number, not NaN (got nan)",
     "必须是数字，不能是 NaN（收到 nan）"),
    ("network.residual", "maybe", "must be true or false (got 'maybe')",
     "必须为 true 或 false（收到 'maybe'）"),
    ("network.activation", "sigmoidd",
     "must be one of linear, sigmoid, tanh, relu, leaky_relu, prelu, elu, selu, gelu (got 'sigmoidd'); "
     "did you mean 'sigmoid'?",
     "必须为 linear, sigmoid, tanh, relu, leaky_relu, prelu, elu, selu, gelu 之一（收到 'sigmoidd'）；"
     "是不是想写 'sigmoid'？"),
    ("network.dtype", "zzz", "must be one of float32, float64 (got 'zzz')",
     "必须为 float32, float64 之一（收到 'zzz'）"),
    ("network.dtype", 3, "must be one of float32, float64 (got 3)", "必须为 float32, float64 之一（收到 3）"),
])
def test_a_bad_value_is_refused_in_the_language_in_use(language, name, value, english, chinese):
    error = refusal({name: value})
    assert (error.key, error.message, str(error)) == (name, english, f"{name}: {english}")
    language("zh")
    error = refusal({name: value})
    assert (error.key, error.message, str(error)) == (name, chinese, f"{name}: {chinese}")


@pytest.mark.parametrize(("overrides", "key", "chinese"), [
    ({"network.depht": 3}, "network.depht", "未知选项；是不是想写 'network.depth'？"),
    ({"nothing.like.it": 3}, "nothing.like.it", "未知选项"),
    ({"network.model": "lstm"}, "data.task", "模型 'lstm' 需要任务 adding 或 copy_first（收到 'teacher'）"),
    ({"data.task": "adding"}, "data.task", "模型 'mlp' 需要任务 teacher、spirals 或 blobs（收到 'adding'）"),
    ({"network.model": "rnn", "data.task": "adding", "training.loss": "cross_entropy"}, "training.loss",
     "adding 任务是回归任务：请用损失 mse"),
    ({"training.loss": "cross_entropy"}, "training.loss",
     "cross_entropy 需要分类任务（spirals 或 blobs），而不是 'teacher'"),
    ({"network.norm_position": "pre"}, "network.norm_position",
     "norm_position 'pre' 把归一化放在残差连接两侧：需要 residual = true 并选一种归一化（否则请用 layer）"),
    ({"network.model": "rnn", "data.task": "adding", "network.parametrization": "mup"},
     "network.parametrization", "mup 只用于 MLP（network.model = mlp）"),
    ({"data.task": "spirals", "data.input_dim": 1}, "data.input_dim",
     "spirals 需要 input_dim >= 2（收到 1）"),
])
def test_keys_and_combinations_are_refused_in_chinese(language, overrides, key, chinese):
    english = refusal(overrides)
    assert english.key == key and not CJK.search(english.message)
    language("zh")
    error = refusal(overrides)
    assert (error.key, error.message) == (key, chinese)


@pytest.mark.parametrize(("name", "value", "chinese"), [
    ("network.depth", "20", "必须是整数，且不加引号：depth = 20（收到 '20'）"),
    ("training.lr", "0.1", "必须是数字，且不加引号：lr = 0.1（收到 '0.1'）"),
    ("network.residual", "yes", "必须为 true 或 false，且不加引号：residual = true（收到 'yes'）"),
])
def test_a_quoted_number_in_a_file_is_refused_in_chinese(language, name, value, chinese):
    with pytest.raises(ConfigError, match="written without quotes"):
        option(name).from_toml(value)
    language("zh")
    with pytest.raises(ConfigError) as info:
        option(name).from_toml(value)
    assert (info.value.key, info.value.message) == (name, chinese)


def test_file_writing_refusals_in_chinese(language, tmp_path):
    existing = tmp_path / "a.toml"
    existing.write_text("x", encoding="utf-8")
    missing = str(tmp_path / "no-such-dir" / "b.toml")
    language("zh")
    with pytest.raises(ConfigError) as info:
        write_new_file(str(tmp_path), "x")
    assert str(info.value) == f"{tmp_path}: 是一个目录"
    with pytest.raises(FileExists) as info:
        write_new_file(str(existing), "y", overwrite=False)
    assert str(info.value) == f"{existing}: 已存在" and existing.read_text(encoding="utf-8") == "x"
    for write in (lambda: write_new_file(missing, "x"), lambda: open_output(missing)):
        with pytest.raises(ConfigError) as info:
            write()
        assert str(info.value).startswith(f"{missing}: 无法写入（") and str(info.value).endswith("）")
    language("en")
    with pytest.raises(ConfigError, match=r"^.*: cannot write \(.+\)$"):
        open_output(missing)


def test_the_command_line_prints_a_bad_value_as_one_chinese_line(capsys, tmp_path):
    scenario = tmp_path / "quoted.toml"
    scenario.write_text('[scenario]\ntitle = "t"\n\n[network]\ndepth = "20"\n', encoding="utf-8")
    assert main(["run", "default", "--headless", "--steps", "1", "--set", "network.depth=0",
                 "--lang", "zh"]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.rstrip("\n").endswith("network.depth: 必须为 1..5000（收到 '0'）")
    assert main(["validate", str(scenario), "--lang", "zh"]) == 2
    out = capsys.readouterr()
    assert "depth: 必须是整数，且不加引号：depth = 20（收到 '20'）" in out.out + out.err
    assert "Traceback" not in out.err
    assert main(["run", "default", "--headless", "--steps", "1", "--set", "network.depth=0",
                 "--lang", "en"]) != 0
    assert capsys.readouterr().err.rstrip("\n").endswith("network.depth: must be 1..5000 (got '0')")
