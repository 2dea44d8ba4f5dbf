"""Sentences the engine makes for its API (in English), said in the interface's language.

The engine knows nothing of the interface or its catalogue: its fixed sentences are listed
here once, for the UI and the headless runs alike (tests check the lists against the engine).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from tui_grad.i18n import N_, tr

if TYPE_CHECKING:
    from tui_grad.engine.theory import Prediction  # (imports numba: not at the UI's start)

# Prediction.reason: every reason the engine gives (tests/test_i18n_app.py checks the list)
THEORY_REASONS = {text: text for text in (
    N_("muP's output layer and learning rates are not in the theory"),
    N_("layer norm, or a norm before or after the shortcut"),
    N_("alpha = 0: every block starts as the identity (ReZero)"),
    N_("batch norm is covered for relu without shortcuts only"),
    N_("the mean-field theory here is for feed-forward nets"),
)}
# what the probes refuse with (engine/probe.py), and how the interface says it
PROBE_REASONS = {
    "the Jacobian probe does not cover layer norm or a norm before or after the shortcut yet":
        N_("the Jacobian probe does not cover layer norm or a norm before or after the shortcut yet"),
    "no batch yet: call step() first (the probes use the last step's batch)":
        N_("no step taken yet: the probes use the last step's batch (n takes a step)"),
}
PHASES = {"ordered": N_("ordered"), "critical": N_("critical"), "chaotic": N_("chaotic")}


def engine_sentence(text: str) -> str:
    """One of the engine's fixed sentences in the language in use (others as they are)."""
    known = THEORY_REASONS.get(text) or PROBE_REASONS.get(text)
    return tr(known) if known else text


def describe_theory(prediction: Prediction) -> str:
    """Prediction.describe(), in the language in use: one line for the report area."""
    p = prediction
    if not p.covered:
        return tr("theory: not covered ({reason})", reason=engine_sentence(p.reason))
    chi = f"{p.chi_1:.3f}"
    if p.phase == "bn-explosion":
        return tr("theory: batch norm + relu: squared gradient grows x{chi} per layer towards the "
                  "input (Yang et al. 2019)", chi=chi)
    if p.phase == "residual":
        return tr("theory: with shortcuts the squared gradient changes x{chi} per layer on average "
                  "towards the input (residual recursion)", chi=chi)
    change = {"ordered": N_("shrinks"), "chaotic": N_("grows")}.get(p.phase, N_("keeps its size"))
    scale = "" if math.isinf(p.depth_scale) else tr(
        "; depth scales xi = {xi}, xi_c = {xi_c} layers", xi=f"{abs(p.depth_scale):.3g}",
        xi_c=f"{p.xi_c:.3g}")
    return tr("theory: chi_1 = {chi}: the squared gradient {change} by that factor per layer{scale}; "
              "{phase} phase", chi=chi, change=tr(change), scale=scale,
              phase=tr(PHASES.get(p.phase, p.phase)))
