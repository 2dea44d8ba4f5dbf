"""``tui-grad coord-check``: muP's coordinate check (Yang et al. 2022, Tensor Programs V).

Each [[compare]] variant of a scenario is trained at several widths for a few steps; after
step t (t = 1..steps, so t updates) the mean |activation| of every hidden layer and of the
output (the logits) is measured on that step's batch, from the exact float64 pass of the
probes. In the standard parametrization with Adam these grow with width; under muP they stay
flat. The runs go through the sweep executors: in this process by default, on a local Dask
cluster with ``--workers N``, or on a cluster with ``--scheduler``.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from typing import Any

import numpy as np

from tui_grad.config import Config, ConfigError, option
from tui_grad.files import open_output
from tui_grad.i18n import tr

COLUMNS = ("width", "step", "layer", "act_abs_mean")
MAX_WIDTHS = 12


def coord_task(values: dict[str, Any], steps: int) -> list[tuple[int, int, float]]:
    """Train ``values``' net ``steps`` steps; after each, (step, layer, mean |activation|) per
    hidden layer (1..depth) and the output (depth + 1, the logits)."""
    from tui_grad.engine import Simulator

    sim = Simulator(Config(values))
    rows = []
    for step in range(1, steps + 1):
        sim.step()
        measured = sim.layer_values()
        layers = [float(np.mean(np.abs(a))) for a in measured.activation]
        layers.append(float(np.mean(np.abs(measured.logits))))
        rows += [(step, layer, value) for layer, value in enumerate(layers, start=1)]
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``tui-grad coord-check``."""
    parser.add_argument("scenario", help=tr("scenario file or bundled scenario name (e.g. mup-width)"))
    parser.add_argument("--widths", default="64,128,256,512,1024", metavar="W,W,...",
                        help=tr("hidden widths to compare (default: 64,128,256,512,1024)"))
    parser.add_argument("--steps", type=int, default=3, metavar="N",
                        help=tr("training steps, measured after each (default: 3)"))
    parser.add_argument("--csv", metavar="PATH", help=tr("write the tidy table (variant, width, step, "
                        "layer, act_abs_mean) as CSV ('-' = stdout, then no chart)"))
    parser.add_argument("--workers", type=int, metavar="N",
                        help=tr("local Dask worker processes (default: 0 = in this process)"))
    parser.add_argument("--scheduler", metavar="tcp://HOST:PORT", help=tr("run on an existing Dask cluster"))
    parser.add_argument("--seed", type=int, metavar="N", help=tr("random seed (overrides run.seed)"))
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        dest="overrides", help=tr("override one option; repeatable"))


def parse_widths(text: str) -> list[int]:
    """``64,128,256`` -> [64, 128, 256]; a one-line error for anything else."""
    width = option("network.width")
    widths = []
    for part in text.split(","):
        try:
            widths.append(width.coerce(part.strip()))
        except ConfigError:
            raise ConfigError(tr("--widths must be widths {range} separated by commas (got {part} in {text})",
                                 range=width.describe_range(), part=repr(part.strip()),
                                 text=repr(text))) from None
    if len(set(widths)) != len(widths) or not 2 <= len(widths) <= MAX_WIDTHS:
        raise ConfigError(tr("--widths needs 2 to {most} different widths (got {text})", most=MAX_WIDTHS,
                             text=repr(text)))
    return sorted(widths)


