"""History: a bounded record of a run's StepMetrics that the UI reads while the worker writes.

The worker appends under a lock; readers take ``frame()``, a consistent copy of what charts
need, so they never see arrays still being written.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from tui_grad.engine.metrics import StepMetrics

HEATMAP_COLUMNS = 240  # per-layer profiles kept for the layer x step heatmap


@dataclass(frozen=True)
class Frame:
    """What the charts draw, copied out of History at one instant."""

    version: int
    steps: np.ndarray  # (S,) step numbers of the scalar series
    loss: np.ndarray  # (S,)
    lr: np.ndarray  # (S,) the learning rate of each step's update
    global_norm_log10: np.ndarray  # (S,)
    first: StepMetrics | None  # step 0 of this run (the faint reference profile)
    latest: StepMetrics | None
    heat_steps: np.ndarray  # (H,)
    heat_grad_log10: np.ndarray  # (H, L) per-layer log10 grad norm, oldest first
    diverged_at: int | None
    sharpness: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # (K, 3): step, value, lr


class History:
    """Bounded ring of per-step scalars plus a thinned set of per-layer profiles."""

    def __init__(self, capacity: int = 20000) -> None:
        self._lock = threading.Lock()
        self._capacity = capacity
        self._version = 0
        self.clear()

    def clear(self) -> None:
        """Forget everything (a restarted run)."""
        with self._lock:
            self._steps: deque[int] = deque(maxlen=self._capacity)
            self._loss: deque[float] = deque(maxlen=self._capacity)
            self._lr: deque[float] = deque(maxlen=self._capacity)
            self._norm: deque[float] = deque(maxlen=self._capacity)
            self._heat: deque[tuple[int, np.ndarray]] = deque()
            self._heat_stride = 1
            self._sharpness: deque[tuple[int, float, float]] = deque(maxlen=self._capacity)
            self._first: StepMetrics | None = None
            self._latest: StepMetrics | None = None
            self._rises = 0
            self._version += 1

    @property
    def version(self) -> int:
        """Changes whenever something was appended or cleared."""
        return self._version

    @property
    def latest(self) -> StepMetrics | None:
        """The newest StepMetrics."""
        return self._latest

    @property
    def loss_rises(self) -> int:
        """How many recorded steps had a loss above the step before's (as ``run --check``'s
        loss_rises counts them), older steps than the record keeps included."""
        return self._rises

    def append(self, metrics: StepMetrics) -> None:
        """Record one step (called by the simulation worker)."""
        with self._lock:
            if self._loss and metrics.loss > self._loss[-1]:
                self._rises += 1
            if self._first is None:
                self._first = metrics
            self._latest = metrics
            self._steps.append(metrics.step)
            self._loss.append(metrics.loss)
            self._lr.append(metrics.lr)
            self._norm.append(metrics.global_grad_norm_log10)
            if metrics.step % self._heat_stride == 0:
                self._heat.append((metrics.step, metrics.grad_norm_log10))
                if len(self._heat) > HEATMAP_COLUMNS:  # keep every other column, double stride
                    self._heat = deque(list(self._heat)[::2])
                    self._heat_stride *= 2
            self._version += 1

    def append_sharpness(self, step: int, value: float, lr: float) -> None:
        """Record the sharpness measured after ``step`` and the lr it was taken with."""
        with self._lock:
            self._sharpness.append((step, value, lr))
            self._version += 1

    def truncate(self, step: int, latest: StepMetrics | None = None) -> None:
        """Drop every record from ``step`` on (after rewinding the simulation); ``latest`` is
        the full record of the step before, when the caller kept it."""
        with self._lock:
            while self._steps and self._steps[-1] >= step:
                self._steps.pop()
                if self._loss[-1] > (self._loss[-2] if len(self._loss) > 1 else math.inf):
                    self._rises -= 1
                self._loss.pop()
                self._lr.pop()
                self._norm.pop()
            while self._heat and self._heat[-1][0] >= step:
                self._heat.pop()
            while self._sharpness and self._sharpness[-1][0] >= step:
                self._sharpness.pop()
            if self._first is not None and self._first.step >= step:
                self._first = None
            self._latest = latest if latest is not None and latest.step < step else None
            self._version += 1

    def recent_norms(self, count: int) -> list[tuple[int, float]]:
        """The last ``count`` (step, log10 global grad norm) pairs."""
        with self._lock:
            pairs = list(zip(self._steps, self._norm, strict=True))
        return pairs[-count:]

    def frame(self) -> Frame:
        """A consistent copy for drawing."""
        with self._lock:
            heat = list(self._heat)
            latest = self._latest
            return Frame(
                version=self._version, steps=np.array(self._steps, dtype=np.int64),
                loss=np.array(self._loss, dtype=np.float64), lr=np.array(self._lr, dtype=np.float64),
                global_norm_log10=np.array(self._norm, dtype=np.float64), first=self._first,
                latest=latest, heat_steps=np.array([s for s, _ in heat], dtype=np.int64),
                heat_grad_log10=np.array([g for _, g in heat]) if heat else np.zeros((0, 0)),
                diverged_at=latest.diverged_at if latest else None,
                sharpness=np.array(self._sharpness, dtype=np.float64).reshape(-1, 3))
