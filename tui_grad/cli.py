"""Command line: open the UI, run headless, validate, list, export or serve scenarios."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TextIO

from tui_grad import __version__, i18n
from tui_grad.config import ConfigError
from tui_grad.i18n import N_, tr

VERDICTS = {"healthy": N_("healthy"), "vanishing": N_("vanishing"), "exploding": N_("exploding"),
            "diverged": N_("diverged")}

PROG = "tui-grad"
COMMANDS = ("run", "lesson", "validate", "scenarios", "export", "serve", "sweep", "plot",
            "coord-check")
EXAMPLES = N_("""\
examples:
  tui-grad                                  # the UI on the default scenario
  tui-grad sigmoid-vanishing                # a bundled scenario
  tui-grad my-workshop.toml                 # a scenario file
  tui-grad lesson vanishing-and-exploding   # a workshop: the bundled lesson
  tui-grad --lang zh lesson vanishing-and-exploding   # the same, in Chinese
  tui-grad run relu-init --headless --csv out.csv --check
  tui-grad run default --headless --steps 200 --set network.depth=100 --csv -
  tui-grad validate scenarios/*.toml
  tui-grad scenarios                        # the bundled scenarios
  tui-grad export default --set network.activation=relu -o mine.toml
  tui-grad serve default --port 8000        # the same app in a browser
  tui-grad sweep quick --out quick.csv --plot loss_ratio   # a grid and its map
  tui-grad coord-check mup-width --csv coord.csv   # muP's check over widths
""")

# argparse's own words (usage, errors), which it looks up through gettext's "_"
ARGPARSE_TEXTS = (
    N_("usage: "), N_("positional arguments"), N_("options"), N_("show this help message and exit"),
    N_("argument %(argument_name)s: %(message)s"),
    N_("unrecognized arguments: %s"), N_("the following arguments are required: %s"),
    N_("expected one argument"), N_("invalid %(type)s value: %(value)r"),
    N_("invalid choice: %(value)r (choose from %(choices)s)"),
    N_("ambiguous option: %(option)s could match %(matches)s"))


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """argparse's layout measured in terminal cells, where a Chinese character takes two, and
    Chinese help broken between characters; the examples' lines are kept as they are."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        from tui_grad.tui.linebreak import wrap

        return wrap(" ".join(text.split()), width)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        from rich.cells import cell_len

        from tui_grad.tui.linebreak import wrap

        return "\n".join(indent + line for paragraph in text.splitlines()
                         for line in (wrap(paragraph, width - len(indent))
                                      if cell_len(paragraph) > width and not paragraph.startswith(" ")
                                      else [paragraph]))  # an indented line is an example: as is

    def _format_usage(self, usage, actions, groups, prefix) -> str:
        from rich.cells import cell_len

        prefix = tr("usage: ") if prefix is None else prefix
        # argparse indents the usage's further lines by len(prefix): give it as many spaces
        # as the prefix has cells, then put the prefix in their place (after any colour code)
        padding = " " * cell_len(prefix)
        return super()._format_usage(usage, actions, groups, padding).replace(padding, prefix, 1)


class Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line as every other bad input: no usage block."""

    def error(self, message: str):
        self.exit(2, f"{PROG}: {tr('error')}: {message} {tr('(see {prog} --help)', prog=self.prog)}\n")


def _lang_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lang", choices=i18n.LANGUAGES,
                        help=tr("language of everything shown: en or zh (default: from LC_ALL/LANG, "
                                "else en)"))


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, metavar="N", help=tr("training steps (overrides run.steps)"))
    parser.add_argument("--seed", type=int, metavar="N", help=tr("random seed (overrides run.seed)"))
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        dest="overrides", help=tr("override one option; repeatable"))


def build_parser(command: str | None) -> argparse.ArgumentParser:
    """The argument parser for ``command`` (None: the UI's ``tui-grad [SCENARIO]``)."""
    if command is None:
        parser = Parser(
            prog=PROG, allow_abbrev=False,
            description=tr("Watch vanishing and exploding gradients in deep networks, live. "
                                      "Commands: {commands} (see `tui-grad COMMAND --help`).",
                                      commands=", ".join(COMMANDS)),
            epilog=tr(EXAMPLES), formatter_class=HelpFormatter)
        parser.add_argument("--version", action="version", version=f"{PROG} {__version__}",
                            help=tr("show program's version number and exit"))
        parser.add_argument("scenario", nargs="?", default="default",
                            help=tr("scenario file or bundled scenario name (default: default)"))
        _common(parser)
        _lang_option(parser)
        return parser
    parser = Parser(prog=f"{PROG} {command}", epilog=tr(EXAMPLES), allow_abbrev=False,
                    formatter_class=HelpFormatter)
    _lang_option(parser)
    if command == "run":
        parser.add_argument("scenario", help=tr("scenario file or bundled scenario name"))
        parser.add_argument("--headless", action="store_true", help=tr("run without the UI"))
        parser.add_argument("--csv", metavar="PATH", help=tr("write metrics as CSV ('-' = stdout)"))
        parser.add_argument("--every", type=int, default=1, metavar="K", help=tr("keep every K-th step"))
        parser.add_argument("--summary", metavar="PATH", help=tr("write a JSON summary"))
        parser.add_argument("--histograms", metavar="PATH", help=tr(
            "write per-layer histograms as CSV every --every steps ('-' = stdout)"))
        parser.add_argument("--sharpness-every", type=int, metavar="K", help=tr(
            "measure the Hessian's top eigenvalue every K-th step (CSV column sharpness)"))
        parser.add_argument("--jacobian", action="store_true", help=tr(
            "add the Jacobian's singular-value summary at the end to the JSON summary"))
        parser.add_argument("--check", action="store_true",
                            help=tr("evaluate [[expect]]; exit 1 on FAIL"))
        _common(parser)
    elif command == "lesson":
        parser.add_argument("lesson", help=tr("lesson file or bundled lesson name ({names})",
                                              names=", ".join(_bundled_lessons()) or "-"))
        parser.add_argument("--step", type=int, default=1, metavar="K",
                            help=tr("open at step K (default: 1)"))
    elif command == "validate":
        parser.add_argument("files", nargs="+", help=tr("scenario, lesson or sweep files to check"))
    elif command == "export":
        parser.add_argument("scenario", help=tr("scenario file or bundled scenario name"))
        parser.add_argument("-o", "--output", metavar="PATH",
                            help=tr("file to write (default: stdout)"))
        parser.add_argument("--force", action="store_true", help=tr("overwrite PATH if it exists"))
        _common(parser)
    elif command == "serve":
        parser.add_argument("scenario", nargs="?", default="default",
                            help=tr("scenario file or bundled scenario name (default: default)"))
        parser.add_argument("--host", default="127.0.0.1", help=tr(
            "address to listen on (default: 127.0.0.1; 0.0.0.0 = every interface)"))
        parser.add_argument("--port", type=int, default=8000,
                            help=tr("port to listen on (default: 8000; 0 = any free port)"))
        parser.add_argument("--lesson", metavar="LESSON",
                            help=tr("serve a lesson (file or bundled name) instead of a scenario"))
        _common(parser)
    elif command in ("sweep", "plot"):
        from tui_grad.sweep.command import add_arguments

        add_arguments(command, parser)
    elif command == "coord-check":
        from tui_grad.coordcheck import add_arguments as coord_arguments

        coord_arguments(parser)
    return parser


def _bundled_lessons() -> list[str]:
    from tui_grad.lesson import bundled_lessons

    return list(bundled_lessons())


def language(argv: list[str]) -> str:
    """--lang's value in ``argv`` if it names a language, else the locale's, else English.

    Read before the parser is built: its help is written in that language. A bad value is
    left to the parser, which reports it."""
    chosen = None
    for index, arg in enumerate(argv):
        if arg == "--":
            break
        value = argv[index + 1] if arg == "--lang" and index + 1 < len(argv) else (
            arg.removeprefix("--lang=") if arg.startswith("--lang=") else None)
        if value in i18n.LANGUAGES:
            chosen = value  # the last one wins, as in argparse
    return chosen or i18n.language_from_environment()


def split_command(argv: list[str]) -> tuple[str | None, list[str]]:
    """The command and its arguments; ``--lang X`` may come before the command too
    (``tui-grad --lang zh run ...``)."""
    lead: list[str] = []
    rest = list(argv)
    while rest and (rest[0] == "--lang" or rest[0].startswith("--lang=")):
        take = 2 if rest[0] == "--lang" else 1
        lead, rest = lead + rest[:take], rest[take:]
    if rest and rest[0] in COMMANDS:
        return rest[0], lead + rest[1:]
    return None, argv


def use_language(argv: list[str]) -> str:
    """Choose the language of this process from ``argv`` and the locale; argparse's own words
    follow it."""
    chosen = i18n.use(language(argv))
    argparse._ = tr  # argparse looks its words up through this module-level name
    return chosen


def parse_overrides(args: argparse.Namespace) -> dict[str, object]:
    """--set pairs plus --steps/--seed as ``{"section.key": "value"}`` (validated later)."""
    overrides: dict[str, object] = {}
    for item in args.overrides:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(tr("--set needs SECTION.KEY=VALUE (got {item})", item=repr(item)))
        overrides[name.strip()] = value
    if args.steps is not None:
        overrides["run.steps"] = args.steps
    if args.seed is not None:
        overrides["run.seed"] = args.seed
    return overrides


def load(source: str, args: argparse.Namespace):
    """The scenario ``source`` with the command line's overrides applied."""
    from tui_grad.scenario import load_scenario

    scenario = load_scenario(source)
    overrides = parse_overrides(args)
    if not overrides:
        return scenario
    try:
        return scenario.with_overrides(overrides)
    except ConfigError as exc:
        raise ConfigError(exc.message, key=exc.key, path="--set") from None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tui-grad`` console script; returns the exit code."""
    # One BLAS thread: a second one slows narrow GEMMs and takes the core the UI needs.
    # Set before NumPy/SciPy load their OpenBLAS; a user's own setting wins.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    argv = list(sys.argv[1:] if argv is None else argv)
    use_language(argv)
    command, rest = split_command(argv)
    args = build_parser(command).parse_args(rest)
    try:
        if command == "validate":
            from tui_grad.sweep.command import validate

            return validate(args.files, cmd_validate)  # sweep files there, scenarios here
        if command in ("sweep", "plot"):
            from tui_grad.sweep.command import main as sweep_main

            return sweep_main(command, args)
        if command == "lesson":
            return cmd_lesson(args)
        if command == "coord-check":
            from tui_grad.coordcheck import cmd_coord_check

            return cmd_coord_check(args, load)
        if command == "scenarios":
            return cmd_scenarios(sys.stdout)
        if command == "export":
            return cmd_export(args)
        if command == "serve":
            return cmd_serve(args)
        if command == "run" and args.headless:
            return cmd_headless(args)
        return cmd_ui(args)
    except ConfigError as exc:
        print(f"{PROG}: {tr('error')}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        _silence_stdout()
        return 0


def _silence_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def cmd_validate(files: list[str]) -> int:
    """Load each file; print ``OK`` or the error per file; exit 2 if any is bad."""
    from tui_grad.scenario import load_scenario

    bad = 0
    for name in files:
        try:
            if _is_lesson(name):
                from tui_grad.lesson import load_lesson

                lesson = load_lesson(name)
                print("OK  " + tr("{name}: lesson {title} ({steps} steps)", name=name,
                                  title=lesson.heading(i18n.current()), steps=len(lesson.steps)))
                continue
            scenario = load_scenario(name)
        except ConfigError as exc:
            bad += 1
            print(f"{PROG}: {tr('error')}: {exc}", file=sys.stderr)
            continue
        extra = tr(", {count} variants", count=len(scenario.compare)) if scenario.compare else ""
        print("OK  " + tr("{name}: {title} ({count} expectations{extra})", name=name,
                          title=scenario.heading() or scenario.name, count=len(scenario.expects),
                          extra=extra))
    return 2 if bad else 0


def _is_lesson(name: str) -> bool:
    """A bundled lesson's name, or a file with [lesson] or [[step]] tables."""
    from pathlib import Path

    from tui_grad.lesson import bundled_lessons, is_lesson_file
    from tui_grad.scenario import read_toml

    path = Path(name)
    if not path.is_file():
        return name in bundled_lessons()
    try:
        data, _ = read_toml(path)
    except ConfigError:
        return False  # the scenario loader reports it
    return is_lesson_file(data)


def cmd_scenarios(out: TextIO) -> int:
    """List the bundled scenarios and their titles."""
    from tui_grad.scenario import bundled_paths, load_scenario

    for name, path in bundled_paths().items():
        out.write(f"{name:28s} {load_scenario(path).heading()}\n")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Write the scenario's (overridden) base configuration as a scenario file; an existing
    file is kept unless --force."""
    from tui_grad.files import FileExists, write_new_file
    from tui_grad.scenario import to_toml

    scenario = load(args.scenario, args)
    text = to_toml(scenario.config, name=scenario.name, title=scenario.title, notes=scenario.notes,
                   lock=scenario.lock, title_zh=scenario.title_zh, notes_zh=scenario.notes_zh)
    if args.output in (None, "-"):
        sys.stdout.write(text)
        return 0
    try:
        write_new_file(args.output, text, overwrite=args.force)
    except FileExists:
        raise ConfigError(tr("already exists; add --force to overwrite it"), path=args.output) from None
    print(tr("wrote {path}", path=args.output), file=sys.stderr)
    return 0


def cmd_headless(args: argparse.Namespace) -> int:
    """Run a scenario without the UI: CSV, JSON summary, --check; exit 130 when interrupted."""
    from tui_grad import headless

    if args.every < 1:
        raise ConfigError(tr("{flag} must be 1 or more (got {value})", flag="--every", value=args.every))
    if args.sharpness_every is not None and args.sharpness_every < 1:
        raise ConfigError(tr("{flag} must be 1 or more (got {value})", flag="--sharpness-every",
                             value=args.sharpness_every))
    if args.csv == "-" and args.histograms == "-":
        raise ConfigError(tr("--csv and --histograms cannot both write to stdout ('-')"))
    scenario = load(args.scenario, args)
    steps = scenario.config.run.steps
    stop = headless.StopRequested()
    progress = headless.ProgressBar() if sys.stderr.isatty() else None
    from tui_grad.files import open_output

    csv_stream = open_output(args.csv)
    try:
        hist_stream = open_output(args.histograms)
    except ConfigError:
        if csv_stream not in (None, sys.stdout):
            csv_stream.close()
        raise
    try:
        headless.install_stop_handlers(stop)
        results = headless.run(scenario, steps, csv=csv_stream, every=args.every, progress=progress,
                               stop=stop, histograms=hist_stream,
                               sharpness_every=args.sharpness_every, jacobian=args.jacobian)
    finally:
        for stream in (csv_stream, hist_stream):
            if stream not in (None, sys.stdout):
                stream.close()
    if stop.signal is not None:
        print(f"{PROG}: " + tr("interrupted after {steps} steps", steps=results[0].steps),
              file=sys.stderr)
        _write_summary(args.summary, results, [])
        return 130
    checks = headless.check(scenario, results) if args.check else []
    _write_summary(args.summary, results, checks)
    for item in checks:
        print(item.line(bool(scenario.compare)), file=sys.stdout if args.csv != "-" else sys.stderr)
    if args.check and not scenario.expects:
        print(f"{PROG}: " + tr("note: {scenario} has no [[expect]] entries to check",
                               scenario=args.scenario), file=sys.stderr)
    if not args.csv and not args.check and args.histograms != "-":
        for result in results:
            info = result.summary()
            diverged = "" if info["diverged_at"] is None else tr(
                " (diverged at step {step})", step=info["diverged_at"])
            verdict = tr(VERDICTS[info["verdict"]]) if info["verdict"] in VERDICTS else "-"
            loss = "-" if info["final_loss"] is None else f"{info['final_loss']:.6g}"  # --steps 0
            print(tr("{variant}: {steps} steps, final loss {loss}, {verdict}", variant=info["variant"],
                     steps=info["steps"], loss=loss, verdict=verdict) + diverged)
    return 1 if any(not c.passed for c in checks) else 0


def _write_summary(path: str | None, results: list, checks: list) -> None:
    from tui_grad.files import write_new_file

    if not path:
        return
    summary = {"variants": [r.summary() for r in results],
               "checks": [{"check": c.expectation.text, "variant": c.variant, "passed": c.passed,
                           "measured": c.measured} for c in checks]}
    write_new_file(path, json.dumps(summary, indent=2, default=str) + "\n")


def cmd_ui(args: argparse.Namespace) -> int:
    """Open the terminal UI on the scenario; the process ends with the app, within a moment
    (it does not return)."""
    headless_only = [flag for flag, given in (("--csv", getattr(args, "csv", None)),
                                              ("--summary", getattr(args, "summary", None)),
                                              ("--check", getattr(args, "check", False)),
                                              ("--every", getattr(args, "every", 1) != 1),
                                              ("--histograms", getattr(args, "histograms", None)),
                                              ("--sharpness-every", getattr(args, "sharpness_every", None)),
                                              ("--jacobian", getattr(args, "jacobian", False))) if given]
    if headless_only:
        flags = ", ".join(headless_only)
        raise ConfigError(tr("{flags} needs --headless (the UI writes no files)", flags=flags)
                          if len(headless_only) == 1 else
                          tr("{flags} need --headless (the UI writes no files)", flags=flags))
    import atexit

    from tui_grad.warmup import FirstStep, first_step_worth_it

    # step 0 in a child while this process starts the UI; started before the scenario is
    # read, so a forked child imports numba meanwhile (told the configs once they are known)
    first_step = FirstStep.launch() if _has_terminal() else None
    if first_step is not None:
        atexit.register(first_step.cancel)  # (_run_app leaves the process through atexit)
    scenario = load(args.scenario, args)  # a bad file is reported first, terminal or not
    _need_terminal(tr("add --headless to run without one (tui-grad run SCENARIO --headless --csv -)"))
    configs = [variant.config for variant in scenario.variants]
    if first_step_worth_it(configs):  # (a child is there: there is a terminal)
        first_step.send(configs)
    else:  # a long step is loaded for and taken once, here
        first_step.cancel()
        first_step = None
    from tui_grad.tui.app import GradApp

    _run_app(GradApp(scenario, first_step=first_step), configs, preload=first_step is None)


def cmd_lesson(args: argparse.Namespace) -> int:
    """Open the UI on a lesson's step (default the first); N and P move between steps."""
    from tui_grad.lesson import load_lesson

    lesson = load_lesson(args.lesson)
    if not 1 <= args.step <= len(lesson.steps):
        raise ConfigError(tr("--step must be 1..{last} (got {step})", last=len(lesson.steps),
                             step=args.step))
    _need_terminal(tr("a lesson is a sequence of live runs"))
    from tui_grad.tui.app import GradApp

    step = lesson.steps[args.step - 1]
    app = GradApp(lesson=lesson, lesson_step=args.step - 1)
    _run_app(app, [variant.config for variant in step.scenario.variants])


def _has_terminal() -> bool:
    # textual-serve runs the app without a terminal, through its web driver
    return (sys.stdin.isatty() and sys.stdout.isatty()) or "TEXTUAL_DRIVER" in os.environ


def _need_terminal(hint: str) -> None:
    if not _has_terminal():
        raise ConfigError(tr("the UI needs a terminal; {hint}", hint=hint))


def _run_app(app, configs: list, preload: bool = True) -> None:
    """Run ``app``, after loading the kernels ``configs`` need unless ``preload`` is False
    (the app's worker loads them); leave the process with it."""
    import asyncio
    import atexit
    import contextlib
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from tui_grad import warmup

    if preload:
        warmup.preload(configs)  # before the UI starts
    workers = ThreadPoolExecutor(thread_name_prefix="tui-grad-worker")  # Textual's threads
    runner = asyncio.Runner()  # as asyncio.run, but leaving it need not wait for workers
    runner.get_loop().set_default_executor(workers)
    code = 130  # if an interrupt gets past Textual (SIGINT itself quits the app cleanly)
    with contextlib.suppress(KeyboardInterrupt):
        runner.run(app.run_async())
        code = app.return_code or 0  # 1 after a crash inside the app, which Textual reports
    # The terminal is restored. A step or a compile inside numba cannot be interrupted: give
    # threads a moment, then leave without them (they compute, nothing to save), and without
    # the interpreter's finalisation, which took 0.3 s of the 1 s a quit may take.
    workers.shutdown(wait=False, cancel_futures=True)  # idle threads end now
    leave_at = time.monotonic() + 0.3
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join(max(leave_at - time.monotonic(), 0.0))
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the UI to browsers, one app process per tab, until Ctrl-C (tui_grad.serve)."""
    from tui_grad import serve

    serve.check_port(args.port)
    if args.lesson:
        from tui_grad.lesson import load_lesson

        load_lesson(args.lesson)  # fail here, not in every browser tab
        argv = [sys.executable, "-m", "tui_grad", "lesson", "--lang", i18n.current(), "--",
                args.lesson]
        return serve.serve(argv, scenario=args.lesson, host=args.host, port=args.port)
    load(args.scenario, args)  # fail here, with a clear message, not in every browser tab
    argv = serve.app_command(args.scenario, args.overrides, args.steps, args.seed, i18n.current())
    return serve.serve(argv, scenario=args.scenario, host=args.host, port=args.port)
