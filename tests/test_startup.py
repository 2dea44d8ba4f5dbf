"""Start-up: the kernels compile in a child process the user can always leave, with progress.

Timing is the benchmark's job (benchmarks/bench_memory_startup.py); these tests check what a
user relies on: quitting during a cold start leaves no process behind and restores the
terminal, the progress line fits, a second app waits for the first one's compile instead of
compiling beside it, and a warm cache needs no warm-up. Fake children stand in for numba
where the behaviour does not depend on it; one real cold start is interrupted after a few
seconds of compiling (cheap), and the warm path reuses the suite's own cache.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest

from tui_grad import warmup
from tui_grad.config import Config
from tui_grad.scenario import load_scenario
from tui_grad.tui.app import GradApp

FAKE_CHILD = """
import json, sys, time
sys.stdin.readline()
print(json.dumps({"k": 3, "name": "renormalize_with_column_sums_and_a_very_long_name"}), flush=True)
time.sleep(120)
"""


def fake(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", textwrap.dedent(code))


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def wait_for(pilot, condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await pilot.pause(0.05)


def poll_until(warm: warmup.Warmup, condition, timeout: float = 30.0) -> warmup.Progress:
    deadline = time.monotonic() + timeout
    while not condition(progress := warm.poll()):
        assert time.monotonic() < deadline, f"stuck at {progress}"
        time.sleep(0.05)
    return progress


@pytest.fixture
def scratch_cache(tmp_path, monkeypatch):
    """The warm-up's cache directory (record and lock) in a temporary directory."""
    monkeypatch.setattr(warmup, "cache_dir", lambda: tmp_path)
    return tmp_path


def test_progress_names_the_kernel_counts_and_fits_60_columns(scratch_cache, monkeypatch):
    """While compiling, the line says what compiles, k of n and the time, in 60 columns."""
    monkeypatch.setattr(warmup.Warmup, "command", fake(FAKE_CHILD))
    with warmup.Warmup([Config()]) as warm:
        warm.start()
        progress = poll_until(warm, lambda p: "compiling" in p.text)
        assert progress.text.startswith("compiling renormaliz") and "(3 of ~" in progress.text
        assert " s; first start only" in progress.text
        assert len(progress.text) <= warmup.TEXT_WIDTH
        assert not progress.done


def test_cancel_ends_the_child(scratch_cache, monkeypatch):
    """Quitting mid-compile kills the child at once (numba cannot be interrupted in-process)."""
    monkeypatch.setattr(warmup.Warmup, "command", fake(FAKE_CHILD))
    warm = warmup.Warmup([Config()])
    warm.start()
    pid = warm.pid
    poll_until(warm, lambda p: "compiling" in p.text)
    warm.cancel()
    assert gone(pid) and warm.pid is None
    warm.cancel()  # a second time is harmless


def test_a_failed_child_is_reported_not_hung(scratch_cache, monkeypatch):
    """A child that fails ends the warm-up with its reason; the app then compiles in-process."""
    monkeypatch.setattr(warmup.Warmup, "command", fake(
        "import sys; sys.stdin.readline(); print('MemoryError: out of memory'); sys.exit(1)"))
    with warmup.Warmup([Config()]) as warm:
        warm.start()
        progress = poll_until(warm, lambda p: p.done)
    assert progress.error == "MemoryError: out of memory"
    assert len(progress.text) <= warmup.TEXT_WIDTH


def test_a_second_warmup_waits_for_the_first(scratch_cache, monkeypatch):
    """Two apps starting cold at once (a workshop server): the second waits, then compiles;
    numba's cache files are not safe for two processes adding entries at the same time."""
    monkeypatch.setattr(warmup.Warmup, "command", fake(FAKE_CHILD))
    monkeypatch.setattr(warmup, "_check", lambda configs: True)  # the first compiled nothing
    with warmup.Warmup([Config()]) as first, warmup.Warmup([Config()]) as second:
        first.start()
        second.start()
        assert first.pid is not None and second.pid is None
        assert second.poll().text.startswith("waiting: another tui-grad is compiling")
        first.cancel()
        poll_until(second, lambda p: "compiling" in p.text)
        assert second.pid is not None


def test_a_waiting_warmup_loads_what_the_first_compiled(scratch_cache, monkeypatch):
    """Once the first warm-up has compiled (and recorded) all the second app needs, the
    second one loads it and starts no child of its own."""
    from tui_grad.engine import Simulator, kernels

    config = Config.from_overrides({"network.depth": 2})
    Simulator(config).step()
    monkeypatch.setattr(warmup.Warmup, "command", fake(FAKE_CHILD))
    with warmup.Warmup([config]) as first, warmup.Warmup([config]) as second:
        first.start()
        second.start()
        loaded = [("tui_grad.engine.kernels", "forward", signature)
                  for signature in kernels.forward.overloads]
        warmup._write_record(scratch_cache, warmup._key([config]), loaded, None)
        first.cancel()
        progress = poll_until(second, lambda p: p.done)
        assert progress.error is None and second.pid is None


