"""The CSV schema (long format: one row per step and layer) and its incremental writer."""

from __future__ import annotations

import math
from typing import TextIO

from tui_grad.engine import StepMetrics

# (column, help) in file order; `variant` leads only when a scenario has [[compare]] entries.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("step", "training step, from 0"),
    ("layer", "weight layer 1..depth+1, input side first; depth+1 is the output layer "
              "(rnn/lstm: time step 1..seq_len, then the output layer)"),
    ("loss", "the step's mini-batch loss (same on every row of the step)"),
    ("grad_norm", "||dL/dW|| of the layer's weight matrix, before clipping"),
    ("signal_norm", "||dL/dh|| backpropagated to the layer's output"),
    ("weight_norm", "||W|| before the update"),
    ("update_ratio", "||delta W|| / ||W|| of this step's update"),
    ("act_mean", "mean of the layer's output"),
    ("act_std", "standard deviation of the layer's output"),
    ("saturation", "fraction of pre-activations where the activation's derivative < 0.05"),
    ("dead_fraction", "fraction of units that output 0 for the whole batch"),
    ("global_grad_norm", "norm of all gradients together, before clipping"),
    ("clip_scale", "applied / raw global norm (1 = not clipped)"),
    ("status", "healthy, vanishing, exploding or diverged"),
    ("underflow", "1 where plain float32 would hold only subnormals or zeros for this gradient"),
    ("forward_underflow", "1 where the forward signal left float32's normal range: every "
     "pre-activation of the layer (lstm: cell state; output layer: logit) is below 2^-126 in "
     "magnitude, so a float32 run holds zeros there (it flushes values below 2^-126 to 0)"),
    ("prelu_slope", "the layer's learned prelu slope (empty without prelu)"),
    ("predicted_signal_norm", "mean-field theory's ||dL/dh||, anchored at the last hidden layer "
     "(empty where the theory does not cover the network)"),
    ("forget_gate", "lstm: mean forget-gate activation at this time step (empty otherwise)"),
    ("input_gate", "lstm: mean input-gate activation at this time step (empty otherwise)"),
    ("output_gate", "lstm: mean output-gate activation at this time step (empty otherwise)"),
    ("lr", "the learning rate of the step's update (training.schedule at this step)"),
)


SHARPNESS_COLUMN = ("sharpness", "top eigenvalue of the loss's Hessian on the step's batch, after "
                    "the step (power iteration); only with --sharpness-every K, filled every K-th "
                    "step, empty on the others")
HISTOGRAM_COLUMNS: tuple[tuple[str, str], ...] = (
    ("step", "training step, from 0"),
    ("layer", "hidden layer 1..depth, input side first (rnn/lstm: time step 1..seq_len)"),
    ("quantity", "preactivation (the input of the activation, after batch norm; lstm: of the "
                 "gates), activation, weight_grad (dL/dW; rnn/lstm: the step's share of dL/dW_hh) "
                 "or signal (dL/dh)"),
    ("bin_low", "the bin's lower edge; for weight_grad and signal an edge of |x| on log10 bins; "
                "0 with bin_high 0: exact zeros; nan with bin_high nan: NaN or inf values"),
    ("bin_high", "the bin's upper edge (the last bin includes it)"),
    ("count", "values in the bin"),
)


def format_log10(value: float, digits: int = 6) -> str:
    """Write 10**value exactly even beyond float64's range: 2.5e-400, 0 for -inf; ``digits``
    after the point (1 for people reading a message: 17.4 -> 2.5e+17)."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "0"
    exponent = math.floor(value)
    mantissa = round(10.0 ** (value - exponent), digits)
    if mantissa >= 10.0:
        mantissa, exponent = mantissa / 10.0, exponent + 1
    return f"{mantissa:.{digits}f}e{exponent:+03d}"


def format_number(value: float) -> str:
    """Plain float formatting: 9 significant digits, nan and inf spelled so."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.9g}"


