"""The catalogue: every string the code marks has a Chinese entry, every entry is used, and
the {fields} agree; the language switch."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tui_grad import i18n

PACKAGE = Path(i18n.__file__).parent


def marked_strings() -> dict[str, list[str]]:
    """Every literal passed to tr() or N_() in the package -> where (file:line)."""
    found: dict[str, list[str]] = {}
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in ("tr", "N_")):
                continue
            where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
            arg = node.args[0] if node.args else None
            if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                if node.func.id == "N_":  # tr(name) translates a text marked elsewhere
                    problems.append(f"{where}: N_() needs a string literal")
                continue
            found.setdefault(arg.value, []).append(where)
    assert not problems, "\n".join(problems)
    return found


def test_every_marked_string_has_a_chinese_entry():
    missing = {text: where for text, where in marked_strings().items()
               if text not in i18n.catalogue()}
    assert not missing, "no zh entry for:\n" + "\n".join(f"  {w[0]}: {t!r}" for t, w in missing.items())


def test_every_entry_is_used():
    used = marked_strings()
    unused = [text for text in i18n.catalogue() if text not in used]
    assert not unused, "entries no code marks:\n" + "\n".join(f"  {t!r}" for t in unused)


def test_entries_keep_their_fields_and_are_translated():
    bad = []
    for english, chinese in i18n.catalogue().items():
        if i18n.fields_of(english) != i18n.fields_of(chinese):
            bad.append(f"fields differ: {english!r} -> {chinese!r}")
        if not chinese.strip():
            bad.append(f"empty: {english!r}")
    assert not bad, "\n".join(bad)


def test_no_text_is_entered_twice():
    seen: dict[str, Path] = {}
    twice = []
    for path in sorted(i18n.CATALOGUE_DIR.glob("*.toml")):
        import tomllib

        for key in tomllib.loads(path.read_text(encoding="utf-8")):
            if key in seen:
                twice.append(f"{key!r} in {seen[key].name} and {path.name}")
            seen[key] = path
    assert not twice, "\n".join(twice)


def test_tr_follows_the_language_in_use(language):
    text = next(iter(i18n.catalogue()))
    language("en")
    assert i18n.tr(text) == text
    language("zh")
    assert i18n.tr(text) == i18n.catalogue()[text]


@pytest.mark.parametrize(("environ", "expected"), [
    ({}, "en"), ({"LANG": "zh_CN.UTF-8"}, "zh"), ({"LANG": "en_US.UTF-8"}, "en"),
    ({"LC_ALL": "en_GB.UTF-8", "LANG": "zh_CN.UTF-8"}, "en"), ({"LC_ALL": "zh_TW.UTF-8"}, "zh"),
    ({"LANG": "C.UTF-8"}, "en")])
def test_language_from_the_locale(environ, expected):
    assert i18n.language_from_environment(environ) == expected


def test_an_unknown_language_is_refused():
    with pytest.raises(ValueError, match="en, zh"):
        i18n.use("fr")


if __name__ == "__main__":
    # python tests/test_i18n.py [FILE ...]: the entries the catalogue lacks, as TOML to fill in
    import json
    import sys

    wanted = {Path(name).resolve() for name in sys.argv[1:]}
    for text, where in marked_strings().items():
        if text in i18n.catalogue():
            continue
        if wanted and not any((PACKAGE.parent / w.split(":")[0]).resolve() in wanted for w in where):
            continue
        print(f"# {where[0]}\n{json.dumps(text, ensure_ascii=False)} = \"\"")
