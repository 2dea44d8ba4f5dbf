"""Mean-field prediction of how the backpropagated signal ||dL/dh_l|| grows or shrinks.

Signal propagation theory (Poole et al. 2016; Schoenholz et al. 2017): for weights with
variance sigma_w^2 / fan_in, a pre-activation is Gaussian with mean b (the bias) and variance
sigma_w^2 * q_prev + sigma_b^2, where q_prev is the previous layer's mean square activation.
Layer by layer, from the actual input's q_0:

    q_l   = E[phi(u)^2],  u ~ N(b, sigma_w^2 q_{l-1} + sigma_b^2)      (length map)
    chi_l = sigma_w^2 E[phi'(u)^2]                                     (backward growth)

and ||dL/dh_{l-1}||^2 ~ chi_l ||dL/dh_l||^2. With identity shortcuts around blocks of k
layers, h_end = h_s + alpha * branch(h_s), the block multiplies the squared signal by
1 + alpha^2 * prod(chi over the branch) (Yang & Schoenholz 2017; the cross term vanishes under
the gradient-independence assumption) and adds the branch's moments to the shortcut's.
With batch norm and no shortcuts, Yang et al. (2019) predict gradient explosion at
initialisation; for relu and a large batch the squared norm grows by pi / (pi - 1) per layer.
Other batch-norm configurations are reported as not covered instead of drawn wrongly.

NumPy only. Gaussian expectations integrate the two half-lines on each side of the point
where u = 0 (the kink of relu-like functions, the peak of tanh' and sigmoid') separately
with Gauss-Legendre rules, which converges fast for kinked integrands and for tanh at large q.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tui_grad.config import Config
from tui_grad.engine.activations import SELU_ALPHA, SELU_SCALE
from tui_grad.engine.init import weight_std

Z_LIMIT = 13.0  # |z| beyond this carries less than 1e-37 of the Gaussian's mass
NODES = 64  # Gauss-Legendre points per piece between breakpoints
BREAKS_U = (1.0, 4.0, 16.0, 64.0)
CRITICAL_TOLERANCE = 1e-3  # |chi_1 - 1| below this is called critical
FIXED_POINT_ITERATIONS = 2000
TINY_Q = 1e-200  # "q -> 0": chi there is the length map's slope at 0
HUGE_Q = 1e200  # "q -> infinity"
BN_RELU_RATE = math.pi / (math.pi - 1.0)
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(NODES)
_SQRT_2PI = math.sqrt(2.0 * math.pi)


def phi_and_derivative(activation: str, u: np.ndarray, slope: float) -> tuple[np.ndarray, np.ndarray]:
    """phi(u) and phi'(u) for every activation of config.ACTIVATIONS, in float64."""
    if activation == "linear":
        return u, np.ones_like(u)
    if activation == "sigmoid":
        s = 0.5 * (1.0 + np.tanh(0.5 * u))
        return s, s * (1.0 - s)
    if activation == "tanh":
        t = np.tanh(u)
        return t, 1.0 - t * t
    if activation in ("relu", "leaky_relu", "prelu"):
        a = 0.0 if activation == "relu" else slope
        return np.where(u > 0, u, a * u), np.where(u > 0, 1.0, a)
    if activation == "elu":
        e = np.expm1(np.minimum(u, 0.0))
        return np.where(u > 0, u, e), np.where(u > 0, 1.0, e + 1.0)
    if activation == "selu":
        e = np.expm1(np.minimum(u, 0.0))
        return (SELU_SCALE * np.where(u > 0, u, SELU_ALPHA * e),
                SELU_SCALE * np.where(u > 0, 1.0, SELU_ALPHA * (e + 1.0)))
    if activation == "gelu":
        cdf = 0.5 * (1.0 + _erf(u / math.sqrt(2.0)))
        pdf = np.exp(-0.5 * u * u) / _SQRT_2PI
        return u * cdf, cdf + u * pdf
    raise ValueError(f"unknown activation {activation!r}")


_erf = np.vectorize(math.erf, otypes=[float])


