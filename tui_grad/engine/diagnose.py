"""Verdicts on a training step: healthy, vanishing, exploding or diverged.

The rule, in order:

1. **diverged** when the loss or any gradient is NaN or infinite, or the loss exceeds
   ``divergence_factor`` x max(loss at step 0, 1). Once diverged, a run stays diverged and
   remembers the first such step.
2. **vanishing** when the input layer's weight-gradient norm is exactly zero, or below 1e-3
   of the output layer's, or the backpropagated signal ||dL/dh|| at layer 1 is below 1e-3 of
   the last hidden layer's (small weights shrink activations and signal together, which
   leaves weight-gradient ratios flat while nothing reaches the input).
3. **exploding** when either ratio is above 1e3, or the global gradient norm exceeds 1e6.
4. **healthy** otherwise.
"""

from __future__ import annotations

import math

import numpy as np

HEALTHY, VANISHING, EXPLODING, DIVERGED = "healthy", "vanishing", "exploding", "diverged"
VERDICTS = (HEALTHY, VANISHING, EXPLODING, DIVERGED)
PROFILE_DECADES = 3.0  # |log10(first / last)| beyond this is vanishing / exploding
EXPLODING_GLOBAL_NORM_LOG10 = 6.0


def is_non_finite(loss: float, grad_norm_log10: np.ndarray) -> bool:
    """True when the loss or any layer's gradient norm is NaN or infinite."""
    return not math.isfinite(loss) or bool(np.any(np.isnan(grad_norm_log10))) or bool(
        np.any(np.isposinf(grad_norm_log10)))


def verdict(loss: float, initial_loss: float, grad_norm_log10: np.ndarray,
            signal_norm_log10: np.ndarray, global_norm_log10: float,
            divergence_factor: float) -> str:
    """Classify one step by the rule in this module's docstring."""
    if is_non_finite(loss, grad_norm_log10):
        return DIVERGED
    if math.isfinite(initial_loss) and loss > divergence_factor * max(initial_loss, 1.0):
        return DIVERGED
    first, last = grad_norm_log10[0], grad_norm_log10[-1]
    if np.isneginf(first):  # exactly zero at the input layer: nothing there can learn
        return VANISHING
    ratios = [first - last]
    if signal_norm_log10.size > 2:  # signal at layer 1 vs at the last hidden layer
        ratios.append(signal_norm_log10[0] - signal_norm_log10[-2])
    if min(ratios) < -PROFILE_DECADES:
        return VANISHING
    if max(ratios) > PROFILE_DECADES or global_norm_log10 > EXPLODING_GLOBAL_NORM_LOG10:
        return EXPLODING
    return HEALTHY
