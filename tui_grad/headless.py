"""Headless runs: drive the scenario's Simulators in lock-step, write CSV, check [[expect]]."""

from __future__ import annotations

import math
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from tui_grad.config import ConfigError
from tui_grad.csvout import CsvWriter, HistogramWriter
from tui_grad.engine import Simulator, StepMetrics
from tui_grad.engine.probe import jacobian_not_covered
from tui_grad.engine.theory import Prediction
from tui_grad.engine_text import engine_sentence
from tui_grad.expect import LAST, PER_LAYER, PROBES, Expectation, Ref, evaluate
from tui_grad.i18n import tr
from tui_grad.scenario import Scenario


@dataclass
class VariantResult:
    """What one variant's run ended with."""

    name: str
    steps: int = 0
    initial_loss: float | None = None
    final: StepMetrics | None = None
    diverged_at: int | None = None
    seconds: float = 0.0
    kept: dict[int, StepMetrics] = field(default_factory=dict)
    theory: Prediction | None = None
    jacobian: dict | None = None  # the Jacobian's summary at the end, with --jacobian
    sharpness: float | None = None  # the last one measured, with --sharpness-every
    loss_rises: int = 0  # steps whose loss exceeded the step before's
    extra: dict[int, dict[str, float]] = field(default_factory=dict)  # per kept step (LAST: end)

    def summary(self) -> dict:
        """JSON-ready summary of this variant."""
        final = self.final
        return {"variant": self.name, "steps": self.steps, "initial_loss": self.initial_loss,
                "final_loss": final.loss if final else None,
                "verdict": final.status if final else None, "diverged_at": self.diverged_at,
                "seconds": round(self.seconds, 3),
                **self._theory_summary(),
                **({"jacobian": self.jacobian} if self.jacobian is not None else {}),
                **({"sharpness": self.sharpness} if self.sharpness is not None else {}),
                "ms_per_step": round(1e3 * self.seconds / self.steps, 3) if self.steps else None}


    def _theory_summary(self) -> dict:
        theory = self.theory
        names = ("chi_1", "xi", "c_star", "chi_c", "xi_c")
        if theory is None or not theory.covered:
            return dict.fromkeys(names, None) | {"phase": "not covered"}
        values = (theory.chi_1, theory.depth_scale, theory.c_star, theory.chi_c, theory.xi_c)
        finite = {name: float(v) if math.isfinite(v) else None
                  for name, v in zip(names, values, strict=True)}
        return finite | {"phase": theory.phase}


@dataclass
class Check:
    """One evaluated expectation for one variant."""

    expectation: Expectation
    variant: str
    passed: bool
    measured: object

    def line(self, show_variant: bool) -> str:
        """``PASS  claim  (measured ...)`` as printed by --check (the claim as written)."""
        where = f"[{self.variant}] " if show_variant else ""
        measured = f"{self.measured:.4g}" if isinstance(self.measured, float) else str(self.measured)
        verdict = tr("PASS") if self.passed else tr("FAIL")
        return tr("{verdict}  {variant}{claim}  (measured {value})", verdict=verdict, variant=where,
                  claim=self.expectation.text, value=measured)


