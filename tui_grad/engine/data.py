"""Seeded synthetic tasks and the mini-batch stream drawn from them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TEACHER_HIDDEN = 32


@dataclass(frozen=True)
class Dataset:
    """Inputs (n, input_dim) and targets: (n, 1) floats for regression, (n,) ints for classes."""

    inputs: np.ndarray
    targets: np.ndarray
    n_outputs: int
    is_classification: bool


def make_dataset(task: str, n_samples: int, input_dim: int, n_classes: int, noise: float,
                 rng: np.random.Generator, seq_len: int = 1) -> Dataset:
    """Build one of the tasks named in config.TASKS from ``rng``.

    Sequence tasks give inputs shaped (n, seq_len, features):
    - adding (Hochreiter & Schmidhuber 1997): a value in [0, 1) and a marker per step; the
      target is the sum of the two marked values, one marked near the start (first 10%)
      and one in the second half, so the dependency spans the sequence;
    - copy_first: one-hot random symbols; the label is the first symbol.
    """
    if task == "adding":
        values = rng.uniform(size=(n_samples, seq_len))
        markers = np.zeros((n_samples, seq_len))
        rows = np.arange(n_samples)
        first = rng.integers(0, max(seq_len // 10, 1), size=n_samples)
        second = rng.integers(seq_len // 2, seq_len, size=n_samples) if seq_len > 1 else first
        markers[rows, first] = 1.0
        markers[rows, second] = 1.0
        targets = (values * markers).sum(axis=1, keepdims=True)
        return Dataset(np.stack([values, markers], axis=2), targets, 1, False)
    if task == "copy_first":
        symbols = rng.integers(0, n_classes, size=(n_samples, seq_len))
        return Dataset(np.eye(n_classes)[symbols], symbols[:, 0], n_classes, True)
    if task == "teacher":
        inputs = rng.normal(size=(n_samples, input_dim))
        hidden = rng.normal(size=(input_dim, TEACHER_HIDDEN)) / np.sqrt(input_dim)
        head = rng.normal(size=(TEACHER_HIDDEN, 1)) / np.sqrt(TEACHER_HIDDEN)
        targets = np.tanh(inputs @ hidden) @ head
        targets = (targets - targets.mean()) / (targets.std() + 1e-12)
        targets += noise * rng.normal(size=targets.shape)
        return Dataset(inputs, targets, 1, False)
    if task == "spirals":
        labels = rng.integers(0, 2, size=n_samples)
        radius = rng.uniform(0.1, 1.0, size=n_samples)
        angle = 3.0 * np.pi * radius + np.pi * labels
        plane = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
        plane += noise * rng.normal(size=plane.shape)
        embed = _orthonormal_rows(rng, 2, input_dim)
        return Dataset(_standardise(plane @ embed), labels, 2, True)
    labels = rng.integers(0, n_classes, size=n_samples)
    centres = rng.normal(size=(n_classes, input_dim))
    inputs = centres[labels] + noise * rng.normal(size=(n_samples, input_dim))
    return Dataset(_standardise(inputs), labels, n_classes, True)


def _standardise(inputs: np.ndarray) -> np.ndarray:
    return (inputs - inputs.mean(axis=0)) / (inputs.std(axis=0) + 1e-12)


def _orthonormal_rows(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(cols, rows)))
    return q.T


class BatchStream:
    """Mini-batches drawn without replacement within each pass over a shuffled dataset."""

    def __init__(self, n_samples: int, rng: np.random.Generator) -> None:
        self._rng = rng
        self._order = rng.permutation(n_samples)
        self._cursor = 0

    def get_state(self) -> tuple:
        """The stream's position, for Simulator.snapshot."""
        return (self._rng.bit_generator.state, self._order.copy(), self._cursor)

    def set_state(self, state: tuple) -> None:
        """Go back to a position returned by get_state."""
        rng_state, order, cursor = state
        self._rng.bit_generator.state = rng_state
        self._order, self._cursor = order.copy(), cursor

    def next_indices(self, batch_size: int) -> np.ndarray:
        """Indices of the next ``batch_size`` examples, reshuffling after each full pass."""
        picked = []
        needed = batch_size
        while needed > 0:
            if self._cursor == self._order.size:
                self._order = self._rng.permutation(self._order.size)
                self._cursor = 0
            take = min(needed, self._order.size - self._cursor)
            picked.append(self._order[self._cursor:self._cursor + take])
            self._cursor += take
            needed -= take
        return np.concatenate(picked)
