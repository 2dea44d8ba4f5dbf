"""Charts: per-layer gradients, loss, activations, update ratios (plotext) and a heatmap.

Every chart draws from a history.Frame. plotext rebuilds the whole figure on each render, so
series are thinned to about twice the widget's width. Log scales are log10 values on a
linear axis (plotext's own log scale crashes textual-plotext on resize). Series differ by
marker character as well as colour, so they stay apart under NO_COLOR. Titles go in the
widget's border (one row less than plotext's own title); layer and step axes have integer
ticks. plotext gives every character one cell: text it draws goes through ``pad_wide``, and the
padding comes out again after the figure is built (``unpad``), so Chinese labels keep their
two cells.
"""

from __future__ import annotations

import math

import numpy as np
from rich.cells import cell_len
from rich.text import Text
from textual.widget import Widget
from textual_plotext import PlotextPlot

from tui_grad.engine.metrics import StepMetrics
from tui_grad.history import Frame
from tui_grad.i18n import N_, tr

UPDATE_RATIO_GUIDE = -3.0  # log10(1e-3): a layer whose updates are ~1e-3 of its weights learns
WIDE_PAD = "\ue000"  # follows a two-cell character inside plotext, removed once it is drawn


def pad_wide(text: str) -> str:
    """``text`` for plotext, which gives every character one cell: each two-cell (Chinese)
    character is followed by WIDE_PAD, which ``unpad`` removes from the drawn figure."""
    if text.isascii():
        return text
    return "".join(c + WIDE_PAD if cell_len(c) == 2 else c for c in text)


def unpad(drawn: str) -> str:
    """A figure plotext built from ``pad_wide`` text, as the terminal should show it."""
    return drawn.replace(WIDE_PAD, "")


def unpad_text(drawn: Text) -> Text:
    """``unpad`` for a figure already turned into Rich Text (its styles kept)."""
    plain = drawn.plain
    if WIDE_PAD not in plain:
        return drawn
    pieces = drawn.divide([i for i, c in enumerate(plain) if c == WIDE_PAD])
    joined = pieces[0]
    for piece in pieces[1:]:
        joined.append_text(piece[1:])  # each piece after the first starts with the pad
    return joined


def thin(count: int, budget: int) -> np.ndarray:
    """Indices of at most ``budget`` evenly spread items out of ``count``, ends included."""
    if count <= budget:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, max(budget, 2)).round().astype(np.int64))


def integer_ticks(low: int, high: int, count: int = 5) -> list[int]:
    """At most ``count`` evenly spread whole numbers from ``low`` to ``high``, ends included."""
    if high <= low:
        return [low]
    return sorted({int(round(t)) for t in np.linspace(low, high, max(min(count, high - low + 1), 2))})


def finite_series(x: np.ndarray, y: np.ndarray) -> tuple[list[float], list[float]]:
    """The finite (x, y) pairs as lists (plotext takes lists)."""
    keep = np.isfinite(y)
    return x[keep].tolist(), y[keep].tolist()


