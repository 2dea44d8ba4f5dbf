"""Compiling the engine's kernels before the first step, in a child process, with progress.

The first start compiles the numba kernels (about half a minute on 2 cores); numba caches
them, so later starts only load them. Compiling in a child process keeps the app live and
lets it quit at once (a thread inside numba cannot be stopped, a process can be killed);
the app then loads what the child cached.

The app's worker asks ``needed(configs)``: False means every kernel was found in the cache
and is now loaded. True means ``Warmup(configs)``: ``start()``, ``poll()`` until ``done``,
``cancel()`` on every path. ``preload(configs)`` does ``needed``'s work before the UI
starts. ``python -m tui_grad.warmup`` is the child: a JSON request on stdin, JSON lines on
stdout. Knows nothing of Textual. On a cold cache it starts a second child (``_Helper``) that
compiles the MLP's backward pass while it compiles the forward pass: each is about half of
the compile, so both cores work (a cold start takes 0.60-0.69x the time of one process
compiling alone, on 2 cores).

``FirstStep(configs)`` runs the same child at launch, beside the UI's own start: it loads the
kernels from the cache and takes the first step of each config, which the app shows while it
loads the kernels itself (two processes use both cores; two threads would share one lock).
When a kernel is not cached it says so and stays: the app hands it the warm-up
(``Warmup(configs, process=child.handover())``), numba and the engine already imported.
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import json
import os
import pickle
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tui_grad.config import OPTIONS, Config
from tui_grad.i18n import N_, tr

CHILD = (sys.executable, "-m", "tui_grad.warmup")  # main() below, in a process of its own
TEXT_WIDTH = 60  # terminal cells of a progress line (a Chinese character takes 2)
RECORD_NAME = "tui_grad-warmup.pickle"  # beside numba's cache files
LOCK_NAME = "tui_grad-warmup.lock"  # one warm-up per cache directory at a time
HELPER_TIMEOUT_SECONDS = 900  # a helper still compiling then is ended: backward compiles here
HELPER_CACHE_NAME = "tui_grad-warmup-helper"  # the backward helper's scratch cache, beside
# Compile events of a cold start by the (model, dtype) pairs of a scenario's variants,
# counted with numba 0.68.1 on this engine on 2026-12-02 (kernels and numba's own helpers
# they call; an MLP's include those of the backward helper, _Helper); the count in the
# cache's record (from the last cold warm-up) is used instead once it exists.
COLD_COMPILES = {frozenset({("mlp", "float32")}): 74, frozenset({("mlp", "float64")}): 67,
                 frozenset({("rnn", "float32")}): 121, frozenset({("lstm", "float32")}): 131,
                 frozenset({("rnn", "float32"), ("lstm", "float32")}): 135}


@dataclass(frozen=True)
class Progress:
    """How far a warm-up got: a status line (at most 60 terminal cells, in the language in
    use), whether it has finished, and why it failed (None: it did not)."""

    text: str
    done: bool = False
    error: str | None = None


class CompileNeeded(Exception):
    """A kernel was about to be compiled where only loading was allowed."""


def family(config: Config) -> str:
    """The options that can change which kernels a step compiles: choices and switches."""
    return ",".join(f"{opt.key}={config[opt.name]}" for opt in OPTIONS
                    if opt.choices or opt.kind is bool)


def _key(configs: Iterable[Config]) -> str:
    return ";".join(sorted({family(config) for config in configs}))


# ------------------------------------------------------------------ the cache and its record
def cache_dir() -> Path | None:
    """Where numba caches the engine's kernels (None: caching is off)."""
    from tui_grad.engine import kernels

    path = getattr(getattr(kernels.forward, "_cache", None), "_cache_path", None)
    return Path(path) if path else None


def _fingerprint() -> tuple:
    """Python, numba and the engine's sources: a record made with others is stale."""
    import numba

    from tui_grad.engine import kernels

    sources = sorted(Path(kernels.__file__).parent.glob("*.py"))
    stamps = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in sources)
    return sys.version_info[:2], numba.__version__, stamps


def _read_record(directory: Path) -> dict:
    try:
        with open(directory / RECORD_NAME, "rb") as stream:
            record = pickle.load(stream)
    except Exception:  # missing, half-written by a killed process, or from another numba
        return {}
    return record if record.get("fingerprint") == _fingerprint() else {}


def _write_record(directory: Path, key: str, loads: list, compiles: int | None) -> None:
    record = _read_record(directory) or {"fingerprint": _fingerprint(), "loads": {},
                                         "compiles": {}}
    record["loads"][key] = loads
    if compiles is not None:
        record["compiles"][key] = compiles
    temporary = directory / f"{RECORD_NAME}.{os.getpid()}.tmp"
    with open(temporary, "wb") as stream:
        pickle.dump(record, stream)
    os.replace(temporary, directory / RECORD_NAME)


def expected_compiles(configs: list[Config]) -> tuple[int | None, bool]:
    """How many compile events a cold warm-up of ``configs`` takes, and whether that was
    counted on this machine and engine (False: an estimate)."""
    directory = cache_dir()
    counted = _read_record(directory).get("compiles", {}) if directory else {}
    if _key(configs) in counted:
        return counted[_key(configs)], True
    kinds = frozenset((config.network.model, config.network.dtype) for config in configs)
    return COLD_COMPILES.get(kinds), False


