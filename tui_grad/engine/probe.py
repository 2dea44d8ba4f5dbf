"""Diagnostics on request: per-layer distributions, the Jacobian's spectrum, and sharpness.

All three look at the network as it is now (the run's own parameters, read in float64) on
the batch of the last step, through an exact float64 NumPy forward and backward pass of
the same MLP the kernels train (activation, batch norm with the batch's statistics,
residual shortcuts, prelu). The training step never runs this code: with none of them
asked for, a step costs what it did.

- ``layer_values``: every layer's pre-activation (the input of phi, after batch norm),
  activation, weight gradient and backpropagated signal dL/dh.
- ``histograms``: their histograms; values on linear bins, gradient quantities on
  log10|x| bins (they span decades) with exact zeros counted apart.
- ``jacobian_singular_values``: the singular values of d h_depth / d h_1 (last hidden
  layer's output by the first's) for one example; batch norm's mean and variance are held
  at the batch's values. Past ``SUBSPACE_WIDTH`` units, of J Q for a random orthonormal
  Q of that many columns (the values are then those of J on a random subspace).
- ``sharpness``: the top eigenvalue of the loss's Hessian (data loss, no weight decay) by
  power iteration on Hessian-vector products, each a central difference of two float64
  gradients.

For an RNN or LSTM the layers are time steps t = 1..T, as on the UI's per-layer axis:
pre-activation z_t (the LSTM's four gate inputs, i f g o), activation h_t, weight gradient
the step's share of dL/dW_hh, signal dL/dh_t; the Jacobian is d h_T / d h_1 (the LSTM's cell
state c_1 held, so it counts every path from h_1 through h and c).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from tui_grad.engine.theory import phi_and_derivative

QUANTITIES = ("preactivation", "activation", "weight_grad", "signal")
LOG_QUANTITIES = ("weight_grad", "signal")  # histogrammed on log10|x|
SUBSPACE_WIDTH = 512  # wider Jacobians are taken on a random subspace of this many directions
DEFAULT_LAYERS = 5


@dataclass
class LayerValues:
    """Float64 values of one forward and backward pass, per hidden layer (index 0 = first):
    ``preactivation`` and ``activation`` (batch, width), ``weight_grad`` (width, n_in) and
    ``signal`` = dL/dh (batch, width); ``loss`` the data loss; ``grads`` every parameter's
    gradient shaped like ``Simulator.params``."""

    loss: float
    preactivation: list[np.ndarray]
    activation: list[np.ndarray]
    weight_grad: list[np.ndarray]
    signal: list[np.ndarray]
    grads: list[dict[str, np.ndarray]] = field(repr=False)
    deriv: list[np.ndarray] = field(repr=False)  # phi'(pre-activation)
    bn_scale: list[np.ndarray | None] = field(repr=False)  # gamma / std per unit, with BN
    cells: list[np.ndarray] | None = field(default=None, repr=False)  # LSTM: c_0..c_T
    logits: np.ndarray | None = field(default=None, repr=False)  # (batch, outputs)


@dataclass(frozen=True)
class Histogram:
    """Counts of one quantity of one layer: ``edges`` (bins + 1), ``counts`` (bins),
    ``zeros`` (exact zeros, counted apart on log bins, else 0), ``nonfinite`` (NaN, inf),
    ``log`` whether the edges are log10|x|."""

    layer: int
    quantity: str
    edges: np.ndarray
    counts: np.ndarray
    zeros: int
    nonfinite: int
    log: bool

    @property
    def total(self) -> int:
        return int(self.counts.sum()) + self.zeros + self.nonfinite


@dataclass(frozen=True)
class Spectrum:
    """Singular values of the input-output Jacobian (descending) and their summary:
    largest, smallest, mean square, variance of the squares, and ``spread`` = variance /
    mean square^2 (0 for an isometry up to scale; about the depth for a deep linear net with
    Gaussian weights)."""

    values: np.ndarray
    example: int
    layers: int  # layer Jacobians in the product (depth - 1)
    subspace: int | None  # directions sampled, when the net is wider than SUBSPACE_WIDTH

    @property
    def summary(self) -> dict[str, float]:
        squares = self.values ** 2
        mean, variance = float(squares.mean()), float(squares.var())
        with np.errstate(divide="ignore", invalid="ignore"):
            spread = float(np.float64(variance) / np.float64(mean) ** 2)
        return {"largest": float(self.values[0]), "smallest": float(self.values[-1]),
                "mean_square": mean, "variance_of_squares": variance, "spread": spread}


@dataclass(frozen=True)
class Sharpness:
    """The top Hessian eigenvalue, with how the power iteration converged."""

    value: float
    iterations: int
    relative_change: float  # of the estimate in the last iteration
    converged: bool


def layer_values(config, params: list, x: np.ndarray, y_reg: np.ndarray,
                 y_cls: np.ndarray) -> LayerValues:
    """One exact float64 forward and backward pass of ``config``'s net with ``params``
    (for an RNN/LSTM, x is (batch, T, inputs) and the layers are time steps)."""
    if config.network.model != "mlp":
        return _recurrent_values(config, params, x, y_reg, y_cls)
    net = config.network
    depth = net.depth
    from tui_grad.engine.layout import norm_layers, residual_sources
    skip = residual_sources(depth, net.residual, net.residual_block)
    normed = norm_layers(depth, net.norm, net.norm_position, skip)
    where = net.norm_position
    p = [{k: np.asarray(v, dtype=np.float64) for k, v in layer.items()} for layer in params]
    h = [np.asarray(x, dtype=np.float64)]
    inputs, pre, act, deriv, scale = [], [], [], [], []
    caches: dict[int, tuple] = {}  # layer -> the norm's (xhat, 1/std)
    alphas = [float(p[i]["alpha"][0]) if "alpha" in p[i] else net.residual_alpha
              for i in range(depth + 1)]
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for i in range(depth + 1):
            layer_in = h[i]
            if where == "pre" and normed[i]:
                layer_in, caches[i] = _norm(net.norm, h[i], p[i], net.bn_eps)
            inputs.append(layer_in)
            u = layer_in @ p[i]["weight"].T + p[i]["bias"]
            if i == depth:
                logits = u
                break
            scale.append(None)
            if where == "layer" and normed[i]:
                u, caches[i] = _norm(net.norm, u, p[i], net.bn_eps)
                if net.norm == "batch_norm":  # diagonal with the batch's statistics held
                    scale[i] = (p[i]["gamma"] * caches[i][1]).ravel()
            slope = float(p[i]["prelu_slope"][0]) if "prelu_slope" in p[i] else net.negative_slope
            a, d = phi_and_derivative(net.activation, u, slope)
            pre.append(u)
            act.append(a)
            deriv.append(np.broadcast_to(d, u.shape))
            out = h[skip[i]] + alphas[i] * a if skip[i] >= 0 else a
            if where == "post" and normed[i]:
                out, caches[i] = _norm(net.norm, out, p[i], net.bn_eps)
            h.append(out)
        loss, grad = _loss(config.training.loss, logits, y_reg, y_cls)
    grads = [dict.fromkeys(layer) for layer in p]
    grads[depth]["weight"], grads[depth]["bias"] = grad.T @ inputs[depth], grad.sum(axis=0)
    signal = [None] * depth
    pending = [np.zeros_like(hi) for hi in h]  # shortcut contributions to dL/dh_i
    with np.errstate(over="ignore", invalid="ignore"):
        g_h = _through_pre_norm(grad @ p[depth]["weight"], depth, where, normed, net.norm, caches,
                                p, grads)
        for i in range(depth - 1, -1, -1):
            g_h = g_h + pending[i + 1]
            signal[i] = g_h
            if where == "post" and normed[i]:
                g_h = _norm_backward(net.norm, g_h, caches[i], p[i], grads[i])
            g_a = g_h * alphas[i] if skip[i] >= 0 else g_h
            if skip[i] >= 0:
                pending[skip[i]] += g_h
            if "alpha" in p[i]:
                grads[i]["alpha"] = np.array([np.sum(g_h * act[i])])
            g_u = g_a * deriv[i]
            if "prelu_slope" in p[i]:
                negative = pre[i] <= 0
                grads[i]["prelu_slope"] = np.array([np.sum(g_a * pre[i] * negative)])
            if where == "layer" and normed[i]:
                g_u = _norm_backward(net.norm, g_u, caches[i], p[i], grads[i])
            grads[i]["weight"], grads[i]["bias"] = g_u.T @ inputs[i], g_u.sum(axis=0)
            g_h = _through_pre_norm(g_u @ p[i]["weight"], i, where, normed, net.norm, caches, p,
                                    grads)
    return LayerValues(loss=loss, preactivation=pre, activation=act,
                       weight_grad=[g["weight"] for g in grads[:depth]], signal=signal,
                       grads=grads, deriv=deriv, bn_scale=scale, logits=logits)


def _norm(kind: str, x: np.ndarray, tensors: dict, eps: float) -> tuple[np.ndarray, tuple]:
    """Batch norm (over the batch, per unit) or layer norm (over the units, per example) of
    x with the layer's gamma and beta; and (xhat, 1/std) for the backward pass."""
    axis = 0 if kind == "batch_norm" else 1
    mean = x.mean(axis=axis, keepdims=True)
    inv = 1.0 / np.sqrt(x.var(axis=axis, keepdims=True) + eps)
    xhat = (x - mean) * inv
    return tensors["gamma"] * xhat + tensors["beta"], (xhat, inv)


