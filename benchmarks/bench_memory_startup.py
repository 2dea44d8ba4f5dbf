"""Memory of a big network; start-up to the first step on screen; quitting (run by hand).

``python benchmarks/bench_memory_startup.py [--runs N] [--no-cold] [--cache DIR]`` prints the
CPU and the load average (a shared machine slows every figure), then:
- peak resident memory of depth 1000, width 256, batch 64, float32 after a few steps,
  against the 1 GiB target;
- cold start: ``tui-grad`` in an 80x24 tmux pane with an empty numba cache (a scratch
  NUMBA_CACHE_DIR, so the project's own cache is neither used nor touched), from launch
  until the status bar shows a step number, against the 20 s target and against a reference
  measured right after it: a headless process compiling the same kernels alone (in one
  process, as numba does) to its first step, on an empty cache of its own; with the
  progress lines it showed on the way;
- warm start: the same with that cache filled, median and range of N runs, against 1.0 s,
  and against a reference measured in the same run, interleaved: a headless process loading
  the same kernels and taking its first step (the UI's own share is the difference). The
  first step shown may be the forked child's step 0 (warmup.FirstStep), so the time until
  the app runs on its own (step 1 on screen) is printed too;
- quitting: from pressing ``q`` until the process has exited, while compiling (a second
  empty cache), while running, and during one long step, against 1.0 s; and whether any
  process was left behind.

Needs tmux. Each run is a fresh process, as a user starts it, with Python writing and reading
its bytecode as it does by default (see python_env).
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_MEMORY_GIB = 1.0
TARGET_WARM_S = 1.0
TARGET_COLD_S = 20.0
TARGET_QUIT_S = 1.0
FIRST_STEP = re.compile(r"\bstep \d+\b")  # the status bar once a step is done
RUNNING = re.compile(r"\bstep [1-9]\d*\b")  # the app's own steps (step 0 may be a preview)
POLL_SECONDS = 0.05  # a screen capture costs the tmux client ~4 ms of CPU: poll gently
DEFAULT_KINDS = frozenset({("mlp", "float32")})  # the default scenario's (model, dtype)
LONG_STEP = ["--set", "network.depth=1000", "--set", "network.width=256",
             "--set", "training.batch_size=512"]  # seconds per step, 1.4 GiB

MEMORY_PROBE = """
import resource
from tui_grad.config import Config
from tui_grad.engine import Simulator
sim = Simulator(Config.from_overrides({"network.depth": 1000, "network.width": 256,
                                      "training.batch_size": 64}))
for _ in range(3):
    sim.step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
"""


def cpu_description() -> str:
    """CPU model, core count and SIMD width, so numbers are read against the machine."""
    model, flags = "unknown CPU", set()
    with_info = Path("/proc/cpuinfo")
    if with_info.exists():
        for line in with_info.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown CPU":
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    width = 512 if "avx512f" in flags else 256 if "avx2" in flags else 128
    return f"{model}, {os.cpu_count()} cores, {width}-bit SIMD"


class Pane:
    """One command in an 80x24 tmux pane on a private tmux server."""

    def __init__(self, socket: str, scratch: Path) -> None:
        self.socket = socket
        self.name = ""
        self.status_file = scratch / "status"

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True,
                              text=True).stdout

    def start(self, command: list[str], env: dict[str, str]) -> float:
        """Launch ``command``; returns the launch time (perf_counter)."""
        self.name = f"run{time.monotonic_ns()}"
        self.status_file.unlink(missing_ok=True)
        settings = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        # the shell writes the exit status once the app has exited (its terminal closing
        # earlier says nothing: the process may still be on its way out)
        script = f"env {settings} {shlex.join(command)}; echo $? > {self.status_file}"
        started = time.perf_counter()
        self.tmux("new-session", "-d", "-s", self.name, "-x", "80", "-y", "24", script)
        return started

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", self.name)

    def exit_status(self) -> str | None:
        try:
            return self.status_file.read_text().strip() or None
        except FileNotFoundError:
            return None

    def wait_for(self, pattern: re.Pattern, timeout: float, seen: list[str] | None = None) -> float:
        """Seconds until ``pattern`` is on screen (perf_counter), inf after ``timeout``;
        status lines seen on the way are appended to ``seen``."""
        end = time.perf_counter() + timeout
        while time.perf_counter() < end:
            text = self.screen()
            now = time.perf_counter()
            if pattern.search(text):
                return now
            first = text.splitlines()[0].rstrip() if text.strip() else ""
            if seen is not None and first and (not seen or seen[-1] != first):
                seen.append(first)
            time.sleep(POLL_SECONDS)
        return float("inf")

    def quit(self, timeout: float = 30.0) -> tuple[float, str]:
        """Press q; seconds until the process exited, and its exit status."""
        self.tmux("send-keys", "-t", self.name, "q")
        pressed = time.perf_counter()
        while time.perf_counter() - pressed < timeout:
            status = self.exit_status()
            if status is not None:
                return time.perf_counter() - pressed, status
            time.sleep(0.005)  # a file's existence: cheap to poll
        return float("inf"), "still running"

    def close(self) -> None:
        if self.name:
            self.tmux("kill-session", "-t", self.name)
            self.name = ""


def processes_using(cache: str) -> list[int]:
    """PIDs of processes whose environment names ``cache`` (left-over app or warm-up)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if cache.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def python_env(cache: str) -> dict[str, str]:
    """Python as a user runs it: reading the bytecode pip wrote for the dependencies when it
    installed them, and writing the package's own on its first start. (Some sandboxes set
    PYTHONDONTWRITEBYTECODE, which recompiles every module at every start: 0.3 s more per
    process here. A scratch PYTHONPYCACHEPREFIX, which earlier versions of this benchmark
    set, hides pip's bytecode too: every process of a cold start then compiled numba's,
    numpy's and Textual's, about 3 s each.)"""
    return {"NUMBA_CACHE_DIR": cache, "PYTHONDONTWRITEBYTECODE": "", "PYTHONPYCACHEPREFIX": ""}


