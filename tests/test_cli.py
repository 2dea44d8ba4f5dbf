"""The command line as users and scripts drive it: exit codes, CSV, summary, interrupts."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tui_grad.cli import main
from tui_grad.csvout import COLUMNS, format_log10

SMALL = ["--set", "network.depth=4", "--set", "network.width=8"]


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tui_grad", *args], capture_output=True, text=True,
                          timeout=timeout)


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_bad_input_is_one_line_exit_2_no_traceback(tmp_path):
    """A bad scenario or --set prints `tui-grad: error: WHERE: KEY: WHAT`, exits 2, no traceback."""
    bad = tmp_path / "bad.toml"
    bad.write_text("[network]\ndepth = -1\n")
    result = run_cli("run", str(bad), "--headless")
    assert result.returncode == 2
    assert result.stderr == f"tui-grad: error: {bad}:2: network.depth: must be 1..5000 (got -1)\n"
    result = run_cli("run", "default", "--headless", "--set", "training.lr=-3")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == "tui-grad: error: --set: training.lr: must be 0..1000 (got '-3')"


def test_ui_without_a_terminal_or_with_file_options_is_a_clear_error(tmp_path):
    """The UI refuses to start where it cannot work (no terminal: it would spin unseen) and
    refuses options only a headless run honours, instead of silently ignoring them. A bad
    scenario file is still the error reported first."""
    result = run_cli("run", "default", "--csv", "out.csv")
    assert result.returncode == 2
    assert result.stderr == "tui-grad: error: --csv needs --headless (the UI writes no files)\n"
    result = run_cli("default")  # run_cli's stdin and stdout are pipes, not a terminal
    assert result.returncode == 2
    assert result.stderr.startswith("tui-grad: error: the UI needs a terminal; add --headless")
    bad = tmp_path / "bad.toml"
    bad.write_text('[network]\ndepth = "deep"\n')
    result = run_cli(str(bad))
    assert result.returncode == 2
    assert result.stderr == f"tui-grad: error: {bad}:2: network.depth: must be an integer (got 'deep')\n"


def test_csv_is_long_format_complete_and_reproducible(tmp_path, capsys):
    """One row per (step, layer) with the documented columns; same seed => identical bytes."""
    outputs = []
    for name in ("a.csv", "b.csv"):
        path = tmp_path / name
        assert main(["run", "default", "--headless", "--steps", "5", *SMALL, "--csv", str(path)]) == 0
        outputs.append(path.read_bytes())
    assert outputs[0] == outputs[1]
    table = rows(outputs[0].decode())
    assert list(table[0]) == [name for name, _ in COLUMNS]
    assert len(table) == 5 * 5  # 5 steps x (4 hidden + output) layers
    assert [r["layer"] for r in table[:5]] == ["1", "2", "3", "4", "5"]
    assert {r["status"] for r in table} <= {"healthy", "vanishing", "exploding", "diverged"}


def test_csv_every_k_and_variant_column(tmp_path, capsys):
    """--every keeps every K-th step; [[compare]] scenarios add a leading variant column."""
    path = tmp_path / "out.csv"
    assert main(["run", "learning-rate", "--headless", "--steps", "6", "--every", "3", *SMALL,
                 "--csv", str(path)]) == 0
    table = rows(path.read_text())
    assert list(table[0])[0] == "variant"
    assert {(r["variant"], r["step"]) for r in table} == {
        (v, s) for v in ("lr-0.1", "lr-0.01") for s in ("0", "3")}


def test_csv_to_stdout_and_nan_inf_written_as_words(capsys):
    """`--csv -` streams to stdout; a diverged run writes nan/inf, not an error."""
    assert main(["run", "exploding-init", "--headless", "--steps", "2", "--csv", "-"]) == 0
    table = rows(capsys.readouterr().out)
    diverged = [r for r in table if r["variant"] == "normal-std1"]
    assert {r["loss"] for r in diverged} <= {"nan", "inf"}
    assert "nan" in {r["grad_norm"] for r in diverged}


def test_tiny_norms_are_written_beyond_float64_range():
    """CSV norms come from log10 values, so 1e-400 is written as such, and zero as 0."""
    assert format_log10(-400.0) == "1.000000e-400"
    assert format_log10(-3.5) == "3.162278e-04"
    assert format_log10(float("-inf")) == "0"


def test_summary_json_and_check_failure_exit_1(tmp_path, capsys):
    """--summary records final loss, verdict, divergence step and timing; a FAIL exits 1."""
    scenario = tmp_path / "claim.toml"
    scenario.write_text("[network]\ndepth = 3\nwidth = 8\n[run]\nsteps = 3\n"
                        "[[expect]]\ncheck = \"loss[step=last] < 0\"\n")
    summary = tmp_path / "s.json"
    assert main(["run", str(scenario), "--headless", "--check", "--summary", str(summary)]) == 1
    assert "FAIL  loss[step=last] < 0  (measured" in capsys.readouterr().out
    data = json.loads(summary.read_text())
    variant = data["variants"][0]
    assert variant["steps"] == 3 and variant["diverged_at"] is None and variant["verdict"]
    assert variant["phase"] in ("ordered", "critical", "chaotic") and variant["chi_1"] > 0
    assert data["checks"][0]["passed"] is False


def test_sigterm_leaves_a_complete_csv_and_exits_130(tmp_path):
    """Interrupting a long run ends with whole rows only and exit code 130."""
    path = tmp_path / "long.csv"
    proc = subprocess.Popen([sys.executable, "-m", "tui_grad", "run", "default", "--headless",
                             "--steps", "1000000", "--csv", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and (not path.exists() or path.stat().st_size < 20000):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    text = path.read_text()
    assert text.endswith("\n")
    table = rows(text)
    assert len(table) % 21 == 0 and all(None not in r.values() for r in table)


def test_validate_scenarios_version_help(tmp_path, capsys):
    """validate checks files without running them; scenarios lists titles; help has examples."""
    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text("[network]\ndepth = 3\n")
    bad.write_text("[network]\ndepth = 'x'\n")
    assert main(["validate", str(good), str(bad)]) == 2
    captured = capsys.readouterr()
    assert f"OK  {good}" in captured.out and f"{bad}:2: network.depth" in captured.err
    assert main(["scenarios"]) == 0
    assert "sigmoid-vanishing" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "examples:" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.startswith("tui-grad ")


def test_export_writes_a_file_that_runs(tmp_path, capsys):
    """export --set ... -o FILE writes a scenario that loads back with the overrides."""
    out = tmp_path / "mine.toml"
    assert main(["export", "relu-init", "--set", "network.depth=9", "-o", str(out)]) == 0
    assert main(["validate", str(out)]) == 0
    from tui_grad.scenario import load_scenario
    assert load_scenario(out).config.network.depth == 9


def test_export_keeps_an_existing_file_unless_forced(tmp_path):
    """export -o FILE never overwrites someone's scenario by accident: one line, exit 2, the
    file untouched; --force overwrites it."""
    out = tmp_path / "mine.toml"
    out.write_text("# my edited workshop file\n")
    result = run_cli("export", "default", "-o", str(out))
    assert result.returncode == 2
    assert result.stderr == f"tui-grad: error: {out}: already exists; add --force to overwrite it\n"
    assert out.read_text() == "# my edited workshop file\n"
    assert main(["export", "default", "-o", str(out), "--force"]) == 0
    assert out.read_text().startswith("[scenario]")


def test_writing_files_sits_below_the_cli_and_the_ui():
    """No module of the UI imports the command line (cli -> tui/app -> tui/screens -> cli was
    a cycle): both write files through tui_grad.files."""
    import ast
    from pathlib import Path

    import tui_grad
    package = Path(tui_grad.__file__).parent
    for path in sorted((package / "tui").glob("*.py")) + [package / "files.py"]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([node.module] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            assert "tui_grad.cli" not in names, f"{path.name} imports tui_grad.cli"


def test_engine_import_does_not_pull_in_the_ui():
    """The engine is usable from a notebook without Textual, Rich or plotext."""
    code = ("import sys, tui_grad.engine, tui_grad.headless, tui_grad.scenario; "
            "print([m for m in ('textual', 'rich', 'plotext', 'textual_plotext') if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ}, timeout=120)
    assert result.stdout.strip() == "[]", result.stderr
