"""Sweep files: a scenario file with a ``[sweep]`` table.

    [sweep]
    steps = 50                     # training steps of every run (default: run.steps)
    seeds = [0, 1]                 # every run's own seed (default: [run.seed])

    [sweep.grid]                   # option -> values; the runs are their product x seeds
    "network.depth" = [5, 10, 20]
    "network.init_gain" = [0.5, 1.0, 2.0]

The other tables set the base configuration as in a scenario file; ``[[expect]]`` entries
are claims on the result table (tui_grad.sweep.claims). Errors are ConfigErrors with the
file, the line and the key, like a scenario file's.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from tui_grad.config import Config, ConfigError, option
from tui_grad.i18n import N_, tr
from tui_grad.scenario import Scenario, _build, _Lines, find_file, read_toml

SWEEP_KEYS = ("steps", "seeds", "grid")
CONFIRM_ABOVE = 10_000  # runs; more need --yes
VALIDATE_POINTS = 100_000  # grid points checked for consistency when the file loads
BUNDLED_PACKAGE = "tui_grad.sweeps"
NOT_SWEPT = {"run.seed": N_("list seeds in [sweep] seeds = [...]"),
             "run.steps": N_("set [sweep] steps = N")}


@dataclass(frozen=True)
class Run:
    """One point of the grid with one seed: ``values`` are the swept options' values."""

    values: tuple[tuple[str, Any], ...]
    seed: int

    def key(self) -> tuple[str, ...]:
        """The run's identity as written in the result file (swept values as text, seed)."""
        return (*(cell(v) for _, v in self.values), str(self.seed))


@dataclass(frozen=True)
class Sweep:
    """A loaded sweep file: base scenario, grid, steps, seeds and claims on the results."""

    scenario: Scenario
    grid: tuple[tuple[str, tuple[Any, ...]], ...]
    steps: int
    seeds: tuple[int, ...]
    claims: tuple = field(default=())
    path: str | None = None

    @property
    def name(self) -> str:
        """The sweep's name (the file's stem unless [scenario] name says otherwise)."""
        return self.scenario.name

    @property
    def swept(self) -> tuple[str, ...]:
        """The swept option names, in the file's order."""
        return tuple(name for name, _ in self.grid)

    @property
    def size(self) -> int:
        """How many runs: grid points times seeds."""
        points = 1
        for _, values in self.grid:
            points *= len(values)
        return points * len(self.seeds)

    def runs(self) -> Iterator[Run]:
        """Every run, grid order with the seed varying fastest."""
        names = self.swept
        for point in itertools.product(*(values for _, values in self.grid)):
            for seed in self.seeds:
                yield Run(tuple(zip(names, point, strict=True)), seed)

    def config(self, run: Run) -> Config:
        """The complete Config of one run."""
        overrides = {**dict(run.values), "run.seed": run.seed, "run.steps": self.steps}
        return Config.from_overrides(overrides, self.scenario.config)


