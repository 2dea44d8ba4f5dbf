"""Compiled forward pass of the deep MLP and the helpers both passes share.

Layout (built by ``engine.layout``): all parameters live in one flat vector; ``w_off[i]``,
``b_off[i]``, ``g_off[i]``, ``be_off[i]`` and ``s_off[i]`` give where layer i's weight
(out, in), bias, BN gamma/beta and prelu slope start. Activations h_0..h_depth live in one
flat buffer at ``h_off``. Layer i (0-based) maps h_i to h_{i+1}; layer ``depth`` is the
linear output layer.

The backward pass is in backprop.py.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from tui_grad.engine.activations import KERNEL, PRELU, SATURATED_DERIVATIVE, activate

LOG10_2 = 0.30102999566398120
MSE, CROSS_ENTROPY = 0, 1


@njit(**KERNEL)
def renormalize(block, flush_below):
    """Scale ``block`` in place by 2**-k so its largest |value| lies in [0.5, 1); return k.

    Elements that end up below ``flush_below`` (far under the largest) are set to 0 so no
    later operation works on subnormals. A block that is all zero or not finite is left.
    """
    flat = block.ravel()
    largest = 0.0
    for i in range(flat.size):
        largest = max(largest, abs(np.float64(flat[i])))
    if largest == 0.0 or not math.isfinite(largest):
        return 0
    shift = math.frexp(largest)[1]
    factor = math.ldexp(1.0, -shift)
    for i in range(flat.size):
        value = np.float64(flat[i]) * factor
        flat[i] = value if abs(value) >= flush_below else 0.0
    return shift


@njit(**KERNEL)
def sum_squares(values):
    """Sum of squares accumulated in float64 (float32 sums lose tiny and huge norms).

    Four independent partial sums in a fixed order: fast (no single dependency chain) and
    still bit-reproducible, unlike a fastmath reduction.
    """
    flat = values.ravel()
    s0 = s1 = s2 = s3 = 0.0  # local scalars stay in registers; an array would be reloaded
    n4 = flat.size - flat.size % 4
    for k in range(0, n4, 4):
        v0, v1 = np.float64(flat[k]), np.float64(flat[k + 1])
        v2, v3 = np.float64(flat[k + 2]), np.float64(flat[k + 3])
        s0 += v0 * v0
        s1 += v1 * v1
        s2 += v2 * v2
        s3 += v3 * v3
    for k in range(n4, flat.size):
        v0 = np.float64(flat[k])
        s0 += v0 * v0
    return (s0 + s1) + (s2 + s3)


@njit(**KERNEL)
def log10_of(ss_mantissa, exponent):
    """log10 of sqrt(ss_mantissa) * 2**exponent: -inf for an exact zero, NaN/inf kept."""
    if ss_mantissa == 0.0:
        return -np.inf
    if not math.isfinite(ss_mantissa):
        return ss_mantissa
    return 0.5 * math.log10(ss_mantissa) + exponent * LOG10_2


@njit(**KERNEL)
def loss_and_output_grad(loss_code, logits, y_reg, y_cls, grad_out):
    """Return the mean loss (float64) and write dL/dlogits into ``grad_out`` (B, D_out)."""
    batch, n_out = logits.shape
    total = 0.0
    if loss_code == MSE:
        scale = 2.0 / (batch * n_out)
        for r in range(batch):
            for c in range(n_out):
                diff = np.float64(logits[r, c]) - np.float64(y_reg[r, c])
                total += diff * diff
                grad_out[r, c] = scale * diff
        return total / (batch * n_out)
    for r in range(batch):
        top = -np.inf
        for c in range(n_out):
            top = max(top, np.float64(logits[r, c]))
        denom = 0.0
        for c in range(n_out):
            denom += math.exp(np.float64(logits[r, c]) - top)
        log_denom = math.log(denom) + top
        total += log_denom - np.float64(logits[r, y_cls[r]])
        for c in range(n_out):
            p = math.exp(np.float64(logits[r, c]) - log_denom)
            grad_out[r, c] = (p - (1.0 if c == y_cls[r] else 0.0)) / batch
    return total / batch


@njit(**KERNEL)
def batchnorm_forward(z, xhat, inv_std, gamma, beta, eps):
    """Normalise z (B, W) over the batch in place into gamma*xhat + beta; keep xhat, 1/std."""
    batch, width = z.shape
    for c in range(width):
        mean = 0.0
        for r in range(batch):
            mean += z[r, c]
        mean /= batch
        var = 0.0
        for r in range(batch):
            d = z[r, c] - mean
            var += d * d
        inv = 1.0 / math.sqrt(var / batch + eps)
        inv_std[c] = inv
        for r in range(batch):
            xh = (z[r, c] - mean) * inv
            xhat[r, c] = xh
            z[r, c] = gamma[c] * xh + beta[c]


@njit(**KERNEL)
def layer_statistics(h, a, deriv, stats, i):
    """Fill stats[:, i] = mean, std of h; saturated fraction of phi'; dead-unit fraction of a."""
    batch, width = h.shape
    total = 0.0
    total_sq = 0.0
    saturated = 0
    for v in h.ravel():
        total += v
        total_sq += np.float64(v) * v
    for v in deriv.ravel():
        if abs(v) < SATURATED_DERIVATIVE:
            saturated += 1
    dead = 0
    for c in range(width):
        alive = False
        for r in range(batch):
            if a[r, c] != 0:
                alive = True
                break
        if not alive:
            dead += 1
    n = batch * width
    mean = total / n
    stats[0, i] = mean
    stats[1, i] = math.sqrt(max(total_sq / n - mean * mean, 0.0))
    stats[2, i] = saturated / n
    stats[3, i] = dead / width