def gaussian_expectations(activation: str, mean: float, std: float, slope: float = 0.0) -> np.ndarray:
    """[E phi(u), E phi(u)^2, E phi'(u)^2] for u ~ N(mean, std^2), split at u = 0."""
    if std <= 0.0:
        value, deriv = phi_and_derivative(activation, np.array([mean], dtype=float), slope)
        return np.array([value[0], value[0] ** 2, deriv[0] ** 2])
    # breakpoints where u = 0 and u = +-1, 4, 16, 64: the kink or peak, and the activation's
    # curved region at every scale, so a narrow feature (tanh' at q = 1e4) gets its own nodes
    u_breaks = np.concatenate([[0.0], BREAKS_U, -np.array(BREAKS_U)])
    z_breaks = np.clip((u_breaks - mean) / std, -Z_LIMIT, Z_LIMIT)
    edges = np.unique(np.concatenate([[-Z_LIMIT, Z_LIMIT], z_breaks]))
    total = np.zeros(3)
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        if high - low <= 0.0:
            continue
        z = 0.5 * (high - low) * _NODES + 0.5 * (high + low)
        weight = 0.5 * (high - low) * _WEIGHTS * np.exp(-0.5 * z * z) / _SQRT_2PI
        with np.errstate(over="ignore", invalid="ignore"):  # exploding nets: inf is the answer
            value, deriv = phi_and_derivative(activation, mean + std * z, slope)
            total += [weight @ value, weight @ (value * value), weight @ (deriv * deriv)]
    return total


@dataclass(frozen=True)
class Prediction:
    """What mean-field theory predicts for a network at initialisation."""

    covered: bool
    reason: str  # why not, when not covered
    chi: np.ndarray  # (depth,) per-layer factor of ||dL/dh||^2 (hidden layer -> its input)
    log10_profile: np.ndarray  # (depth + 1,) predicted log10 ||dL/dh_l|| minus the last hidden's
    chi_1: float  # chi at the length map's fixed point (the deep limit)
    depth_scale: float  # xi = -1 / ln(chi_1); inf at criticality
    phase: str  # ordered | critical | chaotic | bn-explosion | not covered

    def describe(self) -> str:
        """One line for the status area."""
        if not self.covered:
            return f"theory: not covered ({self.reason})"
        if self.phase == "bn-explosion":
            return (f"theory: batch norm + relu: squared gradient grows x{self.chi_1:.3f} per layer "
                    "towards the input (Yang et al. 2019)")
        if self.phase == "residual":
            return (f"theory: with shortcuts the squared gradient changes x{self.chi_1:.3f} per layer "
                    "on average towards the input (residual recursion)")
        change = {"ordered": "shrinks", "chaotic": "grows"}.get(self.phase, "keeps its size")
        scale = "" if math.isinf(self.depth_scale) else f", depth scale {abs(self.depth_scale):.3g} layers"
        return (f"theory: chi_1 = {self.chi_1:.3f}: the squared gradient {change} by that factor "
                f"per layer{scale}; {self.phase} phase")


def not_covered(depth: int, reason: str) -> Prediction:
    """A Prediction that says the theory does not apply."""
    nan = np.full(depth + 1, np.nan)
    return Prediction(False, reason, nan[:-1], nan, math.nan, math.nan, "not covered")


def layer_sigma_w2(config: Config) -> np.ndarray:
    """sigma_w^2 = fan_in * Var(W) of each hidden layer, from the config's init scheme."""
    net = config.network
    dims = [config.input_dim] + [net.width] * net.depth
    out = np.empty(net.depth)
    for i in range(net.depth):
        std = weight_std(net.init, dims[i], net.width, init_std=net.init_std, init_a=net.init_a,
                         gain=net.init_gain, activation=net.activation,
                         negative_slope=net.negative_slope, prelu_init=net.prelu_init)
        out[i] = dims[i] * std * std
    return out


