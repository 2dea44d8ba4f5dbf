"""Where each parameter tensor and activation lives in the engine's flat buffers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tui_grad.config import Config

NONE = -1


@dataclass(frozen=True)
class Layout:
    """Offsets of every layer's tensors in the flat parameter vector, and the residual wiring.

    ``dims`` = [input_dim, width x depth, n_outputs]; offsets are NONE where a layer has no
    such tensor. ``segments`` (4, n_tensors) rows: start, end, layer, is_weight.
    ``skip_from[i]`` = s >= 0 when hidden layer i's output is h_s + alpha * phi(...).
    A layer's norm gain and bias (``g_off``, ``be_off``) belong to the norm it applies: with
    norm_position layer to its pre-activation, pre to its input (the first layer of a block
    and the output layer), post to its output after the shortcut's add (the last layer of a
    block). ``a_off``: the learnable alpha of a block's last layer.
    """

    dims: np.ndarray
    w_off: np.ndarray
    b_off: np.ndarray
    g_off: np.ndarray
    be_off: np.ndarray
    s_off: np.ndarray
    a_off: np.ndarray
    skip_from: np.ndarray
    segments: np.ndarray
    seg_start: np.ndarray  # layer i's tensors are segments seg_start[i]..seg_start[i+1]-1
    n_params: int

    @property
    def depth(self) -> int:
        """Hidden layers."""
        return self.dims.size - 2

    @property
    def n_layers(self) -> int:
        """Weight layers: depth hidden plus the output layer."""
        return self.dims.size - 1

    def activation_offsets(self, batch: int) -> np.ndarray:
        """Start of h_0..h_depth in the flat activation buffer for a batch of ``batch``."""
        sizes = batch * self.dims[:-1]
        return np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)

    def kernel_tuple(self, batch: int) -> tuple[np.ndarray, ...]:
        """The ``lay`` argument of the kernels."""
        return (self.dims, self.w_off, self.b_off, self.g_off, self.be_off, self.s_off,
                self.activation_offsets(batch), self.skip_from, self.a_off)


def build_layout(config: Config) -> Layout:
    """Lay out the network ``config`` describes."""
    net = config.network
    depth = net.depth
    dims = np.array([config.input_dim] + [net.width] * depth + [config.n_outputs], dtype=np.int64)
    offsets = {name: np.full(depth + 1, NONE, dtype=np.int64) for name in ("w", "b", "g", "be", "s", "a")}
    skip_from = residual_sources(depth, net.residual, net.residual_block)
    normed = norm_layers(depth, net.norm, net.norm_position, skip_from)
    segments: list[tuple[int, int, int, int]] = []
    cursor = 0

    def place(name: str, layer: int, size: int, is_weight: bool) -> None:
        nonlocal cursor
        offsets[name][layer] = cursor
        segments.append((cursor, cursor + size, layer, int(is_weight)))
        cursor += size

    for layer in range(depth + 1):
        n_in, n_out = int(dims[layer]), int(dims[layer + 1])
        place("w", layer, n_out * n_in, True)
        place("b", layer, n_out, False)
        if normed[layer]:
            size = n_in if net.norm_position == "pre" else n_out
            place("g", layer, size, False)
            place("be", layer, size, False)
        if layer < depth and net.activation == "prelu":
            place("s", layer, 1, False)
        if skip_from[layer] >= 0 and net.learn_alpha:
            place("a", layer, 1, False)
    table = np.array(segments, dtype=np.int64).T.copy()
    seg_start = np.searchsorted(table[2], np.arange(depth + 2)).astype(np.int64)
    return Layout(dims, offsets["w"], offsets["b"], offsets["g"], offsets["be"], offsets["s"],
                  offsets["a"], skip_from, table, seg_start, cursor)


def norm_layers(depth: int, norm: str, position: str, skip_from: np.ndarray) -> np.ndarray:
    """Which layers (0..depth, the output layer last) apply a norm: every hidden layer
    (position layer), the first layer of each block and the output layer (pre), or the last
    layer of each block (post)."""
    normed = np.zeros(depth + 1, dtype=bool)
    if norm == "none":
        return normed
    if position == "layer":
        normed[:depth] = True
    elif position == "pre":
        normed[skip_from[skip_from >= 0]] = True
        normed[depth] = True
    else:
        normed[skip_from >= 0] = True
    return normed


def residual_sources(depth: int, residual: bool, block: int) -> np.ndarray:
    """skip_from for each layer: hidden layers 2..depth form blocks of ``block`` layers whose
    input h_s is added to the block's output. Layer 1 (the input projection) has none."""
    skip_from = np.full(depth + 1, NONE, dtype=np.int64)
    if not residual:
        return skip_from
    start = 1
    while start < depth:
        end = min(start + block - 1, depth - 1)
        skip_from[end] = start
        start = end + 1
    return skip_from


def lr_scales(layout, parametrization: str, optimizer: str) -> np.ndarray:
    """Each tensor's (segment's) learning-rate multiplier. Standard: 1. muP (Yang et al. 2022,
    Tensor Programs V, Table 3): input weights and all biases (and the other vector
    parameters) lr * fan_out with SGD, lr with Adam; hidden weights lr with SGD, lr / fan_in
    with Adam; output weights lr / fan_in with both. Momentum counts as SGD."""
    segments = layout.segments
    scales = np.ones(segments.shape[1])
    if parametrization != "mup":
        return scales
    dims = layout.dims
    depth = dims.size - 2
    sgd = optimizer != "adam"
    for s in range(segments.shape[1]):
        layer, is_weight = int(segments[2, s]), bool(segments[3, s])
        fan_in, fan_out = int(dims[layer]), int(dims[layer + 1])
        if not is_weight:  # biases, norm gains, prelu slopes, alphas: their own length is fan_out
            scales[s] = float(segments[1, s] - segments[0, s]) if sgd else 1.0
        elif layer == 0:
            scales[s] = fan_out if sgd else 1.0
        elif layer == depth:
            scales[s] = 1.0 / fan_in
        else:
            scales[s] = 1.0 if sgd else 1.0 / fan_in
    return scales
