"""The probes screen (key D): per-layer distributions, the Jacobian's spectrum, sharpness.

Each view is measured on request in the session's worker thread, between two steps (see
Session.call), and drawn with plotext here, in the UI thread.
"""

from __future__ import annotations

import math
import os

import numpy as np
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from tui_grad.engine import probe
from tui_grad.engine_text import engine_sentence
from tui_grad.i18n import N_, tr
from tui_grad.tui.charts import pad_wide, unpad
from tui_grad.tui.screens import translated_bindings

VIEWS = (N_("distributions"), N_("Jacobian spectrum"), N_("sharpness"))
MARKERS = ("o", "x", "+", "*", "#", "@", "%", "=")  # one per layer, so NO_COLOR still tells them apart
COLORS = ("blue", "red", "green", "magenta", "cyan", "yellow", "white", "orange")
QUANTITY_TEXT = {"preactivation": N_("pre-activation (input of the activation; LSTM: of the gates)"),
                 "activation": N_("activation (layer output)"),
                 "weight_grad": N_("weight gradient dL/dW, log10 |x|"),
                 "signal": N_("backpropagated signal dL/dh, log10 |x|")}
UNIT_TEXT = {"layer": N_("layer {number}"), "time step": N_("time step {number}")}  # a legend's entry
def reason(error: Exception) -> str:
    """An exception a measurement raised, in the language in use where the engine's reason is
    known (the engine's own words otherwise)."""
    return engine_sentence(str(error))


class ProbeScreen(ModalScreen[None]):
    """Distributions, the Jacobian's singular values and the Hessian's top eigenvalue of the
    run on screen, measured when the screen opens and on ``r``."""

    BINDINGS = [Binding("escape,q,D", "dismiss", N_("close"), id="probe.close"),
                Binding("1", "view(0)", N_("distributions"), id="probe.distributions"),
                Binding("2", "view(1)", N_("spectrum"), id="probe.spectrum"),
                Binding("3", "view(2)", N_("sharpness"), id="probe.sharpness"),
                Binding("k", "next_quantity", N_("quantity"), id="probe.quantity"),
                Binding("r", "measure", N_("measure again"), id="probe.measure")]

    def __init__(self, session, view: int = 0) -> None:
        super().__init__()
        translated_bindings(self)
        self._session = session
        self._view = view
        self._quantity = 0
        self._results: dict[int, object] = {}  # view -> its last measurement (or exception)
        self._sharpness_log: list[tuple[int, float]] = []  # (step, value) measured so far
        self._waiting = None

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog"):
            yield Static("", id="probe-body")
            yield Static("", id="probe-hint")

    def on_mount(self) -> None:
        self.set_interval(0.1, self._collect)
        self.action_measure()

    # ------------------------------------------------------------ keys
    def action_view(self, view: int) -> None:
        self._view = view
        if view not in self._results and self._waiting is None:
            self.action_measure()
        self._draw()

    def action_next_quantity(self) -> None:
        self._quantity = (self._quantity + 1) % len(probe.QUANTITIES)
        self._draw()

    def action_measure(self) -> None:
        if self._waiting is not None:
            return
        view = self._view
        measure = (_distributions, _spectrum, _sharpness)[view]
        history = self._session.history
        # in the worker, between steps: the step on screen is the one the batch belongs to
        self._waiting = (view, self._session.call(
            lambda sim: (history.latest.step if history.latest else 0, measure(sim))))
        self._draw()

    # ------------------------------------------------------------ results
    def _collect(self) -> None:
        if self._waiting is None or not self._waiting[1].done():
            return
        view, future = self._waiting
        self._waiting = None
        error = future.exception()
        self._results[view] = error if error is not None else future.result()
        if view == 2 and error is None:
            step, result = self._results[view]
            self._sharpness_log.append((step, result.value))
        self._draw()

    def _draw(self) -> None:
        body, hint = self.query_one("#probe-body", Static), self.query_one("#probe-hint", Static)
        size = self.query_one("#dialog").content_size
        # room for a scrollbar (a plot wider than the dialog would wrap) and the text under it
        width, height = max(size.width - 3, 30), max(size.height - 8, 8)
        color = "NO_COLOR" not in os.environ
        title = f"{self._view + 1} {tr(VIEWS[self._view])}"
        result = self._results.get(self._view)
        if self._waiting is not None and self._waiting[0] == self._view:
            text = Text(tr("{title}: measuring on the last step's batch...", title=title))
        elif result is None:
            text = Text(tr("{title}: press r to measure", title=title))
        elif isinstance(result, Exception):
            text = Text(f"{title}: {reason(result)}")
        else:
            step, value = result
            config = self._session.config
            if self._view == 0:
                drawn = draw_distributions(value, probe.QUANTITIES[self._quantity], width, height,
                                           color, _unit(config))
            elif self._view == 1:
                drawn = draw_spectrum(value, config, width, height, color)
            else:
                latest = self._session.history.latest  # the lr the schedule gave that step
                lr = latest.lr if latest is not None and math.isfinite(latest.lr) else config.training.lr
                drawn = draw_sharpness(value, self._sharpness_log, lr,
                                       config.training.optimizer, width, height, color)
            text = Text(tr("{title} at step {step}", title=title, step=step) + "\n")
            text.append_text(Text.from_ansi(drawn))
        body.update(text)
        keys = tr("1 distributions  2 spectrum  3 sharpness  r measure again  escape close")
        if self._view == 0:
            keys = tr("k next quantity") + "  " + keys
        hint.update(Text(keys, style="italic"))


