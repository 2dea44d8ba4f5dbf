"""Compiled vanilla RNN and LSTM through time, trained by backpropagation through time.

Shapes: x (T, B, D); hidden h_t (B, H) for t = 0..T with h_0 = 0; logits from h_T.
Parameters as torch.nn.RNN / nn.LSTM (gate order i, f, g, o): weight_ih (G*H, D),
weight_hh (G*H, H), bias (G*H,) with G = 1 (RNN) or 4 (LSTM); then the output layer.

Like the MLP's backward pass, BPTT is linear in the backpropagated signal, so the signal is
carried as a mantissa plus a power-of-two exponent per time step; weight gradients summed
over time accumulate in float64 relative to a reference exponent. Norms like 1e-300 at
t = 1 of a long vanilla RNN are therefore exact, and never computed on subnormals.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from tui_grad.engine.activations import (
    KERNEL,
    SATURATED_DERIVATIVE,
    activate,
    inner,
    reduce_add,
    sigmoid_of,
    tanh_of,
)
from tui_grad.engine.gemm import matmul, matmul_add, matmul_bias
from tui_grad.engine.kernels import log10_of, max_abs, renormalize, sum_squares


@njit(**KERNEL)
def rnn_forward(x, w_ih, w_hh, bias, act_code, slope, h, deriv, stats):
    """Vanilla RNN: h_t = phi(x_t W_ih^T + h_{t-1} W_hh^T + b). Fill h (T+1, B, H) and
    deriv (T, B, H) = phi'; stats (7, T) rows: mean and std of h_t, saturated fraction,
    row 6 the largest |pre-activation|."""
    steps = x.shape[0]
    w_ih_t, w_hh_t = np.ascontiguousarray(w_ih.T), np.ascontiguousarray(w_hh.T)
    z = np.empty(h[0].shape, h.dtype)
    for t in range(steps):
        _pre_activation(x[t], w_ih_t, h[t], w_hh_t, bias, z)
        stats[6, t] = max_abs(z.ravel())
        activate(act_code, z, h[t + 1], deriv[t], slope)
        _moments(h[t + 1], stats, t)
        saturated = 0
        for v in deriv[t].ravel():
            if abs(v) < SATURATED_DERIVATIVE:
                saturated += 1
        stats[2, t] = saturated / deriv[t].size


@inner
def _pre_activation(x_t, w_ih_t, h_t, w_hh_t, bias, z):
    """z = x_t W_ih^T + h_t W_hh^T + b, from the weights transposed once per sequence."""
    matmul_bias(x_t, w_ih_t, bias, z)
    matmul_add(h_t[:, :], w_hh_t, z)  # ([:, :]: see gemm.matmul)


@inner
def _moments(block, stats, t):
    total = 0.0
    total_sq = 0.0
    for v in block.ravel():
        total += v
        total_sq += np.float64(v) * v
    n = block.size
    stats[0, t] = total / n
    stats[1, t] = math.sqrt(max(total_sq / n - (total / n) ** 2, 0.0))


@inner
def _gates(z, out, hidden):
    """One example's gates from its pre-activations z (4H,): sigmoid for i, f, o, tanh for g."""
    i_f, g, o = z[:2 * hidden], z[2 * hidden:3 * hidden], z[3 * hidden:]
    i_f_out, g_out, o_out = out[:2 * hidden], out[2 * hidden:3 * hidden], out[3 * hidden:]
    for k in range(i_f.size):
        i_f_out[k] = sigmoid_of(i_f[k])
    for k in range(g.size):
        g_out[k] = tanh_of(g[k])
    for k in range(o.size):
        o_out[k] = sigmoid_of(o[k])


@njit(**KERNEL)
def lstm_forward(x, w_ih, w_hh, bias, h, c, gates, tanh_c, stats):
    """LSTM (torch gate order i, f, g, o). Fill h, c (T+1, B, H), gates (T, B, 4H) after their
    nonlinearities, tanh_c (T, B, H); stats rows: h mean, h std, saturated fraction of the
    cell's tanh, the mean of the forget, input and output gates, the largest |cell state|.

    Gates are computed in the run's dtype, as the MLP's sigmoid and tanh (float32 runs use
    their float32 approximations, see activations.sigmoid_of)."""
    steps, batch = x.shape[0], x.shape[1]
    hidden = h.shape[2]
    one = h.dtype.type(1.0)
    limit = h.dtype.type(SATURATED_DERIVATIVE)  # the cell's tanh counts as the MLP's does
    w_ih_t, w_hh_t = np.ascontiguousarray(w_ih.T), np.ascontiguousarray(w_hh.T)
    z = np.empty((batch, 4 * hidden), h.dtype)
    for t in range(steps):
        _pre_activation(x[t], w_ih_t, h[t], w_hh_t, bias, z)
        forget_total = 0.0
        input_total = 0.0
        output_total = 0.0
        saturated = 0
        for r in range(batch):  # loops over whole slices from 0, so they vectorise
            _gates(z[r], gates[t, r], hidden)
            i, f = gates[t, r, :hidden], gates[t, r, hidden:2 * hidden]
            g, o = gates[t, r, 2 * hidden:3 * hidden], gates[t, r, 3 * hidden:]
            c_old, c_new, tc, h_new = c[t, r], c[t + 1, r], tanh_c[t, r], h[t + 1, r]
            for k in range(hidden):
                cell = f[k] * c_old[k] + i[k] * g[k]
                tanh_cell = tanh_of(cell)
                c_new[k] = cell
                tc[k] = tanh_cell
                h_new[k] = o[k] * tanh_cell
                saturated += np.int32(one - tanh_cell * tanh_cell < limit)
            for k in range(hidden):  # (sums only read: see kernels._statistics_pass)
                forget_total = reduce_add(forget_total, np.float64(f[k]))
                input_total = reduce_add(input_total, np.float64(i[k]))
                output_total = reduce_add(output_total, np.float64(o[k]))
        _moments(h[t + 1], stats, t)
        stats[2, t] = saturated / (batch * hidden)
        stats[3, t] = forget_total / (batch * hidden)
        stats[4, t] = input_total / (batch * hidden)
        stats[5, t] = output_total / (batch * hidden)
        stats[6, t] = max_abs(c[t + 1].ravel())