def forget_own_bytecode() -> None:
    """As before the first start after an editable install: tui_grad's own modules have no
    bytecode yet (its .pyc files only; a numba cache beside them stays)."""
    import tui_grad

    for path in Path(tui_grad.__file__).parent.rglob("__pycache__/*.pyc"):
        path.unlink(missing_ok=True)


def launch(pane: Pane, cache: str, extra: list[str] = ()) -> float:
    env = {**python_env(cache), "TERM": "xterm-256color",
           "LC_ALL": "C.UTF-8"}  # English: FIRST_STEP reads the status bar's words
    return pane.start([sys.executable, "-m", "tui_grad", "default", *extra], env)


def cold_start(pane: Pane, cache: str, reference_cache: str) -> None:
    seen: list[str] = []
    forget_own_bytecode()
    started = launch(pane, cache)
    shown = pane.wait_for(FIRST_STEP, 180.0, seen) - started
    progress = [line for line in seen if "compil" in line.lower()]
    seconds, status = pane.quit()
    pane.close()
    reference = headless_first_step(reference_cache)  # (an empty cache of its own; the app
    # has quit: nothing else runs)
    print(f"cold start to the first step on screen: {shown:.1f} s "
          f"= {shown / TARGET_COLD_S:.2f} x the {TARGET_COLD_S:g} s target; "
          f"{shown / reference:.2f} x the reference")
    print(f"    reference, a headless process compiling the same kernels alone to its first "
          f"step (empty cache): {reference:.1f} s")
    for line in progress[:2] + progress[-2:] if len(progress) > 4 else progress:
        print(f"    progress line: {line!r} ({len(line)} columns)")
    print(f"q after the first step: exit in {seconds:.2f} s (status {status})")
    counted = compile_count(cache)
    if counted is not None:
        from tui_grad.warmup import COLD_COMPILES

        print(f"    compile events of this cold start: {counted} (the estimate shown before a "
              f"count exists, warmup.COLD_COMPILES: {COLD_COMPILES.get(DEFAULT_KINDS)})")


def compile_count(cache: str) -> int | None:
    """The compile events the warm-up counted, from its record beside numba's cache."""
    for record in Path(cache).glob("**/tui_grad-warmup.pickle"):
        with open(record, "rb") as stream:
            counts = pickle.load(stream).get("compiles", {})
        return next(iter(counts.values()), None)
    return None


