"""One run of a sweep: the pure function (Config, steps) -> row that every executor calls."""

from __future__ import annotations

import math
import time
from typing import Any

from tui_grad.config import Config

RESULT_COLUMNS = ("steps", "initial_loss", "final_loss", "loss_ratio", "diverged_at", "status",
                  "grad_ratio_log10", "chi_1", "xi", "c_star", "chi_c", "xi_c", "phase",
                  "seconds", "train_seconds")
TIMING_COLUMNS = ("seconds", "train_seconds")  # differ from run to run; everything else does not


def run_one(config: Config, steps: int) -> dict[str, Any]:
    """Train ``config``'s network for ``steps`` steps (fewer if it diverges) and summarise it.

    ``grad_ratio_log10`` is log10 ||dL/dW|| of the input layer minus the output layer's, at
    step 0; the theory columns come from the Simulator's Prediction.
    """
    from tui_grad.engine import Simulator

    started = time.perf_counter()
    sim = Simulator(config)
    first = last = None
    train_seconds = 0.0
    for _ in range(steps):
        last = sim.step()
        train_seconds += last.seconds
        first = first or last
        if last.diverged_at is not None:
            break  # a diverged net stays diverged: the rest would be NaN at full price
    grads = first.grad_norm_log10
    row = {"steps": last.step + 1, "initial_loss": float(first.loss), "final_loss": float(last.loss),
           "loss_ratio": _ratio(last.loss, first.loss), "diverged_at": last.diverged_at,
           "status": last.status, "grad_ratio_log10": float(grads[0] - grads[-1]),
           **theory_columns(sim.theory)}
    row["seconds"] = time.perf_counter() - started
    row["train_seconds"] = train_seconds
    return row


def run_task(values: dict[str, Any], steps: int) -> dict[str, Any]:
    """``run_one`` from plain values (what a Dask worker receives): all options by name."""
    return run_one(Config(values), steps)


def theory_columns(prediction: Any) -> dict[str, Any]:
    """chi_1, xi, c_star, chi_c, xi_c and phase from a Prediction; None where it has none."""
    if prediction is None or not prediction.covered:
        return dict.fromkeys(("chi_1", "xi", "c_star", "chi_c", "xi_c"), None) | {"phase": "not covered"}
    values = {"chi_1": prediction.chi_1, "xi": prediction.depth_scale,
              "c_star": prediction.c_star, "chi_c": prediction.chi_c, "xi_c": prediction.xi_c}
    return {k: None if v is None else float(v) for k, v in values.items()} | {"phase": prediction.phase}


def _ratio(final: float, initial: float) -> float:
    if initial == 0.0:
        return math.nan if final == 0.0 else math.inf
    return float(final / initial)
