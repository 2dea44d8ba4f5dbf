"""Scenario files (TOML) <-> Config, bundled scenario lookup, and export.

A scenario file holds ``[scenario]`` (name, title, title_zh, description, notes, notes_zh,
lock),
one table per config section, optional ``[[compare]]`` variants and ``[[expect]]`` claims.
Every error is a ConfigError naming the file, the line and the key.
"""

from __future__ import annotations

import difflib
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from tui_grad.config import OPTIONS, SECTIONS, Config, ConfigError, canonical, option
from tui_grad.expect import Expectation, parse_expectation
from tui_grad.i18n import N_, current, tr

META_KEYS = ("name", "title", "title_zh", "description", "notes", "notes_zh", "lock")
TOP_LEVEL = ("scenario", *SECTIONS, "compare", "expect")
BUNDLED_PACKAGE = "tui_grad.scenarios"


@dataclass(frozen=True)
class Variant:
    """One named run of a scenario: the base config with some keys overridden."""

    name: str
    config: Config
    overrides: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    """A loaded scenario: metadata, its base Config, variants to compare and claims to check."""

    name: str
    title: str
    description: str
    notes: str
    notes_zh: str
    config: Config
    compare: tuple[Variant, ...] = ()
    expects: tuple[Expectation, ...] = ()
    lock: tuple[str, ...] = ()
    path: str | None = None
    title_zh: str = ""

    def heading(self, lang: str | None = None) -> str:
        """The title in ``lang`` (default: the language in use): title_zh in Chinese where
        the file has one, else the English title."""
        if (lang or current()) == "zh" and self.title_zh:
            return self.title_zh
        return self.title

    @property
    def variants(self) -> tuple[Variant, ...]:
        """The runs this scenario makes: its [[compare]] entries, or the base config alone."""
        return self.compare or (Variant(self.name, self.config),)

    def with_overrides(self, overrides: Mapping[str, Any]) -> Scenario:
        """This scenario with ``section.key`` overrides applied to the base and every variant."""
        base = Config.from_overrides(overrides, self.config)
        variants = tuple(Variant(v.name, Config.from_overrides({**overrides, **v.overrides}, base),
                                 v.overrides) for v in self.compare)
        return Scenario(self.name, self.title, self.description, self.notes, self.notes_zh, base,
                        variants, self.expects, self.lock, self.path, self.title_zh)