# ------------------------------------------------------------------ is a warm-up needed?
@contextlib.contextmanager
def _compile_events(on_start, on_end=None):
    """Call ``on_start(event)`` / ``on_end(event)`` around every numba compile (cache misses
    only: loading from the cache is no compile) while the block runs."""
    from numba.core import event

    class Callbacks(event.Listener):
        def on_start(self, item) -> None:
            on_start(item)

        def on_end(self, item) -> None:
            if on_end is not None:
                on_end(item)

    listener = Callbacks()
    event.register("numba:compile", listener)
    try:
        yield
    finally:
        event.unregister("numba:compile", listener)


def _check(configs: list[Config]) -> bool:
    this_thread = threading.get_ident()

    def forbid(item) -> None:
        if threading.get_ident() == this_thread:  # other threads may compile as they like
            raise CompileNeeded(item.data["dispatcher"].py_func.__qualname__)

    try:
        directory = cache_dir()
        if directory is None:
            return False  # nothing would be cached: the app compiles as it always did
        loads = _read_record(directory).get("loads", {}).get(_key(configs))
        with _compile_events(forbid):
            if not loads:  # not known what they load: try one step of each, loading only
                _probe(configs, directory)
            for module, qualname, signature in loads or ():
                getattr(importlib.import_module(module), qualname).compile(signature)
    except Exception:  # a cache miss, a kernel the engine no longer has, or worse, which
        return True  # the warm-up child will meet too and report
    return False


def _probe(configs: list[Config], directory: Path) -> None:
    """One step of each config on a throwaway Simulator (raises at the first compile), then
    record what it loaded, so the next start loads that without a step."""
    from tui_grad.engine import Simulator

    def loaded() -> set:
        return {(module, name, signature) for module, name, kernel in _engine_dispatchers()
                for signature in kernel.overloads}

    before = loaded()
    for config in configs:
        Simulator(config).step()
    if new := loaded() - before:  # (nothing new: this process had them all already)
        _write_record(directory, _key(configs), sorted(new, key=str), None)


_answers: dict[str, bool] = {}


def preload(configs: list[Config]) -> None:
    """Do ``needed(configs)``'s work now (import the engine, load the cached kernels), before
    the UI starts; ``needed`` then takes its answer. Not in a thread beside the UI's start:
    both are Python holding the GIL, and interleaved they took longer than one after the
    other (warm start 3.3 s against 2.6 s on 2 cores, benchmarks/bench_memory_startup.py)."""
    key = _key(configs)
    if key not in _answers:
        _answers[key] = _check(configs)


def needed(configs: list[Config]) -> bool:
    """True when a kernel ``configs`` need is not in numba's cache (or it is not known
    which kernels they need), so a warm-up should run; False after loading them all."""
    answer = _answers.pop(_key(configs), None)
    return _check(configs) if answer is None else answer


# ------------------------------------------------------------------ the warm-up (app side)
def fit(text: str, name: str, width: int = TEXT_WIDTH, **fields: object) -> str:
    """``text`` (marked with N_) translated, its ``{name}`` and other ``fields`` filled in,
    the name shortened with "..." so the line takes at most ``width`` terminal cells."""
    from rich.cells import cell_len

    room = width - cell_len(tr(text, name="", **fields))
    if cell_len(name) > room:
        kept, cells = "", 0
        for char in name:
            cells += cell_len(char)
            if cells > room - 3:
                break
            kept += char
        name = kept + "..."
    return tr(text, name=name, **fields)


def _stop(process) -> None:
    """End a child (a Popen or a _Fork): killed if still running, reaped, its stdin closed."""
    if process.poll() is None:
        process.kill()
    process.wait()
    with contextlib.suppress(OSError):
        process.stdin.close()


def _discard(process) -> None:
    """_stop a child nobody reads from, and close its stdout too."""
    _stop(process)
    with contextlib.suppress(OSError):
        process.stdout.close()