def cmd_coord_check(args: argparse.Namespace, load) -> int:
    """Run the coordinate check; print the chart and/or write the CSV."""
    from tui_grad.sweep.command import _executor
    from tui_grad.sweep.executors import Stop

    widths = parse_widths(args.widths)
    if args.steps < 1:
        raise ConfigError(tr("{flag} must be 1 or more (got {value})", flag="--steps", value=args.steps))
    args.overrides = list(args.overrides)
    scenario = load(args.scenario, _no_run_steps(args))
    items = []
    for variant in scenario.variants:
        for width in widths:
            values = {**variant.config.as_dict(), "network.width": width}
            if values["network.model"] != "mlp":
                raise ConfigError(tr("coord-check covers the MLP (network.model = mlp)"),
                                  path=args.scenario)
            items.append(((variant.name, width), values))
    stream = open_output(args.csv)
    results: dict[tuple[str, int], list] = {}
    workers = args.workers if args.workers is not None or args.scheduler else 0  # default: here
    executor = _executor(argparse.Namespace(workers=workers, scheduler=args.scheduler))
    try:
        executor(items, args.steps, lambda run, rows: results.__setitem__(run, rows), Stop(),
                 task=coord_task)
        table = [(name, width, *row) for (name, width), _ in items
                 for row in results[(name, width)]]
        if stream is not None:
            _write_csv(stream, table, bool(scenario.compare))
    finally:
        if stream not in (None, sys.stdout):
            stream.close()
    if args.csv != "-":
        print(chart(table, [v.name for v in scenario.variants], args.steps))
    return 0


def _no_run_steps(args: argparse.Namespace) -> argparse.Namespace:
    """The overrides ``load`` applies: --set and --seed; --steps is this command's own."""
    return argparse.Namespace(overrides=args.overrides, steps=None, seed=args.seed)


def _write_csv(stream, table: list[tuple], with_variant: bool) -> None:
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow((["variant"] if with_variant else []) + list(COLUMNS))
    for name, width, step, layer, value in table:
        writer.writerow(([name] if with_variant else []) + [width, step, layer, f"{value:.9g}"])
    stream.flush()


def chart(table: list[tuple], variants: list[str], steps: int, width: int | None = None) -> str:
    """muP's coordinate-check plot: per variant (rows) and step (columns), log10 mean
    |activation| against width on a log axis (ticks at the widths measured), one line per
    layer (about five of them and the output), distinct markers so it reads without colour."""
    import plotext as plt

    from tui_grad.engine.probe import default_layers
    from tui_grad.plot import WideText

    layers_all = sorted({row[3] for row in table})
    widths = sorted({row[1] for row in table})
    output = layers_all[-1]
    shown = [layers_all[i] for i in default_layers(len(layers_all) - 1, 4)] + [output]
    markers = ("o", "x", "+", "*", "#", "@")
    columns = width or min(os.get_terminal_size(sys.stdout.fileno()).columns
                           if sys.stdout.isatty() else 100, 160)
    plt.main()
    plt.clf()
    plt.plotsize(columns, 20 * len(variants))  # before subplots: the figure's size
    plt.subplots(len(variants), steps)
    plain = "NO_COLOR" in os.environ or not sys.stdout.isatty()
    plt.theme("clear" if plain else "default")
    wide = WideText()
    x_label = wide(tr("width (log scale)"))
    for row, name in enumerate(variants, start=1):
        for step in range(1, steps + 1):
            plt.subplot(row, step)
            plt.title(wide(tr("{variant}, step {step}", variant=name, step=step)))
            for index, layer in enumerate(shown):
                points = sorted((w, v) for n, w, s, lay, v in table
                                if n == name and s == step and lay == layer and v > 0)
                if not points:
                    continue
                plt.plot([float(np.log2(w)) for w, _ in points],
                         [float(np.log10(v)) for _, v in points],
                         marker=markers[index % len(markers)])
            plt.xticks([float(np.log2(w)) for w in widths], [str(w) for w in widths])
            plt.xlabel(x_label)
            if step == 1:
                plt.ylabel("log10 mean |act|")
    figure = wide.restore(plt.uncolorize(plt.build()) if plain else plt.build())
    plt.main()  # plotext's figure is global: leave it a single plot again (the probes use it)
    plt.clf()
    plt.subplots(1, 1)
    key = tr(", ").join(f"{markers[i % len(markers)]} "
                    + (tr("output") if layer == output else tr("layer {layer}", layer=layer))
                    for i, layer in enumerate(shown))
    return (figure + "\n" + tr("markers: {key}", key=key) + "\n"
            + tr("flat lines: the activations' scale does not depend on width (muP's promise); "
                 "rising lines: it grows with width"))
