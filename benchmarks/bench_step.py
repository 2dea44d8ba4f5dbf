"""Training-step speed of tui-grad's engine, beside PyTorch's when torch is installed.

Run by hand: ``python benchmarks/bench_step.py``. One BLAS thread (the other core is the
UI's). Prints ms/step, effective GFLOP/s (6 * batch * sum(in*out) per step) and, with
torch, the same step in PyTorch with and without flushed denormals, interleaved, and ratios.
Targets (issue #2): d500 w128 b64 tanh <= 40 ms and >= 2.5x PyTorch-flushed; d1000 w64
relu <= 12 ms; d500 w256 b128 relu >= 75% of the one-thread GEMM rate.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from tui_grad.config import Config  # noqa: E402
from tui_grad.engine import Simulator  # noqa: E402

CONFIGS = [  # (depth, width, batch, activation, target ms)
    (500, 128, 64, "tanh", 40.0),
    (500, 256, 128, "relu", None),
    (1000, 64, 32, "relu", 12.0),
]
REPEATS = 15


def flops(depth: int, width: int, batch: int, input_dim: int) -> float:
    """Multiply-adds x2 of forward + two backward GEMMs over all layers."""
    weights = input_dim * width + (depth - 1) * width * width + width
    return 6.0 * batch * weights


def gemm_rate(width: int, batch: int) -> float:
    """One-thread float32 GEMM rate (GFLOP/s) at the step's shapes."""
    a = np.random.rand(batch, width).astype(np.float32)
    w = np.random.rand(width, width).astype(np.float32)
    out = np.empty((batch, width), np.float32)
    for _ in range(50):
        np.dot(a, w.T, out)
    start = time.perf_counter()
    n = 400
    for _ in range(n):
        np.dot(a, w.T, out)
    return 2.0 * batch * width * width * n / (time.perf_counter() - start) / 1e9


def torch_step(depth, width, batch, activation, flush):
    """A closure running one PyTorch training step of the same network, or None."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    act = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[activation]
    layers = [torch.nn.Linear(width, width), act()]
    for _ in range(depth - 1):
        layers += [torch.nn.Linear(width, width), act()]
    model = torch.nn.Sequential(*layers, torch.nn.Linear(width, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(batch, width), torch.randn(batch, 1)

    def run():
        torch.set_flush_denormal(flush)
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        _ = [p.grad.norm() for p in model.parameters()]
        opt.step()
        torch.set_flush_denormal(False)
    return run


def time_ms(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def main() -> None:
    for depth, width, batch, activation, target in CONFIGS:
        sim = Simulator(Config.from_overrides({
            "network.depth": depth, "network.width": width, "network.activation": activation,
            "network.init": "xavier_normal", "training.batch_size": batch,
            "data.input_dim": width, "training.lr": 0.01}))
        sim.step()
        contenders = {"tui-grad": sim.step}
        for flush in (False, True):
            run = torch_step(depth, width, batch, activation, flush)
            if run is not None:
                run()
                contenders[f"torch{' flushed' if flush else ''}"] = run
        samples = {name: [] for name in contenders}
        for _ in range(REPEATS):  # interleaved, so machine noise hits all alike
            for name, fn in contenders.items():
                samples[name].append(time_ms(fn))
        ours = statistics.median(samples["tui-grad"])
        rate = flops(depth, width, batch, width) / ours / 1e6
        gemm = gemm_rate(width, batch)
        line = (f"depth {depth:4d} width {width:3d} batch {batch:3d} {activation:4s}: "
                f"{ours:7.1f} ms/step  {rate:5.1f} GFLOP/s = {rate / gemm:4.0%} of 1-thread GEMM "
                f"({gemm:.1f})")
        if target:
            line += f"  target {target:.0f} ms: {'ok' if ours <= target else 'MISSED'}"
        print(line)
        for name in contenders:
            if name != "tui-grad":
                theirs = statistics.median(samples[name])
                print(f"    {name:14s} {theirs:7.1f} ms/step  ratio {theirs / ours:4.1f}x")


if __name__ == "__main__":
    main()
