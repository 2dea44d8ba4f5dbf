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

For plain stacks the correlation map of two inputs (Schoenholz et al. 2017) comes too: at the
length map's fixed point, pre-activations (u1, u2) of two inputs share mean b and variance
v* = sigma_w^2 q* + sigma_b^2 and have correlation c, and

    c'    = (sigma_w^2 E[phi(u1) phi(u2)] + sigma_b^2) / v*              (correlation map)
    chi_c = sigma_w^2 E[phi'(u1) phi'(u2)] at its stable fixed point c*, xi_c = -1 / ln chi_c

c* = 1 and chi_c = chi_1 when chi_1 <= 1; in the chaotic phase c* < 1 and chi_c < 1. At q* = 0
they are the sigma_b -> 0 limit (c* = 1, chi_c = chi_1); where q runs off to infinity, c' is
divided by the next layer's variance instead of v*, so it stays a correlation (relu: chi_c = 1).

NumPy only. Gaussian expectations integrate the two half-lines on each side of the point
where u = 0 (the kink of relu-like functions, the peak of tanh' and sigmoid') separately
with Gauss-Legendre rules, which converges fast for kinked integrands and for tanh at large q.
Two-input expectations nest such rules: u2 given u1 is Gaussian again.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

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
PAIR_NODES = 16  # per piece and direction of the 2-D rule: 1e-13 of 96 nodes, closed forms to 1e-14
COARSE_NODES = 8  # 1e-7: enough to walk to c*, which PAIR_NODES then polishes
Z_BREAKS = (0.0, 2.0, -2.0, 5.0, -5.0)  # the Gaussian's own shape, when no u break falls inside
SMOOTHED_KINK = (1.0, -1.0, 3.0, -3.0, 8.0, -8.0)  # widths around E[phi(u2) | u1]'s smoothed kink
CORRELATION_ITERATIONS = 100
STAGES = ((COARSE_NODES, 1e-6), (PAIR_NODES, 1e-12))  # (nodes, step tolerance) of c*'s search
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
    low, high = edges[:-1, None], edges[1:, None]  # every piece at once: one call of phi
    z = 0.5 * (high - low) * _NODES + 0.5 * (high + low)
    weight = (0.5 * (high - low) * _WEIGHTS * np.exp(-0.5 * z * z) / _SQRT_2PI).ravel()
    with np.errstate(over="ignore", invalid="ignore"):  # exploding nets: inf is the answer
        value, deriv = phi_and_derivative(activation, mean + std * z.ravel(), slope)
        return np.array([weight @ value, weight @ (value * value), weight @ (deriv * deriv)])


