"""The gradients tui-grad reports are the true derivatives of the loss (finite differences)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import tests_helpers
from tests_helpers import assert_gradients_match

from tui_grad.config import ACTIVATIONS

CASES = list(itertools.product(ACTIVATIONS, (False, True), (False, True), ("mse", "cross_entropy")))


@pytest.mark.parametrize("activation,batch_norm,residual,loss", CASES)
def test_every_parameter_matches_finite_differences(make_sim, activation, batch_norm, residual, loss):
    """Every reported gradient (weights, biases, BN gamma/beta, prelu slopes) is the true
    derivative: relative error below 1e-6 against central differences in float64."""
    task = "blobs" if loss == "cross_entropy" else "teacher"
    sim = make_sim(keep_grads=True, network__depth=4, network__width=5, network__activation=activation,
                   network__batch_norm=batch_norm, network__residual=residual,
                   network__residual_block=2, network__residual_alpha=0.7,
                   network__dtype="float64", network__init="xavier_normal",
                   network__bias_init=0.1, training__loss=loss, training__lr=0.0,
                   data__task=task, data__input_dim=3, data__n_samples=32, run__seed=3)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 3))
    y = rng.integers(0, 3, size=6) if loss == "cross_entropy" else rng.normal(size=(6, 1))
    assert_gradients_match(sim, (x, y))


NORM_CASES = [(norm, position, activation, learnable)
              for norm in ("layer_norm", "batch_norm") for position in ("layer", "pre", "post")
              for activation in ("tanh", "relu", "prelu") for learnable in (False, True)]


@pytest.mark.parametrize("norm,position,activation,learnable", NORM_CASES)
def test_norms_before_after_the_shortcut_and_learnable_alpha_match_finite_differences(
        make_sim, monkeypatch, norm, position, activation, learnable):
    """Layer norm and batch norm in every position (inside each layer, before the branch and
    the output layer, after the add), with and without a learnable residual scale: every
    parameter's gradient, gains, biases and alphas included, against central differences
    (steps of 1e-5: a prelu slope's gradient of 1e-3 is lost to rounding at 1e-6)."""
    monkeypatch.setattr(tests_helpers, "STEP", 1e-5)
    residual = position != "layer" or learnable
    sim = make_sim(keep_grads=True, network__depth=5, network__width=4, network__activation=activation,
                   network__norm=norm, network__norm_position=position, network__residual=residual,
                   network__residual_block=2, network__residual_alpha=0.6,
                   network__learn_alpha=learnable, network__dtype="float64",
                   network__bias_init=0.1, training__lr=0.0, data__input_dim=3, run__seed=5)
    for layer in sim.params:  # gains and biases away from 1 and 0, so their gradients count
        for key in ("gamma", "beta"):
            if key in layer:
                layer[key][:] = np.random.default_rng(1).uniform(0.5, 1.5, layer[key].shape)
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(6, 3)), rng.normal(size=(6, 1))
    assert_gradients_match(sim, (x, y))
    assert ("alpha" in sim.params[2]) == learnable  # the first block's last layer


def test_layer_norm_is_torchs_layer_norm_on_a_hand_computed_case(make_sim):
    """torch.nn.LayerNorm: per example, biased variance, eps inside the square root, then
    gain and bias. x = (1, 2, 3, 7): mean 3.25, variance 5.1875; eps 1e-5, gain 0.5, bias
    0.25 (values worked out to 30 digits by hand with Python's decimal)."""
    expected = [-0.243938693868347938579370905819, -0.024410385482415521432983836566,
                0.195117922903516895713403232687, 1.07323115644724656429895150970]
    sim = make_sim(network__depth=1, network__width=4, network__activation="linear",
                   network__norm="layer_norm", network__dtype="float64", data__input_dim=4,
                   training__lr=0.0)
    layer = sim.params[0]
    layer["weight"][:], layer["bias"][:] = np.eye(4), 0.0
    layer["gamma"][:], layer["beta"][:] = 0.5, 0.25
    x = np.array([[1.0, 2.0, 3.0, 7.0], [7.0, 3.0, 2.0, 1.0]])
    metrics = sim.step(batch=(x, np.zeros((2, 1))))
    got = sim.layer_values().activation[0]
    np.testing.assert_allclose(got[0], expected, rtol=1e-14)
    np.testing.assert_allclose(got[1], expected[::-1], rtol=1e-14)
    assert metrics.act_mean[0] == pytest.approx(np.mean(expected), rel=1e-13)  # the kernel's
    assert metrics.act_std[0] == pytest.approx(np.std(expected), rel=1e-13)