def _norm_backward(kind: str, grad: np.ndarray, cache: tuple, tensors: dict,
                   grads: dict) -> np.ndarray:
    """dL/dx from dL/d(norm output); writes the gain's and bias's gradients into ``grads``."""
    xhat, inv = cache
    axis = 0 if kind == "batch_norm" else 1
    grads["gamma"], grads["beta"] = (grad * xhat).sum(axis=0), grad.sum(axis=0)
    g_xh = grad * tensors["gamma"]
    return inv * (g_xh - g_xh.mean(axis=axis, keepdims=True)
                  - xhat * (g_xh * xhat).mean(axis=axis, keepdims=True))


def _through_pre_norm(g_in, i, where, normed, kind, caches, p, grads) -> np.ndarray:
    """dL/dh_i from dL/d(layer i's input): through its pre-norm, if it has one."""
    if where == "pre" and normed[i]:
        return _norm_backward(kind, g_in, caches[i], p[i], grads[i])
    return g_in


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # no overflow warning for large |z|


def _recurrent_values(config, params: list, x: np.ndarray, y_reg: np.ndarray,
                      y_cls: np.ndarray) -> LayerValues:
    """The RNN's or LSTM's forward pass through time and BPTT, in float64 (rnn.py's maths)."""
    net = config.network
    lstm = net.model == "lstm"
    cell = {k: np.asarray(v, dtype=np.float64) for k, v in params[0].items()}
    out = {k: np.asarray(v, dtype=np.float64) for k, v in params[1].items()}
    w_ih, w_hh, bias = cell["weight_ih"], cell["weight_hh"], cell["bias"]
    xs = np.asarray(x, dtype=np.float64)
    batch, steps = xs.shape[0], xs.shape[1]
    hidden = w_hh.shape[1]
    h = [np.zeros((batch, hidden))]
    c = [np.zeros((batch, hidden))]
    pre, deriv = [], []
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(steps):
            z = xs[:, t] @ w_ih.T + h[t] @ w_hh.T + bias
            pre.append(z)
            if lstm:
                i, f = _sigmoid(z[:, :hidden]), _sigmoid(z[:, hidden:2 * hidden])
                g, o = np.tanh(z[:, 2 * hidden:3 * hidden]), _sigmoid(z[:, 3 * hidden:])
                deriv.append(np.concatenate([i, f, g, o], axis=1))  # the gates, for backward
                c.append(f * c[t] + i * g)
                h.append(o * np.tanh(c[t + 1]))
            else:
                a, d = phi_and_derivative(net.activation, z, net.negative_slope)
                deriv.append(np.broadcast_to(d, z.shape))
                h.append(a)
        logits = h[steps] @ out["weight"].T + out["bias"]
        loss, grad = _loss(config.training.loss, logits, y_reg, y_cls)
    grads = [{k: np.zeros_like(v) for k, v in cell.items()},
             {"weight": grad.T @ h[steps], "bias": grad.sum(axis=0)}]
    signal, weight_grad = [None] * steps, [None] * steps
    g_c = np.zeros((batch, hidden))
    with np.errstate(over="ignore", invalid="ignore"):
        g_h = grad @ out["weight"]
        for t in range(steps - 1, -1, -1):
            signal[t] = g_h
            if lstm:
                gates = deriv[t]
                i, f = gates[:, :hidden], gates[:, hidden:2 * hidden]
                g, o = gates[:, 2 * hidden:3 * hidden], gates[:, 3 * hidden:]
                tanh_c = np.tanh(c[t + 1])
                g_c = g_c + g_h * o * (1.0 - tanh_c * tanh_c)
                gz = np.concatenate([g_c * g * i * (1.0 - i), g_c * c[t] * f * (1.0 - f),
                                     g_c * i * (1.0 - g * g), g_h * tanh_c * o * (1.0 - o)], axis=1)
                g_c = g_c * f
            else:
                gz = g_h * deriv[t]
            weight_grad[t] = gz.T @ h[t]
            grads[0]["weight_ih"] += gz.T @ xs[:, t]
            grads[0]["weight_hh"] += weight_grad[t]
            grads[0]["bias"] += gz.sum(axis=0)
            g_h = gz @ w_hh
    return LayerValues(loss=loss, preactivation=pre, activation=h[1:], weight_grad=weight_grad,
                       signal=signal, grads=grads, deriv=deriv, bn_scale=[None] * steps,
                       cells=c if lstm else None, logits=logits)


