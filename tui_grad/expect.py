"""``[[expect]]``: small, checkable claims about a run, evaluated after a headless run.

An expectation is ``LEFT OP RIGHT`` where OP is one of ``< <= > >= == !=`` and each side
is a product/quotient of numbers and metric references::

    grad_norm[layer=1] / grad_norm[layer=last] < 1e-6
    loss[step=300] < 0.5 * loss[step=0]
    status[step=0] == vanishing
    diverged_at < 50            # never diverging makes this FAIL
    diverged_at == none         # ... and this PASS
    sharpness[step=last] > 0.9 * 2 / lr
    jacobian_spread[step=0] < 2

A reference is ``metric[selector, ...]``; selectors are ``layer=N|first|last`` (layers are
1..depth+1, input side first; per-layer metrics only) and ``step=N|first|last`` (default:
the entry's ``step`` key, else the last step). ``lr`` is the learning rate of the step's update;
``loss_rises`` counts the steps so far whose loss exceeded the step before's. The probe
metrics (PROBES: sharpness and the Jacobian's spectrum, see engine/probe.py) are measured
only at the steps a claim reads, on the network as it is after that step. In the file::

    [[expect]]
    check = "grad_norm[layer=1] / grad_norm[layer=last] < 1e-6"
    step = 0              # optional default step for references without step=
    variant = "sigmoid"   # optional; default: every variant
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from tui_grad.config import ConfigError
from tui_grad.engine.diagnose import VERDICTS
from tui_grad.i18n import tr

PER_LAYER = ("grad_norm", "signal_norm", "weight_norm", "update_ratio", "act_mean", "act_std",
             "saturation", "dead_fraction", "prelu_slope", "predicted_signal_norm",
             "forget_gate_mean", "input_gate_mean", "output_gate_mean")
PROBES = ("sharpness", "jacobian_largest", "jacobian_smallest", "jacobian_mean_square",
          "jacobian_variance_of_squares", "jacobian_spread")  # measured on request (probe.py)
SCALAR = ("loss", "global_grad_norm", "clip_scale", "status", "diverged_at", "chi_1", "lr",
          "loss_rises") + PROBES
METRICS = PER_LAYER + SCALAR
COMPARISONS: dict[str, Callable[[object, object], bool]] = {
    "<=": operator.le, ">=": operator.ge, "==": operator.eq, "!=": operator.ne,
    "<": operator.lt, ">": operator.gt}
_TOKEN = re.compile(r"\s*(?:(?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
                    r"|(?P<ref>[A-Za-z_][A-Za-z_0-9]*)(?:\[(?P<sel>[^][<>!*/]*)(?P<close>\])?)?"
                    r"|(?P<op><=|>=|==|!=|<|>)|(?P<mul>[*/]))")
LAST = -1


@dataclass(frozen=True)
class Ref:
    """A metric at a step (and layer): ``step``/``layer`` None means the default / not needed."""

    metric: str
    step: int | None
    layer: int | None


@dataclass(frozen=True)
class Expectation:
    """One parsed ``[[expect]]`` entry."""

    text: str
    left: tuple
    op: str
    right: tuple
    default_step: int
    variant: str | None

    def steps(self) -> set[int]:
        """Steps (LAST = -1 for the final one) whose metrics this claim reads."""
        return {self.default_step if t.step is None else t.step for t in self.refs()}

    def refs(self) -> list[Ref]:
        """The metric references on both sides."""
        return [t for side in (self.left, self.right) for t in side[::2] if isinstance(t, Ref)]

    def probe_steps(self) -> dict[int, set[str]]:
        """Steps (LAST for the final one) -> the probe metrics this claim reads there."""
        wanted: dict[int, set[str]] = {}
        for ref in self.refs():
            if ref.metric in PROBES:
                step = self.default_step if ref.step is None else ref.step
                wanted.setdefault(step, set()).add(ref.metric)
        return wanted


def parse_expectation(entry: Mapping[str, object], variants: Sequence[str]) -> Expectation:
    """Parse one ``[[expect]]`` table; raise ConfigError saying what is wrong."""
    unknown = set(entry) - {"check", "step", "variant"}
    if unknown:
        raise ConfigError(tr("unknown key {key} (use check, step, variant)", key=repr(sorted(unknown)[0])))
    text = entry.get("check")
    if not isinstance(text, str):
        raise ConfigError(tr('needs check = "metric[...] < value"'))
    step = entry.get("step", LAST)
    if isinstance(step, str) and step == "last":
        step = LAST
    if not isinstance(step, int) or isinstance(step, bool) or step < LAST:
        raise ConfigError(tr("step must be a step number or \"last\" (got {value})", value=repr(step)))
    variant = entry.get("variant")
    if variant is not None and variant not in variants:
        raise ConfigError(tr("variant {variant} is not one of the [[compare]] names {names}",
                             variant=repr(variant), names=list(variants)))
    tokens = _tokens(text)
    ops = [i for i, (kind, _) in enumerate(tokens) if kind == "op"]
    if len(ops) != 1:
        raise ConfigError(tr("needs exactly one comparison (< <= > >= == !=) in {claim}", claim=repr(text)))
    left, right = _side(tokens[:ops[0]], text), _side(tokens[ops[0] + 1:], text)
    return Expectation(text, left, tokens[ops[0]][1], right, step, variant)


def _tokens(text: str) -> list[tuple[str, object]]:
    tokens, pos = [], 0
    while pos < len(text.rstrip()):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise ConfigError(tr("cannot read {part} in {claim}", part=repr(text[pos:].strip()),
                                 claim=repr(text)))
        pos = match.end()
        kind = match.lastgroup
        if match.group("number") is not None:
            tokens.append(("number", float(match.group("number"))))
        elif match.group("ref") is not None:
            if match.group("sel") is not None and match.group("close") is None:
                raise ConfigError(tr("missing ']' to close {metric}[ in {claim}", metric=match.group("ref"),
                                     claim=repr(text)))
            tokens.append(("ref", _ref(match.group("ref"), match.group("sel"), text)))
        else:
            tokens.append((kind, match.group(kind)))
    return tokens


def _ref(name: str, selectors: str | None, text: str) -> object:
    if name in VERDICTS or name == "none":
        return name
    if name not in METRICS:
        raise ConfigError(tr("unknown metric {name} (known: {known})", name=repr(name),
                             known=", ".join(METRICS)))
    step, layer = None, None
    for part in filter(None, (s.strip() for s in (selectors or "").split(","))):
        key, _, value = (p.strip() for p in part.partition("="))
        if key not in ("step", "layer") or not value:
            raise ConfigError(tr("selector {part} must be step=N or layer=N in {claim}", part=repr(part),
                                 claim=repr(text)))
        number = {"last": LAST, "first": 0 if key == "step" else 1}.get(value)
        if number is None:
            if not value.isdigit() or (key == "layer" and int(value) < 1):
                raise ConfigError(tr("{key} must be a number, first or last (got {value})", key=key,
                                     value=repr(value)))
            number = int(value)
        step, layer = (number, layer) if key == "step" else (step, number)
    if name in PER_LAYER and layer is None:
        raise ConfigError(tr("{name} is per layer: say which, e.g. {name}[layer=1]", name=name))
    return Ref(name, step, layer)


def _side(tokens: list[tuple[str, object]], text: str) -> tuple:
    if not tokens or len(tokens) % 2 == 0:
        raise ConfigError(tr("incomplete expression {claim}", claim=repr(text)))
    for i, (kind, _) in enumerate(tokens):
        if (i % 2 == 0) != (kind in ("number", "ref")):
            raise ConfigError(tr("expected a value, then * or /, in {claim}", claim=repr(text)))
    return tuple(value for _, value in tokens)


def evaluate(expectation: Expectation, lookup: Callable[[Ref, int], object]) -> tuple[bool, object]:
    """(passed, measured left-hand value); ``lookup(ref, step)`` returns a metric's value."""
    left = _value(expectation.left, expectation.default_step, lookup)
    right = _value(expectation.right, expectation.default_step, lookup)
    if left is None or right is None or isinstance(left, str) or isinstance(right, str):
        ok = expectation.op in ("==", "!=") and COMPARISONS[expectation.op](left, right)
        return ok, left
    if isinstance(left, float) and math.isnan(left) or isinstance(right, float) and math.isnan(right):
        return expectation.op == "!=", left
    return COMPARISONS[expectation.op](left, right), left


def _value(side: tuple, default_step: int, lookup: Callable[[Ref, int], object]) -> object:
    result: object = None
    for i in range(0, len(side), 2):
        term = side[i]
        value = lookup(term, default_step if term.step is None else term.step) if isinstance(
            term, Ref) else (None if term == "none" else term)
        if i == 0:
            result = value
            continue
        if result is None or value is None or isinstance(result, str) or isinstance(value, str):
            raise ConfigError(tr("only numbers can be multiplied or divided"))
        if side[i - 1] == "*":
            result = result * value
        else:
            result = result / value if value != 0 else math.copysign(math.inf, result) if result else math.nan
    return result
