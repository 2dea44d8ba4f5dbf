"""``tui-grad sweep``, ``tui-grad plot`` and sweep files in ``tui-grad validate``."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Callable

from tui_grad.config import ConfigError
from tui_grad.i18n import tr
from tui_grad.sweep.spec import CONFIRM_ABOVE, Sweep, is_sweep_file, load_sweep

PROG = "tui-grad"
INTERRUPTED = 130
STATE_FILE = "sweeps.json"  # scenario name -> absolute path of its last sweep's result table


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    """The options of ``tui-grad sweep`` or ``tui-grad plot``."""
    if command == "plot":
        parser.add_argument("table", help=tr("a result file written by tui-grad sweep"))
        parser.add_argument("metric", help=tr("the column to colour the map by, e.g. loss_ratio"))
        parser.add_argument("--sweep", metavar="FILE",
                            help=tr("the sweep file (default: guessed from columns)"))
        return
    parser.add_argument("sweep", help=tr("sweep file or bundled sweep name (quick, edge-of-chaos-map, ...)"))
    parser.add_argument("--out", required=True, metavar="PATH",
                        help=tr("result CSV, one row per run ('-' = stdout)"))
    parser.add_argument("--json", metavar="PATH", help=tr("also write the table as JSON at the end"))
    parser.add_argument("--workers", type=int, metavar="N",
                        help=tr("local Dask worker processes (default: the machine's cores; 0 = in this "
                                "process, without Dask)"))
    parser.add_argument("--scheduler", metavar="tcp://HOST:PORT", help=tr("run on an existing Dask cluster"))
    parser.add_argument("--resume", action="store_true", help=tr("keep the rows in --out and run the rest"))
    parser.add_argument("--force", action="store_true", help=tr("overwrite an existing --out"))
    parser.add_argument("--yes", action="store_true",
                        help=tr("run more than {count} runs", count=CONFIRM_ABOVE))
    parser.add_argument("--check", action="store_true",
                        help=tr("evaluate the sweep's [[expect]]; exit 1 on FAIL"))
    parser.add_argument("--plot", metavar="METRIC", help=tr("draw the map of METRIC when done"))


def main(command: str, args: argparse.Namespace) -> int:
    """Dispatch ``sweep`` or ``plot``."""
    return cmd_plot(args) if command == "plot" else cmd_sweep(args)


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run the sweep's remaining runs, writing rows as they finish; 130 when interrupted."""
    from tui_grad.sweep.table import ResultWriter, columns

    sweep = load_sweep(args.sweep)
    executor = _executor(args)
    if sweep.size > CONFIRM_ABOVE and not args.yes:
        raise ConfigError(tr("{count} runs is more than {limit}: add --yes to run them all",
                             count=sweep.size, limit=CONFIRM_ABOVE), path=args.sweep)
    writer = ResultWriter(args.out, columns(sweep), resume=args.resume, force=args.force)
    try:
        stopped, seconds, todo = _execute(sweep, writer, executor)
    finally:
        writer.close()
        if args.out != "-" and writer.rows:
            record_sweep(sweep.name, args.out)
    where = tr("stdout") if args.out == "-" else args.out
    if stopped:
        print(f"{PROG}: " + tr("interrupted: {done} of {total} runs in {where}; --resume runs the rest",
                               done=len(writer.rows), total=sweep.size, where=where), file=sys.stderr)
        return INTERRUPTED
    print(f"{PROG}: " + tr("{count} runs in {seconds} s, {done} of {total} in {where}", count=todo,
                           seconds=f"{seconds:.1f}", done=len(writer.rows), total=sweep.size, where=where),
          file=sys.stderr)
    return _report(args, sweep, writer.rows)


def state_dir() -> str:
    """Where tui-grad keeps what it remembers between runs: $TUI_GRAD_STATE_DIR, else
    $XDG_STATE_HOME/tui-grad, else ~/.local/state/tui-grad."""
    if os.environ.get("TUI_GRAD_STATE_DIR"):
        return os.environ["TUI_GRAD_STATE_DIR"]
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "tui-grad")


def recorded_sweeps() -> dict[str, str]:
    """Scenario name -> the result table of its last sweep ({} when nothing is recorded)."""
    try:
        with open(os.path.join(state_dir(), STATE_FILE), encoding="utf-8") as stream:
            data = json.load(stream)
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}


def last_sweep() -> tuple[str, str] | None:
    """(scenario name, table) of the most recently written table still on disk, or None."""
    tables = [(name, path) for name, path in recorded_sweeps().items() if os.path.isfile(path)]
    return max(tables, key=lambda item: os.path.getmtime(item[1]), default=None)