def _loss(kind: str, logits: np.ndarray, y_reg: np.ndarray, y_cls: np.ndarray) -> tuple[float, np.ndarray]:
    """The engine's losses in float64: mean squared error over every output, or mean
    cross-entropy over the batch; and dL/dlogits."""
    batch, n_out = logits.shape
    if kind != "cross_entropy":
        diff = logits - y_reg
        return float(np.mean(diff * diff)), 2.0 * diff / (batch * n_out)
    top = logits.max(axis=1, keepdims=True)
    log_denom = np.log(np.exp(logits - top).sum(axis=1, keepdims=True)) + top
    rows = np.arange(batch)
    loss = float(np.mean(log_denom[:, 0] - logits[rows, y_cls]))
    grad = np.exp(logits - log_denom)
    grad[rows, y_cls] -= 1.0
    return loss, grad / batch


def default_layers(depth: int, count: int = DEFAULT_LAYERS) -> list[int]:
    """About ``count`` hidden layers spread from the first (0) to the last (depth - 1)."""
    return sorted({round(k * (depth - 1) / max(count - 1, 1)) for k in range(min(count, depth))})


def histograms(values: LayerValues, layers: list[int] | None = None,
               quantities: tuple[str, ...] = QUANTITIES, bins: int = 30) -> list[Histogram]:
    """Histograms of ``quantities`` for ``layers`` (hidden-layer indices, 0 = first; default
    about five spread from input to output). For each quantity the bins are shared by the
    layers, so their outlines compare: ``bins`` equal bins over the values' range, on
    log10|x| for LOG_QUANTITIES."""
    depth = len(values.activation)
    layers = default_layers(depth) if layers is None else list(layers)
    for layer in layers:
        if not 0 <= layer < depth:
            raise ValueError(f"layer {layer} is not a hidden layer (0..{depth - 1})")
    result = []
    for quantity in quantities:
        if quantity not in QUANTITIES:
            raise ValueError(f"unknown quantity {quantity!r} (one of {', '.join(QUANTITIES)})")
        log = quantity in LOG_QUANTITIES
        samples = [np.ravel(getattr(values, quantity)[layer]) for layer in layers]
        with np.errstate(divide="ignore"):
            shown = [np.log10(np.abs(s)) if log else s for s in samples]
        finite = [s[np.isfinite(s)] for s in shown]
        pooled = np.concatenate(finite) if finite else np.empty(0)
        low, high = (float(pooled.min()), float(pooled.max())) if pooled.size else (0.0, 1.0)
        if high - low < 1e-12 * max(abs(low), 1.0):
            low, high = low - 0.5, high + 0.5
        edges = np.linspace(low, high, bins + 1)
        for layer, sample, kept in zip(layers, samples, finite, strict=True):
            zeros = int(np.count_nonzero(sample == 0.0)) if log else 0
            nonfinite = int(sample.size - kept.size - zeros)
            counts, _ = np.histogram(kept, bins=edges)
            result.append(Histogram(layer, quantity, edges, counts, zeros, nonfinite, log))
    return result


