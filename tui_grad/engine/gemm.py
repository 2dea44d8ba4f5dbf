"""Matrix products for the layer shapes the engine runs, faster than a BLAS call at these sizes.

A training step multiplies small matrices (batch x width by width x width) a few thousand
times. OpenBLAS packs both operands into scratch buffers on every call, which at width 64
costs more than the arithmetic. The register-blocked loops below work on the operands where
they lie and run at 1.3-1.7x OpenBLAS's one-thread rate from width 64 to 1024 (measured in
benchmarks/bench_step.py's step times). Beyond a few MiB per operand they would stream it
from memory too often, so those products go to BLAS.

Both kernels let LLVM fuse multiply-adds (like BLAS) and ``matmul_nt`` also reassociates
its dot products; neither assumes finite values, so inf and NaN propagate as in BLAS.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from tui_grad.engine.activations import KERNEL

BLOCKED_MAX_BYTES = 4 << 20  # larger operands go to BLAS
_DOT = {**KERNEL, "fastmath": {"contract", "reassoc"}}
_AXPY = {**KERNEL, "fastmath": {"contract"}}


@njit(**KERNEL)
def _fits(array):
    return array.size * array.itemsize <= BLOCKED_MAX_BYTES


@njit(**KERNEL)
def matmul_nt(a, w, bias, out):
    """out = a @ w.T + bias for row-major a (M, K), w (N, K), out (M, N): a layer's forward."""
    if _fits(a) and _fits(w):
        _dot_blocked(a, w, bias, out)
        return
    np.dot(a, w.T, out)
    rows, cols = out.shape
    for r in range(rows):
        for c in range(cols):
            out[r, c] += bias[c]


@njit(**KERNEL)
def matmul(a, b, out):
    """out = a @ b for b (K, N) and out (M, N) row-major; a (M, K) in any layout (a
    transposed view is fine): the backward pass's dL/dh and dL/dW."""
    if _fits(a) and _fits(b):
        _axpy_blocked(a, b, out)
    else:
        np.dot(a, b, out)


@njit(**_DOT)
def _dot_blocked(a, w, bias, out):
    """out[i, j] = dot(a[i], w[j]) + bias[j] in 4 x 4 blocks: 16 dot products share every
    load."""
    m, k_dim = a.shape
    n = w.shape[0]
    zero = out.dtype.type(0.0)
    m4, n4 = m - m % 4, n - n % 4
    for i in range(0, m4, 4):
        x0, x1, x2, x3 = a[i], a[i + 1], a[i + 2], a[i + 3]
        for j in range(0, n4, 4):
            w0, w1, w2, w3 = w[j], w[j + 1], w[j + 2], w[j + 3]
            s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = zero
            s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = zero
            c0, c1, c2, c3 = bias[j], bias[j + 1], bias[j + 2], bias[j + 3]
            for k in range(k_dim):
                p0, p1, p2, p3 = x0[k], x1[k], x2[k], x3[k]
                q0, q1, q2, q3 = w0[k], w1[k], w2[k], w3[k]
                s00 += p0 * q0
                s01 += p0 * q1
                s02 += p0 * q2
                s03 += p0 * q3
                s10 += p1 * q0
                s11 += p1 * q1
                s12 += p1 * q2
                s13 += p1 * q3
                s20 += p2 * q0
                s21 += p2 * q1
                s22 += p2 * q2
                s23 += p2 * q3
                s30 += p3 * q0
                s31 += p3 * q1
                s32 += p3 * q2
                s33 += p3 * q3
            out[i, j], out[i, j + 1] = s00 + c0, s01 + c1
            out[i, j + 2], out[i, j + 3] = s02 + c2, s03 + c3
            out[i + 1, j], out[i + 1, j + 1] = s10 + c0, s11 + c1
            out[i + 1, j + 2], out[i + 1, j + 3] = s12 + c2, s13 + c3
            out[i + 2, j], out[i + 2, j + 1] = s20 + c0, s21 + c1
            out[i + 2, j + 2], out[i + 2, j + 3] = s22 + c2, s23 + c3
            out[i + 3, j], out[i + 3, j + 1] = s30 + c0, s31 + c1
            out[i + 3, j + 2], out[i + 3, j + 3] = s32 + c2, s33 + c3
        for j in range(n4, n):
            for row in range(i, i + 4):
                out[row, j] = _dot(a[row], w[j], zero) + bias[j]
    for row in range(m4, m):
        for j in range(n):
            out[row, j] = _dot(a[row], w[j], zero) + bias[j]


@njit(**_DOT)
def _dot(x, y, zero):
    total = zero
    for k in range(x.size):
        total += x[k] * y[k]
    return total


@njit(**_AXPY)
def _axpy_blocked(a, b, out):
    """out = a @ b as rows of b scaled and added into rows of out, 4 rows of each at a time:
    every load of b and of out serves four multiply-adds."""
    m, k_dim = a.shape
    n = b.shape[1]
    out[:] = 0
    m4, k4 = m - m % 4, k_dim - k_dim % 4
    for i in range(0, m4, 4):
        c0, c1, c2, c3 = out[i], out[i + 1], out[i + 2], out[i + 3]
        for k in range(0, k4, 4):
            b0, b1, b2, b3 = b[k], b[k + 1], b[k + 2], b[k + 3]
            a00, a01, a02, a03 = a[i, k], a[i, k + 1], a[i, k + 2], a[i, k + 3]
            a10, a11, a12, a13 = a[i + 1, k], a[i + 1, k + 1], a[i + 1, k + 2], a[i + 1, k + 3]
            a20, a21, a22, a23 = a[i + 2, k], a[i + 2, k + 1], a[i + 2, k + 2], a[i + 2, k + 3]
            a30, a31, a32, a33 = a[i + 3, k], a[i + 3, k + 1], a[i + 3, k + 2], a[i + 3, k + 3]
            for j in range(n):
                v0, v1, v2, v3 = b0[j], b1[j], b2[j], b3[j]
                c0[j] = c0[j] + a00 * v0 + a01 * v1 + a02 * v2 + a03 * v3
                c1[j] = c1[j] + a10 * v0 + a11 * v1 + a12 * v2 + a13 * v3
                c2[j] = c2[j] + a20 * v0 + a21 * v1 + a22 * v2 + a23 * v3
                c3[j] = c3[j] + a30 * v0 + a31 * v1 + a32 * v2 + a33 * v3
        for k in range(k4, k_dim):
            for row in range(i, i + 4):
                _add_scaled(out[row], a[row, k], b[k])
    for row in range(m4, m):
        for k in range(k_dim):
            _add_scaled(out[row], a[row, k], b[k])


@njit(**_AXPY)
def _add_scaled(target, scale, source):
    for j in range(target.size):
        target[j] = target[j] + scale * source[j]

