"""Theory beside measurement: the mean-field prediction is right where it claims to be."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate

from tui_grad.config import Config
from tui_grad.engine import Simulator
from tui_grad.engine.theory import gaussian_expectations, phi_and_derivative, predict


def reference(activation: str, mean: float, std: float, slope: float = 0.0) -> np.ndarray:
    """E phi, E phi^2, E phi'^2 by adaptive quadrature (scipy), on intervals split where
    u = 0, +-0.25, +-1, ..., +-256, so the activation's curved region is resolved at any std
    (checked against 30-digit mpmath for sigmoid and tanh at std 100)."""
    u_breaks = [0.0] + [s * 4.0 ** k for k in range(-1, 5) for s in (-1, 1)]
    edges = sorted({-40.0, 40.0, *(min(max((u - mean) / std, -40.0), 40.0) for u in u_breaks)})

    def moment(k):
        def f(z):
            value, deriv = phi_and_derivative(activation, np.array([mean + std * z]), slope)
            return [value[0], value[0] ** 2, deriv[0] ** 2][k] * math.exp(-z * z / 2) / math.sqrt(2 * math.pi)
        return sum(integrate.quad(f, a, b, epsabs=1e-13, epsrel=1e-12, limit=500)[0]
                   for a, b in zip(edges[:-1], edges[1:], strict=False) if b > a)
    return np.array([moment(k) for k in range(3)])


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "prelu", "elu", "selu", "gelu",
                                        "tanh", "sigmoid", "linear"])
@pytest.mark.parametrize("mean,std", [(0.0, 1.0), (0.3, 0.2), (0.0, 100.0), (-1.0, 3.0), (0.05, 0.01)])
def test_gaussian_expectations_are_accurate_to_1e_8(activation, mean, std):
    """Kinked activations and tanh at large q integrate to 1e-8 (relative) of adaptive quadrature."""
    got = gaussian_expectations(activation, mean, std, slope=0.2)
    want = reference(activation, mean, std, slope=0.2)
    assert np.allclose(got, want, rtol=1e-8, atol=1e-12), (got, want)


def square(**overrides) -> Config:
    return Config.from_overrides({"network.width": 64, "data.input_dim": 64, **overrides})


def test_anchors_hold_exactly():
    """relu: kaiming chi_1 = 1, xavier 0.5; linear: sigma_w^2; tanh (sigma_b = 0) critical at
    sigma_w = 1; sigmoid: chi_1 <= sigma_w^2 / 16."""
    def chi(activation, init, gain=1.0):
        return predict(square(**{"network.activation": activation, "network.init": init,
                                 "network.init_gain": gain}), 0.0, 1.0)
    assert chi("relu", "kaiming_normal").chi_1 == pytest.approx(1, abs=1e-12)
    assert chi("relu", "xavier_normal").chi_1 == pytest.approx(0.5, abs=1e-12)
    linear = chi("linear", "lecun_normal", 1.3)
    assert linear.chi_1 == pytest.approx(1.69, abs=1e-12)
    critical = chi("tanh", "lecun_normal")
    assert critical.chi_1 == pytest.approx(1, abs=1e-12) and critical.phase == "critical"
    for gain in (0.5, 1.0, 4.0, 10.0):
        sigmoid = chi("sigmoid", "lecun_normal", gain)
        assert sigmoid.chi_1 <= gain ** 2 / 16
    ordered = chi("tanh", "lecun_normal", 0.8)
    assert ordered.phase == "ordered" and ordered.depth_scale == pytest.approx(-1 / math.log(0.64))
    assert "chi_1 = 0.640" in ordered.describe() and "ordered phase" in ordered.describe()


SLOPE_CASES = [("relu", "kaiming_normal", 1.0, 0.0), ("relu", "xavier_normal", 1.0, 0.0),
               *[("tanh", "lecun_normal", w, b) for w in (0.8, 1.0, 1.5) for b in (0.0, 0.05)],
               ("linear", "lecun_normal", 1.1, 0.0)]


def fitted_slope(log10_norm: np.ndarray) -> float:
    """Per-layer slope of log ||dL/dh||^2 over the middle 80% of the hidden layers."""
    depth = log10_norm.size
    lo, hi = int(0.1 * depth), int(0.9 * depth)
    return float(np.polyfit(np.arange(lo, hi), 2 * math.log(10) * log10_norm[lo:hi], 1)[0])


@pytest.mark.parametrize("activation,init,sigma_w,sigma_b", SLOPE_CASES)
def test_measured_slope_matches_finite_depth_prediction(activation, init, sigma_w, sigma_b):
    """At init (width 1024, depth 100, batch 256, float64) the measured per-layer slope of
    log ||dL/dh||^2 agrees with theory within 5% + 0.003 per layer."""
    sim = Simulator(Config.from_overrides({
        "network.depth": 100, "network.width": 1024, "network.activation": activation,
        "network.init": init, "network.init_gain": sigma_w, "network.bias_std": sigma_b,
        "network.dtype": "float64", "training.batch_size": 256, "training.lr": 0.0}))
    metrics = sim.step()
    measured = fitted_slope(metrics.signal_norm_log10[:-1])
    predicted = fitted_slope(metrics.predicted_signal_norm_log10[:-1])
    assert abs(measured - predicted) <= 0.05 * abs(predicted) + 0.003, (measured, predicted)


def test_batchnorm_relu_explodes_at_the_predicted_rate():
    """Yang et al. 2019: BN + relu without shortcuts grows ||dL/dh||^2 by pi/(pi-1) per layer."""
    sim = Simulator(Config.from_overrides({
        "network.depth": 50, "network.width": 1024, "network.activation": "relu",
        "network.init": "kaiming_normal", "network.batch_norm": True, "network.dtype": "float64",
        "training.batch_size": 256}))
    metrics = sim.step()
    predicted = -math.log(math.pi / (math.pi - 1))
    assert abs(fitted_slope(metrics.signal_norm_log10[:-1]) - predicted) <= 0.05 * abs(predicted) + 0.003


def test_residual_profile_follows_the_residual_recursion():
    """With shortcuts every 2 layers the predicted profile tracks the measured one at init."""
    sim = Simulator(Config.from_overrides({
        "network.depth": 60, "network.width": 512, "network.activation": "tanh",
        "network.init": "lecun_normal", "network.init_gain": 1.5, "network.residual": True,
        "network.residual_block": 2, "network.residual_alpha": 0.5, "network.dtype": "float64",
        "training.batch_size": 128}))
    metrics = sim.step()
    gap = metrics.signal_norm_log10[:-1] - metrics.predicted_signal_norm_log10[:-1]
    assert np.max(np.abs(gap)) < 0.15  # log10: within 40% everywhere over 60 layers
    assert sim.theory.phase == "residual"


def test_uncovered_configurations_say_so_instead_of_drawing():
    """BN with other activations is not covered: no line, and the reason is given."""
    prediction = predict(square(**{"network.batch_norm": True, "network.activation": "tanh"}), 0, 1)
    assert not prediction.covered and np.all(np.isnan(prediction.log10_profile))
    assert "not covered" in prediction.describe()


def test_weight_gradient_and_signal_differ_for_relu_xavier():
    """relu + xavier: ||dL/dh||^2 halves per layer while ||dL/dW|| stays nearly flat, because
    the activations shrink by the same factor (what the UI shows with both quantities)."""
    metrics = Simulator(Config.from_overrides({
        "network.depth": 40, "network.width": 512, "network.activation": "relu",
        "network.init": "xavier_normal", "data.input_dim": 512, "network.dtype": "float64"})).step()
    signal_drop = metrics.signal_norm_log10[-2] - metrics.signal_norm_log10[0]
    weight_drop = metrics.grad_norm_log10[-2] - metrics.grad_norm_log10[0]
    assert signal_drop > 4.0  # about 39 halvings of the square: ~5.9 decades
    assert abs(weight_drop) < 1.0
