"""Recurrent step time: seq_len 500, hidden 128, batch 32, RNN and LSTM (run by hand).

Prints ms/step for tui-grad and, when torch is installed, for torch.nn.RNN / nn.LSTM doing
the same training step (forward, backward, parameter norms, SGD), interleaved, and ratios.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import statistics  # noqa: E402
import time  # noqa: E402

from tui_grad.config import Config  # noqa: E402
from tui_grad.engine import Simulator  # noqa: E402

SEQ_LEN, HIDDEN, BATCH, REPEATS = 500, 128, 32, 7


def torch_step(model: str):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    cell = (torch.nn.LSTM if model == "lstm" else torch.nn.RNN)(2, HIDDEN)
    head = torch.nn.Linear(HIDDEN, 1)
    params = list(cell.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=0.01)
    x, y = torch.rand(SEQ_LEN, BATCH, 2), torch.rand(BATCH, 1)

    def run():
        opt.zero_grad()
        out, _ = cell(x)
        loss = torch.nn.functional.mse_loss(head(out[-1]), y)
        loss.backward()
        _ = [p.grad.norm() for p in params]
        opt.step()
    return run


def main() -> None:
    for model in ("rnn", "lstm"):
        sim = Simulator(Config.from_overrides({
            "network.model": model, "data.task": "adding", "data.seq_len": SEQ_LEN,
            "network.width": HIDDEN, "training.batch_size": BATCH}))
        sim.step()
        contenders = {"tui-grad": sim.step}
        theirs = torch_step(model)
        if theirs is not None:
            theirs()
            contenders["torch"] = theirs
        samples = {name: [] for name in contenders}
        for _ in range(REPEATS):
            for name, fn in contenders.items():
                started = time.perf_counter()
                fn()
                samples[name].append((time.perf_counter() - started) * 1e3)
        ours = statistics.median(samples["tui-grad"])
        line = f"{model:4s} seq_len {SEQ_LEN} hidden {HIDDEN} batch {BATCH}: {ours:7.1f} ms/step"
        if "torch" in samples:
            other = statistics.median(samples["torch"])
            line += f"   torch {other:7.1f} ms/step   ratio {other / ours:4.2f}x"
        print(line)


if __name__ == "__main__":
    main()
