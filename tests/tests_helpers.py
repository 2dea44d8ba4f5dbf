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