def headless_first_step(cache: str) -> float:
    """The reference: a fresh process loading the same kernels and taking one step, no UI."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tui_grad", "run", "default", "--headless", "--steps",
                    "1"], env={**os.environ, **python_env(cache)}, capture_output=True,
                   check=True)
    return time.perf_counter() - started


def warm_starts(pane: Pane, cache: str, runs: int) -> None:
    times, running, quits, references = [], [], [], []
    for _ in range(runs):  # interleaved with the reference, so both see the same machine
        references.append(headless_first_step(cache))
        started = launch(pane, cache)
        times.append(pane.wait_for(FIRST_STEP, 60.0) - started)
        running.append(pane.wait_for(RUNNING, 60.0) - started)
        time.sleep(0.5)
        quits.append(pane.quit()[0])
        pane.close()
    median, reference = statistics.median(times), statistics.median(references)
    print(f"warm start to the first step on screen: median {median:.2f} s, {min(times):.2f}-"
          f"{max(times):.2f} s over {runs} runs = {median / TARGET_WARM_S:.2f} x the "
          f"{TARGET_WARM_S:g} s target; {median / reference:.2f} x the reference")
    print(f"    running (step 1 on screen, taken by the app itself): median "
          f"{statistics.median(running):.2f} s, {min(running):.2f}-{max(running):.2f} s")
    print(f"    reference, a headless process to its first step (same kernels): median "
          f"{reference:.2f} s, {min(references):.2f}-{max(references):.2f} s")
    print(f"q while running: exit in median {statistics.median(quits):.2f} s, worst "
          f"{max(quits):.2f} s = {max(quits) / TARGET_QUIT_S:.2f} x the {TARGET_QUIT_S:g} s target")


def quit_while_compiling(pane: Pane, cache: str, after: float) -> None:
    started = launch(pane, cache)
    time.sleep(after)
    first = pane.screen().splitlines()[0].rstrip() if pane.screen().strip() else ""
    seconds, status = pane.quit()
    time.sleep(0.3)
    left = processes_using(cache)
    print(f"q {time.perf_counter() - started - seconds:.1f} s into a cold start: exit in "
          f"{seconds:.2f} s (status {status}) = {seconds / TARGET_QUIT_S:.2f} x the "
          f"{TARGET_QUIT_S:g} s target; processes left: {left or 'none'}")
    print(f"    status bar when q was pressed: {first!r}")
    pane.close()
    for pid in left:  # ours: started under this scratch cache
        os.kill(pid, 9)


def quit_during_long_step(pane: Pane, cache: str) -> None:
    started = launch(pane, cache, LONG_STEP)
    shown = pane.wait_for(FIRST_STEP, 120.0) - started
    time.sleep(0.3)  # the second step is under way
    seconds, status = pane.quit()
    print(f"q during a long step (depth 1000 x 256, batch 512; first step on screen after "
          f"{shown:.1f} s): exit in {seconds:.2f} s (status {status})")
    pane.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="warm starts to time")
    parser.add_argument("--no-cold", action="store_true", help="skip the two cold compiles")
    parser.add_argument("--cache", metavar="DIR", help="a NUMBA_CACHE_DIR filled before: warm "
                        "starts only (implies --no-cold)")
    args = parser.parse_args()
    args.no_cold = args.no_cold or args.cache is not None
    print(f"CPU: {cpu_description()}; load average {os.getloadavg()[0]:.2f} (other processes "
          "slow every figure here)")
    peak = float(subprocess.run([sys.executable, "-c", MEMORY_PROBE], capture_output=True,
                                text=True, check=True).stdout)
    print(f"memory, depth 1000 width 256 batch 64 float32: peak {peak:.2f} GiB "
          f"= {peak / TARGET_MEMORY_GIB:.2f} x the {TARGET_MEMORY_GIB:g} GiB target")
    if shutil.which("tmux") is None:
        sys.exit("start-up benchmarks need tmux")
    scratch = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    pane = Pane(f"bench-startup-{os.getpid()}", scratch)
    pane.tmux("-f", "/dev/null", "new-session", "-d", "-s", "keepalive", "sleep 3600")
    try:
        cache = args.cache or str(scratch / "cache")
        if not args.no_cold:
            cold_start(pane, cache, str(scratch / "cache-reference"))
        elif not args.cache:  # fill the scratch cache without timing it
            subprocess.run([sys.executable, "-m", "tui_grad", "run", "default", "--headless",
                            "--steps", "1"], env={**os.environ, "NUMBA_CACHE_DIR": cache},
                           capture_output=True, check=True)
        warm_starts(pane, cache, args.runs)
        quit_during_long_step(pane, cache)
        if not args.no_cold:
            quit_while_compiling(pane, str(scratch / "cache-quit"), after=5.0)
    finally:
        pane.close()
        pane.tmux("kill-server")
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
