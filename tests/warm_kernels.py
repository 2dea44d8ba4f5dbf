"""Fill numba's cache with the kernels of some bundled scenarios: two steps of each variant.

Run by tests/conftest.py before the test workers start (`python tests/warm_kernels.py
default,rnn-vs-lstm`; `f64` is the default scenario in float64)."""

from __future__ import annotations

import sys

from tui_grad.engine import Simulator
from tui_grad.scenario import load_scenario

for name in sys.argv[1].split(","):
    scenario = (load_scenario("default").with_overrides({"network.dtype": "float64"}) if name == "f64"
                else load_scenario(name))
    for variant in scenario.variants:
        sim = Simulator(variant.config)
        sim.step()
        sim.step()
