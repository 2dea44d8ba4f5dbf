"""Scenario files: loading, every kind of bad input, round-trip export, bundled claims."""

from __future__ import annotations

import pytest

from tui_grad.cli import main
from tui_grad.config import Config, ConfigError
from tui_grad.scenario import bundled_paths, load_scenario, to_toml

BUNDLED = sorted(bundled_paths())
PHENOMENA = {"sigmoid-vanishing", "tanh-small-init", "exploding-init", "relu-init", "dying-relu",
             "batch-norm", "residual", "clipping", "learning-rate", "weight-decay", "batch-size",
             "depth", "default"}


def write(tmp_path, text: str, name: str = "s.toml", raw: bytes | None = None):
    path = tmp_path / name
    path.write_bytes(raw if raw is not None else text.encode("utf-8"))
    return path


def error_of(path) -> str:
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    return str(info.value)


def test_every_phenomenon_has_a_bundled_scenario_with_notes_and_claims():
    """Workshops need one scenario per cause and remedy, each explained and each checkable."""
    assert set(BUNDLED) >= PHENOMENA
    for name in BUNDLED:
        scenario = load_scenario(name)
        assert scenario.title and scenario.title_zh and scenario.notes and scenario.notes_zh, name
        assert scenario.expects, name


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_scenario_claims_hold_headless(name, capsys):
    """`tui-grad run NAME --headless --check` passes: each scenario is a reproducible claim."""
    code = main(["run", name, "--headless", "--check"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "FAIL" not in out and out.count("PASS") >= 1


def test_bundled_scenarios_are_one_top_level_folder_shipped_in_the_wheel():
    """Workshops find the bundled files in scenarios/ at the top of the repository (one copy),
    and pyproject.toml ships that folder inside the wheel as tui_grad.scenarios, beside every
    other subpackage, so `pip install .` still finds each one by name."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    assert sorted(p.stem for p in (root / "scenarios").glob("*.toml")) == BUNDLED
    catalogue = root / "tui_grad" / "locale"  # the Chinese texts (i18n), not scenarios
    assert not [p for p in (root / "tui_grad").rglob("*.toml") if catalogue not in p.parents]
    setuptools = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    folders = {"tui_grad.scenarios": "scenarios", "tui_grad.sweeps": "sweeps",
               "tui_grad.lessons": "lessons"}
    assert setuptools["package-dir"] == folders
    for package in folders:
        assert setuptools["package-data"][package] == ["*.toml"]
    subpackages = {".".join(p.parent.relative_to(root).parts)
                   for p in (root / "tui_grad").rglob("__init__.py")}
    catalogues = {"tui_grad.locale.zh"}  # data only: listed, or setuptools warns it would drop it
    assert setuptools["package-data"]["tui_grad.locale.zh"] == ["*.toml"]
    assert set(setuptools["packages"]) == subpackages | set(folders) | catalogues


def test_unknown_key_reports_file_line_and_suggestion(tmp_path):
    path = write(tmp_path, "[scenario]\ntitle = 'x'\n\n[network]\ndepth = 3\nactivaton = 'relu'\n")
    assert error_of(path) == (f"{path}:6: network.activaton: unknown option; "
                              "did you mean 'network.activation'?")


def test_out_of_range_value_reports_line_and_value(tmp_path):
    path = write(tmp_path, "[network]\nwidth = 8\ndepth = 0\n")
    assert error_of(path) == f"{path}:3: network.depth: must be 1..5000 (got 0)"


def test_wrong_type_is_reported(tmp_path):
    path = write(tmp_path, "[training]\nlr = \"fast\"\n")
    assert error_of(path) == f"{path}:2: training.lr: must be a number (got 'fast')"


@pytest.mark.parametrize("text,line,message", [
    ('[network]\nbatch_norm = "yes"\n', 2,
     "network.batch_norm: must be true or false, written without quotes: batch_norm = true (got 'yes')"),
    ('[network]\nresidual = "off"\n', 2,
     "network.residual: must be true or false, written without quotes: residual = false (got 'off')"),
    ('[network]\ndepth = 3\nwidth = "20"\n', 3,
     "network.width: must be an integer, written without quotes: width = 20 (got '20')"),
    ("[network]\ndepth = 3\n[[compare]]\nname = 'bn'\nnetwork.batch_norm = 'on'\n", 3,
     "compare[bn].network.batch_norm: must be true or false, written without quotes: "
     "batch_norm = true (got 'on')"),
], ids=["yes", "off", "quoted-number", "compare"])
def test_quoted_booleans_and_numbers_in_a_file_are_refused(tmp_path, text, line, message):
    """TOML has true/false and numbers: a file saying batch_norm = "yes" or "off" gets an
    error that shows how to write it, not a guess (the command line's strings still work)."""
    path = write(tmp_path, text)
    assert error_of(path) == f"{path}:{line}: {message}"


def test_command_line_strings_still_set_booleans(tmp_path):
    """--set network.batch_norm=true (a string) works on top of a file that says true/false."""
    path = write(tmp_path, "[network]\ndepth = 3\nbatch_norm = false\n")
    assert main(["export", str(path), "--set", "network.batch_norm=true", "-o",
                 str(tmp_path / "out.toml")]) == 0
    assert load_scenario(tmp_path / "out.toml").config.network.batch_norm is True


def test_unclosed_claim_says_the_bracket_is_missing(tmp_path):
    """An [[expect]] claim with an unclosed [ says so, quoting the claim."""
    path = write(tmp_path, '[[expect]]\ncheck = "grad_norm[layer=1 < 1e-3"\n')
    assert error_of(path) == (f"{path}:1: expect[1]: missing ']' to close grad_norm[ in "
                              "'grad_norm[layer=1 < 1e-3'")


def test_malformed_toml_reports_its_line(tmp_path):
    path = write(tmp_path, "[network]\ndepth = 3\nwidth = = 4\n")
    message = error_of(path)
    assert message.startswith(f"{path}:3: malformed TOML")


def test_missing_file_and_unknown_bundled_name(tmp_path):
    assert error_of(tmp_path / "nope.toml") == f"{tmp_path / 'nope.toml'}: no such file"
    assert "did you mean 'residual'" in error_of("residul")


def test_unknown_table_and_bad_expect_are_located(tmp_path):
    path = write(tmp_path, "[netwrk]\ndepth = 3\n")
    assert "did you mean [network]" in error_of(path)
    path = write(tmp_path, "[run]\nsteps = 3\n\n[[expect]]\ncheck = \"los < 1\"\n")
    assert error_of(path).startswith(f"{path}:4: expect[1]: unknown metric 'los'")


def test_editor_variants_load(tmp_path):
    """UTF-8 with a BOM, CRLF line endings, CJK notes and an empty file all load."""
    text = "[scenario]\nnotes = \"梯度消失\"\n[network]\ndepth = 7\n"
    bom = write(tmp_path, "", "bom.toml", raw=b"\xef\xbb\xbf" + text.encode())
    crlf = write(tmp_path, "", "crlf.toml", raw=text.replace("\n", "\r\n").encode())
    for path in (bom, crlf):
        scenario = load_scenario(path)
        assert scenario.config.network.depth == 7 and scenario.notes == "梯度消失"
    empty = load_scenario(write(tmp_path, "", "empty.toml"))
    assert empty.config == Config() and empty.name == "empty"


def test_not_utf8_is_a_clear_error(tmp_path):
    path = write(tmp_path, "", raw=b"[network]\ndepth = 3\n# \xff\xfe\n")
    assert error_of(path) == f"{path}:3: not UTF-8 text"


def test_export_round_trips_to_the_same_config(tmp_path):
    """An exported configuration loads back to exactly the same Config."""
    config = Config.from_overrides({"network.depth": 77, "network.activation": "prelu",
                                    "training.lr": 3.3e-5, "network.bn_eps": 1e-7,
                                    "training.clipping": "clip_grad_value", "run.seed": 12})
    path = write(tmp_path, to_toml(config, name="mine", notes="line 1\n\"quoted\" 中文"))
    loaded = load_scenario(path)
    assert loaded.config == config
    assert loaded.notes == "line 1\n\"quoted\" 中文"


def test_compare_variants_override_the_base(tmp_path):
    path = write(tmp_path, "[network]\ndepth = 5\n[[compare]]\nname = 'a'\n[[compare]]\n"
                 "name = 'b'\nnetwork.activation = 'relu'\n")
    scenario = load_scenario(path)
    assert [v.name for v in scenario.variants] == ["a", "b"]
    assert scenario.variants[1].config.network.activation == "relu"
    assert scenario.variants[1].config.network.depth == 5


def test_lock_must_name_real_options(tmp_path):
    path = write(tmp_path, "[scenario]\nlock = ['network.depht']\n")
    assert error_of(path).startswith(f"{path}:2: scenario.lock: 'network.depht': unknown option")