def test_needed_loads_what_the_record_names_and_never_compiles(scratch_cache):
    """A record whose kernels load: no warm-up needed. A record naming a kernel that is not
    compiled: warm up, without compiling it here (that is the child's job)."""
    from numba import types

    from tui_grad.engine import Simulator, kernels

    config = Config.from_overrides({"network.depth": 2})
    Simulator(config).step()  # this process has the kernels now
    loaded = [("tui_grad.engine.kernels", "forward", signature)
              for signature in kernels.forward.overloads]
    warmup._write_record(scratch_cache, warmup._key([config]), loaded, None)
    assert not warmup.needed([config])
    missing = ("tui_grad.engine.kernels", "sum_squares", (types.int16[:, ::1],))
    warmup._write_record(scratch_cache, warmup._key([config]), loaded + [missing], None)
    assert warmup.needed([config])
    assert (types.int16[:, ::1],) not in kernels.sum_squares.overloads


PROBE = """
from tui_grad import warmup
from tui_grad.config import Config
started = []
with warmup._compile_events(lambda event: started.append(event)):
    print(warmup.needed([Config()]), len(started))
"""


def test_without_a_record_an_empty_cache_needs_a_warmup_and_compiles_nothing(tmp_path):
    """With no record, a throwaway step decides; in an empty cache its first compile is
    stopped at once (the app stays free to quit) and a warm-up is asked for."""
    answer = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)})
    assert answer.stdout.split() == ["True", "1"], answer.stderr[-500:]


async def test_the_status_bar_shows_progress_and_quitting_ends_the_child(scratch_cache, monkeypatch):
    """The app's worker shows the warm-up's progress and ends the child when the app quits."""
    started: list[warmup.Warmup] = []
    monkeypatch.setattr(warmup, "needed", lambda configs: True)
    monkeypatch.setattr(warmup.Warmup, "command", fake(FAKE_CHILD))
    original_start = warmup.Warmup.start
    monkeypatch.setattr(warmup.Warmup, "start", lambda self: (started.append(self),
                                                              original_start(self)))
    app = GradApp(load_scenario("default"))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: "compiling" in app.startup_text)
        pid = started[0].pid
        assert "(3 of" in app.startup_text
        await pilot.press("q")
    wait_for_gone(pid)


