"""Theory beside measurement: the mean-field prediction is right where it claims to be."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate

from tui_grad.config import Config
from tui_grad.engine import Simulator
from tui_grad.engine.theory import gaussian_expectations, pair_expectations, phi_and_derivative, predict


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


# ---------------------------------------------------------------- the correlation map

GRID_STEP = 0.08  # brute-force reference: trapezoid over z in [-12, 12], spectrally exact for tanh
GRID_Z = np.arange(-12.0, 12.0 + GRID_STEP / 2, GRID_STEP)
GRID_WEIGHT = GRID_STEP * np.exp(-0.5 * GRID_Z ** 2) / math.sqrt(2 * math.pi)


def tanh_pair_on_grid(variance: float, c: float) -> tuple[float, float]:
    """E tanh(u1) tanh(u2) and E tanh'(u1) tanh'(u2), u ~ N(0, variance) with correlation c, on a
    tensor grid in (z1, z2): u1 = s z1, u2 = s (c z1 + sqrt(1 - c^2) z2)."""
    s = math.sqrt(variance)
    z1, z2 = GRID_Z[:, None], GRID_Z[None, :]
    t1, t2 = np.tanh(s * z1), np.tanh(s * (c * z1 + math.sqrt(max(1 - c * c, 0.0)) * z2))
    weight = GRID_WEIGHT[:, None] * GRID_WEIGHT[None, :]
    return float(np.sum(weight * t1 * t2)), float(np.sum(weight * (1 - t1 ** 2) * (1 - t2 ** 2)))


def tanh_reference(sigma_w2: float, sigma_b2: float) -> tuple[float, float]:
    """c* and chi_c for a deep tanh stack, from the grid above and scipy's brentq."""
    from scipy.optimize import brentq

    def variance(q):  # pre-activation variance after a layer whose input has E h^2 = q
        return sigma_w2 * q + sigma_b2
    q_star = brentq(lambda q: tanh_pair_on_grid(variance(q), 1.0)[0] - q, 1e-12, 1.0, xtol=1e-15)
    v = variance(q_star)

    def gap(c):  # c' - c
        return (sigma_w2 * tanh_pair_on_grid(v, c)[0] + sigma_b2) / v - c
    near_one = 1 - 1e-4
    if gap(near_one) > 0:  # the map pushes every correlation up: c* = 1
        assert all(gap(c) > 0 for c in (0.0, 0.5, 0.9, 0.99))
        c_star = 1.0
    else:
        c_star = 0.0 if abs(gap(0.0)) < 1e-14 else brentq(gap, 0.0, near_one, xtol=1e-14)
    return c_star, sigma_w2 * tanh_pair_on_grid(v, c_star)[1]


def tanh_net(sigma_w2: float, sigma_b2: float) -> Config:
    return square(**{"network.activation": "tanh", "network.init": "lecun_normal",
                     "network.init_gain": math.sqrt(sigma_w2), "network.bias_std": math.sqrt(sigma_b2)})


@pytest.mark.parametrize("sigma_w2,sigma_b2,phase", [
    (0.5, 0.05, "ordered"), (1.0, 0.05, "ordered"), (1.5, 0.05, "ordered"), (2.5, 0.05, "chaotic"),
    (4.0, 0.05, "chaotic"), (1.0, 0.3, "ordered"), (3.0, 0.3, "chaotic"), (2.0, 0.0, "chaotic")])
def test_correlation_map_matches_brute_force_quadrature_for_tanh(sigma_w2, sigma_b2, phase):
    """c*, chi_c and xi_c = -1/ln chi_c for a tanh stack agree with a brute-force grid quadrature
    to 1e-9 in both phases (Schoenholz et al. 2017: c* = 1, chi_c = chi_1 when ordered; c* < 1
    with chi_c < 1 < chi_1 when chaotic, and c* = 0 for an odd activation without bias)."""
    prediction = predict(tanh_net(sigma_w2, sigma_b2), 0.0, 1.0)
    c_star, chi_c = tanh_reference(sigma_w2, sigma_b2)
    assert prediction.phase == phase
    assert prediction.c_star == pytest.approx(c_star, abs=1e-9)
    assert prediction.chi_c == pytest.approx(chi_c, rel=1e-9)
    assert prediction.xi_c == pytest.approx(-1 / math.log(chi_c), rel=1e-7)
    if phase == "ordered":
        assert prediction.c_star == 1.0 and prediction.chi_c == pytest.approx(prediction.chi_1, rel=1e-12)
    else:
        assert prediction.c_star < 1.0 and prediction.chi_c < 1.0 < prediction.chi_1


