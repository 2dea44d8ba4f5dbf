"""Matrix products for the layer shapes the engine runs, faster than a BLAS call at these sizes.

A training step multiplies small matrices (batch x width by width x width) a few thousand
times. OpenBLAS packs both operands into scratch buffers on every call, which at width 64
costs more than the arithmetic, and its one-thread kernel here uses half the vector width
the machine has. The products below run in register tiles (simd.py) on the operands where
they lie, at 1.7-2.2x OpenBLAS's one-thread rate from width 64 to 512 and 1.5x at 1024.
Operands over 4 MiB go to BLAS.

Every product is a sum over k in increasing order of fused multiply-adds, started from the
bias, 0 or the output itself; nothing assumes finite values, so inf and NaN propagate as
in BLAS.
"""

from __future__ import annotations

import numpy as np

from tui_grad.engine import blas
from tui_grad.engine.activations import inner
from tui_grad.engine.simd import (
    FROM_BIAS,
    FROM_OUT,
    FROM_ZERO,
    VECTOR_BYTES,
    make_tile,
    transpose_tile,
)

blas.load()  # before numba first loads or compiles a kernel, which imports BLAS (see blas.py)
BLOCKED_MAX_BYTES = 4 << 20  # larger operands go to BLAS
K_BLOCK = 256  # shared-dimension block of the tiled products (see _tiled)
_tile_8x2 = make_tile(8, 2, masked=False)
_tile_1x2 = make_tile(1, 2, masked=False)
_tile_8x1 = make_tile(8, 1, masked=True)
_tile_1x1 = make_tile(1, 1, masked=True)


@inner
def block(flat, start, rows, cols):
    """``flat[start:start + rows * cols]`` as a (rows, cols) C-order view. One compiled
    slice-and-reshape for the kernels' many: inline, each was ~480 lines of IR for LLVM to
    optimise (8% of the forward and backward kernels' own code)."""
    return flat[start:start + rows * cols].reshape((rows, cols))


@inner
def _tileable(a, b, out):
    """Whether out = a @ b runs in the register tiles (else in BLAS): every operand within
    BLOCKED_MAX_BYTES, and b and out contiguous along their rows, as the tiles read them."""
    return (_small(a) and _small(b) and _small(out)
            and b.strides[1] == b.itemsize and out.strides[1] == out.itemsize)


@inner
def _small(array):
    return array.size * array.itemsize <= BLOCKED_MAX_BYTES


@inner
def matmul_nt(a, w, bias, out, w_t):
    """out = a @ w.T + bias for row-major a (M, K), w (N, K), out (M, N): a layer's forward.

    The tiles need w.T row-major: it is written into ``w_t`` (at least N * K values; a
    16 KiB weight takes about a tenth of the product's time to transpose).
    """
    if _tileable(a, w, out):
        n, k = w.shape
        w_transposed = block(w_t, np.int64(0), k, n)
        transpose_into(w, w_transposed)
        _tiled(a[:, :], w_transposed, bias, out, np.int64(FROM_BIAS))
        return
    _blas_bias(a, w.T, bias, out)  # (not matmul_bias: no tiles compiled for w.T's layout)


@inner
def flush_below_normal(out):
    """Set float32 values below 2**-126 in ``out`` (M, N) to 0, after a BLAS product.

    A float32 step runs with flush-to-zero set in its own thread (fpenv.py), but OpenBLAS
    may compute a large product in worker threads that keep IEEE subnormals."""
    if out.itemsize != 4:
        return
    tiny = out.dtype.type(2.0 ** -126)
    zero = out.dtype.type(0.0)
    rows, cols = out.shape
    for r in range(rows):
        for c in range(cols):
            out[r, c] = zero if abs(out[r, c]) < tiny else out[r, c]


@inner
def matmul_bias(a, b, bias, out):
    """out = a @ b + bias, operands as in ``matmul``, bias (N,)."""
    if _tileable(a, b, out):
        _tiled(a[:, :], b, bias, out, np.int64(FROM_BIAS))
        return
    _blas_bias(a, b, bias, out)