def predict(config: Config, input_mean: float, input_second_moment: float) -> Prediction:
    """The finite-depth prediction for ``config``'s network fed inputs with these moments."""
    net = config.network
    depth = net.depth
    if net.batch_norm:
        if net.residual or net.activation != "relu":
            return not_covered(depth, "batch norm is covered for relu without shortcuts only")
        return _from_chi(np.full(depth, BN_RELU_RATE), np.full(depth + 1, -1, dtype=np.int64),
                         1.0, BN_RELU_RATE, "bn-explosion")
    sigma_w2 = layer_sigma_w2(config)
    slope = {"leaky_relu": net.negative_slope, "prelu": net.prelu_init}.get(net.activation, 0.0)

    def layer(i: int, second: float) -> tuple[float, float, float]:
        std = math.sqrt(max(sigma_w2[i] * second + net.bias_std ** 2, 0.0))
        m, q, d = gaussian_expectations(net.activation, net.bias_init, std, slope)
        return m, q, sigma_w2[i] * d

    from tui_grad.engine.layout import residual_sources
    skip_from = residual_sources(depth, net.residual, net.residual_block)
    alpha = net.residual_alpha
    chi = np.empty(depth)
    means, seconds = [input_mean], [input_second_moment]  # moments of h_0 (input) .. h_depth
    for i in range(depth):
        m, q, chi[i] = layer(i, seconds[i])
        source = skip_from[i]
        if source >= 0:  # block end: h_{i+1} = h_s + alpha * a, moments add up
            ms, qs = means[source], seconds[source]
            m, q = ms + alpha * m, qs + 2.0 * alpha * ms * m + alpha * alpha * q
        means.append(m)
        seconds.append(q)
    if net.residual:
        return _from_chi(chi, skip_from, alpha, math.nan, "residual")
    chi_1 = _fixed_point_chi(lambda q: layer(depth - 1, q), seconds[-1],
                             zero_is_fixed=net.bias_std == 0.0 and phi_and_derivative(
                                 net.activation, np.array([net.bias_init]), slope)[0][0] == 0.0)
    phase = ("critical" if abs(chi_1 - 1.0) <= CRITICAL_TOLERANCE
             else "ordered" if chi_1 < 1.0 else "chaotic")
    return _from_chi(chi, skip_from, alpha, chi_1, phase)


def _fixed_point_chi(layer, q_start: float, zero_is_fixed: bool) -> float:
    """chi at the length map's stable fixed point q* for a deep stack of one kind of layer.

    When q = 0 is a fixed point (phi(b) = 0, no bias noise) and the map's slope there,
    which equals chi as q -> 0, is at most 1, the map creeps to q* = 0 (like 1/(2l) for tanh
    at sigma_w = 1) and chi_1 is that limit; otherwise iterate to convergence.
    """
    at_zero = layer(TINY_Q)[2]
    if zero_is_fixed and at_zero <= 1.0 + 1e-12:
        return at_zero
    q = q_start
    for _ in range(FIXED_POINT_ITERATIONS):
        q_next = layer(q)[1]
        if not math.isfinite(q_next) or q_next > HUGE_Q:
            return layer(HUGE_Q)[2]  # the map runs off to infinity: chi in that limit
        if abs(q_next - q) <= 1e-15 * max(1.0, q):
            return layer(q_next)[2]
        q = q_next
    return layer(q)[2]


def _from_chi(chi: np.ndarray, skip_from: np.ndarray, alpha: float, chi_1: float,
              phase: str) -> Prediction:
    """Backpropagate expected squared norms through the wiring, in log space.

    h_k is layer k-1's output; layer i maps h_i to h_{i+1}. A plain layer passes
    E||dL/dh_{i+1}||^2 * chi_i to h_i; a block's last layer passes alpha^2 * chi_i of it to
    h_i (the branch) and all of it to the block's input h_s (the shortcut).
    """
    depth = chi.size
    with np.errstate(divide="ignore"):
        log_chi = np.log(chi)
    log_e = np.full(depth + 1, -np.inf)  # log E||dL/dh_k||^2 relative to h_depth
    log_e[depth] = 0.0
    for i in range(depth - 1, 0, -1):
        incoming = log_e[i + 1]
        if skip_from[i] >= 0:
            log_e[skip_from[i]] = np.logaddexp(log_e[skip_from[i]], incoming)
            log_e[i] = np.logaddexp(log_e[i], incoming + 2.0 * math.log(alpha) + log_chi[i]
                                    if alpha > 0 else -np.inf)
        else:
            log_e[i] = np.logaddexp(log_e[i], incoming + log_chi[i])
    profile = np.full(depth + 1, np.nan)
    profile[:depth] = 0.5 * log_e[1:] / math.log(10.0)  # signal index i is h_{i+1}
    if phase == "residual":
        per_layer = math.exp(2.0 * math.log(10.0) * (profile[1] - profile[depth - 1]) / max(depth - 2, 1))
        return Prediction(True, "", chi, profile, per_layer, math.nan, "residual")
    scale = math.inf if phase == "critical" or chi_1 <= 0 or not math.isfinite(chi_1) else (
        -1.0 / math.log(chi_1))
    return Prediction(True, "", chi, profile, chi_1, scale, phase)
