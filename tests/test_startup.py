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
import time

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


async def test_the_status_bar_shows_progress_and_quitting_ends_the_child(monkeypatch):
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


def run_in_terminal(env: dict[str, str], command: tuple[str, ...] = ("-m", "tui_grad", "default"),
                    ) -> tuple[subprocess.Popen, int]:
    """``tui-grad`` in an 80x24 pseudo-terminal; returns the process and the terminal's fd."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    process = subprocess.Popen([sys.executable, *command], stdin=terminal,
                               stdout=terminal, stderr=terminal, env=env, start_new_session=True)
    os.close(terminal)
    return process, controller


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
            if process.environ().get("NUMBA_CACHE_DIR") == cache:
                found.append(process)
        except (psutil.Error, OSError):
            continue
    return found


def compiling_child(cache: str, controller: int, timeout: float = 60.0) -> psutil.Process | None:
    """The warm-up child of the app using ``cache`` once it is past its imports, compiling
    (reading the terminal meanwhile, so the app never waits to write)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in processes_using(cache):
            with contextlib.suppress(psutil.Error):
                if "tui_grad.warmup" in process.cmdline() and process.cpu_times().user > 1.0:
                    return process
        read_until(controller, b"\0never", timeout=0.1)
    return None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads other processes' environments")
def test_quitting_a_cold_start_restores_the_terminal_and_ends_every_process(tmp_path):
    """A real first start (empty numba cache) while its warm-up child compiles: q exits with
    status 0, the terminal leaves the alternate screen, and no process is left."""
    cache = str(tmp_path / "numba-cache")
    env = {**os.environ, "NUMBA_CACHE_DIR": cache, "TERM": "xterm-256color"}
    process, controller = run_in_terminal(env)
    try:
        assert compiling_child(cache, controller) is not None
        os.write(controller, b"q")
        screen = read_until(controller, b"\x1b[?1049l", timeout=30)  # alternate screen left
        assert process.wait(timeout=30) == 0
        assert b"\x1b[?1049l" in screen
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(controller)
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
    process, controller = run_in_terminal({**os.environ, "TERM": "xterm-256color"},
                                          ("-c", STUCK_STEP))
    try:
        assert b"\x1b[?1049h" in read_until(controller, b"\x1b[?1049h", timeout=60)
        read_until(controller, b"\0never", timeout=1.0)  # the app is up and stepping: stuck
        os.write(controller, b"q")
        screen = read_until(controller, b"\x1b[?1049l", timeout=30)
        assert process.wait(timeout=30) == 0
        assert b"\x1b[?1049l" in screen
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(controller)


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
    answer = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                            timeout=120)
    assert answer.stdout.split() == ["False", "0"], answer.stderr[-500:]