@njit(**KERNEL)
def add_bias(z, bias):
    """z[r, c] += bias[c] for a (B, W) block."""
    rows, cols = z.shape
    for r in range(rows):
        for c in range(cols):
            z[r, c] += bias[c]


@njit(**KERNEL)
def column_sums(block, out):
    """out[c] = sum over rows of block[:, c], accumulated in float64."""
    rows, cols = block.shape
    for c in range(cols):
        total = 0.0
        for r in range(rows):
            total += block[r, c]
        out[c] = total


@njit(**KERNEL)
def forward(params, lay, hyper, h_buf, u_buf, xh_buf, inv_std, a_buf, d_buf, logits, stats):
    """Run every layer on h_0 (already in h_buf); write logits (B, D_out) and stats (4+, L).

    ``lay`` = (dims, w_off, b_off, g_off, be_off, s_off, h_off, skip_from), see layout.py.
    ``hyper`` = (act_code, use_bn, bn_eps, alpha, fast_tanh, negative_slope, keep_u).
    Keeps for backward: h_i, phi'(u) per layer in d_buf, BN's xhat and 1/std, and u when
    ``keep_u`` (prelu needs it for its slope gradient).
    """
    dims, w_off, b_off, g_off, be_off, s_off, h_off, skip_from = lay
    act_code, use_bn, bn_eps, alpha, fast_tanh, negative_slope, keep_u = hyper
    depth = dims.size - 2
    batch = logits.shape[0]
    for i in range(depth + 1):
        n_in, n_out = dims[i], dims[i + 1]
        weight = params[w_off[i]:w_off[i] + n_out * n_in].reshape((n_out, n_in))  # (out, in)
        h_in = h_buf[h_off[i]:h_off[i] + batch * n_in].reshape((batch, n_in))
        if i == depth:
            np.dot(h_in, weight.T, logits)
            add_bias(logits, params[b_off[i]:b_off[i] + n_out])
            stats[0, i] = np.mean(logits)
            stats[1, i] = np.std(logits)
            return
        cell = i * batch * n_out
        u_cell = cell if keep_u else 0
        u = u_buf[u_cell:u_cell + batch * n_out].reshape((batch, n_out))
        np.dot(h_in, weight.T, u)
        add_bias(u, params[b_off[i]:b_off[i] + n_out])
        if use_bn:
            batchnorm_forward(u, xh_buf[cell:cell + batch * n_out].reshape((batch, n_out)),
                              inv_std[i], params[g_off[i]:g_off[i] + n_out],
                              params[be_off[i]:be_off[i] + n_out], bn_eps)
        slope = params[s_off[i]] if act_code == PRELU else negative_slope
        a = a_buf[:batch * n_out].reshape((batch, n_out))
        deriv = d_buf[cell:cell + batch * n_out].reshape((batch, n_out))
        activate(act_code, u, a, deriv, slope, fast_tanh)
        h_out = h_buf[h_off[i + 1]:h_off[i + 1] + batch * n_out]
        source = skip_from[i]
        if source >= 0:
            h_skip = h_buf[h_off[source]:h_off[source] + batch * n_out]
            a_flat = a.ravel()
            for k in range(h_out.size):
                h_out[k] = h_skip[k] + alpha * a_flat[k]
        else:
            h_out[:] = a.ravel()
        layer_statistics(h_out.reshape((batch, n_out)), a, deriv, stats, i)
