"""Scenario files (TOML) <-> Config, bundled scenario lookup, and export.

A scenario file holds ``[scenario]`` (name, title, description, notes, notes_zh, lock),
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

META_KEYS = ("name", "title", "description", "notes", "notes_zh", "lock")
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
                        variants, self.expects, self.lock, self.path)


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


def read_toml(path: Path, kind: str = "scenario") -> tuple[dict[str, Any], _Lines]:
    """Parse a TOML file written by any common editor (BOM, CRLF) or raise ConfigError."""
    shown = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError("no such file", path=shown) from None
    except IsADirectoryError:
        raise ConfigError(f"is a directory, not a {kind} file", path=shown) from None
    except OSError as exc:
        raise ConfigError(f"cannot read ({exc.strerror})", path=shown) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ConfigError("not UTF-8 text", path=shown, line=line) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc)) or "malformed TOML"
        line = int(match.group(1)) if match else None
        raise ConfigError(f"malformed TOML: {message}", path=shown, line=line) from None
    return data, _Lines(text)


def load_scenario(source: str | Path) -> Scenario:
    """Load a scenario file, or a bundled scenario by name (``sigmoid-vanishing``)."""
    path = resolve(source)
    data, lines = read_toml(path)
    shown = str(source) if not _is_bundled(path) else f"{path.stem} (bundled)"
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
    more = f"; did you mean {hint[0]!r}?" if hint else "; `tui-grad scenarios` lists them"
    raise ConfigError(f"no such file or bundled scenario{more}", path=str(source))


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
            more = f"; did you mean [{hint[0]}]?" if hint else ""
            raise ConfigError(f"unknown table [{table}]{more}", line=lines.of(table))
    meta = _table(data, "scenario", lines)
    for key in meta:
        if key not in META_KEYS:
            hint = difflib.get_close_matches(key, META_KEYS, n=1)
            more = f"; did you mean {hint[0]!r}?" if hint else ""
            raise ConfigError(f"unknown key{more}", key=f"scenario.{key}", line=lines.of("scenario", key))
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
        description=_text(meta, "description", "", lines), notes=_text(meta, "notes", "", lines),
        notes_zh=_text(meta, "notes_zh", "", lines), config=config, compare=compare,
        expects=tuple(expects), lock=_lock(meta, lines), path=path)


def _table(data: Mapping[str, Any], name: str, lines: _Lines) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"must be a table [{name}]", key=name, line=lines.of(name))
    return value


def _array(data: Mapping[str, Any], name: str, lines: _Lines) -> list[dict[str, Any]]:
    value = data.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError(f"must be written as [[{name}]] tables", key=name, line=lines.of(name))
    return value


def _text(meta: Mapping[str, Any], key: str, default: str, lines: _Lines) -> str:
    value = meta.get(key, default)
    if not isinstance(value, str):
        raise ConfigError(f"must be a string (got {value!r})", key=f"scenario.{key}",
                          line=lines.of("scenario", key))
    return value


def _lock(meta: Mapping[str, Any], lines: _Lines) -> tuple[str, ...]:
    value = meta.get("lock", [])
    where = {"key": "scenario.lock", "line": lines.of("scenario", "lock")}
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError("must be a list of option names like [\"network.activation\"]", **where)
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
        raise ConfigError("every [[compare]] needs a name = \"...\"", key=f"compare[{index + 1}]", line=line)
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
            lock: tuple[str, ...] = ()) -> str:
    """A scenario file that loads back to exactly ``config`` (every option written out)."""
    out = ["[scenario]", f"name = {_toml_value(name)}", f"title = {_toml_value(title)}"]
    if notes:
        out.append(f"notes = {_toml_value(notes)}")
    if lock:
        out.append("lock = [" + ", ".join(_toml_value(n) for n in lock) + "]")
    values = config.by_section()
    for section in SECTIONS:
        out += ["", f"[{section}]"]
        for opt in (o for o in OPTIONS if o.section == section):
            out.append(f"{opt.key} = {_toml_value(values[section][opt.key])}  # {opt.help}")
    return "\n".join(out) + "\n"

