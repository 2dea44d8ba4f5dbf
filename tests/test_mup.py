"""muP (Yang et al. 2022, Tensor Programs V, Table 3) and `tui-grad coord-check`."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from tui_grad.cli import main
from tui_grad.engine.layout import lr_scales


def mup(make_sim, **overrides):
    options = dict(network__parametrization="mup", network__depth=3, network__width=512,
                   network__activation="tanh", data__input_dim=16, run__seed=1)
    return make_sim(**{**options, **overrides})


def test_mup_init_variances_follow_table_3(make_sim):
    """Input and hidden weights N(0, gain^2 / fan_in), output weights N(0, gain^2 / fan_in^2);
    network.init is not used."""
    sim = mup(make_sim, network__init="kaiming_uniform", network__init_gain=1.5)
    weights = [np.asarray(layer["weight"]) for layer in sim.params]
    fan_ins = [16, 512, 512, 512]
    for layer, (weight, fan_in) in enumerate(zip(weights, fan_ins, strict=True)):
        expected = 1.5 ** 2 / fan_in ** (2 if layer == 3 else 1)
        assert np.var(weight) == pytest.approx(expected, rel=0.05 if weight.size > 5000 else 0.5)
        assert abs(np.mean(weight)) < 4 * np.sqrt(expected / weight.size)


@pytest.mark.parametrize("optimizer,input_w,bias,hidden_w,output_w", [
    ("sgd", 512, 512, 1.0, 1 / 512), ("momentum", 512, 512, 1.0, 1 / 512),
    ("adam", 1.0, 1.0, 1 / 512, 1 / 512)])
def test_mup_learning_rates_follow_table_3(make_sim, optimizer, input_w, bias, hidden_w, output_w):
    """SGD: input weights and biases lr * fan_out, hidden lr, output lr / fan_in; Adam:
    input weights and biases lr, hidden and output lr / fan_in. Standard: lr everywhere."""
    sim = mup(make_sim, training__optimizer=optimizer)
    scales = lr_scales(sim.layout, "mup", optimizer)
    by_tensor = {(int(layer), bool(weight)): scale
                 for (_, _, layer, weight), scale in zip(sim.layout.segments.T, scales, strict=True)}
    assert by_tensor[(0, True)] == input_w and by_tensor[(1, True)] == hidden_w
    assert by_tensor[(2, True)] == hidden_w and by_tensor[(3, True)] == pytest.approx(output_w)
    assert by_tensor[(1, False)] == bias and by_tensor[(3, False)] == (1 if optimizer == "adam" else 1)
    assert (lr_scales(sim.layout, "standard", optimizer) == 1).all()


def test_the_engine_applies_the_per_layer_rates(make_sim):
    """One float64 SGD step under muP moves every tensor by exactly lr * scale * gradient."""
    sim = mup(make_sim, keep_grads=True, network__width=32, network__dtype="float64",
              training__lr=1e-3)
    before = [{k: np.array(v) for k, v in layer.items()} for layer in sim.params]
    sim.step()
    grads = sim.grads()
    scale = {0: 32.0, 1: 1.0, 2: 1.0, 3: 1 / 32}
    for layer, (old, new) in enumerate(zip(before, sim.params, strict=True)):
        rate = 1e-3 * (scale[layer] if layer < 3 else 1 / 32)
        np.testing.assert_allclose(new["weight"], old["weight"] - rate * grads[layer]["weight"],
                                   rtol=1e-12, atol=1e-15)
        bias_rate = 1e-3 * (32.0 if layer < 3 else 1.0)  # fan_out: the output layer has 1 unit
        np.testing.assert_allclose(new["bias"], old["bias"] - bias_rate * grads[layer]["bias"],
                                   rtol=1e-12, atol=1e-15)


def coord_rows(path):
    return [{k: (float(v) if k == "act_abs_mean" else v) for k, v in row.items()}
            for row in csv.DictReader(path.open())]


def test_coord_check_is_flat_under_mup_and_rises_with_width_in_sp(tmp_path, capsys):
    """`tui-grad coord-check mup-width`: the tidy CSV has every (variant, width, step, layer);
    after 3 Adam steps SP's last hidden layer and output grow with width, muP's do not."""
    out = tmp_path / "coord.csv"
    assert main(["coord-check", "mup-width", "--widths", "64,256,1024", "--steps", "3",
                 "--csv", str(out)]) == 0
    chart = capsys.readouterr().out
    assert "standard, step 3" in chart and "width (log scale)" in chart and "\x1b[" not in chart
    assert "1024" in chart and "256" in chart  # ticks at the widths measured
    rows = coord_rows(out)
    assert list(rows[0]) == ["variant", "width", "step", "layer", "act_abs_mean"]
    assert len(rows) == 2 * 3 * 3 * 5  # variants x widths x steps x (4 hidden + output)

    def value(variant, width, layer, step="3"):
        return next(r["act_abs_mean"] for r in rows if (r["variant"], r["width"], r["layer"], r["step"])
                    == (variant, str(width), str(layer), step))

    for variant, layer, factor in (("standard", 4, 1.5), ("standard", 5, 5.0)):
        assert value(variant, 1024, layer) > factor * value(variant, 64, layer)
    for layer in (2, 3, 4):
        ratio = value("mup", 1024, layer) / value("mup", 64, layer)
        assert 0.8 < ratio < 1.25, (layer, ratio)


@pytest.mark.parametrize("args,message", [
    (["--widths", "64,abc"], "--widths must be widths 1..4096 separated by commas (got 'abc'"),
    (["--widths", "64"], "--widths needs 2 to 12 different widths"),
    (["--steps", "0"], "--steps must be 1 or more (got 0)"),
    (["--set", "network.parametrization=muq"], "network.parametrization: must be one of standard, mup"),
    (["--csv", "/nonexistent/dir/c.csv"], "/nonexistent/dir/c.csv: cannot write"),
])
def test_bad_coord_check_input_is_a_one_line_error(capsys, args, message):
    assert main(["coord-check", "default", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_coord_check_refuses_recurrent_nets_and_mup_refuses_them_too(capsys):
    assert main(["coord-check", "rnn-vs-lstm", "--widths", "8,16"]) == 2
    assert "coord-check covers the MLP" in capsys.readouterr().err
    assert main(["run", "rnn-vs-lstm", "--headless", "--set", "network.parametrization=mup"]) == 2
    assert "mup is for the MLP" in capsys.readouterr().err


def test_a_structural_change_through_apply_recomputes_the_rates(make_sim):
    """Simulator.apply with a new depth or width rebuilds the layout: the per-tensor rates
    follow it (an old array would be too short, or keep the old 1/fan_in)."""
    sim = mup(make_sim, network__width=8, network__depth=3, network__dtype="float64",
              keep_grads=True, training__lr=1e-3)
    sim.step()
    sim.apply(sim.config.replace(network__depth=6, network__width=16))
    assert sim._lr_scale().size == sim.layout.segments.shape[1]
    before = np.array(sim.params[-1]["weight"])
    sim.step()
    np.testing.assert_allclose(sim.params[-1]["weight"], before - 1e-3 / 16 * sim.grads()[-1]["weight"],
                               rtol=1e-12, atol=1e-15)


def test_vector_parameters_take_their_own_length_as_fan_out(make_sim):
    """Under SGD a bias-like tensor's rate is lr * its length: a prelu slope (one number)
    gets lr, the output layer's pre-norm gain (width numbers) lr * width."""
    sim = mup(make_sim, network__width=32, network__activation="prelu", network__norm="layer_norm",
              network__norm_position="pre", network__residual=True)
    scales = lr_scales(sim.layout, "mup", "sgd")
    lengths = sim.layout.segments[1] - sim.layout.segments[0]
    vectors = sim.layout.segments[3] == 0
    np.testing.assert_array_equal(scales[vectors], lengths[vectors])
    assert 1 in lengths[vectors] and 32 in lengths[vectors]
