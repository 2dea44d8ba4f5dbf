"""Work arrays the kernels write into, allocated once per batch size."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tui_grad.engine.gemm import BLOCKED_MAX_BYTES
from tui_grad.engine.layout import Layout


@dataclass
class Buffers:
    """Activations, per-layer caches for backward and scratch space for one batch size."""

    batch: int
    lay: tuple
    h: np.ndarray  # h_0..h_depth, flat
    u: np.ndarray  # pre-activations (every layer's for prelu, else one layer's scratch)
    xhat: np.ndarray  # the norms' normalised values, every layer (size 1 without a norm)
    inv_std: np.ndarray  # (depth + 1, max(width, batch)) the norms' 1/std (per unit or example)
    normed: np.ndarray  # pre-norm outputs, every layer's input (size 1 unless norm_position pre)
    branch: np.ndarray  # phi(u) of every layer (size 1 unless alpha is learnable)
    a: np.ndarray  # one layer's activation scratch
    deriv: np.ndarray  # phi'(u), every layer's if kept (see Simulator._keep_deriv), else one's
    logits: np.ndarray  # (B, D_out)
    grad_out: np.ndarray  # (B, D_out) dL/dlogits
    signal: np.ndarray  # backpropagated dL/dh scratch
    grad_z: np.ndarray  # dL/dz scratch
    carry: np.ndarray  # the residual shortcut's pending signal
    grad_scratch: np.ndarray  # one layer's gradients, when the full gradient is not kept
    weight_t: np.ndarray  # one layer's weight transposed, for the forward product (gemm.py)
    stats: np.ndarray  # (5, L) act mean, std, saturation, dead fraction, largest |u|
    out: np.ndarray  # (5, L) backward results, see backprop.backward

    @classmethod
    def allocate(cls, layout: Layout, batch: int, dtype: type, *, keep_u: bool,
                 keep_deriv: bool, norm: bool, pre_norm: bool = False,
                 learnable_alpha: bool = False) -> Buffers:
        """Buffers for ``layout`` and ``batch`` examples."""
        depth, n_out = layout.depth, int(layout.dims[-1])
        width = int(layout.dims[1:-1].max())
        layer_sizes = layout.segments[1, layout.seg_start[1:] - 1] - layout.segments[0, layout.seg_start[:-1]]
        weights = layout.dims[:-1] * layout.dims[1:]
        cells = depth * batch * width
        widest = batch * int(max(layout.dims.max(), 1))
        return cls(
            batch=batch, lay=layout.kernel_tuple(batch),
            h=np.zeros(int(batch * layout.dims[:-1].sum()), dtype=dtype),
            u=np.zeros(cells if keep_u else batch * width, dtype=dtype),
            xhat=np.zeros(cells + batch * width if norm else 1, dtype=dtype),
            inv_std=np.ones((depth + 1, max(width, batch)), dtype=dtype),
            normed=np.zeros(cells + batch * width if pre_norm else 1, dtype=dtype),
            branch=np.zeros(cells if learnable_alpha else 1, dtype=dtype),
            a=np.zeros(batch * width, dtype=dtype),
            deriv=np.zeros(cells if keep_deriv else batch * width, dtype=dtype),
            logits=np.zeros((batch, n_out), dtype=dtype),
            grad_out=np.zeros((batch, n_out), dtype=dtype),
            signal=np.zeros(widest, dtype=dtype), grad_z=np.zeros(widest, dtype=dtype),
            carry=np.zeros(widest, dtype=dtype),
            grad_scratch=np.zeros(int(layer_sizes.max()), dtype=dtype),
            weight_t=np.zeros(min(int(weights.max()), BLOCKED_MAX_BYTES // np.dtype(dtype).itemsize),
                              dtype=dtype),
            stats=np.zeros((5, layout.n_layers)),
            out=np.zeros((5, layout.n_layers)))
