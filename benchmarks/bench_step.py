"""Training-step speed of tui-grad's engine: vanishing-regime nets beside their healthy twins,
and beside PyTorch's step when torch is installed.

Run by hand: ``python benchmarks/bench_step.py [--repeats N]``. One BLAS thread (the other
core is the UI's). Prints the CPU first (speed on subnormal numbers differs between CPUs of
the same kind), then per pair of nets: ms/step, effective GFLOP/s (6 * batch * sum(in*out)
per step) and ratios, all measured in one run, interleaved so machine noise hits all alike:

- ``vanishing / healthy``: the same net with an init whose forward signal shrinks through
  float32's subnormal range, over one whose signal keeps its size (issue #12: within 1.25x).
- ``unflushed``: the vanishing net stepped with flush-to-zero switched off (engine/fpenv.py),
  which shows what the flush buys on this CPU.
- with torch: the same step (same init) in PyTorch, with and without flushed denormals.

Targets (issues #2, #12): d500 w128 b64 tanh <= 40 ms and >= 2.5x PyTorch-flushed; d1000
w64 relu <= 12 ms; d500 w256 b128 relu >= 75% of the one-thread GEMM rate and >= 1.5x
PyTorch-flushed.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import machine  # noqa: E402
import numpy as np  # noqa: E402

from tui_grad.config import Config  # noqa: E402
from tui_grad.engine import Simulator, fpenv  # noqa: E402
from tui_grad.engine import simulator as simulator_module  # noqa: E402

XAVIER, KAIMING = "xavier_normal", "kaiming_normal"
PAIRS = [  # (depth, width, batch, activation, healthy (init, gain), vanishing (init, gain), target ms)
    (500, 128, 64, "tanh", (XAVIER, 1.0), (XAVIER, 0.5), 40.0),
    (300, 128, 64, "relu", (KAIMING, 1.0), (XAVIER, 1.0), None),
    (500, 256, 128, "relu", (KAIMING, 1.0), (XAVIER, 1.0), None),
    (1000, 64, 32, "relu", (KAIMING, 1.0), (XAVIER, 1.0), 12.0),
]
VANISHING_WITHIN = 1.25  # issue #12: a vanishing net at most this much slower than its twin


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


def torch_step(depth, width, batch, activation, init, flush):
    """A closure running one PyTorch training step of the same network and init, or None."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    act = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[activation]
    scheme, gain = init
    linears = [torch.nn.Linear(width, width) for _ in range(depth)]
    for linear in linears:
        with torch.no_grad():
            if scheme == KAIMING:
                torch.nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
                linear.weight.mul_(gain)
            else:
                torch.nn.init.xavier_normal_(linear.weight, gain=gain)
            linear.bias.zero_()
    layers = [module for linear in linears for module in (linear, act())]
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


def unflushed(step):
    """``step`` run with flush-to-zero switched off: IEEE subnormals, as before issue #12."""
    def run():
        simulator_module.flush_subnormals = lambda enabled: contextlib.nullcontext()
        try:
            step()
        finally:
            simulator_module.flush_subnormals = fpenv.flush_subnormals
    return run


def simulator(depth, width, batch, activation, init) -> Simulator:
    scheme, gain = init
    return Simulator(Config.from_overrides({
        "network.depth": depth, "network.width": width, "network.activation": activation,
        "network.init": scheme, "network.init_gain": gain, "training.batch_size": batch,
        "data.input_dim": width, "training.lr": 0.01}))


def time_ms(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def measure(contenders: dict, repeats: int) -> dict[str, float]:
    """Median ms of each contender, run interleaved ``repeats`` times after one warm-up."""
    for fn in contenders.values():
        fn()
    samples = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            samples[name].append(time_ms(fn))
    return {name: statistics.median(values) for name, values in samples.items()}


def describe_init(init) -> str:
    scheme, gain = init
    return scheme.split("_")[0] + ("" if gain == 1.0 else f" gain {gain:g}")


def run_pair(depth, width, batch, activation, healthy, vanishing, target, repeats) -> None:
    healthy_sim = simulator(depth, width, batch, activation, healthy)
    vanishing_sim = simulator(depth, width, batch, activation, vanishing)
    below = np.flatnonzero(vanishing_sim.step().forward_underflow[:-1])
    contenders = {"healthy": healthy_sim.step, "vanishing": vanishing_sim.step,
                  "vanishing unflushed": unflushed(vanishing_sim.step)}
    for init, name in ((healthy, "healthy"), (vanishing, "vanishing")):
        for flush in (False, True):
            run = torch_step(depth, width, batch, activation, init, flush)
            if run is not None:
                contenders[f"torch {name}{' flushed' if flush else ''}"] = run
    ms = measure(contenders, repeats)
    gemm = gemm_rate(width, batch)
    print(f"depth {depth} width {width} batch {batch} {activation}: healthy = "
          f"{describe_init(healthy)}, vanishing = {describe_init(vanishing)} (forward signal "
          + (f"below 2^-126 from layer {below[0] + 1})" if below.size else "stays normal)"))
    for name in ("healthy", "vanishing", "vanishing unflushed"):
        rate = flops(depth, width, batch, width) / ms[name] / 1e6
        line = (f"    {name:20s} {ms[name]:7.1f} ms/step  {rate:5.1f} GFLOP/s = "
                f"{rate / gemm:4.0%} of 1-thread GEMM ({gemm:.1f})")
        if target and name != "vanishing unflushed":
            line += f"  target {target:.0f} ms: {'ok' if ms[name] <= target else 'MISSED'}"
        print(line)
    ratio = ms["vanishing"] / ms["healthy"]
    print(f"    vanishing / healthy {ratio:5.2f}x (target <= {VANISHING_WITHIN}x: "
          f"{'ok' if ratio <= VANISHING_WITHIN else 'MISSED'}); unflushed / healthy "
          f"{ms['vanishing unflushed'] / ms['healthy']:5.2f}x")
    for name in contenders:
        if name.startswith("torch"):
            ours = ms["vanishing" if "vanishing" in name else "healthy"]
            print(f"    {name:26s} {ms[name]:7.1f} ms/step  ratio {ms[name] / ours:4.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed steps per contender")
    args = parser.parse_args()
    print(f"CPU: {machine.describe()}")
    ieee, flushed = machine.subnormal_penalty()
    print(f"float32 multiplies on subnormal operands take {ieee:.2f}x the time of normal "
          f"ones here, {flushed:.2f}x inside a step's flush")
    print(f"flush-to-zero for float32 steps: {'MXCSR FTZ+DAZ' if fpenv.IS_X86 else 'not on this CPU'}")
    for depth, width, batch, activation, healthy, vanishing, target in PAIRS:
        run_pair(depth, width, batch, activation, healthy, vanishing, target, args.repeats)


if __name__ == "__main__":
    main()
