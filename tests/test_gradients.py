"""The gradients tui-grad reports are the true derivatives of the loss (finite differences)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
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