def jacobian_not_covered(config) -> str | None:
    """Why the Jacobian probe cannot measure ``config``'s net, or None when it can."""
    net = config.network
    if net.model == "mlp" and (net.norm == "layer_norm" or net.norm_position != "layer"):
        return "the Jacobian probe does not cover layer norm or a norm before or after the shortcut yet"
    return None


def jacobian_singular_values(config, values: LayerValues, params: list, example: int = 0,
                             rng: np.random.Generator | None = None) -> Spectrum:
    """Singular values of d h_depth / d h_1 for ``example`` of the batch (float64); for an
    RNN/LSTM of d h_T / d h_1."""
    net = config.network
    batch = values.activation[0].shape[0]
    if not 0 <= example < batch:
        raise ValueError(f"example {example} is not in the batch (0..{batch - 1})")
    if net.model != "mlp":
        return _recurrent_spectrum(net, values, params, example, rng)
    refused = jacobian_not_covered(config)
    if refused:
        raise ValueError(refused)
    from tui_grad.engine.layout import residual_sources
    skip = residual_sources(net.depth, net.residual, net.residual_block)
    start, subspace = _start(net.width, rng)
    needed = {int(s) for s in skip if s >= 1}  # J at h_s, kept for the shortcut into s
    kept: dict[int, np.ndarray] = {}
    jac = start  # d h_1 / d h_1 (times Q)
    with np.errstate(over="ignore", invalid="ignore"):
        for i in range(1, net.depth):  # hidden layer i maps h_i to h_{i+1}
            if i in needed:
                kept[i] = jac
            source = kept.pop(int(skip[i]), None) if skip[i] >= 1 else None
            row = values.deriv[i][example]
            if values.bn_scale[i] is not None:
                row = row * values.bn_scale[i]
            branch = (row[:, None] * np.asarray(params[i]["weight"], dtype=np.float64)) @ jac
            if skip[i] >= 0:  # h_{i+1} = h_s + alpha * branch; h_0 does not depend on h_1
                alpha = float(params[i]["alpha"][0]) if "alpha" in params[i] else net.residual_alpha
                jac = alpha * branch + (source if source is not None else 0.0)
            else:
                jac = branch
    return Spectrum(_singular_values(jac), example, net.depth - 1, subspace)


