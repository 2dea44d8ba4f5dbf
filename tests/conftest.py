"""Shared helpers for the test suite."""

from __future__ import annotations

import contextlib
import os
import time

# One BLAS thread per process, as the app itself runs (cli.main): with pytest-xdist's two
# workers on two cores, two OpenBLAS threads each made the GEMM-heavy tests several times slower.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import psutil
import pytest

from tui_grad.config import Config
from tui_grad.engine import Simulator


def _make_sim(*, keep_grads: bool = False, **overrides) -> Simulator:
    return Simulator(Config.from_overrides({k.replace("__", "."): v for k, v in overrides.items()}),
                     keep_grads=keep_grads)


# The kernels most tests need, compiled before any test by the app's own warm-up child
# (tui_grad.warmup), two at once: without this each pytest-xdist worker compiled them on its
# own, and a UI test that met a cold cache waited a minute for its first step. Once the cache
# is warm, each child only loads them (2-3 s).
WARM_KERNELS = (("default", "float64", "batch-norm", "pre-vs-post-ln", "residual"), ("rnn-vs-lstm",))


def _warm_request(names: tuple[str, ...]) -> str:
    import json

    from tui_grad.scenario import load_scenario

    configs = [variant.config for name in names if name != "float64"
               for variant in load_scenario(name).variants]
    if "float64" in names:
        configs.append(configs[0].replace(network__dtype="float64"))
    return json.dumps({"configs": [config.as_dict() for config in configs]}) + "\n"


def pytest_configure(config):
    if hasattr(config, "workerinput") or config.option.help or config.option.collectonly:
        return  # an xdist worker (the controller has done it), or no test will run
    import subprocess
    import sys

    from tui_grad.warmup import Warmup

    children = []
    try:
        for names in WARM_KERNELS:
            child = subprocess.Popen(list(Warmup.command), stdin=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, text=True)
            child.stdin.write(_warm_request(names))
            child.stdin.flush()  # open until it is done: the child ends when its stdin closes
            children.append(child)
        for child in children:
            if child.wait(timeout=900) != 0:  # the tests that need these kernels will say why
                print(f"warning: warming the kernels failed (exit {child.returncode})", file=sys.stderr)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
            child.wait()
            child.stdin.close()


@pytest.fixture(autouse=True)
def english_by_default(monkeypatch):
    """Every test starts in English, whatever the machine's locale, and so do the programs it
    starts (`python -m tui_grad` reads LC_ALL first); it leaves the language English."""
    from tui_grad import i18n

    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    i18n.use("en")
    yield
    i18n.use("en")


@pytest.fixture
def language():
    """Switch the interface's language for this test: ``language("zh")``."""
    from tui_grad import i18n

    return i18n.use


@pytest.fixture
def make_sim():
    """Build a Simulator from ``section__key=value`` keyword overrides (``network__depth=3``);
    ``keep_grads=True`` as for Simulator."""
    return _make_sim


# Programs the suite starts (`python -m tui_grad`, Dask workers) import the installed tui_grad,
# the one the tests import, not a second copy found in the working directory: a second copy
# has numba caches of its own, and compiling every kernel twice costs CI about a minute.
os.environ.setdefault("PYTHONSAFEPATH", "1")

SUITE_MARK = "TUI_GRAD_TEST_SUITE"
"""Environment variable set to one value per test session: every process the suite starts,
and every process those start, inherits it, even after leaving the suite's process tree."""


def _suite_processes(mark: str) -> list[psutil.Process]:
    """Live processes this session started: pytest's descendants and whoever carries ``mark``."""
    found = {p.pid: p for p in psutil.Process().children(recursive=True)}
    for process in psutil.process_iter():
        if process.pid in found or process.pid == os.getpid():
            continue
        try:
            if process.environ().get(SUITE_MARK) == mark:
                found[process.pid] = process
        except (psutil.Error, OSError):
            continue  # gone, a kernel thread, or not ours to read
    alive = []
    for process in found.values():
        try:
            if process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.Error:
            continue
    return alive


@pytest.fixture(scope="session", autouse=True)
def no_process_outlives_the_suite():
    """Nothing the suite starts (servers, app processes, browsers, terminals) outlives it."""
    mark = f"{os.getpid()}-{time.time_ns()}"
    os.environ[SUITE_MARK] = mark
    yield
    deadline = time.monotonic() + 5.0  # a teardown's last process may be on its way out
    while (leftovers := _suite_processes(mark)) and time.monotonic() < deadline:
        time.sleep(0.1)
    if leftovers:
        described = [f"{p.pid}: {' '.join(p.cmdline())[:120]}" for p in leftovers]
        for process in leftovers:
            with contextlib.suppress(psutil.Error):
                process.kill()
        pytest.fail("processes outlived the test suite (killed now):\n" + "\n".join(described))
