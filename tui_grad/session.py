"""Session: one interactive run of a scenario, advanced in time-boxed chunks by a worker.

Holds the Simulator, its History, the snapshots for rewinding and the config changes asked
for by the UI. Knows nothing of Textual: the app's worker calls ``advance`` and turns the
returned events into messages.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from tui_grad.config import Config
from tui_grad.engine import Simulator, Snapshot, StepMetrics
from tui_grad.history import History
from tui_grad.scenario import Scenario

SPEEDS = (1.0, 3.0, 10.0, 30.0, 100.0, None)  # steps per second; None = as fast as it goes
DEFAULT_SPEED = 3  # index into SPEEDS: 30 steps/s, watchable on a projector
SNAPSHOT_EVERY = 10  # steps between rewind points
SNAPSHOT_BUDGET_BYTES = 256 * 2**20
MAX_SNAPSHOTS = 12


@dataclass(frozen=True)
class Restarted:
    """The run started again from step 0 (a structural option, reset or new seed)."""

    reason: str


@dataclass(frozen=True)
class Finished:
    """The run reached run.steps and paused (space continues)."""

    steps: int


@dataclass(frozen=True)
class Rewound:
    """The run went back to ``step`` (None: no rewind point was left)."""

    step: int | None


@dataclass(frozen=True)
class Diverged:
    """The run diverged at ``step``; ``report`` says where and how."""

    step: int
    report: str


def forensics(metrics: StepMetrics, recent_norms: list[tuple[int, float]],
              unit: str = "layer") -> str:
    """Where the first non-finite value or blow-up appeared, and the gradient norms before it.

    ``unit`` names the per-layer axis: "layer", or "time step" for recurrent nets."""
    act_bad = np.flatnonzero(~np.isfinite(metrics.act_std))
    grad_bad = np.flatnonzero(np.isnan(metrics.grad_norm_log10) | np.isposinf(metrics.grad_norm_log10))
    last = metrics.act_std.size - 1
    if act_bad.size and act_bad[0] == last:
        where = f"the output layer ({last + 1}) overflowed first (forward pass)"
    elif act_bad.size:
        where = f"activations overflowed first at {unit} {act_bad[0] + 1} (forward pass)"
    elif not math.isfinite(metrics.loss):
        where = f"the loss became {metrics.loss} (forward pass finished finite)"
    elif grad_bad.size:
        where = f"the gradient became non-finite first at {unit} {grad_bad[-1] + 1} (backward pass)"
    else:
        where = f"the loss reached {metrics.loss:.3g}, past the divergence bound"
    before = ", ".join(f"{step}: 1e{norm:.1f}" if math.isfinite(norm) else f"{step}: {norm}"
                       for step, norm in recent_norms)
    return (f"DIVERGED at step {metrics.step}: {where}. Global gradient norm in the steps "
            f"before: {before or 'none'}.")


class Session:
    """An interactive run: the scenario, the current config, the simulator and its history."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.variant_index = 0
        self.config: Config = scenario.variants[0].config
        self.history = History()
        self.sim: Simulator | None = None
        self.running = True
        self.speed_index = DEFAULT_SPEED
        self.steps_per_second = 0.0  # measured over the last 2 s of wall time
        self._step_times: deque[float] = deque()
        self._next_step_at = 0.0
        self._pending_steps = 0
        self._pending_config: tuple[Config, str] | None = None
        self._snapshots: deque[Snapshot] = deque()
        self._rewind_asked = False
        self._auto_paused = False
        self._lock = threading.Lock()

    @property
    def variant_name(self) -> str:
        """Name of the [[compare]] variant being run (the scenario name without variants)."""
        return self.scenario.variants[self.variant_index].name

    # ------------------------------------------------------------ requests from the UI
    def request(self, config: Config, reason: str = "") -> None:
        """Ask for ``config`` to be applied before the next step (thread-safe)."""
        with self._lock:
            self.config = config
            self._pending_config = (config, reason)

    def toggle_running(self) -> None:
        """Pause or resume (the user's own pause, kept across restarts)."""
        self.running = not self.running
        self._auto_paused = False

    def pause(self) -> None:
        """Pause at the user's request."""
        self.running = False
        self._auto_paused = False

    def request_reset(self, reason: str = "reset") -> None:
        """Start again from step 0 with the current config and seed."""
        with self._lock:
            self._pending_config = (self.config, f"!{reason}")

    def request_rewind(self) -> None:
        """Go back to the newest rewind point before the current step (at the next advance)."""
        with self._lock:
            self._rewind_asked = True

    def request_step(self) -> None:
        """Do one step even while paused."""
        with self._lock:
            self._pending_steps += 1

    def next_variant(self) -> str:
        """Switch to the next [[compare]] variant; returns its name."""
        self.variant_index = (self.variant_index + 1) % len(self.scenario.variants)
        variant = self.scenario.variants[self.variant_index]
        self.request(variant.config, f"!variant {variant.name}")
        return variant.name

    @property
    def max_rate(self) -> float | None:
        """Steps per second the run is held to (None: unlimited)."""
        return SPEEDS[self.speed_index]

    def change_speed(self, direction: int) -> float | None:
        """One notch slower (-1) or faster (+1); returns the new limit."""
        self.speed_index = min(max(self.speed_index + direction, 0), len(SPEEDS) - 1)
        return self.max_rate

    def can_rewind(self) -> bool:
        """True when a snapshot older than the current step exists."""
        return self.sim is not None and any(s.step < self.sim.step_index for s in self._snapshots)

    # ------------------------------------------------------------ worker side
    def advance(self, budget_seconds: float) -> list[object]:
        """Apply pending changes, then step for up to ``budget_seconds``; return events."""
        events: list[object] = []
        with self._lock:
            pending, self._pending_config = self._pending_config, None
            steps_asked, self._pending_steps = self._pending_steps, 0
            rewind, self._rewind_asked = self._rewind_asked, False
        if self.sim is None:
            self.sim = Simulator(self.config)
            pending = None
        if pending is not None:
            events += self._apply(*pending)
        if rewind:
            events += self._rewind()
        started = time.perf_counter()
        done = 0
        while (self.running or steps_asked > 0) and (
                done == 0 or time.perf_counter() - started < budget_seconds):
            now = time.perf_counter()
            if steps_asked == 0 and self.max_rate is not None:
                if now < self._next_step_at:
                    break
                self._next_step_at = max(self._next_step_at, now - 0.5) + 1.0 / self.max_rate
            events += self._step()
            done += 1
            steps_asked = max(steps_asked - 1, 0)
            if any(isinstance(e, (Diverged, Finished)) for e in events):
                self.running, self._auto_paused = False, True
                break
        now = time.perf_counter()
        self._step_times.extend([now] * done)
        while len(self._step_times) > 1 and now - self._step_times[0] > 2.0:
            self._step_times.popleft()
        span = now - self._step_times[0] if self._step_times else 0.0
        self.steps_per_second = (len(self._step_times) - 1) / span if span > 0.2 else 0.0
        return events

    def _apply(self, config: Config, reason: str) -> list[object]:
        assert self.sim is not None
        forced = reason.startswith("!")
        if not forced and not self.sim.config.needs_restart(config):
            self.sim.apply(config)
            return []
        changed = ", ".join(self.sim.config.diff(config))
        self.sim = Simulator(config)  # same seed: a reset reproduces the run exactly
        self.history.clear()
        self._snapshots.clear()
        # a new run lifts the automatic pauses (divergence, run.steps) but keeps the user's own
        self.running = self.running or self._auto_paused
        self._auto_paused = False
        return [Restarted(reason.lstrip("!") if forced else f"restarted: {changed} changed")]

    def _step(self) -> list[object]:
        sim = self.sim
        assert sim is not None
        if sim.step_index % SNAPSHOT_EVERY == 0 and sim.diverged_at is None:
            self._remember(sim)
        metrics = sim.step()
        recent = self.history.recent_norms(5)
        self.history.append(metrics)
        if metrics.diverged_at == metrics.step:
            unit = "layer" if sim.config.network.model == "mlp" else "time step"
            return [Diverged(metrics.step, forensics(metrics, recent, unit))]
        if sim.step_index == self.config.run.steps:
            return [Finished(sim.step_index)]
        return []

    def _remember(self, sim: Simulator) -> None:
        """Keep a rewind point, recycling the oldest one's memory once the ring is full."""
        size = sim.layout.n_params * np.dtype(sim.dtype).itemsize
        limit = max(1, min(MAX_SNAPSHOTS, SNAPSHOT_BUDGET_BYTES // max(size * 2, 1)))
        oldest = self._snapshots.popleft() if len(self._snapshots) >= limit else None
        self._snapshots.append(sim.snapshot(reuse=oldest))

    def _rewind(self) -> list[object]:
        sim = self.sim
        assert sim is not None
        while self._snapshots and self._snapshots[-1].step >= sim.step_index:
            self._snapshots.pop()
        if not self._snapshots:
            return [Rewound(None)]
        snap = self._snapshots[-1]
        sim.restore(snap)
        self.history.truncate(snap.step)
        return [Rewound(snap.step)]