@inner
def _accumulate(d_ih, d_hh, d_b, gz, x_t, h_t, exp, acc_exp):
    """Add this time step's weight gradients, gz (B, G*H) at exponent ``exp``, into the
    float64 sums d_ih, d_hh, d_b held at exponent ``acc_exp``; return the sums' exponent.

    ``gz`` is scaled in place to the sums' exponent (by a power of two)."""
    if exp > acc_exp:  # a larger term arrived (exploding): rescale what was summed so far
        factor = math.ldexp(1.0, acc_exp - exp)
        for acc in (d_ih.ravel(), d_hh.ravel(), d_b):
            for k in range(acc.size):
                acc[k] *= factor
        acc_exp = exp
    if exp < acc_exp:
        factor = math.ldexp(1.0, exp - acc_exp)
        flat = gz.ravel()
        for k in range(flat.size):
            flat[k] *= factor
    matmul_add(gz.T[:, :], x_t, d_ih)
    matmul_add(gz.T[:, :], h_t, d_hh)
    rows, cols = gz.shape
    for r in range(rows):
        for c in range(cols):
            d_b[c] += gz[r, c]
    return acc_exp


@njit(**KERNEL)
def rnn_backward(x, w_hh, h, deriv, grad_h, d_ih, d_hh, d_b, signal_log10, flush_below):
    """BPTT for the vanilla RNN from dL/dh_T (grad_h, float64, changed in place).

    Writes float64 gradient mantissas d_ih, d_hh, d_b sharing one exponent (returned) and
    log10 ||dL/dh_t|| for t = 1..T into signal_log10[0..T-1]."""
    steps = x.shape[0]
    exp = renormalize(grad_h, flush_below)
    acc_exp = np.int64(-100000)  # (typed: a literal compiles _accumulate twice, see gemm._tiled)
    d_ih[:] = 0.0
    d_hh[:] = 0.0
    d_b[:] = 0.0
    w = w_hh.astype(np.float64)
    gz = np.empty_like(grad_h)
    x_t, h_t = np.empty((x.shape[1], x.shape[2])), np.empty(grad_h.shape)
    for t in range(steps - 1, -1, -1):
        signal_log10[t] = log10_of(sum_squares(grad_h), exp)
        gz[:] = grad_h * deriv[t]
        shift = renormalize(gz, flush_below)
        exp += shift
        matmul(gz[:, :], w, grad_h)
        x_t[:], h_t[:] = x[t], h[t]
        acc_exp = _accumulate(d_ih, d_hh, d_b, gz, x_t, h_t, exp, acc_exp)
    return acc_exp


@njit(**KERNEL)
def lstm_backward(x, w_hh, h, c, gates, tanh_c, grad_h, d_ih, d_hh, d_b, signal_log10,
                  flush_below):
    """BPTT for the LSTM from dL/dh_T; the cell-state gradient shares the signal's exponent."""
    steps, batch, hidden = x.shape[0], x.shape[1], h.shape[2]
    grad_c = np.zeros_like(grad_h)
    exp = renormalize(grad_h, flush_below)
    acc_exp = np.int64(-100000)  # (typed: a literal compiles _accumulate twice, see gemm._tiled)
    d_ih[:] = 0.0
    d_hh[:] = 0.0
    d_b[:] = 0.0
    dz = np.zeros((batch, 4 * hidden))
    w = w_hh.astype(np.float64)
    x_t, h_t = np.empty((batch, x.shape[2])), np.empty((batch, hidden))
    for t in range(steps - 1, -1, -1):
        signal_log10[t] = log10_of(sum_squares(grad_h), exp)
        for r in range(batch):
            for k in range(hidden):
                i, f = gates[t, r, k], gates[t, r, hidden + k]
                g, o = gates[t, r, 2 * hidden + k], gates[t, r, 3 * hidden + k]
                tc = tanh_c[t, r, k]
                dh = grad_h[r, k]
                dc = grad_c[r, k] + dh * o * (1.0 - tc * tc)
                dz[r, k] = dc * g * i * (1.0 - i)
                dz[r, hidden + k] = dc * c[t, r, k] * f * (1.0 - f)
                dz[r, 2 * hidden + k] = dc * i * (1.0 - g * g)
                dz[r, 3 * hidden + k] = dh * tc * o * (1.0 - o)
                grad_c[r, k] = dc * f
        matmul(dz[:, :], w, grad_h)
        x_t[:], h_t[:] = x[t], h[t]
        acc_exp = _accumulate(d_ih, d_hh, d_b, dz, x_t, h_t, exp, acc_exp)
        shift = _renormalize_pair(grad_h, grad_c, flush_below)
        exp += shift
    return acc_exp


@inner
def _renormalize_pair(a, b, flush_below):
    """Scale a and b by the same power of two so their joint largest |value| is in [0.5, 1)."""
    largest = max(np.max(np.abs(a)), np.max(np.abs(b)))
    if largest == 0.0 or not math.isfinite(largest):
        return 0
    shift = math.frexp(largest)[1]
    factor = math.ldexp(1.0, -shift)
    for block in (a, b):
        flat = block.ravel()
        for k in range(flat.size):
            value = flat[k] * factor
            flat[k] = value if abs(value) >= flush_below else 0.0
    return shift