def record_sweep(name: str, out: str) -> None:
    """Remember ``out`` as scenario ``name``'s last sweep (for the TUI's map); never fails."""
    try:
        folder = state_dir()
        os.makedirs(folder, exist_ok=True)
        data = {**recorded_sweeps(), name: os.path.abspath(out)}
        temporary = os.path.join(folder, f".{STATE_FILE}.{os.getpid()}")
        with open(temporary, "w", encoding="utf-8") as stream:
            json.dump(data, stream, indent=1, sort_keys=True)
        os.replace(temporary, os.path.join(folder, STATE_FILE))
    except (OSError, ValueError, TypeError):
        pass  # a sweep without a remembered map is still a sweep


def _executor(args: argparse.Namespace) -> Callable:
    from tui_grad.sweep import executors

    if args.scheduler is not None and args.workers is not None:
        raise ConfigError(tr("--workers starts a local cluster; --scheduler uses yours: give one of them"))
    if args.scheduler is not None:
        return lambda *a, **k: executors.run_on_dask(*a, scheduler=args.scheduler, **k)
    if args.workers is not None and args.workers < 0:
        raise ConfigError(tr("{flag} must be 0 or more (got {value})", flag="--workers", value=args.workers))
    if args.workers == 0:
        return executors.run_here
    return lambda *a, **k: executors.run_on_dask(*a, workers=args.workers or os.cpu_count() or 1, **k)


def _execute(sweep: Sweep, writer, executor: Callable) -> tuple[bool, float, int]:
    """Run what ``writer`` does not have yet; returns (stopped, seconds, runs attempted)."""
    from tui_grad.sweep.executors import Stop

    todo = [(run, sweep.config(run).as_dict()) for run in sweep.runs() if run.key() not in writer.done]
    stop = Stop()
    handlers = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    bar = None
    if sys.stderr.isatty() and todo:
        from tui_grad.progressbar import TerminalProgress

        bar = TerminalProgress(sweep.size, tr("runs"), done=len(writer.rows))
    started = time.perf_counter()
    try:
        executor(todo, sweep.steps, writer.write,
                 stop, (lambda: bar.update(len(writer.rows))) if bar else (lambda: None))
    finally:
        if bar is not None:
            bar.update(len(writer.rows), force=True)
            bar.close()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    return stop.signal is not None, time.perf_counter() - started, len(todo)


def _report(args: argparse.Namespace, sweep: Sweep, rows: list[dict[str, str]]) -> int:
    from tui_grad.sweep.claims import evaluate_claims
    from tui_grad.sweep.table import write_json

    checks = evaluate_claims(sweep.claims, rows) if args.check else []
    if args.json:
        write_json(args.json, sweep, rows, checks)
    if args.plot:
        from tui_grad.plot import draw_map

        print(draw_map(rows, args.plot, sweep=sweep), file=sys.stdout if args.out != "-" else sys.stderr)
    for item in checks:
        print(item.line(), file=sys.stdout if args.out != "-" else sys.stderr)
    if args.check and not sweep.claims:
        print(f"{PROG}: " + tr("note: {scenario} has no [[expect]] entries to check", scenario=args.sweep),
              file=sys.stderr)
    return 1 if any(not c.passed for c in checks) else 0


def cmd_plot(args: argparse.Namespace) -> int:
    """Draw the map of METRIC over a result table's two swept axes."""
    from tui_grad.plot import draw_map
    from tui_grad.sweep.table import read_table

    sweep = load_sweep(args.sweep) if args.sweep else None
    print(draw_map(read_table(args.table), args.metric, sweep=sweep))
    return 0


def validate(files: list[str], validate_scenarios: Callable[[list[str]], int]) -> int:
    """``tui-grad validate``: sweep files here, everything else as scenario files."""
    bad = 0
    for name in files:
        if not is_sweep_file(name):
            bad += validate_scenarios([name]) != 0
            continue
        try:
            sweep = load_sweep(name)
        except ConfigError as exc:
            bad += 1
            print(f"{PROG}: {tr('error')}: {exc}", file=sys.stderr)
            continue
        print("OK  " + tr("{name}: {title} (sweep: {runs} runs of {steps} steps, {count} expectations)",
                          name=name, title=sweep.scenario.heading() or sweep.name, runs=sweep.size,
                          steps=sweep.steps, count=len(sweep.claims)))
    return 2 if bad else 0
