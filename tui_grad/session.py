"""Session: one interactive run of a scenario, advanced in time-boxed chunks by a worker.

Every [[compare]] variant of the scenario trains in lock-step, one Simulator and History
each, so switching the variant shown (``v``) compares them at the same step. The session
holds the rewind points and the config changes asked for by the UI. It knows nothing of
Textual: the app's worker calls ``advance`` and turns the returned events into messages.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from tui_grad.config import Config, ConfigError
from tui_grad.csvout import format_log10
from tui_grad.expect import LAST, Expectation, evaluate
from tui_grad.history import History
from tui_grad.i18n import tr
from tui_grad.scenario import Scenario

if TYPE_CHECKING:  # the engine (numba) is imported when the first run starts, not before
    from tui_grad.engine import Simulator, Snapshot, StepMetrics

SPEEDS = (1.0, 3.0, 10.0, 30.0, 100.0, None)  # steps per second; None = as fast as it goes
DEFAULT_SPEED = 3  # index into SPEEDS: 30 steps/s, watchable on a projector
RATE_SLACK_STEPS = 2  # a late chunk may catch up this many steps, no more (no bursts)
RATE_WINDOW_SECONDS = 2.0  # steps per second are measured over this much wall time
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
    """The run shown diverged at ``step``; ``report`` says where and how."""

    step: int
    report: str


def forensics(metrics: StepMetrics, recent_norms: list[tuple[int, float]],
              unit: str = "layer") -> str:
    """Where the first non-finite value or blow-up appeared, and the gradient norms before it.

    ``unit`` names the per-layer axis: "layer", or "time step" for recurrent nets."""
    act_bad = np.flatnonzero(~np.isfinite(metrics.act_std))
    grad_bad = np.flatnonzero(np.isnan(metrics.grad_norm_log10) | np.isposinf(metrics.grad_norm_log10))
    last = metrics.act_std.size - 1
    recurrent = unit == "time step"
    if act_bad.size and act_bad[0] == last:
        where = tr("the output layer ({layer}) overflowed first (forward pass)", layer=last + 1)
    elif act_bad.size:
        where = (tr("activations overflowed first at time step {index} (forward pass)", index=act_bad[0] + 1)
                 if recurrent else
                 tr("activations overflowed first at layer {index} (forward pass)", index=act_bad[0] + 1))
    elif not math.isfinite(metrics.loss):
        where = tr("the loss became {value} (forward pass finished finite)", value=metrics.loss)
    elif grad_bad.size:
        index = grad_bad[-1] + 1
        where = (tr("the gradient became non-finite first at time step {index} (backward pass)", index=index)
                 if recurrent else
                 tr("the gradient became non-finite first at layer {index} (backward pass)", index=index))
    else:
        where = tr("the loss reached {value}, past the divergence bound", value=f"{metrics.loss:.3g}")
    before = tr(", ").join(tr("{norm} at step {step}", norm=format_log10(norm, 1), step=step)
                       for step, norm in recent_norms)
    return tr("DIVERGED at step {step}: {where}. Global gradient norm before: {before}.",
              step=metrics.step, where=where, before=before or tr("none (it was the first step)"))


@dataclass(frozen=True)
class Watched:
    """A lesson's claim, as the shown run stands now."""

    claim: Expectation
    state: str  # "waiting" (a step it reads is still to come), "pass" or "fail"
    measured: object = None  # the left-hand side's value
    so_far: bool = False  # it reads the latest step, which moves on


@dataclass
class Run:
    """One [[compare]] variant: its config, simulator, history and rewind points."""

    name: str
    overrides: Mapping[str, Any]  # the options the variant itself sets
    config: Config
    sim: Simulator | None = None
    history: History = field(default_factory=History)
    snapshots: deque[tuple[Snapshot, StepMetrics | None]] = field(default_factory=deque)
    report: str = ""  # how it diverged, once it has
    preview: bool = False  # history's latest is a look at the next step, not yet taken
    # steps watched claims read: their metrics and loss_rises then (rebound, never changed in
    # place: the UI thread reads them without a lock)
    kept: dict[int, tuple[StepMetrics, int]] = field(default_factory=dict)

    def restart(self, keep_preview: bool = False) -> None:
        """A new Simulator for the run's config at step 0 (same seed: identical numbers);
        ``keep_preview``: a preview of step 0 on screen stays until the step is taken."""
        from tui_grad.engine import Simulator

        self.sim = Simulator(self.config)
        if keep_preview and self.preview and self.history.latest is not None \
                and self.history.latest.step == 0:
            self.report = ""
            return
        self.history.clear()
        self.snapshots.clear()
        self.kept = {}
        self.report, self.preview = "", False