class StopRequested:
    """Set by SIGINT/SIGTERM during a run; the loop stops between steps so no row is cut."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __call__(self, signum: int, frame: object) -> None:
        self.signal = signum


def run(scenario: Scenario, steps: int, *, csv: TextIO | None = None, every: int = 1,
        progress: Callable[[int, int], None] | None = None,
        stop: StopRequested | None = None, histograms: TextIO | None = None,
        sharpness_every: int | None = None, jacobian: bool = False) -> list[VariantResult]:
    """Run every variant of ``scenario`` for ``steps`` steps in lock-step.

    ``histograms``: tidy per-layer histograms every ``every`` steps; ``sharpness_every`` K:
    the Hessian's top eigenvalue every K-th step (CSV column ``sharpness``; with a CSV and
    no K, each variant's run.sharpness_every, 0 = never); ``jacobian``:
    the Jacobian's spectrum summary at the end, in each result (probe.py)."""
    variants = scenario.variants
    # run.sharpness_every fills the CSV column; without a CSV only --sharpness-every measures
    sharp_every = [sharpness_every or (v.config.run.sharpness_every if csv is not None else 0)
                   for v in variants]
    wanted = {s for e in scenario.expects for s in e.steps()} | {0}
    probes: dict[int, set[str]] = {}  # step -> probe metrics the claims read there
    for expectation in scenario.expects:
        for step, names in expectation.probe_steps().items():
            probes.setdefault(step, set()).update(names)
    wants_jacobian = jacobian or any(n.startswith("jacobian_") for names in probes.values() for n in names)
    for variant in variants:  # refused before the run, not after it
        refused = jacobian_not_covered(variant.config) if wants_jacobian else None
        if refused:
            raise ConfigError(tr("{reason} (--jacobian, jacobian_* claims; variant {variant})",
                                 reason=engine_sentence(refused), variant=repr(variant.name)))
    sims = [Simulator(v.config) for v in variants]
    results = [VariantResult(v.name, theory=sim.theory) for v, sim in zip(variants, sims, strict=True)]
    with_variant = bool(scenario.compare)
    writer = CsvWriter(csv, with_variant, any(sharp_every)) if csv is not None else None
    hist_writer = HistogramWriter(histograms, with_variant) if histograms is not None else None
    previous_loss: dict[str, float] = {}
    for step in range(steps):
        if stop is not None and stop.signal is not None:
            break
        for sim, result, k in zip(sims, results, sharp_every, strict=True):
            metrics = sim.step()
            result.steps, result.final, result.diverged_at = step + 1, metrics, metrics.diverged_at
            result.seconds += metrics.seconds
            if result.initial_loss is None:
                result.initial_loss = metrics.loss
            elif metrics.loss > previous_loss[result.name]:
                result.loss_rises += 1
            previous_loss[result.name] = metrics.loss
            if step in wanted:
                result.kept[step] = metrics
                result.extra[step] = {"loss_rises": result.loss_rises,
                                      **_measure(sim, probes.get(step, ()))}
            sharp = None
            if k and step % k == 0:
                sharp = result.sharpness = sim.sharpness().value
            if writer is not None and step % every == 0:
                writer.write_step(metrics, result.name, sharp)
            if hist_writer is not None and step % every == 0:
                hist_writer.write(step, sim.histograms(), result.name)
        if progress is not None:
            progress(step + 1, steps)
    for sim, result in zip(sims, results, strict=True):  # claims on the last step
        result.extra[LAST] = {"loss_rises": result.loss_rises}
        if result.steps and LAST in probes:
            result.extra[LAST].update(_measure(sim, probes[LAST]))
    if jacobian:
        for sim, result in zip(sims, results, strict=True):
            if result.steps:
                spectrum = sim.jacobian_singular_values()
                result.jacobian = {**spectrum.summary, "layers": spectrum.layers,
                                   "subspace": spectrum.subspace}
    return results


def _measure(sim: Simulator, names: set[str] | tuple) -> dict[str, float]:
    """The probe metrics ``names`` of ``sim`` as it is now (expect.PROBES)."""
    values: dict[str, float] = {}
    if "sharpness" in names:
        values["sharpness"] = sim.sharpness().value
    if any(name.startswith("jacobian_") for name in names):
        summary = sim.jacobian_singular_values().summary
        values.update({f"jacobian_{key}": value for key, value in summary.items()})
    return values


def check(scenario: Scenario, results: list[VariantResult]) -> list[Check]:
    """Evaluate every [[expect]] against the runs' kept metrics."""
    checks = []
    for expectation in scenario.expects:
        for result in results:
            if expectation.variant not in (None, result.name):
                continue
            passed, measured = evaluate(expectation, lambda ref, step, r=result: lookup(r, ref, step))
            checks.append(Check(expectation, result.name, passed, measured))
    return checks


def lookup(result: VariantResult, ref: Ref, step: int) -> object:
    """A claim's metric ``ref`` at ``step`` (LAST: the final one) of a run's result."""
    if ref.metric == "diverged_at":
        return result.diverged_at
    if ref.metric == "chi_1":
        return result.theory.chi_1 if result.theory is not None else float("nan")
    metrics = result.final if step == LAST else result.kept.get(step)
    if metrics is None:
        return float("nan")  # the run never reached that step
    if ref.metric in PROBES or ref.metric == "loss_rises":
        return float(result.extra.get(step, {}).get(ref.metric, math.nan))
    if ref.metric in PER_LAYER:
        layers = metrics.grad_norm_log10.size
        index = layers - 1 if ref.layer == LAST else ref.layer - 1
        if not 0 <= index < layers:
            return float("nan")
        values = getattr(metrics, ref.metric)
        return float("nan") if values is None else float(values[index])
    if ref.metric == "status":
        return metrics.status
    return float(getattr(metrics, ref.metric))


class ProgressBar:
    """A one-line progress bar (rich.progress) of the steps on a terminal's stderr."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self._stream = stream
        self._bar = None
        stream.write(tr("computing the first step (the very first run also compiles the kernels, "
                        "~20 s, once)..."))
        stream.flush()

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            from tui_grad.progressbar import TerminalProgress

            self._stream.write("\r\033[K")
            self._bar = TerminalProgress(total, tr("step"), self._stream)
        self._bar.update(done, total, force=done == total)
        if done == total:
            self._bar.close()


def install_stop_handlers(stop: StopRequested) -> None:
    """Route SIGINT and SIGTERM to ``stop`` instead of raising mid-write."""
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
