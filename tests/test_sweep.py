"""Sweeps: one row per run, identical on any executor, resumable, and no process left behind."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from tui_grad.cli import main
from tui_grad.sweep import load_sweep
from tui_grad.sweep.runner import TIMING_COLUMNS

BASE = """\
[scenario]
title = "test sweep"

[network]
width = {width}
activation = "tanh"
init = "lecun_normal"

[data]
input_dim = 8
n_samples = 128

[training]
batch_size = 32

[sweep]
steps = {steps}
seeds = [0, 1]

[sweep.grid]
network.depth = [2, 4]
"network.init_gain" = [0.5, 2.0]
"""


def sweep_file(tmp_path: Path, name: str = "tiny", *, width: int = 8, steps: int = 4) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(BASE.format(width=width, steps=steps))
    return path


def slow_sweep(tmp_path: Path) -> Path:
    """8 runs of roughly 0.1-0.3 s each: long enough to interrupt or lose a worker mid-sweep."""
    return sweep_file(tmp_path, "slow", width=32, steps=250)


def table(path: Path) -> dict[tuple[str, ...], dict[str, str]]:
    """Rows by run (swept values and seed), timing columns left out; asserts no run twice."""
    with open(path, newline="") as stream:
        rows = list(csv.DictReader(stream))
    keyed = {(r["network.depth"], r["network.init_gain"], r["seed"]):
             {k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in rows}
    assert len(keyed) == len(rows), "a run appears twice"
    return keyed


def in_process(source: Path, out: Path) -> dict:
    assert main(["sweep", str(source), "--out", str(out), "--workers", "0"]) == 0
    return table(out)


def python(*args: str, **options) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **options)


def wait_for_rows(path: Path, count: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text().count("\n") > count):
        assert time.monotonic() < deadline, f"fewer than {count} rows in {path} after {timeout} s"
        time.sleep(0.05)


def end(process: subprocess.Popen) -> None:
    """End a process this test started, by its pid, and reap it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A Dask scheduler and two one-thread workers on 127.0.0.1, as a user starts them."""
    folder = tmp_path_factory.mktemp("cluster")
    address_file = folder / "scheduler.json"
    scheduler = python("-m", "dask", "scheduler", "--host", "127.0.0.1", "--port", "0",
                       "--no-dashboard", "--scheduler-file", str(address_file))
    workers = []
    try:
        deadline = time.monotonic() + 60
        while not address_file.exists():
            assert time.monotonic() < deadline and scheduler.poll() is None, "no scheduler"
            time.sleep(0.1)
        import json

        address = json.loads(address_file.read_text())["address"]
        workers = [python("-m", "dask", "worker", address, "--nthreads", "1", "--no-nanny",
                          "--no-dashboard", "--host", "127.0.0.1") for _ in range(2)]
        yield address, workers
    finally:
        for process in (*workers, scheduler):
            end(process)


def test_rows_on_a_cluster_equal_the_in_process_rows(tmp_path, cluster):
    """A sweep sent to a Dask cluster writes exactly the rows an in-process run writes (timing
    columns aside), each run once, whichever worker ran it and in whatever order."""
    address, _ = cluster
    source = sweep_file(tmp_path)
    reference = in_process(source, tmp_path / "here.csv")
    out = tmp_path / "cluster.csv"
    assert main(["sweep", str(source), "--out", str(out), "--scheduler", address]) == 0
    assert table(out) == reference
    assert len(reference) == load_sweep(source).size == 8
    row = reference[("4", "2.0", "1")]
    assert row["phase"] == "chaotic" and float(row["chi_1"]) > 1 and row["diverged_at"] == ""


def test_a_worker_killed_mid_sweep_loses_no_run(tmp_path, cluster):
    """When a worker dies mid-sweep Dask redoes its runs elsewhere: the file still has every run
    once, with the same numbers."""
    address, workers = cluster
    source = slow_sweep(tmp_path)
    out = tmp_path / "killed.csv"

    def kill_one_worker() -> None:
        wait_for_rows(out, 1)
        workers[0].kill()

    killer = threading.Thread(target=kill_one_worker)
    killer.start()
    try:
        assert main(["sweep", str(source), "--out", str(out), "--scheduler", address]) == 0
    finally:
        killer.join()
    assert workers[0].wait(10) is not None
    assert table(out) == in_process(source, tmp_path / "here.csv")


def test_ctrl_c_leaves_a_valid_file_no_process_and_resume_finishes_it(tmp_path):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) stops a sweep on a
    LocalCluster with exit 130, a file of complete rows and no process left; --resume runs only
    the missing runs and the result equals an uninterrupted sweep."""
    source = slow_sweep(tmp_path)
    out = tmp_path / "interrupted.csv"
    sweep = python("-m", "tui_grad", "sweep", str(source), "--out", str(out), "--workers", "1",
                   start_new_session=True)
    try:
        wait_for_rows(out, 2)
        children = psutil.Process(sweep.pid).children(recursive=True)
        assert children, "the LocalCluster's processes"
        os.killpg(sweep.pid, signal.SIGINT)
        _, stderr = sweep.communicate(timeout=60)
    finally:
        end(sweep)
    assert sweep.returncode == 130, stderr
    assert "interrupted:" in stderr and "Traceback" not in stderr
    assert psutil.wait_procs(children, timeout=10)[1] == []
    done = table(out)
    assert 2 <= len(done) < 8
    assert main(["sweep", str(source), "--out", str(out), "--workers", "0", "--resume"]) == 0
    resumed = table(out)
    assert {k: resumed[k] for k in done} == done
    assert resumed == in_process(source, tmp_path / "whole.csv")


