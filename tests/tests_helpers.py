"""Helpers shared by the gradient tests."""

from __future__ import annotations

import numpy as np

STEP = 1e-6


def loss_at(sim, batch) -> float:
    """Loss of the current parameters on ``batch`` (lr = 0, so the step changes nothing)."""
    return sim.step(batch=batch).loss


def numeric_gradient(sim, batch, array: np.ndarray) -> np.ndarray:
    """Central differences of the loss with respect to every element of ``array``."""
    grad = np.zeros(array.shape)
    flat, out = array.reshape(-1), grad.reshape(-1)
    for k in range(flat.size):
        keep = flat[k]
        flat[k] = keep + STEP
        up = loss_at(sim, batch)
        flat[k] = keep - STEP
        down = loss_at(sim, batch)
        flat[k] = keep
        out[k] = (up - down) / (2 * STEP)
    return grad


def assert_gradients_match(sim, batch, tolerance: float = 1e-6, allow_zero: bool = True) -> None:
    """Every parameter's reported gradient equals central differences of the loss.

    A gradient that is truly zero (a bias right before BN, which the mean cancels; one
    cancelled by the next BN with a linear activation) must be reported as (near) zero.
    """
    sim.step(batch=batch)
    analytic = sim.grads()
    for layer, tensors in enumerate(sim.params):
        for name, array in tensors.items():
            expected = numeric_gradient(sim, batch, array)
            got = analytic[layer][name]
            if np.linalg.norm(expected) < 1e-8:
                assert allow_zero, (layer, name, "no gradient at all")
                assert np.linalg.norm(got) < 1e-8, (layer, name, got)
                continue
            scale = max(np.linalg.norm(expected), np.linalg.norm(got))
            error = np.linalg.norm(expected - got) / scale
            assert error < tolerance, (layer, name, error)