@functools.cache
def _legendre(nodes: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(nodes)


def _composite_rule(z_breaks: np.ndarray, nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights (Gaussian density included) on [-Z_LIMIT, Z_LIMIT] per row of breaks.

    z_breaks: (rows, k) -> z, weight: (rows, (k + 1) * nodes); empty pieces get zero weight.
    """
    x, w = _legendre(nodes)
    rows = z_breaks.shape[0]
    edges = np.sort(np.concatenate([np.full((rows, 1), -Z_LIMIT), np.clip(z_breaks, -Z_LIMIT, Z_LIMIT),
                                    np.full((rows, 1), Z_LIMIT)], axis=1), axis=1)
    low, high = edges[:, :-1, None], edges[:, 1:, None]
    z = 0.5 * (high - low) * x + 0.5 * (high + low)  # (rows, pieces, nodes)
    weight = 0.5 * (high - low) * w * np.exp(-0.5 * z * z) / _SQRT_2PI
    return z.reshape(rows, -1), weight.reshape(rows, -1)


def pair_expectations(activation: str, mean: float, std: float, correlation: float,
                      slope: float = 0.0, nodes: int = PAIR_NODES) -> np.ndarray:
    """[E phi(u1) phi(u2), E phi'(u1) phi'(u2)] for u1, u2 ~ N(mean, std^2) with this correlation.

    Outer rule over u1 = mean + std z1, inner over u2 given z1, which is Gaussian with mean
    mean + std c z1 and std std sqrt(1 - c^2). Both split where u = 0, +-1, .. as in
    gaussian_expectations; the outer also where the inner mean crosses them and a few inner
    widths around its kink, where E[phi(u2) | z1] bends sharply when c is near 1.
    """
    c = min(max(correlation, -1.0), 1.0)
    if std <= 0.0 or c == 1.0:
        return gaussian_expectations(activation, mean, std, slope)[1:]
    u_breaks = np.concatenate([[0.0], BREAKS_U, -np.array(BREAKS_U)])
    inner_share = math.sqrt(1.0 - c * c)
    outer = [np.array(Z_BREAKS), (u_breaks - mean) / std]
    if c != 0.0:
        kink_width = inner_share / abs(c)  # of E[phi(u2) | z1] around z1 = -mean / (std c)
        outer += [(u_breaks - mean) / (std * c), -mean / (std * c) + np.array(SMOOTHED_KINK) * kink_width]
    outer_breaks = np.unique(np.clip(np.concatenate(outer), -Z_LIMIT, Z_LIMIT))  # no empty pieces
    z1, w1 = _composite_rule(outer_breaks[None, :], nodes)
    z1, w1 = z1[0], w1[0]  # (n1,)
    value1, deriv1 = phi_and_derivative(activation, mean + std * z1, slope)
    inner_mean, inner_std = mean + std * c * z1, std * inner_share  # (n1,), scalar
    inner_breaks = np.concatenate([np.broadcast_to(Z_BREAKS, (z1.size, len(Z_BREAKS))),
                                   (u_breaks[None, :] - inner_mean[:, None]) / inner_std], axis=1)
    z2, w2 = _composite_rule(inner_breaks, nodes)  # (n1, n2)
    with np.errstate(over="ignore", invalid="ignore"):
        value2, deriv2 = phi_and_derivative(activation, inner_mean[:, None] + inner_std * z2, slope)
        return np.array([w1 @ (value1 * np.sum(w2 * value2, axis=1)),
                         w1 @ (deriv1 * np.sum(w2 * deriv2, axis=1))])


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
    c_star: float = math.nan  # the correlation map's stable fixed point (plain stacks only)
    chi_c: float = math.nan  # its slope there, sigma_w^2 E[phi'(u1) phi'(u2)]
    xi_c: float = math.nan  # -1 / ln(chi_c): layers over which two inputs' correlation settles

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
        scale = "" if math.isinf(self.depth_scale) else (
            f"; depth scales xi = {abs(self.depth_scale):.3g}, xi_c = {self.xi_c:.3g} layers")
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
    if net.parametrization == "mup":
        return not_covered(depth, "muP's output layer and learning rates are not in the theory")
    if net.norm == "layer_norm" or net.norm_position != "layer":
        return not_covered(depth, "layer norm, or a norm before or after the shortcut")
    if net.residual and net.residual_alpha == 0.0:
        return not_covered(depth, "alpha = 0: every block starts as the identity (ReZero)")
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
    q_star = _fixed_point(lambda q: layer(depth - 1, q), seconds[-1],
                          zero_is_fixed=net.bias_std == 0.0 and phi_and_derivative(
                              net.activation, np.array([net.bias_init]), slope)[0][0] == 0.0)
    chi_1 = layer(depth - 1, q_star)[2]
    phase = ("critical" if abs(chi_1 - 1.0) <= CRITICAL_TOLERANCE
             else "ordered" if chi_1 < 1.0 else "chaotic")
    # q* -> 0 (no bias noise): the sigma_b -> 0 limit, c* = 1 with slope chi_1, as for chi_1
    c_star, chi_c = (1.0, chi_1) if q_star == TINY_Q else correlation_fixed_point(
        net.activation, net.bias_init, sigma_w2[depth - 1], net.bias_std ** 2, q_star, slope)
    return replace(_from_chi(chi, skip_from, alpha, chi_1, phase),
                   c_star=c_star, chi_c=chi_c, xi_c=_depth_scale(chi_c))


def _fixed_point(layer, q_start: float, zero_is_fixed: bool) -> float:
    """The length map's stable fixed point q* for a deep stack of one kind of layer.

    When q = 0 is a fixed point (phi(b) = 0, no bias noise) and the map's slope there,
    which equals chi as q -> 0, is at most 1, the map creeps to q* = 0 (like 1/(2l) for tanh
    at sigma_w = 1): TINY_Q stands for that limit, HUGE_Q for a map that runs off to infinity;
    otherwise iterate to convergence.
    """
    if zero_is_fixed and layer(TINY_Q)[2] <= 1.0 + 1e-12:
        return TINY_Q
    q = q_start
    for _ in range(FIXED_POINT_ITERATIONS):
        q_next = layer(q)[1]
        if not math.isfinite(q_next) or q_next > HUGE_Q:
            return HUGE_Q
        if abs(q_next - q) <= 1e-14 * q:  # relative: q* can be tiny (sigma_b -> 0)
            return q_next
        q = q_next
    return q


def correlation_fixed_point(activation: str, mean: float, sigma_w2: float, sigma_b2: float,
                            q: float, slope: float = 0.0) -> tuple[float, float]:
    """c* and chi_c of the correlation map of two inputs whose layer inputs have q = E[h^2].

    c' = (sigma_w^2 E[phi(u1) phi(u2)] + sigma_b^2) / v', u's variance v = sigma_w^2 q + sigma_b^2,
    v' = sigma_w^2 E[phi(u)^2] + sigma_b^2 (= v at the length map's fixed point; where that map
    runs off to infinity, dividing by v' keeps c' a correlation). Its slope is
    sigma_w^2 E[phi'(u1) phi'(u2)] v / v'. On [0, 1] the map is increasing and convex (Hermite:
    sum a_n^2 c^n) with c'(1) = 1, so c* = 1 when the slope there is at most 1; otherwise c* is
    the other fixed point, in [0, 1).
    """
    std = math.sqrt(sigma_w2 * q + sigma_b2)
    _, second, deriv_second = gaussian_expectations(activation, mean, std, slope)
    v_next = sigma_w2 * second + sigma_b2
    gain = sigma_w2 * std * std / v_next  # slope = gain * E[phi'(u1) phi'(u2)]
    at_one = gain * deriv_second
    if not math.isfinite(at_one) or at_one <= 1.0 + 1e-9:
        return 1.0, float(at_one)

    def corr_map(c: float, nodes: int) -> tuple[float, float]:
        both, deriv = pair_expectations(activation, mean, std, c, slope, nodes)
        return (sigma_w2 * both + sigma_b2) / v_next, gain * deriv

    # g(c) = c' - c is convex (Newton from the left stays left of c*, but creeps when c* is
    # near 1); h(c) = g(c) / (1 - c), the root c = 1 divided out, is concave (Newton from the
    # right stays right, and is quick). Take h's step when it lands in the bracket, else g's.
    c, map_slope = 0.0, math.nan
    for nodes, tolerance in STAGES:
        low, high = 0.0, 1.0  # g(low) >= 0 > g(high)
        for _ in range(CORRELATION_ITERATIONS):
            c_next, map_slope = corr_map(c, nodes)
            g, h = c_next - c, (c_next - c) / (1.0 - c)
            low, high = (c, high) if g >= 0.0 else (low, c)
            h_slope = (map_slope - 1.0 + h) / (1.0 - c)
            c_new = c - h / h_slope if h_slope < 0.0 else math.nan
            if not low <= c_new < high:
                c_new = c + g / (1.0 - map_slope) if g >= 0.0 and map_slope < 1.0 else math.nan
            if not low <= c_new < high:
                c_new = 0.5 * (low + high)
            c, step = c_new, c_new - c
            if abs(step) <= tolerance or c >= 1.0:
                break
    return float(c), float(map_slope)


def _depth_scale(chi: float) -> float:
    """-1 / ln(chi); inf within CRITICAL_TOLERANCE of 1 (as xi at criticality) or for chi <= 0."""
    if not math.isfinite(chi) or chi <= 0.0 or abs(chi - 1.0) <= CRITICAL_TOLERANCE:
        return math.inf
    return -1.0 / math.log(chi)


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
    with np.errstate(invalid="ignore", over="ignore"):  # chi = inf (the forward pass overflows)
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