@pytest.mark.parametrize(("text", "line", "error"), [
    ('"network.depht" = [2]', 21, "sweep.grid.network.depht: unknown option; did you mean 'network.depth'?"),
    ('"network.depth" = []', 21, "sweep.grid.network.depth: must be a non-empty list of values"),
    ('"network.depth" = [2, 0]', 21, "sweep.grid.network.depth: must be 1..5000 (got 0)"),
    ('"network.depth" = [2, 2]', 21, "sweep.grid.network.depth: lists 2 twice"),
    ('"run.seed" = [1, 2]', 21, "sweep.grid.run.seed: is not swept in the grid"),
    ('network.init_gain = [3.0]', 21, "sweep.grid.network.init_gain: is in the grid twice"),
])
def test_bad_grid_entries_are_one_line_errors_with_file_and_line(tmp_path, capsys, text, line, error):
    """A mistake in a sweep file is one line naming the file, the line and the key, exit 2."""
    source = tmp_path / "bad.toml"
    source.write_text(BASE.format(width=8, steps=4).replace("network.depth = [2, 4]", text))
    assert main(["validate", str(source)]) == 2
    assert main(["sweep", str(source), "--out", str(tmp_path / "x.csv")]) == 2
    messages = capsys.readouterr().err.splitlines()
    assert len(messages) == 2 and messages[0] == messages[1]
    assert messages[0].startswith(f"tui-grad: error: {source}:{line}: {error}")
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize(("old", "new", "error"), [
    ("seeds = [0, 1]", "seeds = 3", ":18: sweep.seeds: must be a non-empty list of seeds"),
    ("seeds = [0, 1]", "seed = [0, 1]", ":18: sweep.seed: unknown key"),
    ("steps = 4", "steps = 0", ":17: sweep.steps: must be 1 or more (got 0)"),
    ("[sweep.grid]", "[sweep.grid]\n\"network.model\" = [\"mlp\", \"rnn\"]",
     ":20: data.task: model 'rnn' needs task adding or copy_first"),
])
def test_bad_sweep_tables_are_one_line_errors(tmp_path, capsys, old, new, error):
    """Seeds, steps, unknown keys and grid points that make no network are refused with where."""
    source = tmp_path / "bad.toml"
    source.write_text(BASE.format(width=8, steps=4).replace(old, new))
    assert main(["validate", str(source)]) == 2
    message = capsys.readouterr().err
    assert message.count("\n") == 1 and f"{source}{error}" in message


def test_more_than_ten_thousand_runs_need_yes(tmp_path, capsys):
    """A grid that big is probably a typo: it runs only with --yes."""
    source = tmp_path / "big.toml"
    source.write_text(BASE.format(width=8, steps=4).replace(
        "[2, 4]", str(list(range(1, 2502)))))
    assert main(["sweep", str(source), "--out", str(tmp_path / "x.csv"), "--workers", "0"]) == 2
    assert "10004 runs is more than 10000: add --yes" in capsys.readouterr().err


def test_an_existing_result_file_is_kept_unless_resume_or_force(tmp_path, capsys):
    """Results are not overwritten by accident; --resume refuses a file of another sweep."""
    source = sweep_file(tmp_path)
    out = tmp_path / "r.csv"
    out.write_text("a,b\n1,2\n")
    assert main(["sweep", str(source), "--out", str(out), "--workers", "0"]) == 2
    assert main(["sweep", str(source), "--out", str(out), "--workers", "0", "--resume"]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert errors[0].endswith("already exists; add --resume to continue it or --force to start over")
    assert "was written by a different sweep" in errors[1]
    assert out.read_text() == "a,b\n1,2\n"


def test_plot_draws_the_map_with_the_critical_line_and_refuses_unknown_columns(tmp_path, capsys):
    """`tui-grad plot TABLE METRIC` draws the two swept axes with the theory's chi_1 = 1 line
    (tanh at gain 0.5 is ordered, at 2.0 chaotic); an unknown column is a one-line error."""
    from tui_grad.plot import draw_map
    from tui_grad.sweep.table import read_table

    out = tmp_path / "tiny.csv"
    in_process(sweep_file(tmp_path), out)
    capsys.readouterr()
    text = draw_map(read_table(str(out)), "loss_ratio", width=70, height=16, color=False)
    assert "network.init_gain" in text and "network.depth" in text and "\x1b[" not in text
    assert "chi_1 = 1, the theory's critical line (between network.init_gain = 0.5 and 2)" in text
    assert main(["plot", str(out), "loss_ration"]) == 2
    assert capsys.readouterr().err.startswith("tui-grad: error: no result column 'loss_ration'")


def test_coord_check_on_a_cluster_equals_the_in_process_table(tmp_path, cluster):
    """coord-check sends its widths through the sweep executor: on a Dask cluster the table
    is the one computed in this process."""
    address, _ = cluster
    here, there = tmp_path / "here.csv", tmp_path / "there.csv"
    common = ["coord-check", "mup-width", "--widths", "32,64", "--steps", "2"]
    assert main([*common, "--csv", str(here)]) == 0
    assert main([*common, "--csv", str(there), "--scheduler", address]) == 0
    assert here.read_text() == there.read_text() and here.read_text().count("\n") == 1 + 2 * 2 * 2 * 5