def cell(value: Any) -> str:
    """An option value as a result file writes it: true/false, repr of floats, text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def is_sweep_file(source: str | Path) -> bool:
    """Whether ``source`` (a path or bundled sweep name) is a file with a [sweep] table."""
    try:
        data, _ = read_toml(resolve(source))
    except ConfigError:
        return False
    return "sweep" in data


def resolve(source: str | Path) -> Path:
    """A path as given, or the bundled sweep of that name (``quick``)."""
    bundled = bundled_paths()
    found = find_file(source, bundled)
    if found is not None:
        return found
    if not bundled:
        raise ConfigError(tr("no such file (and no sweep is bundled)"), path=str(source))
    raise ConfigError(tr("no such file or bundled sweep (bundled: {names})", names=", ".join(bundled)),
                      path=str(source))


def bundled_paths() -> dict[str, Path]:
    """Bundled sweep names -> file paths (package tui_grad.sweeps, else ./sweeps/)."""
    try:
        folder = Path(str(resources.files(BUNDLED_PACKAGE)))
    except ModuleNotFoundError:
        folder = Path(__file__).resolve().parent.parent.parent / "sweeps"
    return {p.stem: p for p in sorted(folder.glob("*.toml"), key=lambda p: p.name)}


def load_sweep(source: str | Path) -> Sweep:
    """Load a sweep file, or a bundled sweep by name; ConfigError with file:line on mistakes."""
    path = resolve(source)
    data, lines = read_toml(path)
    shown = str(source)
    try:
        return _parse(data, lines, path)
    except ConfigError as exc:
        raise exc.located(shown) from None


def _parse(data: dict[str, Any], lines: _Lines, path: Path) -> Sweep:
    from tui_grad.sweep.claims import parse_claims

    table = data.pop("sweep", None)
    if not isinstance(table, dict):
        raise ConfigError(tr("needs a [sweep] table with [sweep.grid] (this looks like a scenario file)"),
                          line=lines.of("sweep"))
    if "compare" in data:
        raise ConfigError(tr("[[compare]] has no place in a sweep file: put the compared option in "
                             "[sweep.grid]"), key="compare", line=lines.of("compare"))
    claims = data.pop("expect", [])
    scenario = _build(data, lines, path.stem, str(path))
    for key in table:
        if key not in SWEEP_KEYS:
            raise ConfigError(tr("unknown key (use {keys})", keys=", ".join(SWEEP_KEYS)), key=f"sweep.{key}",
                              line=lines.of("sweep", key))
    steps = _steps(table, scenario.config, lines)
    seeds = _seeds(table, scenario.config, lines)
    grid = _grid(table.get("grid"), lines)
    sweep = Sweep(scenario, grid, steps, seeds, parse_claims(claims, grid, lines), str(path))
    _check_points(sweep, lines)
    return sweep


def _steps(table: dict[str, Any], base: Config, lines: _Lines) -> int:
    if "steps" not in table:
        return max(base.run.steps, 1)
    try:
        steps = option("run.steps").from_toml(table["steps"])
    except ConfigError as exc:
        raise ConfigError(exc.message, key="sweep.steps", line=lines.of("sweep", "steps")) from None
    if steps < 1:
        raise ConfigError(tr("must be 1 or more (got {value})", value=steps), key="sweep.steps",
                          line=lines.of("sweep", "steps"))
    return steps


def _seeds(table: dict[str, Any], base: Config, lines: _Lines) -> tuple[int, ...]:
    where = {"key": "sweep.seeds", "line": lines.of("sweep", "seeds")}
    raw = table.get("seeds", [base.run.seed])
    if not isinstance(raw, list) or not raw:
        raise ConfigError(tr("must be a non-empty list of seeds like [0, 1, 2] (got {value})",
                             value=repr(raw)), **where)
    try:
        seeds = tuple(option("run.seed").from_toml(seed) for seed in raw)
    except ConfigError as exc:
        raise ConfigError(exc.message, **where) from None
    _no_repeats(seeds, where)
    return seeds


def _grid(raw: Any, lines: _Lines) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(tr('needs [sweep.grid] with at least one option, e.g. "network.depth" = [5, 10]'),
                          key="sweep.grid", line=lines.of("sweep.grid") or lines.of("sweep"))
    # network.depth = [...] unquoted parses as {"network": {"depth": [...]}}
    pairs = []
    for key, value in raw.items():
        if isinstance(value, dict):
            pairs += [(f"{key}.{inner}", v) for inner, v in value.items()]
        else:
            pairs.append((key, value))
    names = [name for name, _ in pairs]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(tr("is in the grid twice"), key=f"sweep.grid.{name}",
                              line=lines.of("sweep.grid", name))
    return tuple(_axis(name, values, lines) for name, values in pairs)


def _axis(name: str, values: Any, lines: _Lines) -> tuple[str, tuple[Any, ...]]:
    where = {"key": f"sweep.grid.{name}", "line": lines.of("sweep.grid", name)}
    try:
        opt = option(name)
    except ConfigError as exc:
        raise ConfigError(exc.message, **where) from None
    if name in NOT_SWEPT:
        raise ConfigError(tr("is not swept in the grid: {hint}", hint=tr(NOT_SWEPT[name])), **where)
    if not isinstance(values, list) or not values:
        raise ConfigError(tr("must be a non-empty list of values, e.g. [1, 2] (got {value})",
                             value=repr(values)), **where)
    try:
        coerced = tuple(opt.from_toml(value) for value in values)
    except ConfigError as exc:
        raise ConfigError(exc.message, **where) from None
    _no_repeats(coerced, where)
    return name, coerced


def _no_repeats(values: tuple, where: dict) -> None:
    seen = set()
    for value in values:
        if value in seen:
            raise ConfigError(tr("lists {value} twice (every run must differ)", value=cell(value)), **where)
        seen.add(value)


def _check_points(sweep: Sweep, lines: _Lines) -> None:
    """Every grid point must make a consistent Config (model, task and loss fit together)."""
    names = sweep.swept
    points = itertools.product(*(values for _, values in sweep.grid))
    for point in itertools.islice(points, VALIDATE_POINTS):
        try:
            Config.from_overrides(dict(zip(names, point, strict=True)), sweep.scenario.config)
        except ConfigError as exc:
            shown = ", ".join(f"{n}={cell(v)}" for n, v in zip(names, point, strict=True))
            raise ConfigError(tr("{message} at the grid point {point}", message=exc.message, point=shown),
                              key=exc.key,
                              line=lines.of("sweep.grid")) from None
