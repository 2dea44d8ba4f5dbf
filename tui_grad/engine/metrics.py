"""StepMetrics: what one training step measured, per layer and overall."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FLOAT32_TINY_LOG10 = -126 * 0.30102999566398120  # log10 of float32's smallest normal, 2**-126
FLOAT32_TINY = 2.0 ** -126


@dataclass(frozen=True, eq=False)
class StepMetrics:
    """Everything one step measured, on that step's batch and before its update.

    Per-layer arrays have depth + 1 entries, input layer first, output layer last. Norms
    are kept as log10 so that magnitudes beyond float64 (1e-400) stay exact; an exact zero
    is -inf. ``grad_norm`` and ``signal_norm`` give the plain values.
    """

    step: int
    loss: float
    global_grad_norm_log10: float  # all parameters, before clipping
    clipped_grad_norm_log10: float  # the norm of the gradient actually applied
    clip_scale: float  # applied / pre-clip norm; 1.0 when nothing was clipped
    status: str  # healthy | vanishing | exploding | diverged
    diverged_at: int | None  # first step that diverged, in this run
    grad_norm_log10: np.ndarray  # ||dL/dW_l||, weight matrices only
    signal_norm_log10: np.ndarray  # ||dL/dh_l||, h_l = layer l's output (logits for the last)
    predicted_signal_norm_log10: np.ndarray  # mean-field theory, anchored at the last hidden layer
    weight_norm: np.ndarray  # ||W_l||
    update_ratio: np.ndarray  # ||delta W_l|| / ||W_l|| of this step's update
    act_mean: np.ndarray  # mean of layer l's output over batch and units
    act_std: np.ndarray
    saturation: np.ndarray  # fraction of pre-activations where phi' < 0.05
    dead_fraction: np.ndarray  # fraction of units whose activation is 0 on the whole batch
    prelu_slope: np.ndarray  # NaN where the layer has no prelu
    underflow: np.ndarray  # ||dL/dW_l|| < 2**-126: plain float32 holds only subnormals or zeros
    # every |pre-activation| of the layer (lstm: cell state; output layer: logit) < 2**-126:
    # the forward signal left float32's normal range (a float32 run holds zeros there)
    forward_underflow: np.ndarray
    seconds: float  # wall time of the step
    forget_gate_mean: np.ndarray | None = None  # LSTM only: mean forget gate per time step
    input_gate_mean: np.ndarray | None = None  # LSTM only
    output_gate_mean: np.ndarray | None = None  # LSTM only
    lr: float = math.nan  # the learning rate of this step's update (training.schedule)

    @property
    def depth(self) -> int:
        """Hidden layers."""
        return self.grad_norm_log10.size - 1

    @property
    def grad_norm(self) -> np.ndarray:
        """||dL/dW_l|| as float64 (0 or inf beyond float64's range; see grad_norm_log10)."""
        return np.power(10.0, self.grad_norm_log10)

    @property
    def signal_norm(self) -> np.ndarray:
        """||dL/dh_l|| as float64."""
        return np.power(10.0, self.signal_norm_log10)

    @property
    def predicted_signal_norm(self) -> np.ndarray:
        """Theory's ||dL/dh_l|| (NaN where the theory does not cover the network)."""
        return np.power(10.0, self.predicted_signal_norm_log10)

    @property
    def global_grad_norm(self) -> float:
        """Global gradient norm before clipping, float64."""
        return float(10.0 ** self.global_grad_norm_log10)

    @property
    def clipped(self) -> bool:
        """True when clipping changed the gradient this step."""
        return self.clip_scale < 1.0

    @property
    def is_finite(self) -> bool:
        """False when the loss or any gradient was NaN or inf."""
        return bool(np.isfinite(self.loss)) and not bool(np.any(np.isnan(self.grad_norm_log10)))