class Warmup:
    """A child process compiling the kernels of ``configs`` into numba's cache.

    Only one warm-up per cache directory runs at a time (numba's cache files are not safe
    for two processes adding entries to the same function); a second one waits for the
    first, then mostly loads what it compiled. ``cancel`` ends the child at once.
    """

    command = CHILD  # (tests swap in a fake)

    def __init__(self, configs: list[Config], process=None, compiling: bool = False) -> None:
        """``process``: a child to use instead of starting one (FirstStep.handover);
        ``compiling``: it holds the warm-up lock and compiles ``configs`` already."""
        self.configs = list(configs)
        self._adopted = process
        self._compiling = compiling and process is not None
        self.total, self.counted = expected_compiles(self.configs)
        self._directory = cache_dir()
        self._process: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._lock_file = None
        self._started = 0.0
        self._waited = False  # another warm-up held the cache when this one looked
        self._outcome: Progress | None = None  # finished without a child of its own
        self._state: dict = {"k": 0, "name": "", "done": False, "error": None, "said": ""}
        self._guard = threading.Lock()

    def __enter__(self) -> Warmup:
        return self

    def __exit__(self, *exc_info) -> None:
        self.cancel()

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs (None before it started or once ended)."""
        return self._process.pid if self._process is not None else None

    @classmethod
    def taking_over(cls, child: FirstStep, configs: list[Config]) -> Warmup | None:
        """The warm-up of a first-step child that found the cache cold, which it owns from
        now on (``cancel`` ends it), or None when there is no such child to take over."""
        process = child.handover()
        if process is None:
            return None
        try:
            return cls(configs, process=process, compiling=child.compiling)
        except BaseException:
            _discard(process)
            raise

    def first_steps(self) -> list:
        """The first step of each config, taken by the child once it had compiled them (the
        same numbers as the app's own step 0), or [] if it sent none."""
        with self._guard:
            text = self._state.get("first")
        try:
            return _decode(text) if text else []
        except Exception:  # noqa: BLE001 - a preview is a bonus, never a failure
            return []

    def start(self) -> None:
        """Start the child now, or as soon as no other warm-up holds the cache."""
        self._started = time.monotonic()
        self.poll()

    def poll(self) -> Progress:
        """What the child is doing; ``done`` once it finished (or failed: ``error``)."""
        seconds = f"{time.monotonic() - self._started:.0f} s"
        if self._outcome is not None:
            return self._outcome
        if self._process is None and self._adopted is not None and self._compiling:
            self._spawn()  # (the child holds the lock: none to take)
        if self._process is None and not self._lock():
            self._waited = True
            self._drop_adopted()  # (idle while it waits: on a workshop server with many
            # apps starting at once, each would hold numba's memory for nothing)
            return Progress(tr("waiting: another tui-grad is compiling kernels, {seconds}", seconds=seconds))
        if self._process is None and self._waited:
            self._waited = False
            self._unlock()  # let others look at the same time
            if not _check(self.configs):  # the other one compiled all this app needs
                self._outcome = Progress(tr("loaded the kernels"), done=True)
                return self._outcome
            return self.poll()
        if self._process is None:
            self._spawn()
        return self._progress(seconds)

    def _progress(self, seconds: str) -> Progress:
        exited = self._process.poll() is not None
        if exited:
            self._reader.join(timeout=1.0)  # its last lines say how it ended
        with self._guard:
            state = dict(self._state)
        if state["done"]:
            return Progress(tr("compiled; loading the kernels..."), done=True)
        if state["error"] or exited:
            error = state["error"] or state["said"] or f"exit code {self._process.returncode}"
            return Progress(fit(N_("warm-up failed, compiling here: {name}"), error), done=True,
                            error=error)
        if not state["k"]:
            return Progress(tr("looking for compiled kernels, {seconds}", seconds=seconds))
        count = f"{state['k']}" if self.total is None or state["k"] > self.total else tr(
            "{k} of {total}", k=state["k"], total=f"{'' if self.counted else '~'}{self.total}")
        # most important first, should a narrow status bar cut the end
        return Progress(fit(N_("compiling {name} ({count}), {seconds}; first start only"),
                            state["name"] or tr("kernels"), count=count, seconds=seconds))

    def cancel(self) -> None:
        """End the child (killed if still running) and release the cache; safe to repeat."""
        self._drop_adopted()
        process, self._process = self._process, None
        if process is not None:
            _stop(process)
            if self._reader is not None:
                self._reader.join(timeout=1.0)  # (its stdout closes after what it read)
            with contextlib.suppress(OSError):
                process.stdout.close()
        self._unlock()

    def _drop_adopted(self) -> None:
        """End the handed-over child not used (yet): another warm-up holds the cache."""
        adopted, self._adopted = self._adopted, None
        if adopted is not None:
            _discard(adopted)

    def _spawn(self) -> None:
        request = {"configs": [config.as_dict() for config in self.configs]}
        self._process, self._adopted = self._adopted, None
        if self._process is None:
            self._process = subprocess.Popen(list(self.command), stdin=subprocess.PIPE,
                                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if not self._compiling:
            with contextlib.suppress(OSError):  # (a handed-over child that died meanwhile:
                # _progress reports it as failed, and the app compiles itself)
                self._process.stdin.write(json.dumps(request).encode() + b"\n")
                self._process.stdin.flush()  # stdin stays open: the child ends when it closes
        self._reader = threading.Thread(target=self._read, args=(self._process.stdout,),
                                        name="tui-grad-warmup-reader", daemon=True)
        self._reader.start()

    def _unlock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing releases the lock
            self._lock_file = None

    def _lock(self) -> bool:
        """Take the cache directory's lock if free (True also where there is none to take)."""
        if self._lock_file is None:
            held = _lock_cache(self._directory)
            if held is None:
                return False
            self._lock_file = None if held is True else held
        return True

    def _read(self, stream) -> None:
        for raw in stream:  # ends when the child ends
            line = raw.decode("utf-8", "replace")
            try:
                message = json.loads(line)
            except ValueError:
                message = {"said": line.strip()[-200:]} if line.strip() else {}
            if not isinstance(message, dict):
                message = {"said": line.strip()[-200:]}
            with self._guard:
                self._state.update(message)


# Above this many multiply-adds per training step (all variants), FirstStep's step 0 is not
# worth taking: about 0.3 s of a step on the 2-core machine, which the app would then take a
# second time after loading the kernels (depth 1000 x width 256 x batch 512 is 3.4e10).
FIRST_STEP_MAX_MACS = 1e10


def first_step_worth_it(configs: list[Config]) -> bool:
    """Whether the first steps of ``configs`` are short enough to take twice: once in
    FirstStep's child, to show at once, and again once the app has loaded the kernels."""
    macs = 0.0
    for config in configs:
        net, batch = config.network, config.training.batch_size
        if net.model == "mlp":
            macs += batch * net.depth * net.width ** 2
        else:  # one recurrent layer over the sequence; an LSTM has four gates
            macs += batch * config.data.seq_len * net.width ** 2 * (4 if net.model == "lstm" else 1)
    return macs <= FIRST_STEP_MAX_MACS


class FirstStep:
    """A child process taking the first step of each of ``configs`` with the kernels in
    numba's cache, started before the UI so both cores work: the app imports Textual and
    draws its screen while the child imports numba and loads the kernels (about a second
    each on 2 cores). The app shows the child's step 0 as a preview (the same kernels and
    seed: the same numbers, bit for bit) until it has loaded the kernels itself.

    ``poll()`` is None while the child works, then the first steps' StepMetrics, one per
    config, or [] when there are none to show (a kernel is not in the cache: the app's
    warm-up compiles it; or the child failed: the app steps as it would without it).
    Imports neither numba nor the engine. ``cancel()`` ends the child; safe to repeat.
    """

    command = CHILD
    # a fork skips Python's start and the imports made here (0.15-0.3 s of 1.3 s); only
    # where it is safe: Linux, and one thread (the CLI before Textual starts)
    fork = sys.platform == "linux"

    def __init__(self, configs: list[Config]) -> None:
        self.configs = list(configs)
        self._process: subprocess.Popen | _Fork | None = None
        self._answer: list | None = None
        self._said = b""  # what the child wrote, up to its last whole line
        self._guard = threading.Lock()  # the app's worker polls; atexit may cancel
        self.outcome = ""  # why poll() gave what it gave: first, cold, error: ..., ...
        self.compiling = False  # cold, and the child went on to compile (see handover)
        self.forked = False  # the child is this process forked (it answers well within 1 s)

    def __enter__(self) -> FirstStep:
        return self

    def __exit__(self, *exc_info) -> None:
        self.cancel()

    @classmethod
    def launch(cls) -> FirstStep:
        """A child started now, before the configs are known (then ``send(configs)``);
        forked where safe, it imports numba and the engine while this process reads the
        scenario."""
        child = cls([])
        child._spawn(prepare=_import_engine)
        return child

    def start(self) -> None:
        """Start the child and ask for the first steps of ``configs`` at once."""
        self._spawn()
        self.send(self.configs)

    def _spawn(self, prepare=None) -> None:
        """Fork (``prepare``: what the forked child does before it reads the request) or,
        where forking is not safe, run the child as a subprocess."""
        try:
            if self._can_fork():
                self._process = _Fork(prepare=prepare)
                self.forked = True
            else:
                self._process = subprocess.Popen(
                    list(self.command), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL)
            os.set_blocking(self._process.stdout.fileno(), False)
        except OSError:
            self.cancel()  # (send then answers "failed to start")

    def send(self, configs: list[Config]) -> None:
        """Ask the started child for the first step of each of ``configs``."""
        self.configs = list(configs)
        request = {"configs": [config.as_dict() for config in self.configs], "first_step": True}
        try:
            self._process.stdin.write(json.dumps(request).encode() + b"\n")
            self._process.stdin.flush()  # stdin stays open: the child ends when it closes
        except (OSError, AttributeError, ValueError):  # (ended, or cancelled meanwhile)
            self.cancel()
            self.outcome, self._answer = "failed to start", []

    def _can_fork(self) -> bool:
        """Fork only a process with one thread that has not loaded numba (the CLI before
        Textual starts), and only with two CPUs to use (on one, the child would slow the
        app's own start)."""
        if not self.fork or threading.active_count() > 1 or "numba" in sys.modules:
            return False
        try:
            return len(os.sched_getaffinity(0)) >= 2
        except (AttributeError, OSError):
            return (os.cpu_count() or 1) >= 2

    def poll(self) -> list | None:
        """None while the child works; then its first steps, or [] (none to show:
        ``outcome`` says why). Thread-safe. A child that found the cache cold is kept for
        ``handover``."""
        with self._guard:
            if self._answer is None and self._process is not None:
                self._read(self._process)
            if self._answer is None and self._process is None:
                self.outcome, self._answer = "cancelled", []
            if self._answer is not None and self.outcome != "cold":
                self._end()
            return self._answer

    def handover(self):
        """The child, once it found the cache cold, for ``Warmup(configs, process=...,
        compiling=self.compiling)`` (it has numba and the engine imported, and compiles
        already if it could take the warm-up lock); None if it is not there to hand over.
        From now on ending it is the warm-up's job."""
        with self._guard:
            if self.outcome != "cold" or self._process is None or self._process.poll() is not None:
                return None
            process, self._process = self._process, None
            with contextlib.suppress(OSError, ValueError):
                os.set_blocking(process.stdout.fileno(), True)  # (the warm-up reads lines)
            return process

    def _read(self, process) -> None:
        exited = process.poll() is not None  # before reading: then all it wrote is read
        with contextlib.suppress(OSError, ValueError):
            while chunk := process.stdout.read(1 << 20):  # None: nothing more for now
                self._said += chunk
        *lines, self._said = self._said.split(b"\n")
        for line in lines:
            with contextlib.suppress(ValueError):
                message = json.loads(line)
                if isinstance(message, dict) and "first" in message:
                    try:
                        self._answer = _decode(message["first"])
                        self.outcome = "first"
                    except Exception:  # noqa: BLE001 - a preview is a bonus, never a failure
                        self.outcome, self._answer = "unreadable", []
                elif isinstance(message, dict) and ("cold" in message or "error" in message):
                    self.outcome = "cold" if "cold" in message else f"error: {message['error']}"
                    self.compiling = bool(message.get("compiling"))
                    self._answer = []
        if self._answer is None and exited:
            self.outcome, self._answer = "ended without an answer", []

    def cancel(self) -> None:
        """End the child (killed if still running); safe to repeat, from any thread."""
        with self._guard:
            self._end()

    def _end(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            _discard(process)


class _Fork:
    """This process forked to run the child's ``main()`` on two pipes, as the subprocess
    would (what FirstStep uses of Popen: stdin, stdout, pid, poll, kill, wait)."""

    def __init__(self, prepare=None) -> None:
        """``prepare``: what the child does before it reads the request."""
        import signal

        fds = [*os.pipe(), *os.pipe()]
        request_read, request_write, answer_read, answer_write = fds
        # Ctrl-C held back while forking: a KeyboardInterrupt must never run the child's
        # copy of the caller's code (the child unblocks it with the default action)
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            self.pid = os.fork()
        except OSError:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            for fd in fds:
                os.close(fd)
            raise
        if self.pid == 0:  # the child: never returns into the caller's code
            code = 1
            try:
                signal.signal(signal.SIGINT, signal.SIG_DFL)  # (ends it, without Python)
                signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
                os.dup2(request_read, 0)
                os.dup2(answer_write, 1)
                os.dup2(os.open(os.devnull, os.O_WRONLY), 2)  # not the app's terminal
                os.closerange(3, 1 << 16)  # the app's end of the request pipe too: its EOF
                # says the app is gone
                # the streams main() uses, on these descriptors (not the caller's objects)
                sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
                sys.stdout = open(1, "w", encoding="utf-8", buffering=1, closefd=False)  # noqa: SIM115
                sys.stderr = open(2, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
                if prepare is not None:
                    prepare()
                code = main()
                sys.stdout.flush()
            finally:
                os._exit(code)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        os.close(request_read)
        os.close(answer_write)
        self.stdin = os.fdopen(request_write, "wb")
        self.stdout = os.fdopen(answer_read, "rb")
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped already: it has ended
                self.returncode = -1
            else:
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def kill(self) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, 9)

    def wait(self) -> int:
        if self.returncode is None:
            try:
                self.returncode = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
            except ChildProcessError:
                self.returncode = -1
        return self.returncode


def _encode(metrics: list) -> str:
    """StepMetrics as one line of text (a child's "first" message)."""
    return base64.b64encode(pickle.dumps(metrics)).decode()


def _decode(text: str) -> list:
    return pickle.loads(base64.b64decode(text))


def _cold() -> None:
    """Say that a kernel is not cached; start compiling at once where the warm-up lock is
    free (a second sooner than waiting for the app, which is still starting its UI)."""
    global _cache_lock
    _cache_lock = _lock_cache(cache_dir())
    _say(cold=True, compiling=_cache_lock is not None)


def _lock_cache(directory: Path | None):
    """Take the warm-up lock of the cache ``directory`` (Warmup's) if it is free: the open
    file that holds it (this process ending releases it), True where there is no lock to
    take, None if another warm-up holds it."""
    try:
        import fcntl

        directory.mkdir(parents=True, exist_ok=True)
        holder = open(directory / LOCK_NAME, "a")  # noqa: SIM115
    except (ImportError, OSError, AttributeError):  # no flock, a cache numba cannot write
        return True  # either, or none (AttributeError: directory None)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder.close()
        return None
    return holder


# ------------------------------------------------------------------ the child
def _read_requests(requests: queue.SimpleQueue) -> None:
    """Pass on the app's requests, one per line; end this process when the app's end of
    stdin closes (the app ended, however, or is done with this child)."""
    for line in sys.stdin:
        requests.put(line)
    os._exit(3)


_said = threading.Lock()  # the helper's progress is said from a reader thread too


def _say(**message) -> None:
    with _said:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()


def _engine_dispatchers() -> list:
    """(module, name, dispatcher) of every numba kernel the engine defines."""
    from numba.core.registry import CPUDispatcher

    return [(name, attribute, value) for name, module in list(sys.modules.items())
            if name.startswith("tui_grad.engine")
            for attribute, value in vars(module).items()
            if isinstance(value, CPUDispatcher) and value.__module__ == name]


@contextlib.contextmanager
def _skipping(module_name: str, name: str, replacement=lambda *args: None):
    """``module.name`` (a kernel) replaced while the block runs by ``replacement``: the step
    goes on without it, on whatever the buffers hold, and compiles the rest."""
    module = importlib.import_module(module_name)
    kept = getattr(module, name)
    setattr(module, name, replacement)
    try:
        yield
    finally:
        setattr(module, name, kept)


def _some_loss(*args) -> float:
    """A stand-in for the loss kernel, for _skipping (the step needs a number)."""
    return 1.0


class _Helper:
    """A second warm-up process compiling the MLP's backward pass (about half of a cold
    start) while this one compiles the rest: both cores work. It compiles into a scratch
    cache (numba's cache files are not safe for two processes adding different entries to
    one function, and both compile some of the same small kernels), and ``finish`` copies
    backward's files into ours. Any failure leaves backward to this process, as before.

    Made before this process compiles anything: where it can, the helper is this process
    forked, with numba and the engine imported already (a second sooner than a new Python,
    on the cold start's longest path)."""

    fork = sys.platform == "linux"

    def __init__(self, configs: list[Config], on_progress, directory: Path) -> None:
        import shutil

        # beside numba's cache, where one warm-up at a time works (Warmup's lock): what a
        # killed warm-up left there is removed now
        self.scratch = str(directory / HELPER_CACHE_NAME)
        shutil.rmtree(self.scratch, ignore_errors=True)
        request = {"configs": [config.as_dict() for config in configs], "half": "backward"}
        self.process = self._start()
        self.process.stdin.write(json.dumps(request).encode() + b"\n")
        self.process.stdin.flush()  # open while it works: it ends when this process does
        self.answer: dict = {}
        self.reader = threading.Thread(target=self._read, args=(on_progress,), daemon=True)
        self.reader.start()

    def _start(self) -> subprocess.Popen | _Fork:
        self.forked = False  # (a subprocess helper caches everything in its scratch cache)
        if self.fork:
            with contextlib.suppress(OSError):
                process = _Fork(prepare=lambda: _cache_into(self.scratch))
                self.forked = True
                return process
        return subprocess.Popen(list(CHILD), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL,
                                env={**os.environ, "NUMBA_CACHE_DIR": self.scratch})

    def _read(self, on_progress) -> None:
        for line in self.process.stdout:
            with contextlib.suppress(ValueError, TypeError):
                message = json.loads(line)
                if "k" in message:
                    on_progress(message.get("name") or "backward")
                else:
                    self.answer.update(message)

    def finish(self) -> bool:
        """Wait for the helper; copy backward's cache files into this process's cache, and
        those of the HELPED kernels where ours has none (this process loaded them from the
        helper's cache and saved nothing: later compiles that call them load them). Whether
        backward's are there now."""
        import shutil

        from tui_grad.engine import backprop

        try:
            give_up = time.monotonic() + HELPER_TIMEOUT_SECONDS
            while self.process.poll() is None:  # (a hung helper must not hold the cache)
                if time.monotonic() > give_up:
                    self.process.kill()
                time.sleep(0.05)
            self.reader.join()
            cache = backprop.backward._cache
            ours, theirs = Path(cache._cache_path), Path(self.answer["cache"])
            if not self.answer.get("done") or self.answer.get("index") != cache._cache_file._index_name:
                return False
            for kernel in _kernels(HELPED):  # (the engine's modules share one directory)
                if not _cache_files(ours, kernel):
                    _copy_cache_files(theirs, ours, kernel)
            return _copy_cache_files(theirs, ours, backprop.backward)
        except Exception:  # noqa: BLE001 - this process compiles backward instead
            return False
        finally:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
            shutil.rmtree(self.scratch, ignore_errors=True)


def _kernels(names) -> list:
    """The kernels named by (module, name) pairs (SHARED, HELPED)."""
    return [getattr(importlib.import_module(module), name) for module, name in names]


def _cache_files(directory: Path, kernel) -> list[Path]:
    """``kernel``'s numba cache files in ``directory``: its index and data files."""
    return list(directory.glob(kernel._cache._cache_file._index_name.removesuffix(".nbi") + ".*"))


def _saving_nothing(cache):
    """``cache`` (a kernel's numba cache), made to load only."""
    cache.save_overload = lambda *args, **kwargs: None
    return cache


def _copy_cache_files(theirs: Path, ours: Path, kernel) -> bool:
    """Copy ``kernel``'s numba cache files (its index and data files) from the directory
    ``theirs`` to ``ours``, each by an atomic rename, the index last. Whether it had one."""
    import shutil

    files = sorted(_cache_files(theirs, kernel), key=lambda path: path.suffix == ".nbi")
    for path in files:
        temporary = ours / f"{path.name}.{os.getpid()}.tmp"
        shutil.copyfile(path, temporary)
        os.replace(temporary, ours / path.name)
    return any(path.suffix == ".nbi" for path in files)


# Kernels of backward's that the warm-up compiles first, in the order the helper meets them,
# while the helper compiles the rest of backward and loads these (a stand-in for backward,
# _compiling_shared, compiles them for backward's own argument types). _tiled is forward's
# too: compiled once, not in both processes.
SHARED = (("tui_grad.engine.backprop", "layer_grads"), ("tui_grad.engine.gemm", "_tiled"),
          ("tui_grad.engine.backprop", "fused_update"))


def _forget_cached(kernels) -> None:
    """Remove the numba cache files of ``kernels`` ((module, name) pairs) from our cache,
    before compiling them for the helper to load: numba writes an entry's index before its
    data file, so a helper reading the new index at that moment would load an older data
    file of the same number (an earlier version's). Without one, it compiles its own copy."""
    for kernel in _kernels(kernels):
        for path in _cache_files(Path(kernel._cache._cache_path), kernel):
            with contextlib.suppress(OSError):
                path.unlink()


def _cache_into(directory: str) -> None:
    """Make numba cache the engine's kernels in ``directory`` from now on (a forked helper:
    its kernels were made with the cache of the process it was forked from). The SHARED ones
    keep that cache, to load what the warm-up compiled, and never write to it (should one
    be compiled here after all: two processes adding entries to one index lose some)."""
    from numba.core import config

    os.environ["NUMBA_CACHE_DIR"] = config.CACHE_DIR = directory  # (a config reload keeps it)
    shared = _kernels(SHARED)
    for _, _, dispatcher in _engine_dispatchers():
        if dispatcher in shared:
            _saving_nothing(dispatcher._cache)
        else:
            dispatcher.enable_caching()


# Kernels of forward's that the helper compiles early (backward needs them first) and the
# warm-up late: the warm-up loads them from the helper's scratch cache when it gets there,
# if the helper has saved them by then (each with the kernels it calls: 2-3 s of the
# warm-up's half, the longer one now). max_abs carries most of it.
HELPED = (("tui_grad.engine.gemm", "block"), ("tui_grad.engine.kernels", "max_abs"),
          ("tui_grad.engine.gemm", "flush_below_normal"), ("tui_grad.engine.kernels", "prefetch"))


@contextlib.contextmanager
def _reading_helpers_cache(directory: str):
    """While the block runs, the HELPED kernels look for what they miss in the helper's
    scratch cache ``directory`` instead of ours, and save nothing (two processes adding
    entries to one index lose some; they are linked into the kernels that call them, which
    are saved). Yields the set of those kernels."""
    from numba.core import config
    from numba.core.caching import FunctionCache

    kept = {}
    try:
        for kernel in _kernels(HELPED):
            ours, config.CACHE_DIR = config.CACHE_DIR, directory
            try:
                theirs = _saving_nothing(FunctionCache(kernel.py_func))
            except Exception:  # noqa: BLE001 - (then it compiles here, as without the helper)
                continue
            finally:
                config.CACHE_DIR = ours
            kept[kernel], kernel._cache = kernel._cache, theirs
        yield set(kept)
    finally:
        for kernel, cache in kept.items():
            kernel._cache = cache


def _compiling_shared(params, grads, lay, hyper, *buffers_and_more):
    """Stands in for backward in the warm-up's half of a split compile: compiles the SHARED
    kernels for the argument types backward calls them with, for the helper to load
    (typed from backward's own arguments; nothing runs)."""
    from numba import typeof, types

    from tui_grad.engine import backprop, gemm

    out, update = buffers_and_more[9], buffers_and_more[11]
    index = types.int64  # (a layer's index, its gradients' offset and exponent)
    arguments = (typeof(grads), typeof(update[9]), typeof(update), index)
    backprop.layer_grads.compile(arguments)
    layer, base = backprop.layer_grads.overloads[arguments].signature.return_type
    dtype = typeof(params).dtype  # the products: a[:, :] (any layout) @ b + bias into out
    matrix, vector = types.Array(dtype, 2, "C"), types.Array(dtype, 1, "C")
    gemm._tiled.compile((types.Array(dtype, 2, "A"), matrix, vector, matrix, index))
    backprop.fused_update.compile((typeof(params), layer, base, typeof(update), index, index,
                                   typeof(out)))


def _split(configs: list[Config]) -> bool:
    """Whether a helper should compile the MLP's backward pass: some config is an MLP and
    numba's cache has no backward pass yet (an index of ours would be overwritten)."""
    from tui_grad.engine import backprop

    if not any(config.network.model == "mlp" for config in configs):
        return False
    cache = getattr(backprop.backward, "_cache", None)
    path = getattr(cache, "_cache_path", None)
    if path is None or cache_dir() is None:
        return False
    return not (Path(path) / cache._cache_file._index_name).exists()


def _compile(configs: list[Config]) -> tuple[list, int, bool, list]:
    """One step of each config; returns what to load, the compile count, whether the cache
    was empty for all of it (then that count is a cold start's) and the steps' StepMetrics
    (the app's own step 0, bit for bit: the same kernels and seed). On a cold cache a
    helper process compiles the MLP's backward pass meanwhile (_Helper)."""
    from tui_grad.engine import Simulator
    from tui_grad.engine.activations import InnerKernel

    stack: list[str] = []
    nested: set = set()
    count = 0
    counting = threading.Lock()

    def started(item) -> None:
        nonlocal count
        dispatcher = item.data["dispatcher"]
        if stack:
            nested.add((id(dispatcher), tuple(item.data["args"])))
        function = dispatcher.py_func
        ours = function.__module__.startswith("tui_grad")
        stack.append(function.__name__ if ours else (stack[-1] if stack else "numba"))
        with counting:
            count += 1
            _say(k=count, name=stack[-1])

    def ended(item) -> None:
        stack.pop()
        _say(k=count, name=stack[-1] if stack else "")

    def helped(name: str) -> None:
        nonlocal count
        with counting:
            count += 1
            _say(k=count, name=name)

    def cache_hits(besides=()) -> int:
        return sum(sum(kernel.stats.cache_hits.values()) for _, _, kernel in _engine_dispatchers()
                   if kernel not in besides)

    helper = None
    if _split(configs):  # (before listening to compile events: a fork would inherit that)
        with contextlib.suppress(OSError):  # (no second process: compile it all here)
            helper = _Helper([c for c in configs if c.network.model == "mlp"], helped,
                             cache_dir())
            # the app takes some of a core meanwhile; with this process yielding the CPU to
            # the helper, the two halves (SHARED and HELPED balance them) end within about a
            # second of each other
            with contextlib.suppress(OSError, AttributeError):
                os.nice(5)
    with _compile_events(started, ended):
        if helper is not None:
            if helper.forked:  # first the SHARED kernels: the helper needs them midway
                _forget_cached(SHARED)
                with (contextlib.suppress(Exception),  # (only an optimisation: see SHARED)
                      _skipping("tui_grad.engine.kernels", "forward"),
                      _skipping("tui_grad.engine.kernels", "loss_and_output_grad", _some_loss),
                      _skipping("tui_grad.engine.backprop", "backward", _compiling_shared)):
                    for config in configs:
                        if config.network.model == "mlp":
                            Simulator(config).step()
            with (_skipping("tui_grad.engine.backprop", "backward"),
                  _reading_helpers_cache(helper.scratch) as helped_kernels):
                for config in configs:
                    Simulator(config).step()
                hits = cache_hits(besides=helped_kernels)
            helper.finish()  # (the steps below load its backward; if it failed, compile it)
        first = [Simulator(config).step() for config in configs]
    if helper is None:
        hits = cache_hits()
    # kernels compiled only inside another one are linked into it: no need to load them
    loads = [(module, name, signature) for module, name, kernel in _engine_dispatchers()
             if not isinstance(kernel, InnerKernel)  # (no entry point: only linked into others)
             for signature in kernel.overloads if (id(kernel), signature) not in nested]
    return loads, count, hits == 0, first


def _compile_half(configs: list[Config]) -> int:
    """The _Helper child: compile the MLP's backward pass (the forward pass skipped) into
    this process's cache, saying each compile; then where its cache files are."""
    from tui_grad.engine import Simulator, backprop

    count = 0

    def started(item) -> None:
        nonlocal count
        count += 1
        function = item.data["dispatcher"].py_func
        _say(k=count, name=function.__name__ if function.__module__.startswith("tui_grad")
             else "backward")

    try:
        # the loss and the floating-point mode are the other process's to compile too: only
        # backward's kernels here
        with (_compile_events(started), _skipping("tui_grad.engine.kernels", "forward"),
              _skipping("tui_grad.engine.kernels", "loss_and_output_grad", _some_loss),
              _skipping("tui_grad.engine.simulator", "flush_subnormals",
                        lambda enabled: contextlib.nullcontext())):
            for config in configs:
                Simulator(config).step()
        cache = backprop.backward._cache
        _say(done=True, cache=str(cache._cache_path), index=cache._cache_file._index_name)
    except Exception as exc:  # noqa: BLE001 - the warm-up compiles backward itself
        _say(error=f"{type(exc).__name__}: {exc}")
        return 1
    return 0


def main() -> int:
    """The child: compile what one step of each requested config needs, saying how far."""
    requests: queue.SimpleQueue = queue.SimpleQueue()
    threading.Thread(target=_read_requests, args=(requests,), daemon=True).start()
    request = json.loads(requests.get())
    if request.get("first_step"):
        code = _first_step([Config(values) for values in request["configs"]])
        if code is not None:
            return code
        # the cache is cold: this process does the warm-up (numba and the engine are
        # imported here already: seconds sooner than a new child), now if it took the
        # warm-up lock, else once the app hands it over (or the app ends it)
        request = {"configs": request["configs"]} if _cache_lock else json.loads(requests.get())
    if request.get("half") == "backward":
        return _compile_half([Config(values) for values in request["configs"]])
    try:
        configs = [Config(values) for values in request["configs"]]
        loads, count, cold, first = _compile(configs)
        directory = cache_dir()
        if directory is not None:
            _write_record(directory, _key(configs), loads, count if cold else None)
    except Exception as exc:  # reported to the app, which compiles in-process instead
        _say(error=f"{type(exc).__name__}: {exc}")
        return 1
    _say(first=_encode(first))  # for the app to show while it loads the kernels itself
    _say(done=True)
    return 0


def _import_engine() -> None:
    """What a first-step child needs whatever the configs: numba and the engine's modules
    (half of its work, done while the app reads the scenario; errors are met again later)."""
    with contextlib.suppress(Exception):
        from tui_grad.engine import Simulator  # noqa: F401 - (the MLP and recurrent ones)


_cache_lock = None  # the warm-up lock a first-step child took to compile at once


def _first_step(configs: list[Config]) -> int | None:
    """The child of FirstStep: load the kernels (never compile them), take the first step of
    each config, send the StepMetrics. None once it said that a kernel is not cached: then
    it has also taken the cache's warm-up lock and goes on to compile (said "compiling"),
    or another warm-up holds that lock and it waits for the app's request."""
    def forbid(item) -> None:
        raise CompileNeeded(item.data["dispatcher"].py_func.__qualname__)

    try:
        if _check(configs):
            return _cold()
        from tui_grad.engine import Simulator

        with _compile_events(forbid):  # (one the record does not name: the same answer)
            metrics = [Simulator(config).step() for config in configs]
        _say(first=_encode(metrics))
    except CompileNeeded:
        return _cold()
    except Exception as exc:  # noqa: BLE001 - the app steps as it would without this child
        _say(error=f"{type(exc).__name__}: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
