"""Shared helpers for the test suite."""

from __future__ import annotations

import pytest

from tui_grad.config import Config
from tui_grad.engine import Simulator


def make_sim(**overrides) -> Simulator:
    """A Simulator from ``section__key=value`` keyword overrides."""
    return Simulator(Config.from_overrides({k.replace("__", "."): v for k, v in overrides.items()}))


@pytest.fixture
def sim_factory():
    """Build Simulators from keyword overrides (``network__depth=3``)."""
    return make_sim
