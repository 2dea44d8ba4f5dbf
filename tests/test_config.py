"""Options are validated once, with messages that say what is wrong and what was given."""

from __future__ import annotations

import pytest

from tui_grad.config import OPTIONS, Config, ConfigError


def test_defaults_build_and_every_option_has_help():
    """A bare Config is valid, and every option carries its one-line help."""
    config = Config()
    assert config.network.depth == 20
    assert all(opt.help for opt in OPTIONS)


@pytest.mark.parametrize("name,value,message", [
    ("network.depth", 0, "must be 1..5000 (got 0)"),
    ("network.depth", 5001, "must be 1..5000"),
    ("network.depth", 2.5, "must be an integer (got 2.5)"),
    ("network.depth", "ten", "must be an integer (got 'ten')"),
    ("network.activation", "sigmoidd", "did you mean 'sigmoid'?"),
    ("training.lr", "fast", "must be a number (got 'fast')"),
    ("training.lr", float("nan"), "not NaN"),
    ("network.batch_norm", "maybe", "must be true or false"),
])
def test_bad_values_are_rejected_with_what_was_given(name, value, message):
    """Out-of-range, wrong-type and misspelt values raise ConfigError naming key and value."""
    with pytest.raises(ConfigError) as info:
        Config.from_overrides({name: value})
    assert info.value.key == name
    assert message in str(info.value)


def test_integer_ranges_print_as_integers():
    """The seed's range reads 0..4294967295 in errors, --help, the README and the UI's help,
    not 0..4.29497e+09; float ranges stay short."""
    with pytest.raises(ConfigError, match=r"must be 0\.\.4294967295 \(got -1\)"):
        Config.from_overrides({"run.seed": -1})
    ranges = {opt.name: opt.describe_range() for opt in OPTIONS}
    assert ranges["data.n_samples"] == "1..1000000" and ranges["run.steps"] == "0..10000000"
    assert ranges["training.max_norm"] == "(0..1e+12"
    assert not any("e+" in ranges[opt.name] for opt in OPTIONS if opt.kind is int)


def test_unknown_option_suggests_the_closest_name():
    """A typo in a key gets a did-you-mean."""
    with pytest.raises(ConfigError, match="did you mean 'network.depth'"):
        Config.from_overrides({"network.depht": 3})


def test_strings_from_the_command_line_are_coerced():
    """--set gives strings: numbers, booleans and aliases like he_normal are understood."""
    config = Config.from_overrides({"network.depth": "12", "training.lr": "1e-3",
                                    "network.batch_norm": "on", "network.init": "he_normal"})
    assert (config.network.depth, config.training.lr, config.network.batch_norm,
            config.network.init) == (12, 1e-3, True, "kaiming_normal")


def test_msra_alias_and_config_is_immutable():
    """msra means kaiming_normal; a Config cannot be changed in place, only replaced."""
    config = Config.from_overrides({"network.init": "msra"})
    assert config.network.init == "kaiming_normal"
    with pytest.raises(AttributeError):
        config.network.depth = 3
    assert config.replace(network__depth=3).network.depth == 3


def test_cross_entropy_needs_a_classification_task():
    """Option combinations that cannot run are refused up front."""
    with pytest.raises(ConfigError, match="cross_entropy needs a classification task"):
        Config.from_overrides({"training.loss": "cross_entropy"})


def test_restart_flags_separate_structural_from_live_changes():
    """lr, clipping, weight decay apply live; depth, activation, init, seed restart."""
    base = Config()
    assert not base.needs_restart(base.replace(training__lr=0.5, training__weight_decay=0.1,
                                               training__clipping="clip_grad_norm"))
    for change in ({"network.depth": 3}, {"network.activation": "relu"}, {"run.seed": 9},
                   {"network.batch_norm": True}, {"network.residual": True}):
        assert base.needs_restart(Config.from_overrides(change, base))


def test_readme_tables_match_the_code():
    """The README's option and CSV tables are the ones generated from config and csvout."""
    from pathlib import Path

    from tui_grad.docs import columns_table, options_table
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    assert options_table() in readme, "run: python -m tui_grad.docs and paste into README"
    assert columns_table() in readme


def test_the_older_batch_norm_spelling_still_reads_as_norm(tmp_path):
    """Files, --set and the API that say batch_norm = true mean norm = batch_norm."""
    from tui_grad.scenario import load_scenario

    assert Config({"network.batch_norm": True}).network.norm == "batch_norm"
    assert Config({"network.norm": "batch_norm"}).network.batch_norm is True
    layer = Config({"network.norm": "layer_norm"})
    assert layer.replace(network__batch_norm=False).network.norm == "layer_norm"
    path = tmp_path / "old.toml"
    path.write_text('lock = ["network.batch_norm"]\n[network]\nbatch_norm = true\n'
                    '[[compare]]\nname = "off"\nnetwork.batch_norm = false\n'.replace(
                        "lock", "[scenario]\nlock", 1))
    scenario = load_scenario(str(path))
    assert scenario.config.network.norm == "batch_norm" and scenario.lock == ("network.norm",)
    assert scenario.variants[0].overrides == {"network.norm": "none"}


@pytest.mark.parametrize("values,message", [
    ({"network.norm_position": "pre", "network.norm": "layer_norm"}, "needs residual = true"),
    ({"network.norm_position": "post", "network.residual": True}, "and a norm"),
])
def test_a_norm_around_the_shortcut_needs_a_shortcut_and_a_norm(values, message):
    with pytest.raises(ConfigError, match=message) as info:
        Config(values)
    assert info.value.key == "network.norm_position"


@pytest.mark.parametrize("overrides", [{"network.learn_alpha": True},
                                       {"network.learn_alpha": True, "network.residual": True,
                                        "network.model": "rnn", "data.task": "adding",
                                        "training.loss": "mse"}])
def test_learn_alpha_without_a_residual_branch_is_refused(overrides):
    """learn_alpha scales the residual branch: without one it would silently do nothing."""
    with pytest.raises(ConfigError, match="learn_alpha learns the residual branch's alpha") as error:
        Config.from_overrides(overrides)
    assert error.value.key == "network.learn_alpha"
    Config.from_overrides({"network.learn_alpha": True, "network.residual": True})  # fine
