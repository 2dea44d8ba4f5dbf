"""Weight initialisation schemes with torch.nn.init's formulas (fan_in mode for kaiming)."""

from __future__ import annotations

import math

import numpy as np


def kaiming_gain(activation: str, negative_slope: float, prelu_init: float) -> float:
    """torch.nn.init.calculate_gain('leaky_relu', a): sqrt(2 / (1 + a^2)), a = the slope."""
    slope = {"leaky_relu": negative_slope, "prelu": prelu_init}.get(activation, 0.0)
    return math.sqrt(2.0 / (1.0 + slope * slope))


def weight_std(scheme: str, fan_in: int, fan_out: int, *, init_std: float, init_a: float,
               gain: float, activation: str = "relu", negative_slope: float = 0.01,
               prelu_init: float = 0.25) -> float:
    """Standard deviation each weight of an (out, in) layer gets under ``scheme``."""
    if scheme == "normal":
        return init_std * gain
    if scheme == "uniform":
        return init_a / math.sqrt(3.0) * gain
    if scheme in ("xavier_normal", "xavier_uniform"):
        return gain * math.sqrt(2.0 / (fan_in + fan_out))
    if scheme in ("kaiming_normal", "kaiming_uniform"):
        return gain * kaiming_gain(activation, negative_slope, prelu_init) / math.sqrt(fan_in)
    if scheme == "lecun_normal":
        return gain / math.sqrt(fan_in)
    if scheme == "orthogonal":
        return gain / math.sqrt(max(fan_in, fan_out))  # an orthogonal matrix's entry scale
    raise ValueError(f"unknown init scheme {scheme!r}")


def init_weight(rng: np.random.Generator, scheme: str, fan_out: int, fan_in: int,
                **options: float | str) -> np.ndarray:
    """A float64 (fan_out, fan_in) weight drawn from ``scheme`` (see weight_std)."""
    std = weight_std(scheme, fan_in, fan_out, **options)
    shape = (fan_out, fan_in)
    if scheme == "orthogonal":
        return options.get("gain", 1.0) * orthogonal(rng, fan_out, fan_in)
    if scheme in ("uniform", "xavier_uniform", "kaiming_uniform"):
        bound = std * math.sqrt(3.0)
        return rng.uniform(-bound, bound, size=shape)
    return rng.normal(0.0, std, size=shape)


def orthogonal(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """A (rows, cols) matrix with orthonormal rows or columns, as torch.nn.init.orthogonal_."""
    flat = rng.normal(size=(rows, cols))
    if rows < cols:
        flat = flat.T
    q, r = np.linalg.qr(flat)
    q *= np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return q