def wait_for_gone(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not gone(pid):
        assert time.monotonic() < deadline, f"warm-up child {pid} still running"
        time.sleep(0.05)


@contextlib.contextmanager
def in_terminal(env: dict[str, str], command: tuple[str, ...] = ("-m", "tui_grad", "default")):
    """``tui-grad`` in an 80x24 pseudo-terminal: the process and the terminal's fd, both
    ended when the block is left (the process killed if it still runs)."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    process = subprocess.Popen([sys.executable, *command], stdin=terminal,
                               stdout=terminal, stderr=terminal, env=env, start_new_session=True)
    os.close(terminal)
    try:
        yield process, controller
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(controller)


def read_until(controller: int, wanted: bytes, timeout: float) -> bytes:
    seen, deadline = b"", time.monotonic() + timeout
    while wanted not in seen and time.monotonic() < deadline:
        if select.select([controller], [], [], 0.1)[0]:
            try:
                seen += os.read(controller, 65536)
            except OSError:  # the terminal closed: the app ended
                break
    return seen


def processes_using(cache: str) -> list[psutil.Process]:
    """Processes started with NUMBA_CACHE_DIR=``cache``: the app and its warm-up child."""
    found = []
    for process in psutil.process_iter():
        try:
            # (the backward helper of a cold warm-up uses a scratch cache inside it)
            if process.environ().get("NUMBA_CACHE_DIR", "").startswith(cache):
                found.append(process)
        except (psutil.Error, OSError):
            continue
    return found


def compiling_child(app: int, controller: int, timeout: float = 60.0) -> psutil.Process | None:
    """A child of the app (the warm-up: the first-step child it was handed to, or a child of
    its own) once it is past its imports, compiling (reading the terminal meanwhile, so the
    app never waits to write)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(psutil.Error):
            for process in psutil.Process(app).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    if process.cpu_times().user > 2.0:  # (its imports take about 1 s)
                        return process
        read_until(controller, b"\0never", timeout=0.1)
    return None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads other processes' environments")
def test_quitting_a_cold_start_restores_the_terminal_and_ends_every_process(tmp_path):
    """A real first start (empty numba cache) while its warm-up child compiles: q exits with
    status 0, the terminal leaves the alternate screen, and no process is left."""
    cache = str(tmp_path / "numba-cache")
    env = {**os.environ, "NUMBA_CACHE_DIR": cache, "TERM": "xterm-256color"}
    with in_terminal(env) as (process, controller):
        assert compiling_child(process.pid, controller) is not None
        os.write(controller, b"q")
        screen = read_until(controller, b"\x1b[?1049l", timeout=30)  # alternate screen left
        assert process.wait(timeout=30) == 0
        assert b"\x1b[?1049l" in screen
    left = processes_using(cache)
    for candidate in left:
        candidate.kill()
    assert not left, f"left running: {[p.cmdline() for p in left]}"


STUCK_STEP = """
import sys, threading
from tui_grad import cli, session, warmup
warmup.needed = lambda configs: False
session.Session.advance = lambda self, budget: threading.Event().wait()  # a step without end
sys.exit(cli.main(["default"]))
"""


def test_quitting_during_a_step_that_never_ends_still_exits():
    """A step cannot be interrupted (it runs inside numba); q still ends the process, after
    Textual restored the terminal, with status 0."""
    with in_terminal({**os.environ, "TERM": "xterm-256color"},
                     ("-c", STUCK_STEP)) as (process, controller):
        assert b"\x1b[?1049h" in read_until(controller, b"\x1b[?1049h", timeout=60)
        read_until(controller, b"\0never", timeout=1.0)  # the app is up and stepping: stuck
        os.write(controller, b"q")
        screen = read_until(controller, b"\x1b[?1049l", timeout=30)
        assert process.wait(timeout=30) == 0
        assert b"\x1b[?1049l" in screen


CACHE_INTO = """
import sys
from pathlib import Path
from tui_grad import warmup
from tui_grad.engine import kernels
from tui_grad.engine import backprop
before = Path(warmup.cache_dir())
warmup._cache_into(sys.argv[1])
kernels.log10_of(2.0, 3)  # compiled now, and cached
backprop.fused_update._cache.save_overload(None, None)  # (shared: writes nothing)
print(before, warmup.cache_dir(), backprop.fused_update._cache._cache_path)
"""


def test_a_forked_helper_caches_its_kernels_in_its_own_directory(tmp_path):
    """The backward helper is the warm-up forked after importing the engine (warmup._Helper);
    from then on it compiles into its scratch cache, never into the one it was forked with
    (two processes adding entries to one cache index lose some). The kernels the warm-up
    compiles for it (warmup.SHARED) it reads from the warm-up's cache, writing nothing."""
    ours, scratch = tmp_path / "ours", tmp_path / "scratch"
    answer = subprocess.run([sys.executable, "-c", CACHE_INTO, str(scratch)], capture_output=True,
                            text=True, timeout=120, env={**os.environ, "NUMBA_CACHE_DIR": str(ours)})
    before, after, shared = answer.stdout.split()
    assert Path(before).is_relative_to(ours) and Path(after).is_relative_to(scratch), answer.stderr
    assert Path(shared).is_relative_to(ours)
    assert list(scratch.rglob("kernels.log10_of-*.nbi"))
    assert not list(ours.rglob("*.nbi"))


HELPED_KERNEL = """
import sys
from numba import types
from tui_grad import warmup
from tui_grad.engine import kernels
signature = (types.float32[::1],)
if sys.argv[1] == "helper":  # compile and cache it, as the helper does in its scratch cache
    kernels.max_abs.compile(signature)
else:
    from numba.core import config
    with warmup._reading_helpers_cache(sys.argv[2]) as helped:
        kernels.max_abs.compile(signature)  # (a kernel the warm-up compiles reaches it)
        kernels.max_abs.compile((types.float64[::1],))  # one the helper has not: compiled
    print(kernels.max_abs in helped, sum(kernels.max_abs.stats.cache_hits.values()),
          kernels.max_abs._cache._cache_path, config.CACHE_DIR)
"""


def test_the_warm_up_loads_what_the_helper_compiled_of_its_half_and_writes_nothing_there(
        tmp_path):
    """warmup.HELPED: a kernel the helper has compiled (into its scratch cache) by the time the
    warm-up reaches it is loaded from there, not compiled again; one it has not is compiled;
    it writes nothing to the helper's cache, nor to ours; afterwards it uses our cache again
    (finish() copies the helper's files)."""
    ours, scratch = tmp_path / "ours", tmp_path / "scratch"
    for argv, cache in ((["helper"], scratch), (["warm-up", str(scratch)], ours)):
        answer = subprocess.run([sys.executable, "-c", HELPED_KERNEL, *argv], capture_output=True,
                                text=True, timeout=120, env={**os.environ, "NUMBA_CACHE_DIR": str(cache)})
        assert answer.returncode == 0, answer.stderr[-2000:]
    helped, hits, path, directory = answer.stdout.split()
    assert helped == "True" and hits == "1" and Path(path).is_relative_to(ours)
    assert directory == str(ours)
    assert len(list(scratch.rglob("kernels.max_abs-*.nbc"))) == 1
    assert not list(ours.rglob("kernels.max_abs-*"))  # (kernels it calls save as usual)


def test_after_a_warmup_a_new_process_needs_none():
    """The warm-up child records what it loaded beside numba's cache; the next start finds
    every kernel there and loads it without compiling (uses the suite's warm cache)."""
    child = subprocess.Popen([sys.executable, "-m", "tui_grad.warmup"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:  # stdin stays open while it works: the child ends when its parent's end closes
        child.stdin.write(json.dumps({"configs": [Config().as_dict()]}) + "\n")
        child.stdin.flush()
        said = child.stdout.read()
        assert child.wait(timeout=300) == 0
    finally:
        child.stdin.close()
        if child.poll() is None:
            child.kill()
        child.wait()
    assert json.loads(said.splitlines()[-1]) == {"done": True}, said[-500:]
    # before that, its own step 0 for the app to show: the same bits as a step taken here
    from tui_grad.engine import Simulator

    first = warmup._decode(json.loads(said.splitlines()[-2])["first"])
    assert len(first) == 1 and same_metrics(first[0], Simulator(Config()).step())
    answer = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                            timeout=120)
    assert answer.stdout.split() == ["False", "0"], answer.stderr[-500:]


# ------------------------------------------------------------------ step 0 from a child
def same_metrics(a, b) -> bool:
    """Every field of two StepMetrics equal, bit for bit (NaN where NaN), but wall time."""
    import dataclasses

    import numpy as np

    for field in dataclasses.fields(a):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if field.name == "seconds":
            continue
        if isinstance(x, np.ndarray):
            if x.dtype != y.dtype or x.tobytes() != y.tobytes():
                return False
        elif not (x == y or (x != x and y != y)):
            return False
    return True


FIRST_STEP_IN_ONE_THREAD = """
import pickle, sys, threading, time
from tui_grad import warmup
assert threading.active_count() == 1  # as in the CLI: FirstStep forks, before the scenario is read
child = warmup.FirstStep.launch()
from tui_grad.scenario import load_scenario
configs = [variant.config for variant in load_scenario("learning-rate").variants]
child.send(configs)
forked = isinstance(child._process, warmup._Fork)
deadline = time.monotonic() + 120
while (first := child.poll()) is None and time.monotonic() < deadline:
    time.sleep(0.01)
sys.stdout.buffer.write(pickle.dumps((forked, first)))
"""


def test_the_first_step_child_measures_what_the_app_would_bit_for_bit(monkeypatch):
    """FirstStep's step 0 of every variant (forked, as the CLI starts it; and as a
    subprocess where forking is not safe) equals the step the app takes itself."""
    import pickle

    from tui_grad.engine import Simulator

    configs = [variant.config for variant in load_scenario("learning-rate").variants]
    answer = subprocess.run([sys.executable, "-c", FIRST_STEP_IN_ONE_THREAD],
                            capture_output=True, timeout=180)
    assert answer.returncode == 0, answer.stderr.decode()[-800:]
    forked, first = pickle.loads(answer.stdout)
    monkeypatch.setattr(warmup.FirstStep, "fork", False)  # as where forking is not safe
    with warmup.FirstStep(configs) as child:
        child.start()
        assert not isinstance(child._process, warmup._Fork)
        spawned = poll_first(child)
    here = [Simulator(config).step() for config in configs]
    assert forked and len(first) == len(spawned) == len(here) == len(configs) > 1
    for ours, theirs, again in zip(here, first, spawned, strict=True):
        assert ours.step == 0 and same_metrics(ours, theirs) and same_metrics(ours, again)


class ForkedChild:
    """What the app uses of a forked warmup.FirstStep: the default scenario's step 0, taken
    here, answered ``after`` seconds from now."""

    forked = True
    outcome = "first"
    compiling = False
    handed_over = None  # what handover() gives (FirstStep: the child, when it found the cache cold)

    def __init__(self, after: float = 0.0) -> None:
        from tui_grad.engine import Simulator

        self.configs = [variant.config for variant in load_scenario("default").variants]
        self.steps = [Simulator(config).step() for config in self.configs]
        self.answer_at = time.monotonic() + after

    def poll(self) -> list | None:
        return self.steps if time.monotonic() > self.answer_at else None

    def cancel(self) -> None:
        pass

    def handover(self):
        return self.handed_over

    def __enter__(self) -> ForkedChild:
        return self

    def __exit__(self, *exc_info) -> None:
        pass


async def test_with_the_first_step_child_the_first_frame_is_its_step_and_the_panels_follow():
    """The CLI's warm start: the first frame painted shows the child's step 0 (the app waits
    a moment for it), and the option panels are mounted right after that frame, in order."""
    from tui_helpers import screen_text, status

    from tui_grad.tui.panels import GROUPS, Panel

    child = ForkedChild(after=0.1)
    first_frames = []

    class App(GradApp):
        CSS_PATH = str(Path(sys.modules[GradApp.__module__].__file__).parent / GradApp.CSS_PATH)

        def on_mount(self) -> None:  # (called back before what on_mount asks after the frame)
            self.call_after_refresh(lambda: first_frames.append(
                (screen_text(self), len(self.query(Panel)))))
            super().on_mount()

    app = App(load_scenario("default"), autostart=False, first_step=child)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: len(app.query(Panel)) == len(GROUPS))
        text, panels = first_frames[0]
        assert "step 0" in text.splitlines()[0] and panels == 0
        assert [panel.id for panel in app.query(Panel)] == [f"panel-{g.key}" for g in GROUPS]
        assert "step 0 | loading the kernels..." in status(app)


class ColdChild(ForkedChild):
    """A first-step child that found a kernel missing from numba's cache, and hands over a
    process (here a fake warm-up child) to compile it."""

    outcome = "cold"

    def __init__(self) -> None:
        self.configs, self.steps, self.answer_at = [], [], 0.0
        self.handed_over = subprocess.Popen(fake(FAKE_CHILD), stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE)


async def test_a_child_that_met_a_cold_cache_does_the_warm_up_itself(scratch_cache, monkeypatch):
    """On a cold start the first-step child has found the cache cold, with numba and the
    engine imported: the worker hands it the warm-up at once, without importing numba to
    look again or starting a new child (2 s of a cold start); q still ends it."""
    looked: list = []
    monkeypatch.setattr(warmup, "needed", lambda configs: looked.append(configs) or False)
    monkeypatch.setattr(warmup.Warmup, "command", ("false",))  # never started
    started: list[warmup.Warmup] = []
    original_start = warmup.Warmup.start
    monkeypatch.setattr(warmup.Warmup, "start", lambda self: (started.append(self),
                                                              original_start(self)))
    child = ColdChild()
    app = GradApp(load_scenario("default"), first_step=child)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: "compiling" in app.startup_text)
        assert started[0].pid == child.handed_over.pid
        await pilot.press("q")
    wait_for_gone(child.handed_over.pid)
    assert looked == []


