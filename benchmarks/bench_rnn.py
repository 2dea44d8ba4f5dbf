"""Recurrent step time: seq_len 500, hidden 128, batch 32, RNN and LSTM (run by hand).

``python benchmarks/bench_rnn.py [--repeats N]`` prints the CPU, then for each model ms/step
for a net with orthogonal recurrent weights (gain 1) and its vanishing twin (gain 0.5: the
signal through time shrinks ~2x per step), the latter also with flush-to-zero switched off
(engine/fpenv.py), and, when torch is installed, torch.nn.RNN / nn.LSTM doing the same
training step (forward, backward, parameter norms, SGD) with and without flushed
denormals. Everything interleaved in one run; ratios against the healthy net.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402

import machine  # noqa: E402
import numpy as np  # noqa: E402
from bench_step import VANISHING_WITHIN, measure, unflushed  # noqa: E402

from tui_grad.config import Config  # noqa: E402
from tui_grad.engine import Simulator  # noqa: E402

SEQ_LEN, HIDDEN, BATCH = 500, 128, 32
HEALTHY_GAIN, VANISHING_GAIN = 1.0, 0.5


def torch_step(model: str, gain: float, flush: bool):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    cell = (torch.nn.LSTM if model == "lstm" else torch.nn.RNN)(2, HIDDEN)
    with torch.no_grad():
        blocks = cell.weight_hh_l0.view(-1, HIDDEN, HIDDEN)
        for block in blocks:
            torch.nn.init.orthogonal_(block, gain=gain)
    head = torch.nn.Linear(HIDDEN, 1)
    params = list(cell.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=0.01)
    x, y = torch.rand(SEQ_LEN, BATCH, 2), torch.rand(BATCH, 1)

    def run():
        torch.set_flush_denormal(flush)
        opt.zero_grad()
        out, _ = cell(x)
        loss = torch.nn.functional.mse_loss(head(out[-1]), y)
        loss.backward()
        _ = [p.grad.norm() for p in params]
        opt.step()
        torch.set_flush_denormal(False)
    return run


def simulator(model: str, gain: float) -> Simulator:
    return Simulator(Config.from_overrides({
        "network.model": model, "data.task": "adding", "data.seq_len": SEQ_LEN,
        "network.width": HIDDEN, "training.batch_size": BATCH, "network.recurrent_gain": gain}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed steps per contender")
    args = parser.parse_args()
    print(f"CPU: {machine.describe()}")
    ieee, flushed = machine.subnormal_penalty()
    print(f"float32 multiplies on subnormal operands take {ieee:.2f}x the time of normal "
          f"ones here, {flushed:.2f}x inside a step's flush")
    for model in ("rnn", "lstm"):
        healthy, vanishing = simulator(model, HEALTHY_GAIN), simulator(model, VANISHING_GAIN)
        metrics = vanishing.step()
        below = np.flatnonzero(metrics.forward_underflow[:-1])
        first_signal = 10 ** (metrics.signal_norm_log10[0] - metrics.signal_norm_log10[-2])
        contenders = {"healthy": healthy.step, "vanishing": vanishing.step,
                      "vanishing unflushed": unflushed(vanishing.step)}
        for gain, name in ((HEALTHY_GAIN, "healthy"), (VANISHING_GAIN, "vanishing")):
            for flush in (False, True):
                run = torch_step(model, gain, flush)
                if run is not None:
                    contenders[f"torch {name}{' flushed' if flush else ''}"] = run
        ms = measure(contenders, args.repeats)
        print(f"{model} seq_len {SEQ_LEN} hidden {HIDDEN} batch {BATCH}: healthy = recurrent_gain "
              f"{HEALTHY_GAIN:g}, vanishing = {VANISHING_GAIN:g} (||dL/dh_1|| / ||dL/dh_T|| = "
              f"{first_signal:.1e}; forward state "
              + (f"below 2^-126 from step {below[0] + 1})" if below.size else "stays normal)"))
        for name in ("healthy", "vanishing", "vanishing unflushed"):
            print(f"    {name:20s} {ms[name]:7.1f} ms/step")
        ratio = ms["vanishing"] / ms["healthy"]
        print(f"    vanishing / healthy {ratio:5.2f}x (target <= {VANISHING_WITHIN}x: "
              f"{'ok' if ratio <= VANISHING_WITHIN else 'MISSED'}); unflushed / healthy "
              f"{ms['vanishing unflushed'] / ms['healthy']:5.2f}x")
        for name in contenders:
            if name.startswith("torch"):
                ours = ms["vanishing" if "vanishing" in name else "healthy"]
                print(f"    {name:26s} {ms[name]:7.1f} ms/step  ratio {ms[name] / ours:4.2f}x")


if __name__ == "__main__":
    main()
