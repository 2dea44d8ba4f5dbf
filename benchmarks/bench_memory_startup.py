"""Memory of a big network and start-up time to the first step (run by hand).

``python benchmarks/bench_memory_startup.py`` prints:
- peak resident memory of depth 1000, width 256, batch 64, float32 after a few steps,
  against the 1 GiB target;
- wall time for a fresh process (kernels already cached) to finish its first step, against
  the 1.0 s target, median of several runs.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

TARGET_MEMORY_GIB = 1.0
TARGET_STARTUP_S = 1.0

MEMORY_PROBE = """
import resource
from tui_grad.config import Config
from tui_grad.engine import Simulator
sim = Simulator(Config.from_overrides({"network.depth": 1000, "network.width": 256,
                                      "training.batch_size": 64}))
for _ in range(3):
    sim.step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
"""

STARTUP_PROBE = [sys.executable, "-m", "tui_grad", "run", "default", "--headless", "--steps", "1"]


def main() -> None:
    peak = float(subprocess.run([sys.executable, "-c", MEMORY_PROBE], capture_output=True,
                                text=True, check=True).stdout)
    print(f"memory, depth 1000 width 256 batch 64 float32: peak {peak:.2f} GiB "
          f"= {peak / TARGET_MEMORY_GIB:.2f} x the {TARGET_MEMORY_GIB:g} GiB target")
    subprocess.run(STARTUP_PROBE, capture_output=True, check=True)  # warm the kernel cache
    times = []
    for _ in range(5):
        started = time.perf_counter()
        subprocess.run(STARTUP_PROBE, capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    median = statistics.median(times)
    print(f"start-up to the first step (cached kernels): median {median:.2f} s "
          f"= {median / TARGET_STARTUP_S:.2f} x the {TARGET_STARTUP_S:g} s target")


if __name__ == "__main__":
    main()
