"""Lessons: an ordered list of scenarios, each with a prompt, opened one at a time.

A lesson file::

    [lesson]
    title = "Vanishing and exploding gradients"
    title_zh = "梯度消失与梯度爆炸"          # optional
    description = "..."                   # optional

    [[step]]
    scenario = "sigmoid-vanishing"        # bundled name, or a file relative to the lesson
    title = "Why sigmoid stacks vanish"   # optional (default: the scenario's title)
    title_zh = "..."                      # optional (default: the scenario's title_zh,
                                          # when the step gives no title of its own)
    prompt = "Predict which layers stop learning, then press space."
    prompt_zh = "..."                     # optional
    set = { "network.depth" = 30 }        # optional overrides, as in a scenario file
    watch = ["grad_norm[layer=1] / grad_norm[layer=last] < 1e-6"]  # optional claims

Bundled lessons live in ``lessons/`` at the top of the repository (``tui_grad.lessons`` in
the wheel). Every bad input is a ConfigError naming the file, line and key.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from tui_grad.config import ConfigError, canonical, option
from tui_grad.expect import PROBES, Expectation, parse_expectation
from tui_grad.i18n import tr
from tui_grad.scenario import Scenario, find_file, load_scenario, read_toml

LESSON_KEYS = ("title", "title_zh", "description")
STEP_KEYS = ("scenario", "title", "title_zh", "prompt", "prompt_zh", "set", "watch")
BUNDLED_PACKAGE = "tui_grad.lessons"


@dataclass(frozen=True)
class LessonStep:
    """One step: the scenario to open (overrides applied), what to ask, what to watch."""

    scenario: Scenario
    title: str
    title_zh: str
    prompt: str
    prompt_zh: str
    watch: tuple[Expectation, ...]

    def text(self, lang: str) -> tuple[str, str]:
        """(title, prompt) in ``lang`` (zh falls back to English where a text is missing)."""
        if lang == "zh":
            return self.title_zh or self.title, self.prompt_zh or self.prompt
        return self.title, self.prompt


@dataclass(frozen=True)
class Lesson:
    """A named, ordered list of steps."""

    name: str
    title: str
    title_zh: str
    description: str
    steps: tuple[LessonStep, ...]
    path: str

    def heading(self, lang: str) -> str:
        return (self.title_zh or self.title) if lang == "zh" else self.title


def bundled_folder() -> Path:
    """The bundled lessons: the package tui_grad.lessons, else ``lessons/`` of the checkout."""
    try:
        return Path(str(resources.files(BUNDLED_PACKAGE)))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "lessons"


def bundled_lessons() -> dict[str, Path]:
    """Bundled lesson names -> files."""
    return {p.stem: p for p in sorted(bundled_folder().glob("*.toml"), key=lambda p: p.name)}


def is_lesson_file(data: Mapping[str, Any]) -> bool:
    """Whether parsed TOML is a lesson (it has [lesson] or [[step]]) rather than a scenario."""
    return "lesson" in data or "step" in data


def load_lesson(source: str | Path) -> Lesson:
    """Load a lesson file, or a bundled lesson by name."""
    bundled = bundled_lessons()
    path = find_file(source, bundled)
    if path is None:
        hint = difflib.get_close_matches(str(source), bundled, n=1)
        message = (tr("no such file or bundled lesson; did you mean {name}?", name=repr(hint[0]))
                   if hint else tr("no such file or bundled lesson; bundled: {names}",
                                   names=", ".join(bundled)))
        raise ConfigError(message, path=str(source))
    data, lines = read_toml(path, "lesson")
    shown = tr("{name} (bundled lesson)", name=path.stem) \
        if path.resolve().parent == bundled_folder().resolve() else str(source)
    try:
        return _build(data, lines, path)
    except ConfigError as exc:
        raise exc.located(shown) from None


def _build(data: dict[str, Any], lines, path: Path) -> Lesson:
    for table in data:
        if table not in ("lesson", "step"):
            raise ConfigError(tr("unknown table [{table}] (a lesson has [lesson] and [[step]])",
                                 table=table), line=lines.of(table))
    meta = data.get("lesson", {})
    if not isinstance(meta, dict):
        raise ConfigError(tr("must be a table [{name}]", name="lesson"), key="lesson",
                          line=lines.of("lesson"))
    _known(meta, LESSON_KEYS, "lesson", lines)
    steps = data.get("step", [])
    if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
        raise ConfigError(tr("must be written as [[{name}]] tables", name="step"), key="step",
                          line=lines.of("step"))
    if not steps:
        raise ConfigError(tr("a lesson needs at least one [[step]]"), key="step")
    built = tuple(_step(entry, i, path, lines) for i, entry in enumerate(steps))
    return Lesson(name=path.stem, title=_string(meta, "title", "lesson", lines, path.stem),
                  title_zh=_string(meta, "title_zh", "lesson", lines),
                  description=_string(meta, "description", "lesson", lines), steps=built,
                  path=str(path))


def _known(table: Mapping[str, Any], keys: tuple[str, ...], where: str, lines, index: int = 0) -> None:
    for key in table:
        if key not in keys:
            hint = difflib.get_close_matches(key, keys, n=1)
            message = (tr("unknown key; did you mean {hint}?", hint=repr(hint[0])) if hint
                       else tr("unknown key (use {keys})", keys=", ".join(keys)))
            name = where if where == "lesson" else f"step[{index + 1}]"
            raise ConfigError(message, key=f"{name}.{key}",
                              line=lines.of(where, key, index))


def _string(table: Mapping[str, Any], key: str, where: str, lines, default: str = "",
            index: int = 0) -> str:
    value = table.get(key, default)
    if not isinstance(value, str):
        name = where if where == "lesson" else f"step[{index + 1}]"
        raise ConfigError(tr("must be a string (got {value})", value=repr(value)), key=f"{name}.{key}",
                          line=lines.of(where, key, index))
    return value


def _step(entry: Mapping[str, Any], index: int, path: Path, lines) -> LessonStep:
    where = f"step[{index + 1}]"

    def error(message: str, key: str | None = None) -> ConfigError:
        line = (lines.of("step", key, index) if key else None) or lines.of("step", None, index)
        return ConfigError(message, key=f"{where}.{key}" if key else where, line=line)

    _known(entry, STEP_KEYS, "step", lines, index)
    source = entry.get("scenario")
    if not isinstance(source, str) or not source:
        raise error(tr('needs scenario = "NAME" (a bundled scenario or a file)'))
    local = path.parent / source
    try:
        scenario = load_scenario(local if local.suffix == ".toml" and local.exists() else source)
    except ConfigError as exc:
        raise error(tr("scenario {name}: {error}", name=repr(source), error=exc), "scenario") from None
    overrides = entry.get("set", {})
    if not isinstance(overrides, dict):
        raise error(tr('must be a table, e.g. set = { "network.depth" = 30 }'), "set")
    values = {}
    for name, value in overrides.items():
        try:
            key, meant = canonical(name, option(name).from_toml(value), scenario.config.as_dict())
        except ConfigError as exc:
            raise error(f"{name}: {exc.message}", "set") from None
        values[key] = meant
    if values:
        try:
            scenario = scenario.with_overrides(values)
        except ConfigError as exc:
            raise error(f"{exc.key or ''}: {exc.message}".lstrip(": "), "set") from None
    watch = entry.get("watch", [])
    if not isinstance(watch, list) or not all(isinstance(w, str) for w in watch):
        raise error(tr('must be a list of claims, e.g. ["loss[step=last] < 0.1"]'), "watch")
    claims = []
    for text in watch:
        try:
            claim = parse_expectation({"check": text}, [v.name for v in scenario.compare])
        except ConfigError as exc:
            raise error(exc.message, "watch") from None
        probes = sorted({ref.metric for ref in claim.refs() if ref.metric in PROBES})
        if probes:  # the UI measures these only on request (D); `run --check` measures them
            raise error(tr("{metric} is measured on request, not live: put this claim in the "
                           "scenario's [[expect]] (tui-grad run SCENARIO --headless --check)",
                           metric=probes[0]), "watch")
        claims.append(claim)
    prompt = _string(entry, "prompt", "step", lines, index=index)
    if not prompt:
        raise error(tr('needs prompt = "..." (what to predict or try before running)'), "prompt")
    # a step without a title of its own takes the scenario's, in both languages
    own_title = "title" in entry
    return LessonStep(scenario=scenario,
                      title=_string(entry, "title", "step", lines, scenario.title or scenario.name, index),
                      title_zh=_string(entry, "title_zh", "step", lines,
                                       "" if own_title else scenario.title_zh, index),
                      prompt=prompt, prompt_zh=_string(entry, "prompt_zh", "step", lines, index=index),
                      watch=tuple(claims))