class Chart(PlotextPlot):
    """A plotext chart that redraws from a Frame; its title is in its border."""

    title_text = ""
    number = 0  # the key that shows it on a narrow screen

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._inputs: tuple[Frame, Frame | None, dict] | None = None

    def draw(self, frame: Frame, baseline: Frame | None, options: dict) -> None:
        """Keep what to draw and ask for a repaint; the figure is built at render time, when
        the widget's real size is known."""
        self._inputs = (frame, baseline, options)
        self.refresh()

    def render(self):
        plt = self.plt
        plt.clear_figure()
        if self._inputs is None or self._inputs[0].latest is None:
            plt.text(pad_wide(tr("waiting for the first step...")), 0.5, 0.5, alignment="center")
            plt.xlim(0, 1)
            plt.ylim(0, 1)
            plt.xticks([])  # (no axis of fractions of a layer before there is a layer)
            plt.yticks([])
        else:
            self.plot(*self._inputs)
        return unpad_text(super().render())

    def plot(self, frame: Frame, baseline: Frame | None, options: dict) -> None:
        raise NotImplementedError

    def budget(self) -> int:
        return max(2 * self.size.width, 16)

    def set_title(self, text: str) -> None:
        """The title in the chart's border, after its number."""
        self.border_title = f"{self.number} {text}"

    def integer_xaxis(self, low: int, high: int, label: str) -> None:
        """Whole-number ticks (layers, steps) and the axis label."""
        ticks = integer_ticks(low, high, max(min(self.size.width // 10, 6), 2))
        if high > low:  # the whole range, also where the values are not finite
            self.plt.xlim(low, high)
        self.plt.xticks(ticks, [str(t) for t in ticks])
        self.plt.xlabel(pad_wide(label))


def _axis(options: dict) -> str:
    """The per-layer axis: layers for the MLP, time steps through an RNN/LSTM."""
    return tr("time step (last: output)") if options.get("model", "mlp") != "mlp" else tr("layer")


def _layers(metrics: StepMetrics) -> np.ndarray:
    return np.arange(1, metrics.grad_norm_log10.size + 1, dtype=np.float64)


class GradientChart(Chart):
    """Per-layer gradient norm (log10), input layer on the left; step 0 and a pinned run too."""

    title_text = N_("||dL/dW|| per layer, log10")

    def plot(self, frame: Frame, baseline: Frame | None, options: dict) -> None:
        plt, latest = self.plt, frame.latest
        use_signal = options.get("signal", False)
        attr = "signal_norm_log10" if use_signal else "grad_norm_log10"
        label = "||dL/dh||" if use_signal else "||dL/dW||"
        if options.get("model", "mlp") != "mlp":
            self.set_title(tr("{label} per time step, log10", label="||dL/dh_t||"))
        else:
            self.set_title(tr("{label} per layer, log10", label=label))
        layers = _layers(latest)
        pick = thin(layers.size, self.budget())
        lowest = []
        if options.get("theory"):  # drawn first: the measurements go on top
            if not use_signal:  # theory describes dL/dh: show the measured dh beside dW
                x, y = finite_series(layers[pick], latest.signal_norm_log10[pick])
                if y:
                    plt.plot(x, y, marker="+", color="magenta", label="||dL/dh||")
                    lowest.append(min(y))
            x, y = finite_series(layers[pick], latest.predicted_signal_norm_log10[pick])
            if y:
                plt.plot(x, y, marker="-", color="green", label=pad_wide(tr("theory ||dL/dh||")))
        for name, metrics, marker, color in (
                (tr("step {step}", step=0), frame.first, ".", "gray"),
                (tr("pinned"), baseline.latest if baseline else None, "o", "cyan"),
                (tr("step {step}", step=latest.step), latest, "*", "yellow")):
            if metrics is None or getattr(metrics, attr).size != layers.size:
                continue
            values = getattr(metrics, attr)[pick]
            x, y = finite_series(layers[pick], values)
            if y:
                plt.plot(x, y, marker=marker, color=color, label=pad_wide(name))
                lowest.append(min(y))
        current = getattr(latest, attr)
        if not np.isfinite(current).any() and not np.isneginf(current).any():
            plt.text(pad_wide(tr("step {step}: NaN/inf at every layer (diverged)", step=latest.step)),
                     float(layers[layers.size // 2]), min(lowest) if lowest else 0.0,
                     alignment="center", color="red")
        zeros = layers[pick][np.isneginf(current[pick])]
        if zeros.size:  # exact zeros have no logarithm: mark them on the floor of the chart
            floor = (min(lowest) if lowest else 0.0) - 1.0
            plt.scatter(zeros.tolist(), [floor] * zeros.size, marker="x", color="red",
                        label=pad_wide(tr("exactly 0")))
        self.integer_xaxis(1, layers.size, _axis(options))


class LossChart(Chart):
    """Loss over steps (log10) with the divergence step marked; with run.sharpness_every,
    sharpness and 2/lr on the right axis (gradient descent is unstable above 2/lr), else,
    while a schedule changes the lr, the lr there."""

    title_text = N_("loss (log10)")

    def plot(self, frame: Frame, baseline: Frame | None, options: dict) -> None:
        plt = self.plt
        for name, source, marker, color in ((tr("pinned"), baseline, "o", "cyan"),
                                            (tr("loss"), frame, "*", "yellow")):
            if source is None or source.loss.size == 0:
                continue
            pick = thin(source.loss.size, self.budget())
            with np.errstate(divide="ignore", invalid="ignore"):
                x, y = finite_series(source.steps[pick].astype(np.float64), np.log10(source.loss[pick]))
            if y:
                plt.plot(x, y, marker=marker, color=color, label=pad_wide(name))
        self.set_title(tr(self.title_text))
        sharp = frame.sharpness
        if sharp.shape[0]:
            pick = thin(sharp.shape[0], self.budget())
            x, y = finite_series(sharp[pick, 0], sharp[pick, 1])
            if y:
                plt.plot(x, y, marker="o", color="magenta", label=pad_wide(tr("sharpness (right)")),
                         yside="right")
            with np.errstate(divide="ignore"):
                x, y = finite_series(sharp[pick, 0], 2.0 / sharp[pick, 2])
            if y:
                plt.plot(x, y, marker="-", color="green", label=pad_wide(tr("2/lr (right)")),
                         yside="right")
            with np.errstate(divide="ignore"):
                self.set_title(tr("loss (log10), sharpness {sharpness} (2/lr {threshold})",
                                  sharpness=f"{sharp[-1, 1]:.3g}", threshold=f"{2.0 / sharp[-1, 2]:.3g}"))
        elif _varies(frame.lr):  # a schedule at work
            pick = thin(frame.lr.size, self.budget())
            x, y = finite_series(frame.steps[pick].astype(np.float64), frame.lr[pick])
            plt.plot(x, y, marker="-", color="green", label=pad_wide(tr("lr (right)")), yside="right")
            self.set_title(tr("loss (log10), lr {lr}", lr=f"{frame.lr[-1]:.3g}"))
        if frame.diverged_at is not None:
            plt.vline(frame.diverged_at, color="red")
            self.set_title(tr("loss (log10): DIVERGED at step {step}", step=frame.diverged_at))
        steps = frame.steps
        self.integer_xaxis(int(steps[0]) if steps.size else 0, int(steps[-1]) if steps.size else 0,
                           tr("step"))


def _varies(values: np.ndarray) -> bool:
    """Whether the finite values are not all the same."""
    finite = values[np.isfinite(values)]
    return finite.size > 1 and float(finite.max()) > float(finite.min())


FRACTION_LABEL = {"dead": N_("dead (right)"), "saturated": N_("saturated (right)"),
                  "forget gate": N_("forget gate (right)")}  # the activation chart's right axis


class ActivationChart(Chart):
    """Per-layer activation std (log10, left axis) and saturated / dead fraction (right axis)."""

    title_text = N_("activations: std (log10), saturated/dead")

    def plot(self, frame: Frame, baseline: Frame | None, options: dict) -> None:
        plt, latest = self.plt, frame.latest
        layers = _layers(latest)[:-1]
        pick = thin(layers.size, self.budget())
        with np.errstate(divide="ignore", invalid="ignore"):
            x, y = finite_series(layers[pick], np.log10(latest.act_std[:-1][pick]))
        if y:
            plt.plot(x, y, marker="*", color="yellow", label=pad_wide(tr("std (log10)")))
        fraction_name = "dead" if options.get("activation", "") in ("relu",) else "saturated"
        fraction = latest.dead_fraction if fraction_name == "dead" else latest.saturation
        gates = latest.forget_gate_mean
        if gates is not None and np.isfinite(gates).any():  # LSTM: the forget gate is the story
            fraction_name, fraction = "forget gate", gates
        x, y = finite_series(layers[pick], fraction[:-1][pick])
        if y:  # plotext's legend fails on an empty series
            plt.plot(x, y, marker="+", color="magenta", label=pad_wide(tr(FRACTION_LABEL[fraction_name])),
                     yside="right")
        plt.ylim(0, 1, yside="right")
        self.integer_xaxis(1, layers.size, _axis(options))


class UpdateRatioChart(Chart):
    """Per-layer ||delta W|| / ||W|| (log10) with a guide line at 1e-3."""

    title_text = N_("update / weight (log10), guide 1e-3")

    def plot(self, frame: Frame, baseline: Frame | None, options: dict) -> None:
        plt, latest = self.plt, frame.latest
        layers = _layers(latest)
        pick = thin(layers.size, self.budget())
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.log10(latest.update_ratio[pick])
        x, y = finite_series(layers[pick], ratio)
        if y:
            plt.plot(x, y, marker="*", color="yellow", label=pad_wide(tr("update/weight")))
        frozen = layers[pick][np.isneginf(ratio)]
        if frozen.size:  # the update was lost entirely to float32 rounding (or was zero)
            floor = min(min(y, default=UPDATE_RATIO_GUIDE), UPDATE_RATIO_GUIDE) - 1.0
            plt.scatter(frozen.tolist(), [floor] * frozen.size, marker="x", color="red",
                        label=pad_wide(tr("no change")))
        plt.hline(UPDATE_RATIO_GUIDE, color="green")
        self.integer_xaxis(1, layers.size, _axis(options))


GLYPHS = "_.:-=+*#%@"  # low -> high; readable without colour
COLORS = ("blue", "blue", "cyan", "cyan", "green", "green", "yellow", "yellow", "red", "red")


class Heatmap(Widget):
    """Layer x step map of log10 gradient norm; density glyphs and colours, zeros as '0'."""

    title_text = N_("layer x step, log10 ||dL/dW||")

    DEFAULT_CSS = """
    Heatmap { width: 1fr; height: 1fr; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._frame: Frame | None = None
        self._row_prefix = "L"  # layers; "t" for time steps

    def draw(self, frame: Frame, baseline: Frame | None, options: dict) -> None:
        """Remember the frame and repaint."""
        self._frame = frame
        self._row_prefix = "t" if options.get("model", "mlp") != "mlp" else "L"
        self.refresh()

    def render(self) -> Text:
        frame = self._frame
        width, height = self.size.width, self.size.height
        text = Text()
        grid = frame.heat_grad_log10 if frame is not None else np.zeros((0, 0))
        if grid.size == 0 or width < 12 or height < 4:
            return Text(tr("layer x step heatmap: waiting for steps"))
        rows, cols = height - 2, width - 8
        step_pick = thin(grid.shape[0], cols)
        layer_pick = thin(grid.shape[1], rows)[::-1]  # output layer at the top, input at the bottom
        cells = grid[np.ix_(step_pick, layer_pick)].T  # (rows, cols)
        finite = cells[np.isfinite(cells)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        span = max(high - low, 1e-9)
        text.append(f"log10 |dL/dW| {low:.1f} ", style="bold")
        for level, glyph in enumerate(GLYPHS):
            text.append(glyph, style=COLORS[level])
        text.append(f" {high:.1f} " + tr("(0 zero, ! NaN)") + "\n", style="bold")
        for row_index, layer in enumerate(layer_pick):
            text.append(f"{self._row_prefix}{layer + 1:<5d} ", style="dim")
            for value in cells[row_index]:
                if math.isnan(value) or math.isinf(value) and value > 0:
                    text.append("!", style="bold red")
                elif math.isinf(value):
                    text.append("0", style="dim")
                else:
                    level = min(int((value - low) / span * (len(GLYPHS) - 1) + 0.5), len(GLYPHS) - 1)
                    text.append(GLYPHS[level], style=COLORS[level])
            text.append("\n")
        text.append(tr("step {first} .. {last}", first=frame.heat_steps[step_pick[0]],
                       last=frame.heat_steps[step_pick[-1]]), style="dim")
        return text