class CsvWriter:
    """Writes StepMetrics as rows; each step's rows go out in one write, then a flush, so an
    interrupted run leaves no half row."""

    def __init__(self, stream: TextIO, with_variant: bool, sharpness: bool = False) -> None:
        self._stream = stream
        self._with_variant = with_variant
        self._sharpness = sharpness
        names = [name for name, _ in COLUMNS] + ([SHARPNESS_COLUMN[0]] if sharpness else [])
        self._write(",".join((["variant"] if with_variant else []) + names) + "\n")

    def _write(self, text: str) -> None:
        self._stream.write(text)
        self._stream.flush()

    def write_step(self, metrics: StepMetrics, variant: str = "", sharpness: float | None = None) -> None:
        """Append one row per layer for ``metrics`` (and ``sharpness``, when the writer has
        the column: empty for None)."""
        step_part = (format_number(metrics.loss),)
        shared = (format_log10(metrics.global_grad_norm_log10), format_number(metrics.clip_scale),
                  metrics.status)
        prefix = f"{_quote(variant)}," if self._with_variant else ""
        rows = []
        predicted = metrics.predicted_signal_norm_log10
        for layer in range(metrics.grad_norm_log10.size):
            slope = metrics.prelu_slope[layer]
            fields = (
                str(metrics.step), str(layer + 1), *step_part,
                format_log10(metrics.grad_norm_log10[layer]),
                format_log10(metrics.signal_norm_log10[layer]),
                format_number(metrics.weight_norm[layer]), format_number(metrics.update_ratio[layer]),
                format_number(metrics.act_mean[layer]), format_number(metrics.act_std[layer]),
                format_number(metrics.saturation[layer]), format_number(metrics.dead_fraction[layer]),
                *shared, "1" if metrics.underflow[layer] else "0",
                "1" if metrics.forward_underflow[layer] else "0",
                "" if math.isnan(slope) else format_number(slope),
                "" if math.isnan(predicted[layer]) else format_log10(predicted[layer]),
                *(_optional(gates, layer) for gates in (metrics.forget_gate_mean,
                                                        metrics.input_gate_mean,
                                                        metrics.output_gate_mean)),
                format_number(metrics.lr))
            if self._sharpness:
                fields += ("" if sharpness is None else format_number(sharpness),)
            rows.append(prefix + ",".join(fields) + "\n")
        self._write("".join(rows))


def _optional(values, index: int) -> str:
    """A per-layer value that only some models have: empty where absent or NaN."""
    if values is None or math.isnan(values[index]):
        return ""
    return format_number(values[index])


def _quote(text: str) -> str:
    if any(c in text for c in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


class HistogramWriter:
    """Writes probe.Histogram lists as tidy rows (see HISTOGRAM_COLUMNS), a flush per step."""

    def __init__(self, stream: TextIO, with_variant: bool) -> None:
        self._stream = stream
        self._with_variant = with_variant
        names = [name for name, _ in HISTOGRAM_COLUMNS]
        stream.write(",".join((["variant"] if with_variant else []) + names) + "\n")
        stream.flush()

    def write(self, step: int, histograms: list, variant: str = "") -> None:
        prefix = f"{_quote(variant)}," if self._with_variant else ""
        rows = []
        for h in histograms:
            head = f"{prefix}{step},{h.layer + 1},{h.quantity}"
            edges = [10.0 ** e if h.log else e for e in h.edges]
            rows += [f"{head},{format_number(low)},{format_number(high)},{count}\n"
                     for low, high, count in zip(edges[:-1], edges[1:], h.counts, strict=True)]
            if h.log:
                rows.append(f"{head},0,0,{h.zeros}\n")
            if h.nonfinite:
                rows.append(f"{head},nan,nan,{h.nonfinite}\n")
        self._stream.write("".join(rows))
        self._stream.flush()