def test_a_cold_first_step_child_compiles_at_once_and_is_handed_over(tmp_path, monkeypatch):
    """The real child on an empty numba cache: it answers that the cache is cold, takes the
    warm-up lock and starts compiling without waiting for the app; handed over, the app's
    warm-up shows its progress, and cancelling the warm-up ends it."""
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "numba"))  # (a new process reads it)
    monkeypatch.setattr(warmup.FirstStep, "fork", False)  # this process has numba loaded
    with warmup.FirstStep([Config()]) as child:
        child.start()
        assert poll_first(child) == [] and child.outcome == "cold" and child.compiling
        process = child.handover()
        assert process is not None and process.poll() is None
    assert process.poll() is None  # (handed over: leaving the block did not end it)
    with warmup.Warmup([Config()], process=process, compiling=True) as warm:
        warm.start()
        assert warm.pid == process.pid
        poll_until(warm, lambda p: "compiling" in p.text, timeout=60)
    wait_for_gone(process.pid)


def test_a_handed_over_child_that_has_to_wait_is_ended(scratch_cache):
    """Many apps starting cold at once on a workshop server: one warm-up compiles, the others
    wait for it; a first-step child handed to a waiting warm-up is ended meanwhile (each
    would hold numba's memory for nothing), and the wait goes on as before."""
    other = warmup._lock_cache(scratch_cache)  # another app's warm-up compiles
    idle = subprocess.Popen(fake("import sys; sys.stdin.read()"), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    try:
        with warmup.Warmup([Config()], process=idle) as warm:
            warm.start()
            assert "waiting" in warm.poll().text
            wait_for_gone(idle.pid)
            assert "waiting" in warm.poll().text
    finally:
        other.close()
        if idle.poll() is None:
            idle.kill()
        idle.wait()


def test_the_warm_up_lock_is_taken_only_where_free(tmp_path):
    """A cold first-step child compiles at once only if no other warm-up holds the cache
    (two processes adding entries to one numba cache lose some): else it waits to be
    handed the warm-up, which waits its turn."""
    holder = warmup._lock_cache(tmp_path)
    assert holder not in (None, True)
    assert warmup._lock_cache(tmp_path) is None  # (held: another process's turn is later)
    holder.close()
    again = warmup._lock_cache(tmp_path)
    assert again not in (None, True)
    again.close()
    assert warmup._lock_cache(None) is True  # no cache: nothing to share


async def test_after_the_childs_step_the_app_loads_the_kernels_and_runs():
    """With the child's step 0 in the first frame, the worker loads the kernels once that
    frame and the first panels are painted, and then the run goes on by itself."""
    from tui_helpers import step_of

    app = GradApp(load_scenario("default"), first_step=ForkedChild())
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app._first_drawn.is_set())
        await wait_for(pilot, lambda: step_of(app) >= 3, timeout=10)


