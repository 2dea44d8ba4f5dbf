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
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from tui_grad.engine.activations import (
    KERNEL,
    OVERLOAD,
    PRELU,
    SATURATED_DERIVATIVE,
    activate,
    float_from_bits,
    inner,
    reduce_add,
)
from tui_grad.engine.gemm import block, matmul_nt

LOG10_2 = 0.30102999566398120
MSE, CROSS_ENTROPY = 0, 1
NO_NORM, BATCH_NORM, LAYER_NORM = 0, 1, 2  # config.NORMS
AT_LAYER, PRE, POST = 0, 1, 2  # config.NORM_POSITIONS


@intrinsic
def _prefetch_line(typingctx, array, index):
    """LLVM's prefetch hint for the cache line holding array[index] (read, keep in cache)."""
    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        byte_ptr = ir.IntType(8).as_pointer()
        hint = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte_ptr] + [ir.IntType(32)] * 3),
            "llvm.prefetch.p0")
        i32 = ir.IntType(32)
        builder.call(hint, [builder.bitcast(builder.gep(data, [args[1]]), byte_ptr),
                            i32(0), i32(3), i32(1)])
        return context.get_dummy_value()
    return types.void(array, index), codegen


@inner
def prefetch(array, start, stop):
    """Ask for array[start:stop] to be brought into cache while other work runs.

    A deep net's parameters and activations do not fit in cache; each layer's are fetched
    from memory in short runs the hardware prefetcher ramps up on too late. Hinting the next
    layer's data during this layer's arithmetic hides that latency.
    """
    step = max(64 // array.itemsize, 1)
    for k in range(max(start, 0), min(stop, array.size), step):
        _prefetch_line(array, k)


def magnitude_bits(values):
    """(``values`` viewed as unsigned integers of their width, the mask that clears the sign
    bit). In compiled code the width is chosen while typing (see _magnitude_bits)."""
    kind = np.uint32 if values.itemsize == 4 else np.uint64
    return values.view(kind), kind(np.iinfo(kind).max >> 1)


@overload(magnitude_bits, jit_options=OVERLOAD)
def _magnitude_bits(values):
    # a branch on values.itemsize inside a kernel would compile both widths' code for
    # every dtype: half of it dead, and a second of a cold start
    if values.dtype.bitwidth == 32:
        return lambda values: (values.view(np.uint32), np.uint32(0x7FFFFFFF))
    return lambda values: (values.view(np.uint64), np.uint64(0x7FFFFFFFFFFFFFFF))


@inner
def max_abs(flat):
    """Largest |value| of a flat float array as float64; NaN if any value is NaN.

    Compares the bit patterns with the sign cleared (monotonic in |value| for IEEE floats,
    NaN above inf), which vectorises where a float max with NaN semantics does not.
    """
    bits, mask = magnitude_bits(flat)
    top = _largest_magnitude_bits(bits, mask)  # (typed uint64 for either width)
    return np.float64(float_from_bits(bits.dtype.type(top)))


@inner
def _largest_magnitude_bits(bits, magnitude_mask):
    top = bits.dtype.type(0)
    for k in range(bits.size):
        top = max(top, bits[k] & magnitude_mask)
    return top


@inner
def renormalize(block, flush_below):
    """Scale ``block`` in place by 2**-k so its largest |value| lies in [0.5, 1); return k.

    Elements that end up below ``flush_below`` (far under the largest) are set to 0 so no
    later operation works on subnormals. A block that is all zero or not finite is left.
    """
    flat = block.ravel()
    largest = max_abs(flat)
    if largest == 0.0 or not math.isfinite(largest):
        return 0
    shift = math.frexp(largest)[1]
    if abs(shift) > 100:  # 2**-shift may not fit the block's dtype: go through float64
        factor64 = math.ldexp(1.0, -shift)
        for i in range(flat.size):
            value = np.float64(flat[i]) * factor64
            flat[i] = value if abs(value) >= flush_below else 0.0
        return shift
    # In the block's own dtype: scaling by a power of two is exact wherever the result is
    # normal, and a result that is not falls below flush_below and becomes 0 either way.
    factor = flat.dtype.type(math.ldexp(1.0, -shift))
    threshold = flat.dtype.type(flush_below)
    zero = flat.dtype.type(0.0)
    for i in range(flat.size):
        value = flat[i] * factor
        flat[i] = value if abs(value) >= threshold else zero
    return shift


@njit(**KERNEL)
def sum_squares(values):
    """Sum of squares accumulated in float64 (float32 sums lose tiny and huge norms)."""
    flat = values.ravel()
    total = 0.0
    for k in range(flat.size):
        value = np.float64(flat[k])
        total = reduce_add(total, value * value)
    return total


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


@inner
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


@inner
def layernorm_forward(z, xhat, inv_std, gamma, beta, eps):
    """Normalise each row of z (B, W) over its units in place into gamma*xhat + beta, as
    torch.nn.LayerNorm (biased variance, eps inside the square root); keep xhat, 1/std."""
    batch, width = z.shape
    for r in range(batch):
        mean = 0.0
        for c in range(width):
            mean += z[r, c]
        mean /= width
        var = 0.0
        for c in range(width):
            d = z[r, c] - mean
            var += d * d
        inv = 1.0 / math.sqrt(var / width + eps)
        inv_std[r] = inv
        for c in range(width):
            xh = (z[r, c] - mean) * inv
            xhat[r, c] = xh
            z[r, c] = gamma[c] * xh + beta[c]


@inner
def norm_forward(kind, z, xhat, inv_std, gamma, beta, eps):
    """Batch norm or layer norm of z in place (see batchnorm_forward, layernorm_forward)."""
    if kind == BATCH_NORM:
        batchnorm_forward(z, xhat, inv_std, gamma, beta, eps)
    else:
        layernorm_forward(z, xhat, inv_std, gamma, beta, eps)


@inner
def layer_statistics(h, a, deriv, stats, i):
    """Fill stats[:, i] = mean, std of h; saturated fraction of phi'; dead-unit fraction of a
    (units 0 or -0 in every row), in two passes over the block (see _statistics_pass).

    Dead units are found by OR-ing the rows' bit patterns, sign cleared, which vectorises.
    """
    batch, width = h.shape
    bits, mask = magnitude_bits(a.ravel())  # (1-D, as max_abs's: one compiled view)
    total, total_sq, saturated, dead = _statistics_pass(h, deriv, bits, np.zeros(width, bits.dtype),
                                                        mask)
    n = batch * width
    mean = total / n
    stats[0, i] = mean
    stats[1, i] = math.sqrt(max(total_sq / n - mean * mean, 0.0))
    stats[2, i] = saturated / n
    stats[3, i] = dead / width


@inner
def _statistics_pass(h, deriv, a_bits, seen, magnitude_mask):
    """(sum of h, sum of h^2 in float64, count of |phi'| < 0.05, dead units), with ``seen``
    (zeros) collecting each unit's bits OR-ed over the batch; ``a_bits`` flat."""
    batch, width = h.shape
    total = 0.0
    total_sq = 0.0
    # The sums in a loop of their own that only reads: a loop that also stores is vectorised
    # behind a run-time check that the arrays do not overlap, and falls back to the scalar
    # loop (another order of the sum: other bits) where the heap placed them close; seeded
    # runs then differed in the last bits between processes.
    for value in h.ravel():
        total = reduce_add(total, np.float64(value))
        total_sq = reduce_add(total_sq, np.float64(value) * np.float64(value))
    saturated = 0  # (integers: any order gives the same)
    threshold = deriv.dtype.type(SATURATED_DERIVATIVE)  # same verdicts: no float32 lies between
    for r in range(batch):
        for c in range(width):
            saturated += np.int32(abs(deriv[r, c]) < threshold)
            seen[c] |= a_bits[r * width + c]
    dead = 0
    for c in range(width):
        dead += (seen[c] & magnitude_mask) == 0
    return total, total_sq, saturated, dead


@inner
def column_sums(block, out):
    """out[c] = sum over rows of block[:, c], row by row (vectorised), in the block's dtype as
    in any float32 framework: a bias gradient, not a norm (whose squares would underflow)."""
    rows, cols = block.shape
    out[:] = 0
    for r in range(rows):
        for c in range(cols):
            out[c] += block[r, c]


@njit(**KERNEL)
def forward(params, lay, hyper, h_buf, u_buf, xh_buf, inv_std, a_buf, d_buf, logits, stats,
            w_t, n_buf, br_buf):
    """Run every layer on h_0 (already in h_buf); write logits (B, D_out) and stats (5, L):
    rows 0-3 as in layer_statistics, row 4 the largest |pre-activation| (logits: |logit|).

    ``lay`` = (dims, w_off, b_off, g_off, be_off, s_off, h_off, skip_from, a_off), see
    layout.py. ``hyper`` = (act_code, norm, bn_eps, alpha, negative_slope, keep_u,
    keep_deriv, position) with norm and position codes as above.
    Keeps for backward: h_i, the norms' xhat and 1/std (per layer, in xh_buf and inv_std),
    u when ``keep_u`` (prelu needs it for its slope gradient), phi'(u) per layer in d_buf
    when ``keep_deriv`` (otherwise d_buf is one layer's scratch and backward recomputes phi'
    from h, see through_activation), a pre-norm's output (the layer's input) in n_buf and,
    with a learnable alpha, each block's branch output phi(u) in br_buf.
    ``w_t`` is scratch for a transposed weight (see gemm.matmul_nt).
    """
    dims, w_off, b_off, g_off, be_off, s_off, h_off, skip_from, a_off = lay
    act_code, norm, bn_eps, alpha, negative_slope, keep_u, keep_deriv, position = hyper
    depth = dims.size - 2
    batch = logits.shape[0]
    for i in range(depth + 1):
        n_in, n_out = dims[i], dims[i + 1]
        weight = block(params, w_off[i], n_out, n_in)  # (out, in)
        h_in = block(h_buf, h_off[i], batch, n_in)
        if position == PRE and g_off[i] >= 0:  # the layer reads N(h_i); the shortcut keeps h_i
            cell = i * batch * n_in
            normed = block(n_buf, cell, batch, n_in)
            for row in range(batch):  # (a loop: numba's slice assignment compiles its
                for col in range(n_in):  # error message's string formatting, 4-5 s cold)
                    normed[row, col] = h_in[row, col]
            norm_forward(norm, normed, block(xh_buf, cell, batch, n_in),
                         inv_std[i], params[g_off[i]:g_off[i] + n_in],
                         params[be_off[i]:be_off[i] + n_in], bn_eps)
            h_in = normed
        if i == depth:
            matmul_nt(h_in, weight, params[b_off[i]:b_off[i] + n_out], logits, w_t)
            # mean, then std from the deviations (two passes: logits far from 0 with a small
            # spread keep their digits), in float64; np.mean and np.std compiled four more
            # functions (most of a second of a cold start)
            flat = logits.ravel()
            total = 0.0
            for value in flat:
                total = reduce_add(total, np.float64(value))
            mean = total / flat.size
            spread = 0.0
            for value in flat:
                spread = reduce_add(spread, (np.float64(value) - mean) ** 2)
            stats[0, i] = mean
            stats[1, i] = math.sqrt(spread / flat.size)
            stats[4, i] = max_abs(flat)
            return
        prefetch(h_buf, h_off[i + 1], h_off[i + 1] + batch * n_out)  # where the output goes
        cell = i * batch * n_out
        u_cell = cell if keep_u else 0
        u = block(u_buf, u_cell, batch, n_out)
        matmul_nt(h_in, weight, params[b_off[i]:b_off[i] + n_out], u, w_t)
        stats[4, i] = max_abs(u.ravel())  # before BN, which would rescale a vanished signal
        # the next layer's weights arrive during this layer's activation and statistics;
        # asked for before the product above, they pushed its own operands out of L1
        prefetch(params, w_off[i + 1], w_off[i + 1] + dims[i + 2] * n_out)
        if position == AT_LAYER and g_off[i] >= 0:
            norm_forward(norm, u, block(xh_buf, cell, batch, n_out),
                         inv_std[i], params[g_off[i]:g_off[i] + n_out],
                         params[be_off[i]:be_off[i] + n_out], bn_eps)
        slope = params[s_off[i]] if act_code == PRELU else negative_slope
        d_cell = cell if keep_deriv else 0
        deriv = block(d_buf, d_cell, batch, n_out)
        h_out = block(h_buf, h_off[i + 1], batch, n_out)
        source = skip_from[i]
        if source < 0:  # phi(u) is the layer's output: write it there directly
            activate(act_code, u, h_out, deriv, slope)
            layer_statistics(h_out, h_out, deriv, stats, i)
            continue
        learnable = a_off[i] >= 0  # a learnable alpha: backward needs the branch's output
        a = block(br_buf if learnable else a_buf, cell if learnable else np.int64(0), batch, n_out)
        activate(act_code, u, a, deriv, slope)
        h_skip = h_buf[h_off[source]:h_off[source] + batch * n_out]
        a_flat, h_flat = a.ravel(), h_out.ravel()
        scale = params[a_off[i]] if a_off[i] >= 0 else alpha
        for k in range(h_flat.size):
            h_flat[k] = h_skip[k] + scale * a_flat[k]
        if position == POST and g_off[i] >= 0:  # N(h_s + alpha * a)
            norm_forward(norm, h_out, block(xh_buf, cell, batch, n_out),
                         inv_std[i], params[g_off[i]:g_off[i] + n_out],
                         params[be_off[i]:be_off[i] + n_out], bn_eps)
        layer_statistics(h_out, a, deriv, stats, i)
