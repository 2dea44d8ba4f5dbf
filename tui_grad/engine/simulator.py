"""Simulator: builds the network a Config describes and trains it one step at a time."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from tui_grad.config import ACTIVATIONS, NORM_POSITIONS, NORMS, Config
from tui_grad.engine import backprop, diagnose, kernels, optim, probe, theory
from tui_grad.engine.activations import FROM_OUTPUT
from tui_grad.engine.buffers import Buffers
from tui_grad.engine.data import BatchStream, make_dataset
from tui_grad.engine.fpenv import flush_subnormals
from tui_grad.engine.init import init_weight
from tui_grad.engine.layout import NONE, Layout, build_layout, lr_scales
from tui_grad.engine.metrics import FLOAT32_TINY, FLOAT32_TINY_LOG10, StepMetrics
from tui_grad.engine.tensors import LayerTensors

# After renormalising to a largest |value| near 1, elements below this are negligible.
FLUSH_BELOW = {np.float32: 2.0 ** -100, np.float64: 2.0 ** -900}


def input_moments(inputs: np.ndarray) -> tuple[float, float]:
    """Mean and mean square of every input value, the same in every process: NumPy's
    contiguous sums take SIMD paths that depend on the array's alignment in memory, so the
    columns are summed row by row (one fixed order) and the column sums added exactly."""
    flat = inputs.reshape(inputs.shape[0], -1).astype(np.float64)
    count = flat.size
    return (math.fsum(flat.sum(axis=0)) / count, math.fsum((flat * flat).sum(axis=0)) / count)


@dataclass
class Snapshot:
    """Everything needed to resume a run exactly where it was (see Simulator.snapshot)."""

    step: int
    params: np.ndarray
    state1: np.ndarray
    state2: np.ndarray
    updates: int
    stream_state: tuple
    initial_loss: float | None
    diverged_at: int | None


class Simulator:
    """Trains the deep network described by a Config; ``step()`` returns StepMetrics.

    ``keep_grads=True`` keeps each step's full gradient for ``grads()``. Without it only the
    per-layer norms are kept: the gradient is as large as the model, and writing it out on
    every step costs about 6% of the step time at depth 1000, width 64.
    """

    def __init__(self, config: Config, *, keep_grads: bool = False) -> None:
        self.config = config
        self.keep_grads = keep_grads
        self._build()

    # ----------------------------------------------------------------- construction
    MODELS: tuple[str, ...] = ("mlp",)  # the network.model values this class trains

    def __new__(cls, config: Config, **_options) -> Simulator:
        """``Simulator(config)`` gives the subclass whose MODELS name the config's model
        (recurrent.py's for rnn and lstm; the engine package imports it), so this module
        needs no import of its subclasses."""
        model = config.network.model
        if cls is Simulator and model not in cls.MODELS:
            for subclass in cls.__subclasses__():
                if model in subclass.MODELS:
                    return super().__new__(subclass)
            raise ValueError(f"no simulator for network.model = {model!r}")
        return super().__new__(cls)

    def _build(self) -> None:
        config = self.config
        self.dtype = np.dtype(config.network.dtype).type
        seed = config.run.seed
        init_rng, data_rng, batch_rng = (np.random.default_rng([seed, k]) for k in (1, 2, 3))
        data = config.data
        self.dataset = make_dataset(data.task, data.n_samples, data.input_dim, data.n_classes,
                                    data.noise, data_rng, seq_len=data.seq_len)
        self._inputs = self.dataset.inputs.astype(self.dtype)
        self._targets_reg, self._labels = self._target_arrays()
        self._stream = BatchStream(data.n_samples, batch_rng)
        self._build_network(init_rng)
        self._grads = np.zeros_like(self._params)
        self._grads_kept = False  # whether _grads holds a step's full gradient (see grads)
        self._last_batch: tuple | None = None  # (x, y_reg, y_cls) of the last step, for the probes
        self._exps = np.zeros(self.layout.n_layers)
        self._reset_optimizer()
        self._buffers: Buffers | None = None
        self._lr_scale_key = None  # the layout may have changed: recompute lr_scales
        self.step_index = 0
        self.initial_loss: float | None = None
        self.diverged_at: int | None = None

    def _build_network(self, init_rng: np.random.Generator) -> None:
        inputs = self.dataset.inputs
        self.theory = theory.predict(self.config, *input_moments(inputs))
        self.layout: Layout = build_layout(self.config)
        self._params = np.empty(self.layout.n_params, dtype=self.dtype)
        self._init_params(init_rng)

    def _target_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        targets = self.dataset.targets
        if self.dataset.is_classification:
            labels = targets.astype(np.int64)
            one_hot = np.eye(self.dataset.n_outputs, dtype=self.dtype)[labels]
            return one_hot, labels
        return targets.astype(self.dtype), np.zeros(targets.shape[0], dtype=np.int64)

    def _init_params(self, rng: np.random.Generator) -> None:
        net = self.config.network
        options = {"init_std": net.init_std, "init_a": net.init_a, "gain": net.init_gain,
                   "activation": net.activation, "negative_slope": net.negative_slope,
                   "prelu_init": net.prelu_init}
        depth = net.depth
        for layer, tensors in enumerate(self.params):
            n_out, n_in = tensors["weight"].shape
            if net.parametrization == "mup":  # Tensor Programs V, Table 3: var 1/fan_in, output 1/fan_in^2
                std = net.init_gain / (n_in if layer == depth else math.sqrt(n_in))
                tensors["weight"][:] = rng.normal(0.0, std, size=(n_out, n_in))
            else:
                tensors["weight"][:] = init_weight(rng, net.init, n_out, n_in, **options)
            tensors["bias"][:] = net.bias_init
            if net.bias_std > 0:  # drawn only when asked, so other runs keep their numbers
                tensors["bias"][:] += rng.normal(0.0, net.bias_std, size=n_out)
            if "gamma" in tensors:
                tensors["gamma"][:] = 1.0
                tensors["beta"][:] = 0.0
            if "prelu_slope" in tensors:
                tensors["prelu_slope"][:] = net.prelu_init
            if "alpha" in tensors:
                tensors["alpha"][:] = net.residual_alpha

    def _reset_optimizer(self) -> None:
        optimizer = self.config.training.optimizer
        size = self.layout.n_params
        self._state1 = np.zeros(size if optimizer != "sgd" else 1, dtype=self.dtype)
        self._state2 = np.zeros(size if optimizer == "adam" else 1, dtype=self.dtype)
        self._updates = 0

    def _tensors(self, flat: np.ndarray) -> list[dict[str, np.ndarray]]:
        lay = self.layout
        layers = []
        for i in range(lay.n_layers):
            n_in, n_out = int(lay.dims[i]), int(lay.dims[i + 1])
            tensors = {"weight": flat[lay.w_off[i]:lay.w_off[i] + n_out * n_in].reshape(n_out, n_in),
                       "bias": flat[lay.b_off[i]:lay.b_off[i] + n_out]}
            if lay.g_off[i] != NONE:  # a pre-norm normalises the layer's input
                size = n_in if self.config.network.norm_position == "pre" else n_out
                tensors["gamma"] = flat[lay.g_off[i]:lay.g_off[i] + size]
                tensors["beta"] = flat[lay.be_off[i]:lay.be_off[i] + size]
            if lay.s_off[i] != NONE:
                tensors["prelu_slope"] = flat[lay.s_off[i]:lay.s_off[i] + 1]
            if lay.a_off[i] != NONE:
                tensors["alpha"] = flat[lay.a_off[i]:lay.a_off[i] + 1]
            layers.append(tensors)
        return layers

    @property
    def params(self) -> list[LayerTensors]:
        """Per layer (input side first, output last): ``weight`` (out, in), ``bias``, and
        ``gamma``, ``beta``, ``prelu_slope`` where present. Views: writing into them, or
        assigning ``params[i]["weight"] = array`` of the same shape, changes the model."""
        return [LayerTensors(layer, views) for layer, views in enumerate(self._tensors(self._params))]

    def grads(self) -> list[dict[str, np.ndarray]]:
        """The last step's true gradients (float64, before clipping), shaped like ``params``.

        Needs ``Simulator(config, keep_grads=True)`` and a step taken with it."""
        if not self.keep_grads:
            raise RuntimeError("grads() needs the gradients kept: Simulator(config, keep_grads=True)")
        if not self._grads_kept:
            raise RuntimeError("grads() has no gradient yet: call step() first (with keep_grads on)")
        true = self._grads.astype(np.float64)
        for start, end, layer, _ in self.layout.segments.T:
            true[start:end] *= 2.0 ** self._exps[layer]
        return self._tensors(true)

    # ----------------------------------------------------------------- training
    def _buffers_for(self, batch: int) -> Buffers:
        if self._buffers is None or self._buffers.batch != batch:
            net = self.config.network
            self._buffers = Buffers.allocate(self.layout, batch, self.dtype,
                                             keep_u=net.activation == "prelu",
                                             keep_deriv=self._keep_deriv(),
                                             norm=net.norm != "none",
                                             pre_norm=net.norm_position == "pre",
                                             learnable_alpha=net.learn_alpha)
        return self._buffers

    def _kernel_hyper(self) -> tuple:
        net = self.config.network
        return (np.int64(ACTIVATIONS.index(net.activation)), np.int64(NORMS.index(net.norm)),
                float(net.bn_eps), float(net.residual_alpha), float(net.negative_slope),
                net.activation == "prelu", self._keep_deriv(),
                np.int64(NORM_POSITIONS.index(net.norm_position)))

    def _keep_deriv(self) -> bool:
        """Whether phi'(u) is stored per layer; otherwise backward recomputes it from the
        layer's output (exact, and a deep net's activations cross memory one time less)."""
        net = self.config.network
        return net.residual or ACTIVATIONS.index(net.activation) not in FROM_OUTPUT

    def _next_batch(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        index = self._stream.next_indices(self.config.training.batch_size)
        return self._inputs[index], self._targets_reg[index], self._labels[index]

    def _user_batch(self, batch: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x_shape = (self.config.input_dim,)
        x, y = self._batch_pair(batch, x_shape)
        return (x.astype(self.dtype), *self._user_targets(y, x.shape[0]))

    def _batch_pair(self, batch: object, x_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of a user's batch, x shaped (B, *x_shape) with B >= 1, or a ValueError that
        says what was expected."""
        x_text = "(B, " + ", ".join(map(str, x_shape)) + ")"
        if self.config.training.loss == "cross_entropy":
            y_text = f"(B,) class indices in 0..{self.config.n_outputs - 1}"
        else:
            y_text = f"(B, {self.config.n_outputs})"
        expected = f"a pair (x, y) with x shaped {x_text} and y {y_text}"
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            got = (f"a {type(batch).__name__} of {len(batch)} items"
                   if isinstance(batch, (tuple, list)) else f"a {type(batch).__name__}")
            raise ValueError(f"batch must be {expected} (got {got})")
        x, y = (np.asarray(a) for a in batch)
        if x.ndim != 1 + len(x_shape) or x.shape[1:] != x_shape:
            raise ValueError(f"batch inputs must be shaped {x_text} (got {x.shape})")
        if x.shape[0] == 0:
            raise ValueError(f"batch is empty: x must be shaped {x_text} with B >= 1 (got {x.shape})")
        return x, y

    def _user_targets(self, y: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray]:
        """(regression targets, class labels) from a user's y, checked against the task."""
        n_out = self.config.n_outputs
        if self.config.training.loss == "cross_entropy":
            if y.shape != (rows,) or not np.issubdtype(y.dtype, np.integer) or (
                    y.size and (y.min() < 0 or y.max() >= n_out)):
                raise ValueError(f"batch targets must be {rows} class indices in 0..{n_out - 1} "
                                 f"(got {y.dtype} shaped {y.shape})")
            return np.zeros((rows, n_out), self.dtype), y.astype(np.int64)
        y = y.reshape(rows, -1) if y.size == rows * n_out else y
        if y.shape != (rows, n_out):
            raise ValueError(f"batch targets must be shaped ({rows}, {n_out}) (got {y.shape})")
        return y.astype(self.dtype), np.zeros(rows, np.int64)

    def step(self, batch: tuple[np.ndarray, np.ndarray] | None = None) -> StepMetrics:
        """Train one step on the task's next mini-batch (or on ``batch`` = (x, y)).

        A float32 step flushes subnormals to 0 (see fpenv.py): no float32 value below
        2**-126 is computed on or stored; float64 steps keep IEEE arithmetic."""
        with flush_subnormals(self.dtype is np.float32):
            return self._step(batch)

    def _step(self, batch: tuple | None) -> StepMetrics:
        started = time.perf_counter()
        x, y_reg, y_cls = self._next_batch() if batch is None else self._user_batch(batch)
        self._last_batch = (x, y_reg, y_cls)  # for the probes (histograms, Jacobian, sharpness)
        buf = self._buffers_for(x.shape[0])
        buf.h[:x.size] = x.ravel()
        hyper = self._kernel_hyper()
        kernels.forward(self._params, buf.lay, hyper, buf.h, buf.u, buf.xhat, buf.inv_std, buf.a,
                        buf.deriv, buf.logits, buf.stats, buf.weight_t, buf.normed, buf.branch)
        loss_code = kernels.CROSS_ENTROPY if self.config.training.loss == "cross_entropy" else kernels.MSE
        loss = float(kernels.loss_and_output_grad(loss_code, buf.logits, y_reg, y_cls, buf.grad_out))
        flush = FLUSH_BELOW[self.dtype]
        # without clip_grad_norm no step needs the global norm first: the backward pass
        # applies each layer's update itself (one pass over the parameters, not two)
        fused = self.config.training.clipping != "clip_grad_norm" and math.isfinite(loss)
        slopes = np.full(self.layout.n_layers, np.nan)  # read before any update
        has_slope = self.layout.s_off != NONE
        slopes[has_slope] = self._params[self.layout.s_off[has_slope]]
        sums = np.zeros((3, self.layout.n_layers))
        if fused:
            self._updates += 1
        update = (self._state1, self._state2, self.layout.segments, self.layout.seg_start,
                  self._clip_value(), self._update_hyper(), float(np.finfo(self.dtype).tiny),
                  sums, fused, buf.grad_scratch, self.keep_grads or not fused, self._lr_scale())
        backprop.backward(self._params, self._grads, buf.lay, hyper, buf.h, buf.u, buf.xhat,
                         buf.inv_std, buf.deriv, buf.grad_out, buf.signal, buf.grad_z, buf.carry,
                         buf.out, flush, update, buf.normed, buf.branch)
        self._grads_kept = self.keep_grads
        metrics = self._finish_step(loss, buf, started, sums, fused, slopes)
        self.step_index += 1
        return metrics

    def _finish_step(self, loss: float, buf: Buffers, started: float, sums: np.ndarray,
                     fused: bool, slopes: np.ndarray) -> StepMetrics:
        out, stats = buf.out, buf.stats
        self._exps = out[3].copy()
        with np.errstate(divide="ignore", invalid="ignore"):
            grad_log10 = np.where(out[1] > 0, 0.5 * np.log10(out[1]) + out[3] * math.log10(2.0),
                                  np.where(out[1] == 0, -np.inf, out[1]))
        log2_norm = optim.log2_global_norm(out[0], self._exps)
        status = self._judge(loss, grad_log10, out[4], log2_norm)
        clip_scale, applied_log2 = self._settle(loss, grad_log10, log2_norm, sums, fused)
        weight_norm = np.sqrt(sums[0])
        with np.errstate(divide="ignore", invalid="ignore"):
            update_ratio = np.sqrt(sums[1]) / weight_norm
        return StepMetrics(
            step=self.step_index, loss=loss,
            global_grad_norm_log10=log2_norm * math.log10(2.0),
            clipped_grad_norm_log10=applied_log2 * math.log10(2.0), clip_scale=clip_scale,
            status=status, diverged_at=self.diverged_at, grad_norm_log10=grad_log10,
            signal_norm_log10=out[4].copy(), weight_norm=weight_norm,
            predicted_signal_norm_log10=self.theory.log10_profile + out[4][self.layout.depth - 1],
            update_ratio=update_ratio, act_mean=stats[0].copy(), act_std=stats[1].copy(),
            saturation=stats[2].copy(), dead_fraction=stats[3].copy(), prelu_slope=slopes,
            underflow=grad_log10 < FLOAT32_TINY_LOG10, forward_underflow=stats[4] < FLOAT32_TINY,
            seconds=time.perf_counter() - started, lr=self.lr)

    def _judge(self, loss: float, grad_log10: np.ndarray, signal_log10: np.ndarray,
               log2_norm: float) -> str:
        """The step's verdict; a run that diverged once stays diverged."""
        if self.initial_loss is None:
            self.initial_loss = loss
        status = diagnose.verdict(loss, self.initial_loss, grad_log10, signal_log10,
                                  log2_norm * math.log10(2.0), self.config.run.divergence_factor)
        if status == diagnose.DIVERGED and self.diverged_at is None:
            self.diverged_at = self.step_index
        return diagnose.DIVERGED if self.diverged_at is not None else status

    def _settle(self, loss: float, grad_log10: np.ndarray, log2_norm: float, sums: np.ndarray,
                fused: bool) -> tuple[float, float]:
        """Update (unless the backward pass already did, or a value is non-finite); return
        (clip scale, log2 of the applied norm). Fills ``sums`` either way."""
        if diagnose.is_non_finite(loss, grad_log10):
            # no update, or a partial fused one that stopped at the first non-finite layer
            sums[0] = [kernels.sum_squares(w) for w in self._weight_matrices()]
            return 1.0, log2_norm
        return self._applied(log2_norm, sums) if fused else self._update(log2_norm, sums)

    def _weight_matrices(self) -> list[np.ndarray]:
        """Each layer's weight matrix, whose norm the metrics report."""
        return [t["weight"] for t in self.params]

    def _clip_value(self) -> float:
        training = self.config.training
        return float(training.clip_value) if training.clipping == "clip_grad_value" else math.inf

    @property
    def lr(self) -> float:
        """The learning rate the next step's update uses (training.schedule at this step)."""
        t = self.config.training
        return optim.scheduled_lr(t.lr, t.schedule, self.step_index, t.warmup_steps,
                                  t.decay_steps, t.decay_factor)

    def _lr_scale(self) -> np.ndarray:
        """Each tensor's learning-rate multiplier: muP's per-layer rates, else ones."""
        key = (self.config.network.parametrization, self.config.training.optimizer)
        if self._lr_scale_key != key:
            self._lr_scale_key = key
            self._lr_scale_values = lr_scales(self.layout, *key)
        return self._lr_scale_values

    def _update_hyper(self) -> tuple:
        training = self.config.training
        return (np.int64(optim.OPTIMIZER_CODES[training.optimizer]), float(self._updates),
                float(self.lr), float(training.momentum), float(training.adam_beta1),
                float(training.adam_beta2), float(training.adam_eps), float(training.weight_decay))

    def _update(self, log2_norm: float, sums: np.ndarray) -> tuple[float, float]:
        """The separate update pass, after the global norm is known (clip_grad_norm; every
        recurrent step)."""
        training = self.config.training
        coefficient = optim.clip_coefficient(log2_norm, training.clipping, training.max_norm)
        factors = np.ldexp(coefficient, self._exps.astype(np.int64))
        self._updates += 1
        optim.apply_update(self._params, self._grads, self._state1, self._state2,
                           self.layout.segments, self.layout.seg_start, factors,
                           self._clip_value(), self._update_hyper(),
                           float(np.finfo(self.dtype).tiny), sums, self._lr_scale())
        if training.clipping == "clip_grad_value":  # only value clipping fills sums[2]
            return self._applied(log2_norm, sums)
        return coefficient, log2_norm + math.log2(coefficient)  # coefficient 1.0 without clipping

    def _applied(self, log2_norm: float, sums: np.ndarray) -> tuple[float, float]:
        """(clip scale, log2 of the applied norm) from the update's clipped sums of squares."""
        applied = optim.log2_global_norm(sums[2], self._exps)
        scale = math.exp2(applied - log2_norm) if math.isfinite(log2_norm) else 1.0
        return min(scale, 1.0), applied

    # ----------------------------------------------------------------- control
    def apply(self, config: Config) -> bool:
        """Switch to ``config``: live options apply at once; structural ones rebuild.

        Returns True when the run was restarted (a structural option changed).
        """
        if self.config.needs_restart(config):
            if config.network.model != self.config.network.model:  # another kind of network
                self.__class__ = type(Simulator.__new__(Simulator, config))
            self.config = config
            self._build()
            return True
        optimizer_changed = config.training.optimizer != self.config.training.optimizer
        self.config = config
        if optimizer_changed:
            self._reset_optimizer()
        return False

    def reset(self) -> None:
        """Start the run again from step 0 with the same seed (identical numbers)."""
        self._build()

    # ----------------------------------------------------------------- probes (probe.py)
    def _probe_batch(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._last_batch is None:
            raise RuntimeError("no batch yet: call step() first (the probes use the last step's batch)")
        return self._last_batch

    def layer_values(self) -> probe.LayerValues:
        """Every hidden layer's pre-activation, activation, weight gradient and dL/dh, in
        float64, for the network as it is now on the last step's batch (probe.py)."""
        return probe.layer_values(self.config, self.params, *self._probe_batch())

    def histograms(self, layers: list[int] | None = None,
                   quantities: tuple[str, ...] = probe.QUANTITIES, bins: int = 30) -> list[probe.Histogram]:
        """Histograms per hidden layer (0 = first; default about five from input to output)
        of ``quantities``; gradient quantities on log10|x| bins, exact zeros apart."""
        return probe.histograms(self.layer_values(), layers, quantities, bins)

    def jacobian_singular_values(self, example: int = 0) -> probe.Spectrum:
        """Singular values of d h_depth / d h_1 (RNN/LSTM: d h_T / d h_1) for ``example`` of
        the last batch (float64)."""
        return probe.jacobian_singular_values(self.config, self.layer_values(), self.params, example)

    def sharpness(self, iterations: int = 20, tolerance: float = 1e-4) -> probe.Sharpness:
        """Top Hessian eigenvalue of the data loss on the last batch (power iteration)."""
        return probe.sharpness(self.config, self.params, *self._probe_batch(),
                               iterations=iterations, tolerance=tolerance)

    def snapshot(self, reuse: Snapshot | None = None) -> Snapshot:
        """A copy of the run's state; ``restore`` brings the run back to it exactly.

        ``reuse``: an old snapshot of this run whose arrays are overwritten instead of
        allocating new ones (a fresh 250 MB array costs more in page faults than the copy).
        """
        arrays = []
        for current, old in zip((self._params, self._state1, self._state2),
                                (reuse.params, reuse.state1, reuse.state2) if reuse else (None,) * 3,
                                strict=True):
            if old is not None and old.shape == current.shape and old.dtype == current.dtype:
                np.copyto(old, current)
                arrays.append(old)
            else:
                arrays.append(current.copy())
        return Snapshot(self.step_index, *arrays, self._updates, self._stream.get_state(),
                        self.initial_loss, self.diverged_at)

    def restore(self, snap: Snapshot) -> None:
        """Return to a snapshot taken from this run (same structure), e.g. to rewind."""
        self._params[:] = snap.params
        if snap.state1.shape == self._state1.shape and snap.state2.shape == self._state2.shape:
            self._state1[:], self._state2[:] = snap.state1, snap.state2
            self._updates = snap.updates
        else:
            self._reset_optimizer()
        self._stream.set_state(snap.stream_state)
        self.step_index, self.initial_loss = snap.step, snap.initial_loss
        self.diverged_at = snap.diverged_at