def test_a_bad_scenario_in_a_terminal_ends_the_early_child_too(tmp_path):
    """The first-step child is forked before the scenario is read: a scenario that does not
    load still says why in one line, exits 2, and leaves no process behind."""
    marker = str(tmp_path)
    env = {**os.environ, "TERM": "xterm-256color", "TUI_GRAD_TEST_RUN": marker}
    missing = ("-m", "tui_grad", str(tmp_path / "missing.toml"))
    with in_terminal(env, missing) as (process, controller):
        said = read_until(controller, b"\n", timeout=30)
        assert process.wait(timeout=30) == 2
    assert b"tui-grad: error:" in said and b"missing.toml" in said and b"Traceback" not in said
    # at once: the app ended it on its way out (left alone, it would still be importing numba)
    left = [p.pid for p in psutil.process_iter() if _environ(p).get("TUI_GRAD_TEST_RUN") == marker]
    assert not left, f"left running: {left}"


def poll_first(child: warmup.FirstStep, timeout: float = 120.0) -> list:
    deadline = time.monotonic() + timeout
    while (first := child.poll()) is None:
        assert time.monotonic() < deadline, "the first-step child gave no answer"
        time.sleep(0.01)
    return first


def test_the_first_step_child_gives_way_to_a_warmup_in_an_empty_cache(tmp_path, monkeypatch):
    """A kernel missing from the cache: the child answers [] quickly (it then compiles, as the
    app's warm-up, with progress: see the next test), and ends when it is not taken over."""
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))  # (a new process reads it)
    monkeypatch.setattr(warmup.FirstStep, "fork", False)  # this process has numba loaded
    started = time.monotonic()
    with warmup.FirstStep([Config()]) as child:
        child.start()
        process = child._process
        assert poll_first(child) == [] and child.outcome == "cold"
    assert time.monotonic() - started < 60  # a cold compile takes minutes on 2 cores
    assert process.poll() is not None


