"""RecurrentSimulator: a vanilla RNN or an LSTM unrolled over data.seq_len time steps.

Same API and StepMetrics as the MLP's Simulator; the per-layer axis becomes time: entry t
(t = 1..T) holds ||dL/dh_t|| and the hidden state's statistics at step t, the last entry the
output layer. Weight matrices are shared across time, so the per-step "gradient" reported
is the backpropagated signal ||dL/dh_t||; the update uses the weight gradients summed over
time (exact, see rnn.py), with the same optimizers and clipping as the MLP.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from tui_grad.config import ACTIVATIONS
from tui_grad.engine import kernels, optim, rnn, theory
from tui_grad.engine.init import init_weight, orthogonal
from tui_grad.engine.metrics import FLOAT32_TINY, FLOAT32_TINY_LOG10, StepMetrics
from tui_grad.engine.simulator import FLUSH_BELOW, Simulator

CELL, OUTPUT = 0, 1  # the two "layers" of parameters


@dataclass(frozen=True)
class RecurrentLayout:
    """Offsets of the cell's and the output layer's tensors in the flat parameter vector."""

    hidden: int
    inputs: int
    outputs: int
    gates: int  # 1 for the RNN, 4 for the LSTM
    segments: np.ndarray  # (4, 5) start, end, layer, is_weight
    seg_start: np.ndarray
    n_params: int
    n_layers: int = 2

    def slices(self) -> dict[str, tuple[int, int, tuple[int, ...]]]:
        """name -> (start, end, shape) of every tensor."""
        g, h = self.gates * self.hidden, self.hidden
        shapes = {"weight_ih": (g, self.inputs), "weight_hh": (g, h), "bias": (g,),
                  "weight": (self.outputs, h), "out_bias": (self.outputs,)}
        return {name: (int(self.segments[0, i]), int(self.segments[1, i]), shape)
                for i, (name, shape) in enumerate(shapes.items())}


def recurrent_layout(hidden: int, inputs: int, outputs: int, gates: int) -> RecurrentLayout:
    """Lay out weight_ih, weight_hh, bias (the cell), then the output weight and bias."""
    sizes = [(gates * hidden * inputs, CELL, 1), (gates * hidden * hidden, CELL, 1),
             (gates * hidden, CELL, 0), (outputs * hidden, OUTPUT, 1), (outputs, OUTPUT, 0)]
    starts = np.cumsum([0] + [s for s, _, _ in sizes])
    segments = np.array([[starts[i], starts[i + 1], layer, weight]
                         for i, (_, layer, weight) in enumerate(sizes)], dtype=np.int64).T.copy()
    return RecurrentLayout(hidden, inputs, outputs, gates, segments,
                           np.array([0, 3, 5], dtype=np.int64), int(starts[-1]))


class RecurrentSimulator(Simulator):
    """Trains an RNN or LSTM through time; ``Simulator(config)`` returns one for those models."""

    MODELS = ("rnn", "lstm")

    def _build_network(self, init_rng: np.random.Generator) -> None:
        config, net = self.config, self.config.network
        self.is_lstm = net.model == "lstm"
        self._work: tuple | None = None  # see _work_arrays
        self.layout = recurrent_layout(net.width, config.input_dim, config.n_outputs,
                                       4 if self.is_lstm else 1)
        self.theory = theory.not_covered(config.data.seq_len,
                                         "the mean-field theory here is for feed-forward nets")
        self._params = np.zeros(self.layout.n_params, dtype=self.dtype)
        tensors = self.params
        cell, out = tensors[CELL], tensors[OUTPUT]
        options = {"init_std": net.init_std, "init_a": net.init_a, "gain": net.init_gain,
                   "activation": net.activation, "negative_slope": net.negative_slope,
                   "prelu_init": net.prelu_init}
        cell["weight_ih"][:] = init_weight(init_rng, net.init, *cell["weight_ih"].shape, **options)
        rows, hidden = cell["weight_hh"].shape
        if net.recurrent_init == "orthogonal":  # one orthogonal block per gate, as is usual
            blocks = [orthogonal(init_rng, hidden, hidden) for _ in range(rows // hidden)]
            cell["weight_hh"][:] = net.recurrent_gain * np.concatenate(blocks)
        else:
            cell["weight_hh"][:] = init_rng.normal(0.0, net.recurrent_gain / math.sqrt(hidden),
                                                   size=(rows, hidden))
        cell["bias"][:] = net.bias_init
        if self.is_lstm:
            cell["bias"][hidden:2 * hidden] = net.forget_bias
        out["weight"][:] = init_weight(init_rng, net.init, *out["weight"].shape, **options)
        out["bias"][:] = net.bias_init

    def _tensors(self, flat: np.ndarray) -> list[dict[str, np.ndarray]]:
        views = {name: flat[start:end].reshape(shape)
                 for name, (start, end, shape) in self.layout.slices().items()}
        return [{"weight_ih": views["weight_ih"], "weight_hh": views["weight_hh"],
                 "bias": views["bias"]},
                {"weight": views["weight"], "bias": views["out_bias"]}]

    def _weight_matrices(self) -> list[np.ndarray]:
        cell, out = self.params
        return [cell["weight_hh"], out["weight"]]

    def _user_batch(self, batch: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x, y = self._batch_pair(batch, (self.config.data.seq_len, self.config.input_dim))
        return (x.astype(self.dtype), *self._user_targets(y, x.shape[0]))

    def _step(self, batch: tuple | None) -> StepMetrics:
        """One step through time on the next mini-batch (or on ``batch`` = (x, y)); ``step``
        runs it, flushing subnormals in float32 runs."""
        started = time.perf_counter()
        x, y_reg, y_cls = self._next_batch() if batch is None else self._user_batch(batch)
        self._last_batch = (x, y_reg, y_cls)  # for the probes (probe.py)
        seq = np.ascontiguousarray(np.transpose(x, (1, 0, 2)))  # (T, B, D)
        cell, out = self.params
        stats, h, signal_log10 = self._forward(seq, cell)
        if not self.is_lstm:
            stats[3:6] = np.nan
        logits = np.ascontiguousarray(h[-1] @ out["weight"].T + out["bias"])
        grad_out = np.zeros_like(logits)
        code = kernels.CROSS_ENTROPY if self.config.training.loss == "cross_entropy" else kernels.MSE
        loss = float(kernels.loss_and_output_grad(code, logits, y_reg, y_cls, grad_out))
        layer_ss, out_weight_log10 = self._backward(seq, cell, out, h, grad_out.astype(np.float64),
                                                    signal_log10)
        self._grads_kept = True  # BPTT always writes the whole gradient
        largest = np.append(stats[6], np.max(np.abs(logits), initial=0.0))
        return self._finish_recurrent(loss, started, stats, signal_log10, layer_ss,
                                      out_weight_log10, largest < FLOAT32_TINY)

    def _forward(self, seq: np.ndarray, cell: dict) -> tuple:
        steps, batch = seq.shape[0], seq.shape[1]
        h, self._cache = self._work_arrays(steps, batch)
        stats = np.full((7, steps), np.nan)
        if self.is_lstm:
            rnn.lstm_forward(seq, cell["weight_ih"], cell["weight_hh"], cell["bias"], h,
                             *self._cache, stats)
        else:
            net = self.config.network
            rnn.rnn_forward(seq, cell["weight_ih"], cell["weight_hh"], cell["bias"],
                            ACTIVATIONS.index(net.activation), float(net.negative_slope),
                            h, self._cache[0], stats)
        return stats, h, np.zeros(steps + 1)

    def _work_arrays(self, steps: int, batch: int) -> tuple[np.ndarray, tuple]:
        """The hidden states and what backward needs, kept from step to step: allocated
        anew, tens of MB would be page-faulted in on every step (about 40 ms of an LSTM
        step at seq_len 500). The forward pass writes all of them but h_0 and c_0, which
        stay 0."""
        hidden, dt = self.layout.hidden, self.dtype
        key = (steps, batch)
        if self._work is None or self._work[0] != key:
            h = np.zeros((steps + 1, batch, hidden), dtype=dt)
            if self.is_lstm:
                cache = (np.zeros((steps + 1, batch, hidden), dtype=dt),
                         np.zeros((steps, batch, 4 * hidden), dtype=dt),
                         np.zeros((steps, batch, hidden), dtype=dt))
            else:
                cache = (np.zeros((steps, batch, hidden), dtype=dt),)
            self._work = (key, h, cache)
        return self._work[1], self._work[2]

    def _backward(self, seq, cell, out, h, grad_out, signal_log10) -> tuple[np.ndarray, float]:
        """Gradients into self._grads as mantissas with exponents self._exps; returns each
        layer's sum of squares in mantissa units and log10 ||dL/dW_out||."""
        flush = FLUSH_BELOW[self.dtype]
        d_ih = np.zeros(cell["weight_ih"].shape)
        d_hh = np.zeros(cell["weight_hh"].shape)
        d_b = np.zeros(cell["bias"].shape)
        signal_log10[-1] = kernels.log10_of(kernels.sum_squares(grad_out), 0)
        d_out_w, d_out_b = grad_out.T @ h[-1].astype(np.float64), grad_out.sum(axis=0)
        grad_h = grad_out @ out["weight"].astype(np.float64)
        if self.is_lstm:
            exp = rnn.lstm_backward(seq, cell["weight_hh"], h, *self._cache, grad_h, d_ih, d_hh,
                                    d_b, signal_log10, flush)
        else:
            exp = rnn.rnn_backward(seq, cell["weight_hh"], h, self._cache[0], grad_h, d_ih, d_hh,
                                   d_b, signal_log10, flush)
        grads = self._tensors(self._grads)
        layer_ss = np.zeros(2)
        for layer, arrays, base in ((CELL, (d_ih, d_hh, d_b), exp), (OUTPUT, (d_out_w, d_out_b), 0)):
            largest = max(float(np.max(np.abs(a))) for a in arrays)
            shift = math.frexp(largest)[1] if largest > 0 and math.isfinite(largest) else 0
            self._exps[layer] = base + shift
            for name, values in zip(grads[layer], arrays, strict=True):
                grads[layer][name][:] = values * math.ldexp(1.0, -shift)
                layer_ss[layer] += kernels.sum_squares(grads[layer][name])
        out_weight_log10 = kernels.log10_of(kernels.sum_squares(grads[OUTPUT]["weight"]),
                                            self._exps[OUTPUT])
        return layer_ss, out_weight_log10

    def _finish_recurrent(self, loss, started, stats, signal_log10, layer_ss,
                          out_weight_log10, forward_underflow) -> StepMetrics:
        steps = signal_log10.size - 1
        grad_log10 = signal_log10.copy()  # per step: the backpropagated signal
        grad_log10[-1] = out_weight_log10
        log2_norm = optim.log2_global_norm(layer_ss, self._exps)
        status = self._judge(loss, grad_log10, signal_log10, log2_norm)
        sums = np.zeros((3, 2))
        clip_scale, applied_log2 = self._settle(loss, grad_log10, log2_norm, sums, fused=False)
        per_step = np.arange(steps + 1) < steps  # time steps, then the output layer
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.sqrt(sums[1]) / np.sqrt(sums[0])
        nan_tail = np.concatenate([stats, np.full((stats.shape[0], 1), np.nan)], axis=1)
        metrics = StepMetrics(
            step=self.step_index, loss=loss, global_grad_norm_log10=log2_norm * math.log10(2.0),
            clipped_grad_norm_log10=applied_log2 * math.log10(2.0), clip_scale=clip_scale,
            status=status, diverged_at=self.diverged_at, grad_norm_log10=grad_log10,
            signal_norm_log10=signal_log10, predicted_signal_norm_log10=np.full(steps + 1, np.nan),
            weight_norm=np.where(per_step, math.sqrt(sums[0][CELL]), math.sqrt(sums[0][OUTPUT])),
            update_ratio=np.where(per_step, ratio[CELL], ratio[OUTPUT]),
            act_mean=nan_tail[0], act_std=nan_tail[1], saturation=nan_tail[2],
            dead_fraction=np.zeros(steps + 1), prelu_slope=np.full(steps + 1, np.nan),
            underflow=signal_log10 < FLOAT32_TINY_LOG10, forward_underflow=forward_underflow,
            seconds=time.perf_counter() - started, lr=self.lr,
            forget_gate_mean=nan_tail[3], input_gate_mean=nan_tail[4],
            output_gate_mean=nan_tail[5])
        self.step_index += 1
        return metrics
