"""Gradient clipping and the SGD / momentum / Adam update, applied to the flat parameter vector.

Clipping works on exact gradient magnitudes: the global norm comes from per-layer sums of
squares kept as (mantissa, power-of-two exponent) pairs, so a norm of 1e50 or 1e-120 is
clipped correctly where plain float32 would already hold inf or 0.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from tui_grad.engine.activations import KERNEL, inner, reduce_add

SGD, MOMENTUM, ADAM = 0, 1, 2
FLOAT32_SCALES = (2.0 ** -100, 2.0 ** 100)  # gradient scales float32 arithmetic holds exactly
OPTIMIZER_CODES = {"sgd": SGD, "momentum": MOMENTUM, "adam": ADAM}


def log2_global_norm(layer_ss: np.ndarray, exps: np.ndarray) -> float:
    """log2 of sqrt(sum_l layer_ss[l] * 4**exps[l]): -inf if all zero, NaN if any NaN/inf."""
    if not np.all(np.isfinite(layer_ss)):
        return math.nan
    positive = layer_ss > 0
    if not positive.any():
        return -math.inf
    log2_ss = np.log2(layer_ss[positive]) + 2.0 * exps[positive]
    top = log2_ss.max()
    return 0.5 * (top + math.log2(np.exp2(log2_ss - top).sum()))


def scheduled_lr(lr: float, schedule: str, step: int, warmup_steps: int, decay_steps: int,
                 decay_factor: float) -> float:
    """The learning rate of training step ``step`` (0-based) under ``schedule``:

    - ``constant``: lr.
    - ``warmup_linear``: lr * (step + 1) / warmup_steps during the warm-up, then lr.
    - ``warmup_cosine``: the same warm-up, then lr * (1 + cos(pi * k / decay_steps)) / 2
      at k = step - warmup_steps + 1 steps after it, and 0 from k = decay_steps on.
    - ``step``: lr * decay_factor ** (step // decay_steps), as torch's StepLR.
    """
    if schedule == "constant":
        return lr
    if schedule == "step":
        return lr * decay_factor ** (step // decay_steps)
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if schedule == "warmup_linear":
        return lr
    done = min(step - warmup_steps + 1, decay_steps) / decay_steps
    return lr * 0.5 * (1.0 + math.cos(math.pi * done))


def clip_coefficient(log2_norm: float, clipping: str, max_norm: float) -> float:
    """torch.nn.utils.clip_grad_norm_'s factor max_norm / (norm + 1e-6), capped at 1."""
    if clipping != "clip_grad_norm" or not math.isfinite(log2_norm):
        return 1.0
    if log2_norm > 1000:  # norm beyond float64: the 1e-6 is irrelevant
        return math.exp2(math.log2(max_norm) - log2_norm)
    return min(1.0, max_norm / (math.exp2(log2_norm) + 1e-6))


@njit(**KERNEL)
def apply_update(params, grads, state1, state2, segments, seg_start, factors, clip_value, hyper,
                 flush_min, sums, lr_scale):
    """Update every parameter in place from its gradient mantissa times ``factors[layer]``.

    The separate pass used when the global gradient norm must be known first
    (clip_grad_norm); otherwise the backward pass calls ``update_layer`` itself.
    """
    for layer in range(seg_start.size - 1):
        base = segments[0, seg_start[layer]]
        update_layer(params, grads[base:], base, state1, state2, segments, seg_start, layer,
                     factors[layer], clip_value, hyper, flush_min, sums, lr_scale)


@inner
def update_layer(params, grads, base, state1, state2, segments, seg_start, layer, factor,
                 clip_value, hyper, flush_min, sums, lr_scale):
    """Update one layer's tensors in place from gradient mantissas times ``factor``.

    ``grads`` starts at offset ``base`` of the flat vector (the layer's own gradients).
    ``segments`` rows: start offset, end offset, layer, is_weight (1/0) of each tensor;
    layer i's tensors are segments seg_start[i]..seg_start[i+1]-1.
    ``hyper`` = (optimizer code, step t (1-based), lr, momentum, beta1, beta2, eps,
    weight_decay). ``clip_value`` bounds every element (inf: no value clipping).
    Gradients below ``flush_min`` after scaling count as 0, as in float32 training with
    flush-to-zero. Accumulates into ``sums`` (3, L): row 0 ||W||^2 before the update,
    row 1 ||delta W||^2, row 2 (with value clipping only: otherwise it is the layer's own
    sum of squares, which the caller has) the clipped gradient's, in mantissa units.
    ``lr_scale[s]`` multiplies the learning rate of segment s (muP; else 1).
    """
    bound = clip_value / factor if factor > 0 else np.inf
    for s in range(seg_start[layer], seg_start[layer + 1]):
        start, end, is_weight = segments[0, s], segments[1, s], segments[3, s]
        weight_ss, change_ss, grad_ss = _update_segment(params, grads[start - base:end - base],
                                                        state1, state2, start, end, factor, bound,
                                                        hyper, flush_min, lr_scale[s])
        if is_weight:
            sums[0, layer] += weight_ss
            sums[1, layer] += change_ss
        if clip_value < np.inf:
            sums[2, layer] += grad_ss


@inner
def _update_segment(params, g_seg, state1, state2, start, end, factor, bound, hyper, flush_min,
                    rate_scale):
    """Update params[start:end] from ``g_seg``, their gradient mantissas; returns (||p||^2
    before, ||change||^2, clipped mantissa^2).

    float32 SGD without value clipping, the speed path, has a loop of its own; everything
    else shares one (the optimizer test is loop-invariant). Loops run over slices from
    index 0 (a loop from ``start`` makes numba check for negative indices and stops
    vectorising) and sum with ``reduce_add``.
    """
    optimizer, t, lr, momentum, beta1, beta2, eps, weight_decay = hyper
    lr = lr * rate_scale
    p_seg = params[start:end]
    weight_ss = change_ss = grad_ss = 0.0
    low, high = FLOAT32_SCALES
    if optimizer == SGD and bound == np.inf and p_seg.itemsize == 4 and low <= factor <= high:
        # the common case, in float32 like any float32 framework (twice the lanes of
        # float64): scaling by factor is exact, and a product below float32's normal range
        # is flushed to 0 exactly as in the float64 loop below; no clipping, so grad_ss is
        # not needed (see update_layer)
        f32 = p_seg.dtype.type
        f, rate, decay, tiny, zero = f32(factor), f32(lr), f32(weight_decay), f32(flush_min), f32(0)
        for k in range(p_seg.size):
            g = g_seg[k] * f
            g = g if abs(g) >= tiny else zero
            p = p_seg[k]
            new = p - rate * (g + decay * p)
            p_seg[k] = new
            change = np.float64(new) - np.float64(p)
            weight_ss = reduce_add(weight_ss, np.float64(p) * np.float64(p))
            change_ss = reduce_add(change_ss, change * change)
        return weight_ss, change_ss, grad_ss
    m_seg, v_seg = state1[start:end], state2[start:end]  # state2: a placeholder unless adam
    correction1 = correction2 = 1.0
    if optimizer == ADAM:
        correction1, correction2 = 1.0 - beta1 ** t, 1.0 - beta2 ** t
    for k in range(p_seg.size):
        mantissa = min(max(np.float64(g_seg[k]), -bound), bound)
        g = mantissa * factor
        g = g if abs(g) >= flush_min else 0.0
        p = np.float64(p_seg[k])
        g += weight_decay * p
        if optimizer == SGD:  # float64 runs, value clipping, scales float32 cannot hold
            delta = lr * g
        elif optimizer == MOMENTUM:
            m_seg[k] = momentum * m_seg[k] + g
            delta = lr * m_seg[k]
        else:
            m_seg[k] = beta1 * m_seg[k] + (1.0 - beta1) * g
            v_seg[k] = beta2 * v_seg[k] + (1.0 - beta2) * g * g
            delta = lr * (m_seg[k] / correction1) / (math.sqrt(v_seg[k] / correction2) + eps)
        new = p_seg.dtype.type(p - delta)
        p_seg[k] = new
        change = np.float64(new) - p
        weight_ss = reduce_add(weight_ss, p * p)
        change_ss = reduce_add(change_ss, change * change)
        grad_ss = reduce_add(grad_ss, mantissa * mantissa)
    return weight_ss, change_ss, grad_ss