def test_a_preview_of_step_0_stays_until_the_step_is_taken_and_a_change_drops_it():
    """Session.show_first_steps shows the child's step 0 before the session has a simulator;
    the first advance keeps it on screen (no blank between) and replaces it with its own
    identical step; a change asked for meanwhile makes it stale: not shown, or dropped."""
    from tui_grad.engine import Simulator
    from tui_grad.session import Session

    scenario = load_scenario("learning-rate")
    configs = [variant.config for variant in scenario.variants]
    first = [Simulator(config).step() for config in configs]

    session = Session(scenario)
    session.running = False
    assert session.show_first_steps(configs, first)
    assert session.sim is None and session.history.latest is first[0] and session.run.preview
    versions = []
    original = session.run.history.clear
    session.run.history.clear = lambda: (versions.append("cleared"), original())
    session.advance(0.5)  # the simulator exists now; paused: the preview stays
    assert versions == [] and session.history.latest is first[0] and session.sim.step_index == 0
    appended = []
    original_append = session.run.history.append
    session.run.history.append = lambda metrics: (appended.append(metrics), original_append(metrics))
    session.request_step()  # the step on screen is taken for real, then the one asked for
    session.advance(5.0)
    assert [metrics.step for metrics in appended] == [0, 1] and not session.run.preview
    assert same_metrics(appended[0], first[0]) and session.sim.step_index == 2

    stale = Session(scenario)
    stale.request(stale.config.replace(training__lr=0.5))
    assert not stale.show_first_steps(configs, first)  # asked for before it arrived
    late = Session(scenario)
    late.running = False
    assert late.show_first_steps(configs, first)
    late.request(late.config.replace(network__depth=7), "depth = 7: restarted")
    events = late.advance(0.5)
    assert late.history.latest is None or late.history.latest.depth == 7  # not the old step 0
    assert [event.reason for event in events] == ["depth = 7: restarted"]  # and says so


async def test_the_status_bar_says_the_kernels_load_while_a_preview_shows():
    """Step 0 from the child, before this process has loaded its kernels: the status bar
    shows that step and says what the app is doing instead of a rate."""
    from tui_helpers import status

    from tui_grad.engine import Simulator

    scenario = load_scenario("default")
    app = GradApp(scenario, autostart=False)
    async with app.run_test(size=(80, 24)) as pilot:
        assert app.session.show_first_steps([scenario.variants[0].config],
                                            [Simulator(scenario.variants[0].config).step()])
        await pilot.pause(0.3)
        assert "step 0 | loading the kernels..." in status(app)