def arc_cosine(std: float, c: float, a: float) -> tuple[float, float]:
    """E phi(u1) phi(u2) and E phi'(u1) phi'(u2) for leaky relu with negative slope a (relu: 0),
    from Cho & Saul's arc-cosine kernel: phi(u) = r(u) - a r(-u) with r the relu."""
    def kernel(k):
        theta = math.acos(k)
        return std * std / (2 * math.pi) * (math.sin(theta) + (math.pi - theta) * k)
    theta = math.acos(c)
    same, opposite = (math.pi - theta) / (2 * math.pi), theta / (2 * math.pi)
    return (1 + a * a) * kernel(c) - 2 * a * kernel(-c), (1 + a * a) * same + 2 * a * opposite


@pytest.mark.parametrize("std", [0.01, 1.0, 100.0])
@pytest.mark.parametrize("c", [0.0, 0.3, 0.9, 0.999, 0.999999])
def test_pair_expectations_match_closed_forms(std, c):
    """The 2-D rule is exact to 1e-12 where closed forms exist: relu and leaky relu (arc-cosine
    kernel, kinked at 0 even as c -> 1) and linear with a bias mean."""
    for activation, a in (("relu", 0.0), ("leaky_relu", 0.2)):
        got = pair_expectations(activation, 0.0, std, c, slope=a)
        assert np.allclose(got, arc_cosine(std, c, a), rtol=1e-12, atol=0), (activation, got)
    got = pair_expectations("linear", 0.3, std, c)
    assert np.allclose(got, [0.09 + std * std * c, 1.0], rtol=1e-12, atol=0)


def test_correlation_anchors_and_where_theory_is_silent():
    """relu at He init is critical for correlations too (c* = 1, xi_c infinite); a net whose length
    map has q* = 0 takes the sigma_b -> 0 limit (chi_c = chi_1); residual, batch-norm and
    uncovered nets have no correlation numbers, and the JSON summary says None for them."""
    from tui_grad.headless import VariantResult
    he = predict(square(**{"network.activation": "relu", "network.init": "kaiming_normal"}), 0.0, 1.0)
    assert he.c_star == 1.0 and he.chi_c == pytest.approx(1, abs=1e-12) and math.isinf(he.xi_c)
    small = predict(tanh_net(0.64, 0.0), 0.0, 1.0)
    assert small.c_star == 1.0 and small.chi_c == small.chi_1 and small.xi_c == small.depth_scale
    summary = VariantResult("tanh", theory=predict(tanh_net(2.5, 0.05), 0.0, 1.0)).summary()
    assert 0 < summary["c_star"] < 1 and 0 < summary["chi_c"] < 1 < summary["chi_1"]
    assert summary["xi_c"] == pytest.approx(-1 / math.log(summary["chi_c"]))
    for overrides in ({"network.residual": True}, {"network.batch_norm": True, "network.activation": "relu"},
                      {"network.batch_norm": True, "network.activation": "tanh"}):
        prediction = predict(square(**overrides), 0.0, 1.0)
        assert math.isnan(prediction.c_star) and math.isnan(prediction.chi_c)
        summary = VariantResult("x", theory=prediction).summary()
        assert summary["c_star"] is None and summary["chi_c"] is None and summary["xi_c"] is None


@pytest.mark.parametrize("sigma_w2", [0.5, 1.76, 1.8, 4.0])
def test_theory_line_fits_the_report_area(sigma_w2):
    """The status line names xi_c beside chi_1 and still fits 4 lines of 48 columns (the 80x24
    screen's report area) with the UI's suffix."""
    import textwrap
    text = predict(tanh_net(sigma_w2, 0.05), 0.0, 1.0).describe()
    assert "chi_1 = " in text and ("xi_c = " in text or "critical phase" in text)
    assert len(textwrap.wrap(text + " (at initialisation; y hides it)", 48)) <= 4