# ---------------------------------------------------------------- measurements (worker thread)
def _distributions(sim):
    return sim.histograms()


def _spectrum(sim):
    return sim.jacobian_singular_values(0)


def _sharpness(sim):
    return sim.sharpness(iterations=50, tolerance=1e-3)


# ---------------------------------------------------------------- drawing (plotext, UI thread)
def _figure(width: int, height: int, color: bool):
    import plotext as plt

    plt.clf()
    plt.plotsize(width, height)
    plt.theme("default" if color else "clear")
    return plt


def _unit(config) -> str:
    """What the probes' layers are: hidden layers, or time steps of an RNN/LSTM (a key of
    UNIT_TEXT)."""
    return "layer" if config.network.model == "mlp" else "time step"


def draw_distributions(histograms: list, quantity: str, width: int, height: int, color: bool,
                       unit: str = "layer") -> str:
    """Outlines of ``quantity``'s histogram per layer (time step), overlaid (distinct marker
    each)."""
    chosen = [h for h in histograms if h.quantity == quantity]
    plt = _figure(width, height, color)
    names = [tr(UNIT_TEXT[unit], number=h.layer + 1) for h in chosen]
    for index, (h, name) in enumerate(zip(chosen, names, strict=True)):
        centres = 0.5 * (h.edges[:-1] + h.edges[1:])
        plt.plot(centres.tolist(), h.counts.tolist(), marker=MARKERS[index % len(MARKERS)],
                 color=COLORS[index % len(COLORS)] if color else None, label=pad_wide(name))
    plt.title(pad_wide(tr(QUANTITY_TEXT[quantity])))
    plt.ylabel(pad_wide(tr("count")))
    lines = [unpad(plt.build())]
    apart = [f"{name}: {h.zeros}" for h, name in zip(chosen, names, strict=True) if h.log]
    if apart:
        lines.append(tr("exact zeros (not on the log axis): {layers}", layers=", ".join(apart)))
    broken = [f"{name}: {h.nonfinite}" for h, name in zip(chosen, names, strict=True) if h.nonfinite]
    if broken:
        lines.append(tr("NaN or inf: {layers}", layers=", ".join(broken)))
    return "\n".join(lines)