class _Lines:
    """Finds the line of a key in TOML text so errors can say where they are."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()

    def of(self, table: str, key: str | None = None, index: int = 0) -> int | None:
        header = re.compile(rf"^\s*\[\[?\s*{re.escape(table)}\s*\]\]?\s*(#.*)?$")
        seen, inside, found = -1, False, None
        for number, line in enumerate(self.lines, start=1):
            stripped = line.strip()
            if stripped.startswith("["):
                inside = bool(header.match(stripped))
                if inside:
                    seen += 1
                    if seen == index and key is None:
                        return number
                continue
            if inside and seen == index and key and re.match(rf"^\s*\"?{re.escape(key)}\"?\s*=", line):
                found = number
                break
        return found


NOT_A_FILE = {"scenario": N_("is a directory, not a scenario file"),
              "lesson": N_("is a directory, not a lesson file")}


def read_toml(path: Path, kind: str = "scenario") -> tuple[dict[str, Any], _Lines]:
    """Parse a TOML file written by any common editor (BOM, CRLF) or raise ConfigError.
    ``kind`` (scenario or lesson) names the file a directory is not."""
    shown = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(tr("no such file"), path=shown) from None
    except IsADirectoryError:
        raise ConfigError(tr(NOT_A_FILE.get(kind, NOT_A_FILE["scenario"])), path=shown) from None
    except OSError as exc:
        raise ConfigError(tr("cannot read ({reason})", reason=exc.strerror), path=shown) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ConfigError(tr("not UTF-8 text"), path=shown, line=line) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # tomllib's own words stay as Python wrote them
        match = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        line = int(match.group(1)) if match else None
        raise ConfigError(tr("malformed TOML: {reason}", reason=message) if message
                          else tr("malformed TOML"), path=shown, line=line) from None
    return data, _Lines(text)


def load_scenario(source: str | Path) -> Scenario:
    """Load a scenario file, or a bundled scenario by name (``sigmoid-vanishing``)."""
    path = resolve(source)
    data, lines = read_toml(path)
    shown = str(source) if not _is_bundled(path) else tr("{name} (bundled)", name=path.stem)
    try:
        return _build(data, lines, path.stem, str(path))
    except ConfigError as exc:
        raise exc.located(shown) from None


def find_file(source: str | Path, bundled: Mapping[str, Path]) -> Path | None:
    """``source`` as a path when it reads as one (it exists, ends in .toml or holds a /),
    else the bundled file of that name; None when it is neither (scenarios and sweeps)."""
    path = Path(source)
    if path.exists() or path.suffix == ".toml" or "/" in str(source):
        return path
    return bundled.get(str(source))


def resolve(source: str | Path) -> Path:
    """A path as given, or the bundled scenario of that name; ConfigError if neither exists."""
    bundled = bundled_paths()
    found = find_file(source, bundled)
    if found is not None:
        return found
    hint = difflib.get_close_matches(str(source), bundled, n=1)
    if hint:
        raise ConfigError(tr("no such file or bundled scenario; did you mean {name}?",
                             name=repr(hint[0])), path=str(source))
    raise ConfigError(tr("no such file or bundled scenario; `tui-grad scenarios` lists them"),
                      path=str(source))


def bundled_paths() -> dict[str, Path]:
    """Bundled scenario names -> file paths, sorted by name."""
    return {p.stem: p for p in sorted(bundled_folder().glob("*.toml"), key=lambda p: p.name)}


def bundled_folder() -> Path:
    """Where the bundled scenarios are: the package tui_grad.scenarios of an installed wheel
    (or an editable install), else the top-level ``scenarios/`` of the checkout this module
    was imported from (run from source without installing)."""
    try:
        return Path(str(resources.files(BUNDLED_PACKAGE)))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "scenarios"


def _is_bundled(path: Path) -> bool:
    return path.resolve().parent == bundled_folder().resolve()


def _build(data: dict[str, Any], lines: _Lines, stem: str, path: str) -> Scenario:
    for table in data:
        if table not in TOP_LEVEL:
            hint = difflib.get_close_matches(table, TOP_LEVEL, n=1)
            message = (tr("unknown table [{table}]; did you mean [{hint}]?", table=table, hint=hint[0])
                       if hint else tr("unknown table [{table}]", table=table))
            raise ConfigError(message, line=lines.of(table))
    meta = _table(data, "scenario", lines)
    for key in meta:
        if key not in META_KEYS:
            hint = difflib.get_close_matches(key, META_KEYS, n=1)
            message = (tr("unknown key; did you mean {hint}?", hint=repr(hint[0])) if hint
                       else tr("unknown key"))
            raise ConfigError(message, key=f"scenario.{key}", line=lines.of("scenario", key))
    config = Config.from_overrides(_overrides(data, lines))
    entries = _array(data, "compare", lines)
    compare = tuple(_variant(entry, i, config, lines) for i, entry in enumerate(entries))
    expects = []
    for i, entry in enumerate(_array(data, "expect", lines)):
        try:
            expects.append(parse_expectation(entry, [v.name for v in compare]))
        except ConfigError as exc:
            raise ConfigError(exc.message, key=f"expect[{i + 1}]", line=lines.of("expect", None, i)) from None
    return Scenario(
        name=_text(meta, "name", stem, lines), title=_text(meta, "title", "", lines),
        title_zh=_text(meta, "title_zh", "", lines),
        description=_text(meta, "description", "", lines), notes=_text(meta, "notes", "", lines),
        notes_zh=_text(meta, "notes_zh", "", lines), config=config, compare=compare,
        expects=tuple(expects), lock=_lock(meta, lines), path=path)


def _table(data: Mapping[str, Any], name: str, lines: _Lines) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(tr("must be a table [{name}]", name=name), key=name, line=lines.of(name))
    return value


def _array(data: Mapping[str, Any], name: str, lines: _Lines) -> list[dict[str, Any]]:
    value = data.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError(tr("must be written as [[{name}]] tables", name=name), key=name,
                          line=lines.of(name))
    return value


def _text(meta: Mapping[str, Any], key: str, default: str, lines: _Lines) -> str:
    value = meta.get(key, default)
    if not isinstance(value, str):
        raise ConfigError(tr("must be a string (got {value})", value=repr(value)), key=f"scenario.{key}",
                          line=lines.of("scenario", key))
    return value


def _lock(meta: Mapping[str, Any], lines: _Lines) -> tuple[str, ...]:
    value = meta.get("lock", [])
    where = {"key": "scenario.lock", "line": lines.of("scenario", "lock")}
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(tr("must be a list of option names like [\"network.activation\"]"), **where)
    for name in value:
        try:
            option(name)
        except ConfigError as exc:
            raise ConfigError(f"{name!r}: {exc.message}", **where) from None
    return tuple(canonical(name, True)[0] for name in value)


def _overrides(data: Mapping[str, Any], lines: _Lines) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for section in SECTIONS:
        for key, value in _table(data, section, lines).items():
            name = f"{section}.{key}"
            where = lines.of(section, key)
            try:
                key, meant = canonical(name, option(name).from_toml(value), overrides)
            except ConfigError as exc:
                raise ConfigError(exc.message, key=name, line=where) from None
            overrides[key] = meant
    return overrides


def _variant(entry: Mapping[str, Any], index: int, base: Config, lines: _Lines) -> Variant:
    line = lines.of("compare", None, index)
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(tr("every [[compare]] needs a name = \"...\""), key=f"compare[{index + 1}]",
                          line=line)
    overrides = {}
    for key, value in entry.items():
        if key == "name":
            continue
        # network.activation = "relu" parses as a sub-table {"network": {"activation": ...}}
        pairs = {f"{key}.{k}": v for k, v in value.items()} if isinstance(value, dict) else {key: value}
        for dotted, raw in pairs.items():
            try:
                key, meant = canonical(dotted, option(dotted).from_toml(raw), base.as_dict())
                overrides[key] = meant
            except ConfigError as exc:
                raise ConfigError(exc.message, key=f"compare[{name}].{dotted}", line=line) from None
    try:
        config = Config.from_overrides(overrides, base)
    except ConfigError as exc:
        raise ConfigError(exc.message, key=f"compare[{name}].{exc.key}", line=line) from None
    return Variant(name, config, overrides)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if value == value else "nan"
    if isinstance(value, int):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def to_toml(config: Config, *, name: str = "exported", title: str = "", notes: str = "",
            lock: tuple[str, ...] = (), title_zh: str = "", notes_zh: str = "") -> str:
    """A scenario file that loads back to exactly ``config`` (every option written out), and
    to the metadata given; each option's help, in the language in use, as its comment."""
    out = ["[scenario]", f"name = {_toml_value(name)}", f"title = {_toml_value(title)}"]
    if title_zh:
        out.append(f"title_zh = {_toml_value(title_zh)}")
    if notes:
        out.append(f"notes = {_toml_value(notes)}")
    if notes_zh:
        out.append(f"notes_zh = {_toml_value(notes_zh)}")
    if lock:
        out.append("lock = [" + ", ".join(_toml_value(n) for n in lock) + "]")
    values = config.by_section()
    for section in SECTIONS:
        out += ["", f"[{section}]"]
        for opt in (o for o in OPTIONS if o.section == section):
            out.append(f"{opt.key} = {_toml_value(values[section][opt.key])}  # {tr(opt.help)}")
    return "\n".join(out) + "\n"