class Session:
    """An interactive run: the scenario's variants, the one shown, and what the UI asked for."""

    def __init__(self, scenario: Scenario, watch: Sequence[Expectation] = ()) -> None:
        self.scenario = scenario
        self.claims = tuple(watch)  # a lesson step's claims to watch (see watched)
        # False while a lesson's prompt asks for a prediction: step 0 would give the answer away
        self.preview_allowed = True
        self._watched_cache: tuple[tuple, list[Watched]] | None = None
        self._watched_steps = {step for claim in self.claims for step in claim.steps() if step != LAST}
        self.runs = [Run(v.name, v.overrides, v.config) for v in scenario.variants]
        # options some variant sets itself: what the variants compare, changed only where shown
        self.compared = frozenset(name for run in self.runs for name in run.overrides)
        self.shown = 0  # index of the run the UI shows
        self.running = True
        self.speed_index = DEFAULT_SPEED
        self.steps_per_second: float | None = None  # None until a rate has been measured
        self._step_times: deque[float] = deque()
        self._next_step_at = 0.0
        self._pending_steps = 0
        self._pending: tuple[list[Config], str] | None = None
        self._rewind_asked = False
        self._auto_paused = False
        self._calls: list[tuple[Callable[[Simulator], Any], Future]] = []
        self._lock = threading.Lock()

    # ------------------------------------------------------------ what the UI reads
    @property
    def run(self) -> Run:
        """The run shown."""
        return self.runs[self.shown]

    @property
    def config(self) -> Config:
        """The shown run's config, including changes not yet applied."""
        return self.run.config

    @property
    def sim(self) -> Simulator | None:
        """The shown run's simulator (None before the first advance)."""
        return self.run.sim

    @property
    def history(self) -> History:
        """The shown run's history."""
        return self.run.history

    @property
    def variant_name(self) -> str:
        """Name of the [[compare]] variant shown (the scenario name without variants)."""
        return self.run.name

    @property
    def max_rate(self) -> float | None:
        """Steps per second the run is held to (None: unlimited)."""
        return SPEEDS[self.speed_index]

    def show_first_steps(self, configs: Sequence[Config], metrics: Sequence[StepMetrics]) -> bool:
        """Show ``metrics``, the first step of each run measured elsewhere (another process,
        with ``configs``), as previews until the runs take their first step (thread-safe).
        Only before the first advance, with nothing asked for since, and configs unchanged;
        returns whether they are shown."""
        with self._lock:
            if (not self.preview_allowed or self._pending is not None or self._pending_steps
                    or self._rewind_asked or not len(configs) == len(metrics) == len(self.runs)
                    or any(run.sim is not None or run.history.latest is not None
                           or run.config != config or item.step != 0
                           for run, config, item in zip(self.runs, configs, metrics, strict=True))):
                return False
            for run, item in zip(self.runs, metrics, strict=True):
                run.history.append(item)
                run.preview = True
        return True

    # ------------------------------------------------------------ requests from the UI
    def request(self, config: Config, reason: str = "") -> int:
        """Ask for ``config`` in the shown run before the next step (thread-safe).

        ``reason`` is what a restart says; starting with ``!`` it restarts in any case.

        The options that changed change in every variant too, except those the variants
        compare (set by any of them), so the comparison stays one change apart. Returns how
        many runs the change reaches.
        """
        with self._lock:
            changed = {name: config[name] for name in self.config.diff(config)}
            configs, reached = [], 0
            for index, run in enumerate(self.runs):
                new = config if index == self.shown else self._carry(run, changed, self.compared)
                reached += new != run.config
                configs.append(new)
            for run, new in zip(self.runs, configs, strict=True):
                run.config = new
            self._pending = (configs, reason)
        return reached

    @staticmethod
    def _carry(run: Run, changed: Mapping[str, Any], compared: frozenset[str]) -> Config:
        """``run``'s config with the changes to options the variants do not compare."""
        carried = {name: value for name, value in changed.items() if name not in compared}
        try:
            return Config.from_overrides(carried, run.config)
        except ConfigError:  # the change does not fit this variant: it keeps its settings
            return run.config

    def request_reset(self, reason: str | None = None) -> None:
        """Start every run again from step 0 with its current config and seed; ``reason``
        (default: "reset: same seed, step 0") is what the restart says."""
        reason = tr("reset: same seed, step 0") if reason is None else reason
        with self._lock:
            self._pending = ([run.config for run in self.runs], f"!{reason}")

    def request_rewind(self) -> None:
        """Go back to the newest rewind point before the current step (at the next advance)."""
        with self._lock:
            self._rewind_asked = True

    def request_step(self) -> None:
        """Do one step even while paused."""
        with self._lock:
            self._pending_steps += 1

    def toggle_running(self) -> None:
        """Pause or resume (the user's own pause, kept across restarts)."""
        self.running = not self.running
        self._auto_paused = False

    def pause(self) -> None:
        """Pause at the user's request."""
        self.running = False
        self._auto_paused = False

    def next_variant(self) -> str:
        """Show the next [[compare]] variant, at the same step; returns its name."""
        self.shown = (self.shown + 1) % len(self.runs)
        return self.run.name

    def change_speed(self, direction: int) -> float | None:
        """One notch slower (-1) or faster (+1); returns the new limit."""
        self.speed_index = min(max(self.speed_index + direction, 0), len(SPEEDS) - 1)
        self._step_times.clear()  # the old rate no longer says anything
        self.steps_per_second = None
        return self.max_rate

    # ------------------------------------------------------------ worker side
    def call(self, function: Callable[[Simulator], Any]) -> Future:
        """Run ``function(simulator of the shown run)`` in the thread that advances the
        session, between two steps (so it sees whole steps); its result, or the exception
        it raised, arrives in the Future."""
        future: Future = Future()
        with self._lock:
            self._calls.append((function, future))
        return future

    def advance(self, budget_seconds: float) -> list[object]:
        """Apply pending changes, then step for up to ``budget_seconds``; return events."""
        events: list[object] = []
        with self._lock:
            calls, self._calls = self._calls, []
            pending, self._pending = self._pending, None
            steps_asked, self._pending_steps = self._pending_steps, 0
            rewind, self._rewind_asked = self._rewind_asked, False
        if any(run.sim is None for run in self.runs):
            if pending is not None and any(run.preview for run in self.runs):
                # a change asked for while a preview of step 0 was shown: it is stale now
                events.append(Restarted(pending[1].lstrip("!") or tr("reset: same seed, step 0")))
            for run in self.runs:
                run.restart(keep_preview=pending is None)
            pending = None
        for function, future in calls:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(function(self.run.sim))
                except Exception as exc:  # noqa: BLE001 - delivered to whoever asked
                    future.set_exception(exc)
        if pending is not None:
            events += self._apply(*pending)
        if rewind:
            events += self._rewind()
        if self.run.preview and steps_asked:
            steps_asked += 1  # the step on screen is taken for real, then the one asked for
        started = time.perf_counter()
        done = 0
        while (self.running or steps_asked > 0) and (
                done == 0 or time.perf_counter() - started < budget_seconds):
            now = time.perf_counter()
            if steps_asked == 0 and self.max_rate is not None:
                if now < self._next_step_at:
                    break
                slack = RATE_SLACK_STEPS / self.max_rate
                self._next_step_at = max(self._next_step_at, now - slack) + 1.0 / self.max_rate
            events += self._step()
            done += 1
            steps_asked = max(steps_asked - 1, 0)
            if any(isinstance(e, (Diverged, Finished)) for e in events):
                self.running, self._auto_paused = False, True
                break
        if (not self.running and steps_asked == 0 and self.run.history.latest is None
                and self.preview_allowed):
            self._preview()  # paused with nothing on screen: show the step the run is at
        self._measure_rate(done)
        return events

    def _measure_rate(self, done: int) -> None:
        now = time.perf_counter()
        self._step_times.extend([now] * done)
        while self._step_times and now - self._step_times[0] > RATE_WINDOW_SECONDS:
            self._step_times.popleft()
        span = now - self._step_times[0] if self._step_times else 0.0
        if not self.running:
            self._step_times.clear()
            self.steps_per_second = None
        elif span >= 0.5:
            self.steps_per_second = (len(self._step_times) - 1) / span

    def _apply(self, configs: list[Config], reason: str) -> list[object]:
        forced = reason.startswith("!")  # restart even when nothing structural changed
        restart = forced or any(run.sim.config.needs_restart(config)
                                for run, config in zip(self.runs, configs, strict=True))
        if not restart:
            for run, config in zip(self.runs, configs, strict=True):
                run.sim.apply(config)
            return []
        changed = ", ".join(self.sim.config.diff(configs[self.shown]))
        for run in self.runs:
            run.restart()
        # a new run lifts the automatic pauses (divergence, run.steps) but keeps the user's own
        self.running = self.running or self._auto_paused
        self._auto_paused = False
        return [Restarted(reason.lstrip("!") or tr("restarted: {options} changed", options=changed))]

    def _step(self) -> list[object]:
        """One step of every run, in lock-step; events concern the run shown."""
        step = self.sim.step_index
        if step % SNAPSHOT_EVERY == 0 and self.sim.diverged_at is None:
            self._remember()
        events: list[object] = []
        for index, run in enumerate(self.runs):
            if run.preview:
                run.history.truncate(run.sim.step_index)
                run.preview = False
            recent = run.history.recent_norms(5)
            metrics = run.sim.step()
            if metrics.diverged_at == metrics.step:  # reported before the UI can see the step
                unit = "layer" if run.config.network.model == "mlp" else "time step"
                run.report = forensics(metrics, recent, unit)
                if index == self.shown:
                    events.append(Diverged(metrics.step, run.report))
            run.history.append(metrics)
            if metrics.step in self._watched_steps:
                run.kept = {**run.kept, metrics.step: (metrics, run.history.loss_rises)}
            every = run.config.run.sharpness_every
            if every and metrics.step % every == 0 and run.sim.diverged_at is None:
                run.history.append_sharpness(metrics.step, run.sim.sharpness().value,
                                             metrics.lr)  # the scheduled lr of that step
        if self.sim.step_index == self.config.run.steps:
            events.append(Finished(self.sim.step_index))
        return events

    def watched(self) -> list[Watched]:
        """The claims to watch, evaluated on the shown run as ``run --check`` evaluates them:
        a claim waits until every step it reads has been taken, and one that reads the last
        step until the run reached run.steps (after that, the latest step is the last)."""
        run = self.run
        key = (self.shown, run.history.version, id(run.kept), run.preview, self.config.run.steps)
        if self._watched_cache is not None and self._watched_cache[0] == key:
            return self._watched_cache[1]
        watched = self._watch(run)
        self._watched_cache = (key, watched)
        return watched

    def _watch(self, run: Run) -> list[Watched]:
        from tui_grad.headless import VariantResult, lookup

        kept, latest, sim = run.kept, run.history.latest, run.sim
        if run.preview or latest is None or sim is None:  # a preview is not a step taken
            return [Watched(claim, "waiting") for claim in self.claims]
        ended = latest.step + 1 >= self.config.run.steps
        extra = {step: {"loss_rises": rises} for step, (_, rises) in kept.items()}
        result = VariantResult(run.name, steps=latest.step + 1, final=latest,
                               diverged_at=sim.diverged_at, theory=sim.theory,
                               kept={step: metrics for step, (metrics, _) in kept.items()},
                               extra={**extra, LAST: {"loss_rises": run.history.loss_rises}})
        watched = []
        for claim in self.claims:
            steps = claim.steps()
            if any(step not in kept for step in steps if step != LAST) or (LAST in steps and not ended):
                watched.append(Watched(claim, "waiting"))
                continue
            try:
                passed, measured = evaluate(claim, lambda ref, step: lookup(result, ref, step))
            except ConfigError as exc:  # e.g. diverged_at * 2 while it has not diverged
                watched.append(Watched(claim, "fail", exc.message, LAST in steps))
                continue
            watched.append(Watched(claim, "pass" if passed else "fail", measured, LAST in steps))
        return watched

    def _preview(self) -> None:
        """Show the step each run is at without taking it: step, record, restore."""
        for run in self.runs:
            snap = run.sim.snapshot()
            run.history.truncate(run.sim.step_index)
            run.history.append(run.sim.step())
            run.sim.restore(snap)
            run.preview = True

    def _remember(self) -> None:
        """Keep a rewind point of every run, recycling the oldest ones once the ring is full."""
        for run in self.runs:
            reuse = None
            while run.snapshots and run.snapshots[-1][0].step >= run.sim.step_index:
                reuse = run.snapshots.pop()[0]  # rewound to and now passed again
            size = run.sim.layout.n_params * np.dtype(run.sim.dtype).itemsize
            budget = SNAPSHOT_BUDGET_BYTES // len(self.runs)
            limit = max(1, min(MAX_SNAPSHOTS, budget // max(size * 2, 1)))
            if reuse is None and len(run.snapshots) >= limit:
                reuse = run.snapshots.popleft()[0]
            run.snapshots.append((run.sim.snapshot(reuse=reuse), run.history.latest))

    def _rewind(self) -> list[object]:
        """Every run back to the newest rewind point before the current step and before the
        shown run diverged (a diverging step replays the same way)."""
        shown = self.sim
        end = shown.step_index if shown.diverged_at is None else min(shown.step_index,
                                                                     shown.diverged_at)
        for run in self.runs:
            while run.snapshots and run.snapshots[-1][0].step >= end:
                run.snapshots.pop()
        if not self.run.snapshots:
            return [Rewound(None)]
        for run in self.runs:
            snap, latest = run.snapshots[-1]
            run.sim.restore(snap)
            run.kept = {step: kept for step, kept in run.kept.items() if step < snap.step}
            run.history.truncate(snap.step, latest)
            run.report = run.report if run.sim.diverged_at is not None else ""
            run.preview = False
        return [Rewound(self.sim.step_index)]