def draw_spectrum(spectrum, config, width: int, height: int, color: bool) -> str:
    """Sorted singular values on log10, against the isometric ideal (all equal to 1)."""
    values = spectrum.values
    summary = spectrum.summary
    plt = _figure(width, height, color)
    finite = np.isfinite(values) & (values > 0)
    index = np.arange(1, values.size + 1)
    if finite.any():
        plt.plot(index[finite].tolist(), np.log10(values[finite]).tolist(), marker="o",
                 color="blue" if color else None, label=pad_wide(tr("singular values")))
    plt.hline(0.0, "red" if color else None)
    if config.network.model == "mlp":
        title = tr("log10 singular values, dh_{depth}/dh_1 ({layers} layers, example {example})",
                   depth=config.network.depth, layers=spectrum.layers, example=spectrum.example)
    else:
        title = tr("log10 singular values, dh_T/dh_1 ({layers} time steps, example {example})",
                   layers=spectrum.layers, example=spectrum.example)
    plt.title(pad_wide(title))
    lines = [unpad(plt.build()), tr("line at 0: isometry, every singular value 1"),
             tr("largest {largest}, smallest {smallest}, mean square {mean_square}, variance of "
                "squares {variance}, spread {spread} (0 = isometry)",
                largest=f"{summary['largest']:.3g}", smallest=f"{summary['smallest']:.3g}",
                mean_square=f"{summary['mean_square']:.3g}",
                variance=f"{summary['variance_of_squares']:.3g}", spread=f"{summary['spread']:.3g}")]
    if spectrum.subspace:
        lines.append(tr("wider than {width}: J on a random {dimensions}-dimensional subspace",
                        width=probe.SUBSPACE_WIDTH, dimensions=spectrum.subspace))
    lines.append(spectrum_note(config))
    return "\n".join(lines)


def spectrum_note(config) -> str:
    """What theory says about this net's spectrum, or that it does not cover it."""
    net = config.network
    orthogonal = net.init == "orthogonal"
    if net.model == "lstm":
        return tr("theory: not covered; the forget gate scales the cell state's path, so values "
                  "stay near 1 where f is near 1 (c_1 held)")
    if net.model == "rnn":
        return tr("theory: not covered; W_hh and phi' multiply once per step, so the values follow "
                  "the powers of recurrent_gain: below 1 they vanish, above 1 they explode")
    if net.batch_norm or net.residual:
        return tr("theory: not covered here (batch norm, shortcuts); batch norm's statistics are "
                  "held fixed")
    if net.activation == "linear":
        return (tr("theory: a product of orthogonal matrices is orthogonal: every singular value is 1")
                if orthogonal else tr("theory: for Gaussian weights the variance of the squared "
                                      "singular values grows like depth (zero for orthogonal weights)"))
    if net.activation == "tanh":
        return tr("theory: tanh at chi_1 = 1 with orthogonal weights keeps the values near 1 "
                  "(dynamical isometry); Gaussian weights spread them more with depth")
    if net.activation in ("relu", "leaky_relu", "prelu"):
        return tr("theory: relu cannot reach isometry, with Gaussian or orthogonal weights")
    return tr("theory: no spectrum prediction for this activation")


def draw_sharpness(result, log: list[tuple[int, float]], lr: float, optimizer: str,
                   width: int, height: int, color: bool) -> str:
    """The measurements so far against the 2/lr line, and the latest with its convergence."""
    step, value = log[-1] if log else (0, math.nan)
    threshold = 2.0 / lr if lr > 0 else math.inf
    plt = _figure(width, max(height - 3, 6), color)
    steps = [s for s, v in log if math.isfinite(v)]
    if steps:
        plt.plot(steps, [v for s, v in log if math.isfinite(v)], marker="o",
                 color="blue" if color else None, label=pad_wide(tr("top Hessian eigenvalue")))
    if math.isfinite(threshold):
        plt.hline(threshold, "red" if color else None)
    plt.title(pad_wide(tr("sharpness at each measurement (r measures again); line: 2/lr")))
    plt.xlabel(pad_wide(tr("step")))
    ratio = value / threshold if math.isfinite(threshold) else math.nan
    lines = [unpad(plt.build()),
             tr("top eigenvalue {value} = {ratio} x 2/lr (2/lr = {threshold}); {iterations} power "
                "iterations, last change {change}", value=f"{value:.4g}", ratio=f"{ratio:.2f}",
                threshold=f"{threshold:.4g}", iterations=result.iterations,
                change=f"{result.relative_change:.1e}")
             + ("" if result.converged else " " + tr("(not converged)"))]
    if optimizer != "sgd":
        lines.append(tr("above 2/lr plain gradient descent diverges along that direction; with "
                        "{optimizer} the threshold differs", optimizer=optimizer))
    elif ratio > 1:
        lines.append(tr("above 2/lr plain gradient descent diverges along that direction"))
    return "\n".join(lines)