async def test_a_panel_key_at_once_after_start_reaches_its_panel():
    """Panels below the first screen are mounted after it: a key for one pressed before
    that mounts them and focuses its first value; then every panel is there."""
    from tui_grad.tui.panels import GROUPS, OptionRow, Panel

    app = GradApp(load_scenario("default"), autostart=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("t")  # task / loss: the last panel
        await wait_for(pilot, lambda: app.focused is not None)
        row = next(node for node in app.focused.ancestors if isinstance(node, OptionRow))
        assert row.option.name == "data.task"
        assert [panel.id for panel in app.query(Panel)] == [f"panel-{g.key}" for g in GROUPS]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads other processes' environments")
def test_quitting_while_the_first_step_child_loads_ends_every_process(tmp_path):
    """q at once (read when the app starts), while the forked first-step child is still
    loading the kernels: the app exits with status 0 and leaves no process (warm cache)."""
    marker = str(tmp_path)  # in the environment of the app and of its forked child
    env = {**os.environ, "TERM": "xterm-256color", "TUI_GRAD_TEST_RUN": marker}
    seen: dict[int, psutil.Process] = {}
    with in_terminal(env) as (process, controller):
        os.write(controller, b"q")
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            for candidate in psutil.process_iter():
                if candidate.pid != process.pid and candidate.pid not in seen \
                        and _environ(candidate).get("TUI_GRAD_TEST_RUN") == marker:
                    seen[candidate.pid] = candidate
            read_until(controller, b"\0never", timeout=0.02)
        assert process.wait(timeout=30) == 0
    assert seen, "the app started no first-step child"
    deadline = time.monotonic() + 10
    while (left := [pid for pid in seen if not gone(pid)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"left running: {left}"


def _environ(process: psutil.Process) -> dict:
    try:
        return process.environ()
    except (psutil.Error, OSError):
        return {}


def each_way(script: str, ways: tuple[str, ...]) -> list:
    """What ``script`` (run as ``python -c script WAY``) pickled to stdout, for each way."""
    import pickle

    results = []
    for way in ways:
        answer = subprocess.run([sys.executable, "-c", script, way], capture_output=True,
                                timeout=300)
        assert answer.returncode == 0, answer.stderr.decode()[-800:]
        results.append(pickle.loads(answer.stdout))
    return results


BLAS_STEP = """
import pickle, sys
if sys.argv[1] == "scipy-first":
    import scipy.linalg
from tui_grad.config import Config
from tui_grad.engine import Simulator
from tui_grad.engine.gemm import BLOCKED_MAX_BYTES
config = Config.from_overrides({"network.depth": 3, "network.width": 2048,
                                "training.batch_size": 1024})
assert 2048 * 1024 * 4 > BLOCKED_MAX_BYTES  # these products go to BLAS
metrics = [Simulator(config).step()]
imported = "scipy.linalg" in sys.modules
import scipy.linalg  # the real package, after the engine loaded BLAS without it
assert callable(scipy.linalg.solve) and scipy.linalg.__file__.endswith("__init__.py")
sys.stdout.buffer.write(pickle.dumps((imported, metrics)))
"""


def test_blas_loads_without_scipy_linalg_and_computes_the_same():
    """engine.blas imports numba's BLAS modules without scipy.linalg's package (0.2 s of a
    start): the products that go to BLAS give the same numbers as when scipy.linalg was
    imported first, and a later import scipy.linalg gets the real package."""
    (imported_first, first), (imported_later, later) = each_way(BLAS_STEP, ("scipy-first",
                                                                           "engine-first"))
    assert imported_first and not imported_later
    assert same_metrics(first[0], later[0])


CACHED_STEP = """
import pickle, sys
if sys.argv[1] == "numba's own load":
    from tui_grad.engine import cacheload
    cacheload.install = lambda: None  # numba refreshes its contexts before each cache load
from tui_grad.config import Config
from tui_grad.engine import Simulator
metrics = [Simulator(Config.from_overrides({})).step(),
           Simulator(Config.from_overrides({"network.dtype": "float64"})).step()]
refreshed = "numba.np.polynomial.polynomial_core" in sys.modules  # imported by a refresh only
import numpy as np
from numba import njit
@njit  # a kernel numba has never seen: compiled, through the registries a load skipped
def new_kernel(a):
    return np.sort(a)[::-1].cumsum()
assert new_kernel(np.arange(4.0)).tolist() == [3.0, 5.0, 6.0, 6.0]
sys.stdout.buffer.write(pickle.dumps((refreshed, metrics)))
"""


def test_kernels_load_from_the_cache_without_numba_readying_its_compiler():
    """engine.cacheload: a kernel loaded from numba's cache skips the import and install of
    numba's typing and lowering registries (a fifth of a warm start); the steps are the same
    bit for bit as with numba's own load, and a kernel not in the cache still compiles."""
    (refreshed, numbas), (skipped, ours) = each_way(CACHED_STEP, ("numba's own load", "cacheload"))
    assert refreshed and not skipped
    assert all(same_metrics(a, b) for a, b in zip(numbas, ours, strict=True))


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
async def test_the_panels_composed_first_fill_the_sidebar(size, monkeypatch):
    """The option panels composed with the first screen reach the bottom of the sidebar at
    80x24 and at 160x48, so what is mounted later is out of sight until scrolled to."""
    from tui_grad.tui.panels import GROUPS, Panel

    monkeypatch.setattr(GradApp, "_mount_other_panels", lambda self: None)
    app = GradApp(load_scenario("default"), autostart=False)
    async with app.run_test(size=size) as pilot:
        await pilot.pause(0.2)
        panels, controls = list(app.query(Panel)), app.query_one("#controls")
        assert 0 < len(panels) < len(GROUPS)
        assert panels[-1].region.bottom >= controls.region.bottom


def test_a_long_first_step_is_not_taken_twice():
    """Every bundled scenario's first step is short enough to show from the child; a step of
    seconds (depth 1000 x 256, batch 512) is not, and the app loads the kernels and takes it
    once, as before."""
    from tui_grad.scenario import bundled_paths

    for name in sorted(bundled_paths()):
        scenario = load_scenario(name)
        assert warmup.first_step_worth_it([v.config for v in scenario.variants]), name
    long_step = Config.from_overrides({"network.depth": 1000, "network.width": 256,
                                       "training.batch_size": 512})
    assert not warmup.first_step_worth_it([long_step])


async def test_a_panel_key_while_its_panel_is_being_mounted_waits_for_it():
    """A key for a panel whose mount has begun (registered, rows not composed yet) focuses
    its first value once the rows are there, instead of failing."""
    from tui_grad.tui.panels import OptionRow

    app = GradApp(load_scenario("default"), autostart=False)
    async with app.run_test(size=(80, 24)) as pilot:
        def focused_option() -> str | None:
            rows = [node for node in getattr(app.focused, "ancestors", ())
                    if isinstance(node, OptionRow)]
            return rows[0].option.name if rows else None

        app._mount_other_panels()  # the worker asks for them once the kernels are loaded
        app.action_panel("l")  # in the same moment
        await wait_for(pilot, lambda: focused_option() == "training.lr")


# ------------------------------------------------------------------ the backward helper
def test_a_cold_warmup_splits_only_where_it_helps(scratch_cache, monkeypatch):
    """The helper compiles the MLP's backward pass beside the rest only when some config is
    an MLP and the cache has no backward pass yet (copying ours over would drop entries)."""
    from tui_grad.engine import backprop

    cache = backprop.backward._cache
    index = cache._cache_file._index_name
    monkeypatch.setattr(cache, "_cache_path", str(scratch_cache))
    rnn = [v.config for v in load_scenario("rnn-vs-lstm").variants]
    assert warmup._split([Config()]) and not warmup._split(rnn)
    (scratch_cache / index).write_bytes(b"an index of ours")
    assert not warmup._split([Config()])


def test_the_helpers_backward_files_are_copied_index_last(scratch_cache, monkeypatch):
    """finish() copies the helper's cache files of backward (data first, then the index, so
    a reader never finds an index naming a missing file) and removes its scratch cache;
    an answer about another function copies nothing. The HELPED kernels' files are copied
    where ours has none, never over ours."""
    from tui_grad.engine import backprop, gemm, kernels

    cache = backprop.backward._cache
    index = cache._cache_file._index_name
    helped = kernels.max_abs._cache._cache_file._index_name  # none in ours: copied
    kept = gemm.block._cache._cache_file._index_name  # ours has one: left alone
    ours = scratch_cache / "ours"
    ours.mkdir()
    (ours / kept).write_bytes(b"ours")
    monkeypatch.setattr(cache, "_cache_path", str(ours))
    copied = []
    original = os.replace
    monkeypatch.setattr(warmup.os, "replace", lambda a, b: (copied.append(Path(b).name), original(a, b)))

    def helper(answer_index: str) -> warmup._Helper:
        made = warmup._Helper.__new__(warmup._Helper)
        made.scratch = str(scratch_cache / warmup.HELPER_CACHE_NAME)
        theirs = Path(made.scratch) / "work"
        theirs.mkdir(parents=True)
        (theirs / index).write_bytes(b"index")
        (theirs / index.replace(".nbi", ".1.nbc")).write_bytes(b"data")
        (theirs / "kernels.forward-1.py311.nbi").write_bytes(b"not backward's")
        for other in (helped, kept):
            (theirs / other).write_bytes(b"helper's index")
            (theirs / other.replace(".nbi", ".1.nbc")).write_bytes(b"helper's data")
        made.process = subprocess.Popen([sys.executable, "-c", "pass"], stdin=subprocess.PIPE)
        made.reader = threading.Thread(target=lambda: None)
        made.reader.start()
        made.answer = {"done": True, "cache": str(theirs), "index": answer_index}
        return made

    assert not helper("kernels.forward-1.py311.nbi").finish() and copied == []
    assert not (scratch_cache / warmup.HELPER_CACHE_NAME).exists()
    assert helper(index).finish()
    assert copied[-2:] == [index.replace(".nbi", ".1.nbc"), index]  # the index last
    assert (ours / index).read_bytes() == b"index"
    assert copied[:-2] == [helped.replace(".nbi", ".1.nbc"), helped]
    assert (ours / kept).read_bytes() == b"ours" and (ours / helped).read_bytes() == b"helper's index"
    assert not (scratch_cache / warmup.HELPER_CACHE_NAME).exists()


def test_skipping_a_kernel_puts_it_back():
    from tui_grad.engine import kernels

    kept = kernels.forward
    with pytest.raises(RuntimeError), warmup._skipping("tui_grad.engine.kernels", "forward"):
        assert kernels.forward(1, 2, 3) is None
        raise RuntimeError
    assert kernels.forward is kept


async def test_the_warm_ups_step_0_is_shown_while_the_app_loads_the_kernels(scratch_cache,
                                                                             monkeypatch):
    """A warm-up ends with one step of each config, on the kernels it compiled (the app's
    own step 0, bit for bit): the app shows it at once, before loading the kernels itself."""
    from tui_helpers import step_of

    from tui_grad.engine import Simulator
    from tui_grad.session import Session

    configs = [variant.config for variant in load_scenario("default").variants]
    metrics = [Simulator(config).step() for config in configs]
    monkeypatch.setattr(warmup, "needed", lambda configs: True)
    monkeypatch.setattr(warmup.Warmup, "command", fake(f"""
        import json, sys
        sys.stdin.readline()
        print(json.dumps({{"first": "{warmup._encode(metrics)}"}}), flush=True)
        print(json.dumps({{"done": True}}), flush=True)
        sys.stdin.read()
        """))
    shown: list = []
    show = Session.show_first_steps
    monkeypatch.setattr(Session, "show_first_steps",
                        lambda self, configs, first: shown.append(first) or show(self, configs, first))
    app = GradApp(load_scenario("default"))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: step_of(app) >= 1)
    assert len(shown) == 1 and same_metrics(shown[0][0], metrics[0])


def test_the_warm_ups_stand_in_compiles_the_shared_kernels_as_backward_links_them(monkeypatch):
    """warmup._compiling_shared compiles the SHARED kernels for the helper to load, for the
    argument types backward calls them with (else the helper finds no entry and compiles its
    own copy), and runs nothing. Backward's compiled code in the suite's warm cache names each
    kernel it links (the symbol encodes the argument types): the stand-in's must be those."""
    import re

    import numpy as np

    from tui_grad.engine import Simulator, backprop

    backward, shared = backprop.backward, warmup._kernels(warmup.SHARED)
    taken: list = []
    monkeypatch.setattr(backprop, "backward", lambda *args: taken.append(args))
    Simulator(Config()).step()
    asked: dict = {}  # kernel: the signature the stand-in compiles it for

    def recording(kernel):
        def compile(signature):
            asked[kernel] = tuple(signature)
            return compiling(signature)

        compiling = kernel.compile
        return compile

    for kernel in shared:
        monkeypatch.setattr(kernel, "compile", recording(kernel))
    before = [np.copy(value) for value in taken[0] if isinstance(value, np.ndarray)]
    warmup._compiling_shared(*taken[0])
    after = [value for value in taken[0] if isinstance(value, np.ndarray)]
    assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(before, after, strict=True))

    def symbol(name: bytes) -> bytes:  # without the number numba gives each compile (and
        # as the function or, where it was inlined, its environment)
        return re.sub(rb"B\d+v\d+", b"", name).replace(b"_ZN08NumbaEnv", b"_ZN")

    code = b"".join(path.read_bytes() for path in warmup._cache_files(
        Path(backward._cache._cache_path), backward) if path.suffix == ".nbc")
    for kernel in shared:
        compiled, name = kernel.overloads[asked[kernel]], kernel.py_func.__name__
        linked = {symbol(found) for found in re.findall(rb"_ZN\w*%d%s\w+" % (
            len(name), name.encode()), code)}
        assert symbol(compiled.fndesc.mangled_name.encode()) in linked, name


def test_an_inner_kernel_called_from_python_raises_a_clear_error():
    """Kernels only other kernels call have no entry point from Python (activations.INNER):
    a call from Python is a TypeError naming the kernel, never a jump to a null pointer."""
    import numpy as np

    from tui_grad.engine import gemm

    a = np.ones((2, 2), np.float32)
    with pytest.raises(TypeError, match="gemm.matmul is called only from other kernels"):
        gemm.matmul(a, a, a)
