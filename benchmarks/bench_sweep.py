"""Sweep throughput: runs per minute of the bundled `quick` sweep with 1 and 2 Dask workers,
and the overhead per run beyond its training steps (run by hand: python benchmarks/bench_sweep.py).

Two overheads are reported, both per run:
- in the worker: the run's wall time minus the time of its steps (building the Simulator,
  the data set and the theory; Python between steps);
- of the executor: workers x wall time / runs minus the runs' own wall time (Dask's
  scheduling, pickling and result transfer).
Their sum is compared with a 1-s run (target: under 5%). Cluster start-up and the workers'
first kernel load are measured separately (a warm-up round) and left out of the rate.
"""

from __future__ import annotations

import logging
import statistics
import sys
import time

from machine import describe

from tui_grad.sweep import load_sweep
from tui_grad.sweep.executors import _client
from tui_grad.sweep.runner import run_task


def measure(workers: int) -> dict[str, float]:
    """Runs/min and overheads of `quick` on a fresh LocalCluster of ``workers`` processes."""
    sweep = load_sweep("quick")
    items = [sweep.config(run).as_dict() for run in sweep.runs()]
    started = time.perf_counter()
    with _client(workers, None) as client:
        warm = client.map(run_task, items[:workers], [3] * workers, pure=False)
        client.gather(warm)  # every worker has loaded the kernels
        ready = time.perf_counter()
        rows = client.gather(client.map(run_task, items, [sweep.steps] * len(items), pure=False))
        wall = time.perf_counter() - ready
    in_worker = statistics.mean(r["seconds"] - r["train_seconds"] for r in rows)
    executor = workers * wall / len(rows) - statistics.mean(r["seconds"] for r in rows)
    return {"start": ready - started, "runs_per_min": 60 * len(rows) / wall, "wall": wall,
            "train": statistics.mean(r["train_seconds"] for r in rows), "in_worker": in_worker,
            "executor": executor}


def main() -> None:
    logging.getLogger("distributed").setLevel(logging.ERROR)
    print(f"CPU: {describe()}")
    print("quick: 30 runs of 300 steps; times per run")
    results = {}
    for workers in (1, 2):
        r = results[workers] = measure(workers)
        overhead = r["in_worker"] + max(r["executor"], 0.0)
        print(f"{workers} worker(s): start-up {r['start']:.1f} s, {r['runs_per_min']:.0f} runs/min "
              f"({r['wall']:.1f} s), steps {1e3 * r['train']:.0f} ms/run, overhead in the worker "
              f"{1e3 * r['in_worker']:.1f} ms, of Dask {1e3 * r['executor']:.1f} ms: "
              f"{100 * overhead:.1f}% of a 1-s run")
    print(f"speed-up with 2 workers: {results[2]['runs_per_min'] / results[1]['runs_per_min']:.2f}x")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
