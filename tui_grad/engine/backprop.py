"""Compiled backward pass of the deep MLP, with the update fused in where it can be.

The backward pass is linear in the backpropagated signal, so it carries the signal as a
mantissa array plus one power-of-two exponent per layer: the true gradient of layer i is
``grads[...] * 2**exps[i]``. Rescaling by a power of two is exact, so no arithmetic ever
touches subnormal numbers and norms far below float32's range are exact. See kernels.py for
the buffer layout.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from tui_grad.engine.activations import KERNEL, inner, through_activation
from tui_grad.engine.gemm import block, matmul
from tui_grad.engine.kernels import (
    AT_LAYER,
    BATCH_NORM,
    POST,
    PRE,
    column_sums,
    log10_of,
    max_abs,
    prefetch,
    renormalize,
    sum_squares,
)
from tui_grad.engine.optim import update_layer


@inner
def batchnorm_backward(grad, xhat, inv_std, gamma, d_gamma, d_beta):
    """Turn dL/d(BN output) in ``grad`` into dL/dz in place; write d_gamma, d_beta."""
    batch, width = grad.shape
    for c in range(width):
        sum_g = 0.0
        sum_gx = 0.0
        for r in range(batch):
            sum_g += grad[r, c]
            sum_gx += grad[r, c] * xhat[r, c]
        d_gamma[c] = sum_gx
        d_beta[c] = sum_g
        k = gamma[c] * inv_std[c] / batch
        for r in range(batch):
            grad[r, c] = k * (batch * grad[r, c] - sum_g - xhat[r, c] * sum_gx)


@inner
def layernorm_backward(grad, xhat, inv_std, gamma, d_gamma, d_beta):
    """Turn dL/d(LN output) in ``grad`` into dL/dz in place, row by row; write d_gamma,
    d_beta (sums over the rows)."""
    batch, width = grad.shape
    d_gamma[:] = 0
    d_beta[:] = 0
    for r in range(batch):
        sum_g = 0.0
        sum_gx = 0.0
        for c in range(width):
            d_gamma[c] += grad[r, c] * xhat[r, c]
            d_beta[c] += grad[r, c]
            g = grad[r, c] * gamma[c]
            sum_g += g
            sum_gx += g * xhat[r, c]
        k = inv_std[r] / width
        for c in range(width):
            grad[r, c] = k * (width * grad[r, c] * gamma[c] - sum_g - xhat[r, c] * sum_gx)


@inner
def norm_backward(kind, grad, xhat, inv_std, gamma, d_gamma, d_beta):
    """Batch norm's or layer norm's backward pass on ``grad`` in place."""
    if kind == BATCH_NORM:
        batchnorm_backward(grad, xhat, inv_std, gamma, d_gamma, d_beta)
    else:
        layernorm_backward(grad, xhat, inv_std, gamma, d_gamma, d_beta)


@inner
def merge_carry(signal, exp, carry, carry_exp, flush_below):
    """signal*2**exp += carry*2**carry_exp, in place; return the exponent of the sum."""
    flat = signal.ravel()
    if carry_exp >= exp:
        factor = math.ldexp(1.0, exp - carry_exp)
        for k in range(flat.size):
            value = np.float64(flat[k]) * factor + carry[k]
            flat[k] = value if abs(value) >= flush_below else 0.0
        return carry_exp
    factor = math.ldexp(1.0, carry_exp - exp)
    for k in range(flat.size):
        value = np.float64(flat[k]) + carry[k] * factor
        flat[k] = value if abs(value) >= flush_below else 0.0
    return exp


@inner
def renormalize_with_column_sums(grad_z, flush_below, column_sums_out):
    """kernels.renormalize(grad_z) and its column sums (the bias gradient, in grad_z's dtype)
    in one pass over the (B, W) block; returns the shift."""
    largest = max_abs(grad_z.ravel())
    shift = math.frexp(largest)[1] if largest != 0.0 and math.isfinite(largest) else 0
    if shift == 0 or abs(shift) > 100:  # nothing to scale, or scales only float64 holds
        shift = renormalize(grad_z, flush_below)
        column_sums(grad_z, column_sums_out)
        return shift
    factor = grad_z.dtype.type(math.ldexp(1.0, -shift))
    threshold = grad_z.dtype.type(flush_below)
    zero = grad_z.dtype.type(0.0)
    rows, cols = grad_z.shape
    column_sums_out[:] = 0
    for r in range(rows):
        for c in range(cols):
            value = grad_z[r, c] * factor
            value = value if abs(value) >= threshold else zero
            grad_z[r, c] = value
            column_sums_out[c] += value
    return shift


@inner
def layer_gradients(grads, base, lay, i, grad_z, h_in, exp, out, flush_below, pre_norm):
    """From dL/dz of layer i (mantissa, exponent exp) write dW, db; fill out[:, i]; return exp.

    ``grads`` holds layer i's gradients only: a tensor at offset ``off`` of the flat
    parameter vector is at ``off - base`` in it (see layer_grads). ``pre_norm``: the layer's
    norm is on its input, whose gradient comes later (see pre_norm_gradients).
    ``out`` rows: 0 sum of squares of all the layer's grads (mantissa units), 1 of dW
    alone, 3 the layer's exponent.
    """
    dims, w_off, b_off, g_off, be_off, s_off, h_off, skip_from, a_off = lay
    n_in, n_out = dims[i], dims[i + 1]
    d_bias = grads[b_off[i] - base:b_off[i] - base + n_out]
    shift = renormalize_with_column_sums(grad_z, flush_below, d_bias)
    exp += shift
    factor = math.ldexp(1.0, -shift)
    depth = dims.size - 2
    extra = 0.0
    if i < depth and not pre_norm:  # norm gain/bias, the prelu slope and a learnable alpha
        for off in (g_off[i], be_off[i]):  # were written before renormalising
            if off >= 0:
                tensor = grads[off - base:off - base + n_out]
                for k in range(n_out):
                    tensor[k] = tensor[k] * factor
                extra += sum_squares(tensor)
    if i < depth:
        for off in (s_off[i], a_off[i]):
            if off >= 0:
                grads[off - base] = grads[off - base] * factor
                extra += np.float64(grads[off - base]) ** 2
    d_weight = block(grads, w_off[i] - base, n_out, n_in)
    matmul(grad_z.T[:, :], h_in, d_weight)  # ([:, :]: see gemm.matmul)
    weight_ss = sum_squares(d_weight.ravel())  # (1-D: one compiled sum_squares)
    out[0, i] = weight_ss + sum_squares(d_bias) + extra
    out[1, i] = weight_ss
    out[3, i] = exp
    return exp


@inner
def pre_norm_gradients(params, grads, base, lay, hyper, i, signal, xh_buf, inv_std, out):
    """The norm on layer i's input (norm_position pre): turn dL/dN(h_i) in ``signal`` into
    dL/dh_i in place, write the norm's gain and bias gradients (at the layer's exponent) and
    add their squares to out[0, i]."""
    dims, w_off, b_off, g_off, be_off, s_off, h_off, skip_from, a_off = lay
    n_in = dims[i]
    batch = signal.shape[0]
    cell = i * batch * n_in
    d_gamma = grads[g_off[i] - base:g_off[i] - base + n_in]
    d_beta = grads[be_off[i] - base:be_off[i] - base + n_in]
    norm_backward(hyper[1], signal, block(xh_buf, cell, batch, n_in),
                  inv_std[i], params[g_off[i]:g_off[i] + n_in], d_gamma, d_beta)
    out[0, i] += sum_squares(d_gamma) + sum_squares(d_beta)


@inner
def _layer_input(h_buf, n_buf, lay, position, i, batch):
    """What layer i multiplied by its weight: h_i, or N(h_i) under a pre-norm."""
    dims, g_off, h_off = lay[0], lay[3], lay[6]
    n_in = dims[i]
    if position == PRE and g_off[i] >= 0:
        cell = i * batch * n_in
        return block(n_buf, cell, batch, n_in)
    return block(h_buf, h_off[i], batch, n_in)


@inner
def layer_grads(grads, scratch, update, layer):
    """(where layer ``layer``'s gradients go, offset of its first tensor).

    The whole gradient vector when it is kept (asked for, or needed by a separate update
    pass); otherwise a scratch area reused by every layer, which stays in cache instead of
    sending a deep net's full gradient through memory on every step.
    """
    segments, seg_start, keep = update[2], update[3], update[10]
    base = segments[0, seg_start[layer]]
    end = segments[1, seg_start[layer + 1] - 1]
    if keep:
        return grads[base:end], base
    return scratch[:end - base], base


@inner
def fused_update(params, grads, base, update, layer, exp, out):
    """Apply the optimizer to ``layer`` right after its gradient is known (see backward).

    Returns False, and updates nothing, once a layer's gradient is not finite.
    """
    state1, state2, segments, seg_start, clip_value, hyper, flush_min, sums = update[:8]
    lr_scale = update[11]
    if not math.isfinite(out[0, layer]):
        return False
    update_layer(params, grads, base, state1, state2, segments, seg_start, layer,
                 math.ldexp(1.0, exp), clip_value, hyper, flush_min, sums, lr_scale)
    if clip_value == np.inf:  # nothing was clipped: the applied sum of squares is the layer's
        sums[2, layer] = out[0, layer]
    return True


@njit(**KERNEL)
def backward(params, grads, lay, hyper, h_buf, u_buf, xh_buf, inv_std, d_buf, grad_out,
             signal, grad_z, carry, out, flush_below, update, n_buf, br_buf):
    """Backpropagate dL/dlogits (in grad_out) through every layer into ``grads`` (mantissas).

    ``out`` rows 0, 1, 3 as in layer_gradients; row 4 gets log10 ||dL/dh|| at each layer's
    output (the logits for the output layer). Buffers ``signal``, ``grad_z`` and ``carry``
    hold at least B * max(width, D_out) values.

    When ``update`` says fused (no global-norm clipping), each layer is updated as soon as
    its gradient is known and its old weight has carried the signal down, while its
    gradient is still in cache: one pass over the parameters instead of two.
    Returns True when every layer was updated that way.

    ``update`` = (state1, state2, segments, seg_start, clip_value, optimizer hyper, flush_min,
    sums, fused, scratch, keep, lr_scale): see optim.update_layer; ``scratch`` holds one layer's
    gradients; ``keep`` says whether all of them are written to ``grads``.
    """
    fused, scratch = update[8], update[9]
    dims, w_off, b_off, g_off, be_off, s_off, h_off, skip_from, a_off = lay
    act_code, norm, bn_eps, alpha, negative_slope, keep_u, keep_deriv, position = hyper
    depth = dims.size - 2
    batch = grad_out.shape[0]
    # typed values, not the literals 0 and False: a literal argument compiles its own copy
    # of the callee (layer_gradients is 1.5 s of a cold start)
    exp = np.int64(0)
    out[4, depth] = log10_of(sum_squares(grad_out.ravel()), exp)
    h_last = _layer_input(h_buf, n_buf, lay, position, depth, batch)
    lg, base = layer_grads(grads, scratch, update, depth)
    pre_norm = position == PRE and g_off[depth] >= 0  # (the output layer ignores it)
    exp = layer_gradients(lg, base, lay, depth, grad_out, h_last, exp, out, flush_below, pre_norm)
    g = block(signal, np.int64(0), batch, dims[depth])
    matmul(grad_out[:, :], block(params, w_off[depth], dims[depth + 1], dims[depth]), g)
    if position == PRE and g_off[depth] >= 0:
        pre_norm_gradients(params, lg, base, lay, hyper, depth, g, xh_buf, inv_std, out)
    if fused:
        fused = fused_update(params, lg, base, update, depth, exp, out)
    carry_target, carry_exp = -1, exp  # (exp: an int64, see above)
    for i in range(depth - 1, -1, -1):
        n_in, n_out = dims[i], dims[i + 1]
        if i > 0:  # what layer i - 1 reads arrives while this layer computes
            prefetch(params, w_off[i - 1], w_off[i - 1] + n_in * dims[i - 1])
            prefetch(h_buf, h_off[i - 1], h_off[i - 1] + batch * dims[i - 1])
        g = block(signal, np.int64(0), batch, n_out)  # dL/dh_{i+1}, mantissa
        if carry_target == i + 1:
            exp = merge_carry(g, exp, carry, carry_exp, flush_below)
            carry_target = -1
        cell = i * batch * n_out
        lg, base = layer_grads(grads, scratch, update, i)
        post_norm = position == POST and g_off[i] >= 0
        if post_norm:  # h_{i+1} = N(h_s + alpha * a); ||dL/dh_{i+1}|| before it
            out[4, i] = log10_of(sum_squares(g.ravel()), exp)
            norm_backward(norm, g, block(xh_buf, cell, batch, n_out),
                          inv_std[i], params[g_off[i]:g_off[i] + n_out],
                          lg[g_off[i] - base:g_off[i] - base + n_out],
                          lg[be_off[i] - base:be_off[i] - base + n_out])
        branch = 1.0
        if skip_from[i] >= 0:  # h_{i+1} = h_s + alpha * a: dL/dh_s gets g unchanged
            for row in range(batch):  # carry[:batch * n_out] = g.ravel(), as a loop: numba's
                for col in range(n_out):  # slice assignment compiles string formatting (cold)
                    carry[row * n_out + col] = g[row, col]
            carry_exp, carry_target = exp, skip_from[i]
            branch = params[a_off[i]] if a_off[i] >= 0 else alpha
        if a_off[i] >= 0:  # dL/dalpha = sum of g * phi(u) over the block's output
            branch_out = br_buf[cell:cell + batch * n_out]
            g_flat = g.ravel()
            alpha_grad = 0.0
            for k in range(g_flat.size):
                alpha_grad += np.float64(g_flat[k]) * branch_out[k]
            lg[a_off[i] - base] = alpha_grad
        gz = block(grad_z, np.int64(0), batch, n_out)
        if s_off[i] >= 0:
            u_cell = cell if keep_u else 0
            u = u_buf[u_cell:u_cell + batch * n_out].ravel()
            slope_grad = 0.0
            g_flat = g.ravel()
            for k in range(u.size):
                if u[k] <= 0:
                    slope_grad += branch * g_flat[k] * u[k]
            lg[s_off[i] - base] = slope_grad
        if keep_deriv:
            if not post_norm:
                out[4, i] = log10_of(sum_squares(g.ravel()), exp)
            deriv = block(d_buf, cell, batch, n_out)
            for r in range(batch):
                for c in range(n_out):
                    gz[r, c] = branch * g[r, c] * deriv[r, c]
        else:  # phi'(u) from this layer's output, which the layer above just read (no
            # residual nets here: they keep phi', so the branch scale is 1)
            y = block(h_buf, h_off[i + 1], batch, n_out)
            out[4, i] = log10_of(through_activation(act_code, g, y, gz, negative_slope), exp)
        if position == AT_LAYER and g_off[i] >= 0:
            norm_backward(norm, gz, block(xh_buf, cell, batch, n_out),
                          inv_std[i], params[g_off[i]:g_off[i] + n_out],
                          lg[g_off[i] - base:g_off[i] - base + n_out],
                          lg[be_off[i] - base:be_off[i] - base + n_out])
        pre_norm = position == PRE and g_off[i] >= 0
        h_in = _layer_input(h_buf, n_buf, lay, position, i, batch)
        exp = layer_gradients(lg, base, lay, i, gz, h_in, exp, out, flush_below, pre_norm)
        if i > 0:
            weight = block(params, w_off[i], n_out, n_in)
            g_in = block(signal, np.int64(0), batch, n_in)
            matmul(gz[:, :], weight, g_in)
            if pre_norm:
                pre_norm_gradients(params, lg, base, lay, hyper, i, g_in, xh_buf, inv_std, out)
        if fused:
            fused = fused_update(params, lg, base, update, i, exp, out)
    return fused