def _singular_values(jac: np.ndarray) -> np.ndarray:
    if not np.all(np.isfinite(jac)):
        return np.full(jac.shape[1], np.nan)
    return np.linalg.svd(jac, compute_uv=False)


def _start(width: int, rng: np.random.Generator | None) -> tuple[np.ndarray, int | None]:
    """The identity, or past SUBSPACE_WIDTH units a random orthonormal basis of a subspace."""
    if width <= SUBSPACE_WIDTH:
        return np.eye(width), None
    start, _ = np.linalg.qr((rng or np.random.default_rng(0)).standard_normal((width, SUBSPACE_WIDTH)))
    return start, SUBSPACE_WIDTH


def _recurrent_spectrum(net, values: LayerValues, params: list, example: int,
                        rng: np.random.Generator | None) -> Spectrum:
    """d h_T / d h_1 through time, forward mode: RNN J <- diag(phi'(z_t)) W_hh J; the LSTM
    carries d c_t / d h_1 beside it (c_1 held)."""
    w_hh = np.asarray(params[0]["weight_hh"], dtype=np.float64)
    hidden = w_hh.shape[1]
    steps = len(values.activation)
    jac, subspace = _start(hidden, rng)
    jac_c = np.zeros_like(jac)
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(1, steps):  # step t maps h_t (index t-1) to h_{t+1}
            dz = w_hh @ jac
            row = values.deriv[t][example]
            if values.cells is None:
                jac = row[:, None] * dz
                continue
            i, f = row[:hidden, None], row[hidden:2 * hidden, None]
            g, o = row[2 * hidden:3 * hidden, None], row[3 * hidden:, None]
            c_old, c_new = values.cells[t][example][:, None], values.cells[t + 1][example][:, None]
            tanh_c = np.tanh(c_new)
            jac_c = (f * jac_c + c_old * f * (1.0 - f) * dz[hidden:2 * hidden]
                     + i * (1.0 - g * g) * dz[2 * hidden:3 * hidden]
                     + g * i * (1.0 - i) * dz[:hidden])
            jac = o * (1.0 - tanh_c * tanh_c) * jac_c + tanh_c * o * (1.0 - o) * dz[3 * hidden:]
    return Spectrum(_singular_values(jac), example, steps - 1, subspace)