@inner
def _blas_bias(a, b, bias, out):
    """out = a @ b + bias in BLAS."""
    np.dot(a, b, out)
    rows, cols = out.shape
    for r in range(rows):
        for c in range(cols):
            out[r, c] += bias[c]
    flush_below_normal(out)


@inner
def matmul(a, b, out):
    """out = a @ b for b (K, N) and out (M, N) row-major; a (M, K) in any layout (a
    transposed view is fine): the backward pass's dL/dh and dL/dW. The kernels pass
    ``a[:, :]``, typed as any layout, so that one compiled matmul serves them all."""
    if _tileable(a, b, out):
        _tiled(a, b, b[0], out, np.int64(FROM_ZERO))
        return
    # (BLAS reads a transposed view as it is, but numba's np.dot takes only arrays typed as
    # C or F layout; the copy is of a above 4 MiB, against a product K times its size)
    np.dot(np.ascontiguousarray(a), b, out)
    flush_below_normal(out)


@inner
def matmul_add(a, b, out):
    """out += a @ b, operands as in ``matmul``: sums carried across calls (a weight gradient
    summed over time steps)."""
    if _tileable(a, b, out):
        _tiled(a, b, b[0], out, np.int64(FROM_OUT))
        return
    out += np.dot(np.ascontiguousarray(a), b)
    flush_below_normal(out)


@inner
def _tiled(a, b, bias, out, start):
    """out = s + a @ b, s from ``start`` (see simd.make_tile), in tiles of 8 rows x 2
    vectors; rows past the last multiple of 8 one at a time, columns past the last whole
    pair of vectors one lane-masked vector at a time.

    Over the shared dimension in blocks of K_BLOCK: a block's rows of b (K_BLOCK x 2
    vectors) stay in the L1 cache while every tile of the panel uses them. Partial sums
    wait in ``out``, in its dtype as they would in the registers, so the result is the same
    bits as one pass.

    Every caller passes ``a[:, :]`` (typed as any layout: the tiles read its strides), a
    1-D ``bias`` (``b[0]`` when unused) and ``start`` as an int64 (a constant such as
    FROM_ZERO is typed as a literal), so one compiled _tiled serves every product: each
    other argument type compiled a copy of it, and of every function calling it, 0.5-1 s
    of a cold start each. For the same reason the tiles are not in a function of their own:
    numba compiles every kernel with the code of all it calls, so each level of calls
    optimises the tiles once more."""
    m, n = out.shape
    lanes = VECTOR_BYTES // out.itemsize
    width = 2 * lanes
    m8, n_pairs = m - m % 8, n - n % width
    k_dim = a.shape[1]
    k_step = max(k_dim if k_dim <= K_BLOCK * 3 // 2 else K_BLOCK, 1)
    for k0 in range(0, max(k_dim, 1), k_step):  # (K = 0: one pass writes the start values)
        k1 = min(k0 + k_step, k_dim)
        begin = start if k0 == 0 else FROM_OUT
        for j in range(0, n_pairs, width):
            for i in range(0, m8, 8):
                _tile_8x2(a, b, bias, begin, out, i, j, width, k0, k1)
            for i in range(m8, m):
                _tile_1x2(a, b, bias, begin, out, i, j, width, k0, k1)
        for j in range(n_pairs, n, lanes):
            cols = min(lanes, n - j)
            for i in range(0, m8, 8):
                _tile_8x1(a, b, bias, begin, out, i, j, cols, k0, k1)
            for i in range(m8, m):
                _tile_1x1(a, b, bias, begin, out, i, j, cols, k0, k1)


@inner
def transpose_into(src, dst):
    """dst (C, R) = src (R, C).T, both row-major: square blocks through registers, the
    edges one value at a time."""
    rows, cols = src.shape
    lanes = VECTOR_BYTES // src.itemsize
    rows_whole, cols_whole = rows - rows % lanes, cols - cols % lanes
    for r in range(0, rows_whole, lanes):
        for c in range(0, cols_whole, lanes):
            transpose_tile(src, dst, r, c)
    for r in range(rows):
        for c in range(cols_whole, cols):
            dst[c, r] = src[r, c]
    for r in range(rows_whole, rows):
        for c in range(cols_whole):
            dst[c, r] = src[r, c]