def sharpness(config, params: list, x: np.ndarray, y_reg: np.ndarray, y_cls: np.ndarray,
              iterations: int = 20, tolerance: float = 1e-4, seed: int = 0) -> Sharpness:
    """The Hessian's top eigenvalue (largest in magnitude) of the data loss on (x, y), by
    power iteration; Hv = (g(theta + eps v) - g(theta - eps v)) / (2 eps) in float64."""
    theta = [{k: np.asarray(v, dtype=np.float64).copy() for k, v in layer.items()} for layer in params]
    flat, unflatten = _flatten(theta)

    def gradient(vector: np.ndarray) -> np.ndarray:
        return _flatten(layer_values(config, unflatten(vector), x, y_reg, y_cls).grads)[0]

    rng = np.random.default_rng(seed)
    v = rng.standard_normal(flat.size)
    v /= np.linalg.norm(v)
    eps = 1e-5 * max(float(np.linalg.norm(flat)), 1.0)  # v has norm 1
    estimate, change = math.nan, math.inf
    for done in range(1, iterations + 1):
        hv = (gradient(flat + eps * v) - gradient(flat - eps * v)) / (2.0 * eps)
        new = float(v @ hv)
        norm = float(np.linalg.norm(hv))
        if not math.isfinite(new) or norm == 0.0:
            return Sharpness(new, done, math.nan, False)
        change = abs(new - estimate) / abs(new) if math.isfinite(estimate) and new != 0 else math.inf
        estimate, v = new, hv / norm
        if change <= tolerance:
            return Sharpness(estimate, done, change, True)
    return Sharpness(estimate, iterations, change, False)


def _flatten(layers: list[dict[str, np.ndarray]]):
    """One vector of every tensor (layer order, then key order), and its inverse."""
    keys = [(i, k, np.shape(v)) for i, layer in enumerate(layers) for k, v in layer.items()]
    flat = np.concatenate([np.ravel(layers[i][k]) for i, k, _ in keys])

    def unflatten(vector: np.ndarray) -> list[dict[str, np.ndarray]]:
        out: list[dict[str, np.ndarray]] = [{} for _ in layers]
        at = 0
        for i, k, shape in keys:
            size = int(np.prod(shape))
            out[i][k] = vector[at:at + size].reshape(shape)
            at += size
        return out

    return flat, unflatten
