"""Every option of tui-grad in one table, and the validated, immutable Config built from it.

The TOML loader, the CLI's ``--set section.key=value``, the UI panels, the help screen and
the README's option table all read ``OPTIONS``; no option is spelled anywhere else.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tui_grad.i18n import N_, tr

SECTIONS = ("network", "training", "data", "run")


class ConfigError(ValueError):
    """A user's mistake in a configuration value, key or file, with where it was made."""

    def __init__(self, message: str, *, key: str | None = None, path: str | None = None,
                 line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.key = key
        self.path = path
        self.line = line

    def located(self, path: str | None = None, line: int | None = None) -> ConfigError:
        """Return a copy of this error that also names the file and line."""
        return ConfigError(self.message, key=self.key, path=path or self.path,
                           line=line if line is not None else self.line)

    def __str__(self) -> str:
        where = ""
        if self.path:
            where = f"{self.path}:{self.line}: " if self.line else f"{self.path}: "
        key = f"{self.key}: " if self.key else ""
        return f"{where}{key}{self.message}"


@dataclass(frozen=True)
class Option:
    """One configurable option: its type, default, allowed values and one-line help."""

    section: str
    key: str
    kind: type
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    restart: bool = True
    aliases: Mapping[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The dotted name used in scenario files, ``--set`` and the Python API."""
        return f"{self.section}.{self.key}"

    @property
    def help_text(self) -> str:
        """``help`` in the language in use. ``help`` itself holds the English text (marked
        with N_): whatever shows help to a user reads ``help_text`` (or ``tr(option.help)``)."""
        return tr(self.help)

    def describe_range(self) -> str:
        """Human text for the allowed values, e.g. ``1..5000`` or ``one of a, b``, in the
        language in use (the numbers and choices themselves stay as typed)."""
        if self.choices:
            return tr("one of {choices}", choices=", ".join(self.choices))
        if self.kind is bool:
            return tr("true or false")
        if self.low is not None and self.high is not None:
            left = "(" if self.low_open else ""
            return f"{left}{_fmt(self.low, self.kind)}..{_fmt(self.high, self.kind)}"
        return self.kind.__name__

    def coerce(self, value: Any) -> Any:
        """Convert ``value`` (a TOML value or a CLI string) to this option's type, or raise."""
        kind = self.kind
        got = repr(value)
        if kind is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
                return _BOOL_WORDS[value.strip().lower()]
            raise ConfigError(tr("must be true or false (got {value})", value=got), key=self.name)
        if kind is str:
            if not isinstance(value, str):
                raise ConfigError(tr("must be {allowed} (got {value})", allowed=self.describe_range(),
                                     value=got), key=self.name)
            word = value.strip().lower()
            word = self.aliases.get(word, word)
            if self.choices and word not in self.choices:
                hint = difflib.get_close_matches(word, self.choices, n=1)
                if hint:
                    raise ConfigError(tr("must be {allowed} (got {value}); did you mean {hint}?",
                                         allowed=self.describe_range(), value=got, hint=repr(hint[0])),
                                      key=self.name)
                raise ConfigError(tr("must be {allowed} (got {value})", allowed=self.describe_range(),
                                     value=got), key=self.name)
            return word
        number = _to_number(value, kind, self.name)
        if math.isnan(number):
            raise ConfigError(tr("must be a number, not NaN (got {value})", value=got), key=self.name)
        too_low = self.low is not None and (number <= self.low if self.low_open else number < self.low)
        too_high = self.high is not None and number > self.high
        if too_low or too_high:
            raise ConfigError(tr("must be {allowed} (got {value})", allowed=self.describe_range(),
                                 value=got), key=self.name)
        return number

    def from_toml(self, value: Any) -> Any:
        """``coerce`` for a value typed in a scenario file. TOML has booleans and numbers, so
        a quoted ``"yes"`` or ``"20"`` is refused (strings are what the command line and the
        UI's fields pass, and ``coerce`` reads them there)."""
        meant = self.coerce(value)
        if isinstance(value, str) and self.kind is not str:
            literal = str(meant).lower() if self.kind is bool else repr(meant)
            raise ConfigError(tr(_UNQUOTED.get(self.kind, _UNQUOTED[float]),
                                 example=f"{self.key} = {literal}", value=repr(value)), key=self.name)
        return meant


# from_toml's refusal of a quoted number or boolean, by the option's type
_UNQUOTED = {
    bool: N_("must be true or false, written without quotes: {example} (got {value})"),
    int: N_("must be an integer, written without quotes: {example} (got {value})"),
    float: N_("must be a number, written without quotes: {example} (got {value})"),
}

_BOOL_WORDS = {"true": True, "on": True, "yes": True, "1": True,
               "false": False, "off": False, "no": False, "0": False}


def _fmt(number: float, kind: type = float) -> str:
    """A range bound as people write it: integers in full (4294967295), floats short (1e+12)."""
    return str(int(number)) if kind is int else f"{number:g}"


def _not_a_number(value: Any, kind: type, name: str) -> ConfigError:
    """The refusal of ``value`` for an int or float option ``name``."""
    if kind is int:
        return ConfigError(tr("must be an integer (got {value})", value=repr(value)), key=name)
    return ConfigError(tr("must be a number (got {value})", value=repr(value)), key=name)


def _to_number(value: Any, kind: type, name: str) -> int | float:
    if isinstance(value, bool):
        raise _not_a_number(value, kind, name)
    if isinstance(value, str):
        text = value.strip()
        try:
            value = int(text) if kind is int else float(text)
        except ValueError:
            try:
                as_float = float(text)
            except ValueError:
                as_float = None
            if kind is int and as_float is not None and as_float.is_integer():
                value = int(as_float)
            else:
                raise _not_a_number(value, kind, name) from None
    if kind is int:
        if isinstance(value, float):
            if not value.is_integer():
                raise _not_a_number(value, kind, name)
            value = int(value)
        if not isinstance(value, int):
            raise _not_a_number(value, kind, name)
        return value
    if not isinstance(value, (int, float)):
        raise _not_a_number(value, kind, name)
    return float(value)


ACTIVATIONS = ("linear", "sigmoid", "tanh", "relu", "leaky_relu", "prelu", "elu", "selu", "gelu")
INITS = ("normal", "uniform", "xavier_uniform", "xavier_normal", "kaiming_normal",
         "kaiming_uniform", "lecun_normal", "orthogonal")
INIT_ALIASES = {"he_normal": "kaiming_normal", "msra": "kaiming_normal",
                "he_uniform": "kaiming_uniform", "glorot_uniform": "xavier_uniform",
                "glorot_normal": "xavier_normal"}
NORMS = ("none", "batch_norm", "layer_norm")
NORM_POSITIONS = ("layer", "pre", "post")
SCHEDULES = ("constant", "warmup_linear", "warmup_cosine", "step")
TASKS = ("teacher", "spirals", "blobs", "adding", "copy_first")
CLASSIFICATION_TASKS = ("spirals", "blobs", "copy_first")
SEQUENCE_TASKS = ("adding", "copy_first")  # for the recurrent models
MODELS = ("mlp", "rnn", "lstm")

OPTIONS: tuple[Option, ...] = (
    # network: changing any of these rebuilds the model and restarts training
    Option("network", "model", str, "mlp", N_("mlp (deep feed-forward), rnn or lstm (through time)"),
           choices=MODELS),
    Option("network", "depth", int, 20, N_("hidden layers between input and output"), low=1, high=5000),
    Option("network", "width", int, 64, N_("units in every hidden layer"), low=1, high=4096),
    Option("network", "activation", str, "tanh", N_("nonlinearity after every hidden layer"),
           choices=ACTIVATIONS),
    Option("network", "negative_slope", float, 0.01, N_("leaky_relu slope for negative inputs"),
           low=0.0, high=1.0),
    Option("network", "prelu_init", float, 0.25, N_("initial learnable prelu slope (one per layer)"),
           low=-1.0, high=1.0),
    Option("network", "init", str, "xavier_normal", N_("weight init scheme (torch.nn.init names)"),
           choices=INITS, aliases=INIT_ALIASES),
    Option("network", "init_std", float, 1.0, N_("std of the 'normal' init"), low=0.0, high=100.0,
           low_open=True),
    Option("network", "init_a", float, 1.0, N_("bound a of the 'uniform' init U(-a, a)"), low=0.0,
           high=100.0, low_open=True),
    Option("network", "init_gain", float, 1.0, N_("multiplies the std of every init scheme"),
           low=0.0, high=100.0, low_open=True),
    Option("network", "bias_init", float, 0.0, N_("constant every bias starts at"), low=-100.0,
           high=100.0),
    Option("network", "bias_std", float, 0.0, N_("std of random normal noise added to bias_init"),
           low=0.0, high=100.0),
    Option("network", "norm", str, "none", N_("normalisation: batch_norm (over the batch, per unit) "
           "or layer_norm (over the units, per example), with a learnable gain and bias"),
           choices=NORMS),
    Option("network", "norm_position", str, "layer", N_("where the norm sits: layer (Linear -> norm "
           "-> activation, every hidden layer); with shortcuts pre (h + alpha*f(N(h)), and N "
           "before the output layer) or post (N(h + alpha*f(h)))"), choices=NORM_POSITIONS),
    Option("network", "bn_eps", float, 1e-5, N_("the norm's epsilon (added to the variance)"), low=0.0,
           high=1.0, low_open=True),
    Option("network", "residual", bool, False, N_("identity shortcut h + alpha*f(h) every block")),
    Option("network", "residual_block", int, 2, N_("hidden layers per residual block"), low=1,
           high=5000),
    Option("network", "residual_alpha", float, 1.0, N_("scale of the residual branch (try 1/sqrt(depth))"),
           low=0.0, high=100.0),
    Option("network", "learn_alpha", bool, False, N_("learn each block's alpha, starting "
           "at residual_alpha (0 = ReZero: every block starts as the identity)")),
    Option("network", "parametrization", str, "standard", N_("standard, or mup (Yang et al.: weights "
           "N(0, init_gain^2/fan_in), output layer /fan_in^2, per-layer learning rates; "
           "network.init is not used)"), choices=("standard", "mup")),
    Option("network", "recurrent_init", str, "orthogonal", N_("rnn/lstm: init of weight_hh"),
           choices=("orthogonal", "normal")),
    Option("network", "recurrent_gain", float, 1.0,
           N_("rnn/lstm: weight_hh = gain x orthogonal, or normal with std gain/sqrt(width)"),
           low=0.0, high=100.0),
    Option("network", "forget_bias", float, 1.0, N_("lstm: initial bias of the forget gate"),
           low=-100.0, high=100.0),
    Option("network", "dtype", str, "float32", N_("floating point type of parameters and activations"),
           choices=("float32", "float64")),
    # training: these apply live, mid-run (except the loss, which changes the task)
    Option("training", "loss", str, "mse", N_("mse (regression) or cross_entropy (classification)"),
           choices=("mse", "cross_entropy")),
    Option("training", "optimizer", str, "sgd", N_("update rule"), choices=("sgd", "momentum", "adam"),
           restart=False),
    Option("training", "lr", float, 0.01, N_("learning rate"), low=0.0, high=1000.0, restart=False),
    Option("training", "schedule", str, "constant", N_("lr schedule: constant, warmup_linear (from 0 "
           "to lr over warmup_steps), warmup_cosine (then a cosine to 0 over decay_steps), step "
           "(x decay_factor every decay_steps)"), choices=SCHEDULES, restart=False),
    Option("training", "warmup_steps", int, 100, N_("warmup_*: steps of the linear ramp from 0 to lr"),
           low=1, high=10_000_000, restart=False),
    Option("training", "decay_steps", int, 1000, N_("warmup_cosine: steps of the decay after the "
           "warm-up; step: steps between two decays"), low=1, high=10_000_000, restart=False),
    Option("training", "decay_factor", float, 0.1, N_("step: lr multiplier every decay_steps"),
           low=0.0, high=1.0, low_open=True, restart=False),
    Option("training", "momentum", float, 0.9, N_("momentum coefficient (optimizer = momentum)"),
           low=0.0, high=0.9999, restart=False),
    Option("training", "adam_beta1", float, 0.9, N_("Adam's first-moment decay"), low=0.0,
           high=0.9999, restart=False),
    Option("training", "adam_beta2", float, 0.999, N_("Adam's second-moment decay"), low=0.0,
           high=0.999999, restart=False),
    Option("training", "adam_eps", float, 1e-8, N_("Adam's denominator epsilon"), low=0.0, high=1.0,
           low_open=True, restart=False),
    Option("training", "weight_decay", float, 0.0, N_("L2 penalty added to every gradient (torch SGD)"),
           low=0.0, high=10.0, restart=False),
    Option("training", "batch_size", int, 64, N_("examples per step"), low=1, high=65536,
           restart=False),
    Option("training", "clipping", str, "none", N_("gradient clipping before the update"),
           choices=("none", "clip_grad_norm", "clip_grad_value"), restart=False),
    Option("training", "max_norm", float, 1.0, N_("clip_grad_norm: bound on the global norm"),
           low=0.0, high=1e12, low_open=True, restart=False),
    Option("training", "clip_value", float, 1.0, N_("clip_grad_value: bound on every element"),
           low=0.0, high=1e12, low_open=True, restart=False),
    # data: the synthetic task; changing it restarts
    Option("data", "task", str, "teacher", N_("teacher (regression), spirals or blobs (classification)"),
           choices=TASKS),
    Option("data", "n_samples", int, 1024, N_("examples in the training set"), low=1, high=1_000_000),
    Option("data", "input_dim", int, 16, N_("input features (spirals embed their 2-D plane)"), low=1,
           high=4096),
    Option("data", "n_classes", int, 3, N_("classes of the blobs task (spirals have 2)"), low=2,
           high=1000),
    Option("data", "seq_len", int, 50, N_("rnn/lstm: time steps, the dependency length of the task"),
           low=1, high=2000),
    Option("data", "noise", float, 0.1, N_("teacher: target noise std; spirals/blobs: point jitter"),
           low=0.0, high=100.0),
    # run
    Option("run", "steps", int, 500, N_("training steps of a headless run"), low=0, high=10_000_000,
           restart=False),
    Option("run", "seed", int, 0, N_("seed of every random choice (init, data, batches)"), low=0,
           high=2**32 - 1),
    Option("run", "sharpness_every", int, 0, N_("measure sharpness (the loss Hessian's top "
           "eigenvalue) every K steps; 0 = off"), low=0, high=1_000_000, restart=False),
    Option("run", "divergence_factor", float, 1e4,
           N_("diverged once the loss exceeds this times max(initial loss, 1)"), low=1.0, high=1e300,
           restart=False),
)

OPTIONS_BY_NAME: dict[str, Option] = {option.name: option for option in OPTIONS}
# Older spellings still read in files, --set and the API; stored as their current option.
LEGACY_OPTIONS: dict[str, Option] = {
    "network.batch_norm": Option("network", "batch_norm", bool, False,
                                 N_("older spelling: true = network.norm batch_norm")),
}


def canonical(name: str, value: Any, current: Mapping[str, Any] | None = None) -> tuple[str, Any]:
    """The current option an older spelling (LEGACY_OPTIONS) stands for, and its value:
    ``network.batch_norm = true`` is ``network.norm = batch_norm``; false turns a batch norm
    off (and leaves another norm as it is in ``current``)."""
    if name != "network.batch_norm":
        return name, value
    norm = (current or {}).get("network.norm", "none")
    return "network.norm", "batch_norm" if value else ("none" if norm == "batch_norm" else norm)


def option(name: str) -> Option:
    """Return the Option called ``name`` (``section.key``) or raise ConfigError with a hint."""
    try:
        return OPTIONS_BY_NAME[name] if name not in LEGACY_OPTIONS else LEGACY_OPTIONS[name]
    except KeyError:
        hint = difflib.get_close_matches(name, OPTIONS_BY_NAME, n=1)
        if not hint and "." in name:
            bare = name.rsplit(".", 1)[1]
            hint = [n for n in OPTIONS_BY_NAME if n.endswith("." + bare)][:1]
        if hint:
            raise ConfigError(tr("unknown option; did you mean {hint}?", hint=repr(hint[0])),
                              key=name) from None
        raise ConfigError(tr("unknown option"), key=name) from None


class Section:
    """Read-only attribute view of one section of a Config (``config.network.depth``)."""

    __slots__ = ("_config", "_name")

    def __init__(self, config: Config, name: str) -> None:
        object.__setattr__(self, "_config", config)
        object.__setattr__(self, "_name", name)

    def __getattr__(self, key: str) -> Any:
        return self._config[f"{self._name}.{key}"]

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("Config is immutable; use Config.replace(...)")


class Config:
    """A complete, validated and immutable set of option values."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        merged = {opt.name: opt.default for opt in OPTIONS}
        for name, value in (values or {}).items():
            key, meant = canonical(name, option(name).coerce(value), merged)
            merged[key] = meant
        _check_consistency(merged)
        object.__setattr__(self, "_values", merged)

    @classmethod
    def from_overrides(cls, overrides: Mapping[str, Any] | Iterable[tuple[str, Any]] = (),
                       base: Config | None = None) -> Config:
        """Build a Config from ``{"section.key": value}`` pairs on top of ``base`` or defaults."""
        values = dict(base._values) if base is not None else {}
        pairs = overrides.items() if isinstance(overrides, Mapping) else overrides
        for name, value in pairs:
            values[name] = value
        return cls(values)

    def replace(self, **overrides: Any) -> Config:
        """Return a new Config with ``section__key=value`` or ``{"section.key": v}`` changes."""
        return Config.from_overrides({k.replace("__", "."): v for k, v in overrides.items()}, self)

    def __getitem__(self, name: str) -> Any:
        if name not in self._values:
            if name == "network.batch_norm":  # the older spelling reads on
                return self._values["network.norm"] == "batch_norm"
            option(name)  # raises with a suggestion
        return self._values[name]

    def __getattr__(self, section: str) -> Section:
        if section in SECTIONS:
            return Section(self, section)
        raise AttributeError(section)

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("Config is immutable; use Config.replace(...)")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Config) and self._values == other._values

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._values.items())))

    def __repr__(self) -> str:
        changed = {k: v for k, v in self._values.items() if v != OPTIONS_BY_NAME[k].default}
        return f"Config({changed!r})"

    def as_dict(self) -> dict[str, Any]:
        """All values as a flat ``{"section.key": value}`` dict."""
        return dict(self._values)

    def by_section(self) -> dict[str, dict[str, Any]]:
        """All values nested as ``{section: {key: value}}`` (the scenario file's shape)."""
        nested: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
        for opt in OPTIONS:
            nested[opt.section][opt.key] = self._values[opt.name]
        return nested

    def diff(self, other: Config) -> list[str]:
        """Names of the options whose values differ between this Config and ``other``."""
        return [n for n in self._values if self._values[n] != other._values[n]]

    def needs_restart(self, other: Config) -> bool:
        """True when going from this Config to ``other`` changes a structural option."""
        return any(OPTIONS_BY_NAME[n].restart for n in self.diff(other))

    @property
    def n_outputs(self) -> int:
        """Output units: 1 for teacher regression, one per class for classification tasks."""
        task = self._values["data.task"]
        if task in ("teacher", "adding"):
            return 1
        return 2 if task == "spirals" else self._values["data.n_classes"]

    @property
    def input_dim(self) -> int:
        """Input features the network sees (per time step for sequence tasks)."""
        task = self._values["data.task"]
        if task == "adding":
            return 2  # the value and its marker
        if task == "copy_first":
            return self._values["data.n_classes"]  # one-hot symbols
        return self._values["data.input_dim"]


def _check_consistency(values: Mapping[str, Any]) -> None:
    recurrent = values["network.model"] != "mlp"
    model, task = repr(values["network.model"]), repr(values["data.task"])
    if recurrent != (values["data.task"] in SEQUENCE_TASKS):
        if recurrent:
            message = tr("model {model} needs task adding or copy_first (got {task})",
                         model=model, task=task)
        else:
            message = tr("model {model} needs task teacher, spirals or blobs (got {task})",
                         model=model, task=task)
        raise ConfigError(message, key="data.task")
    if values["data.task"] == "adding" and values["training.loss"] != "mse":
        raise ConfigError(tr("the adding task is regression: use loss mse"), key="training.loss")
    if values["training.loss"] == "cross_entropy" and values["data.task"] not in CLASSIFICATION_TASKS:
        raise ConfigError(tr("cross_entropy needs a classification task (spirals or blobs), not {task}",
                             task=task), key="training.loss")
    if values["network.norm_position"] != "layer" and (
            not values["network.residual"] or values["network.norm"] == "none"):
        raise ConfigError(tr("norm_position {position} places the norm around the shortcut: it needs "
                             "residual = true and a norm (use layer otherwise)",
                             position=repr(values["network.norm_position"])), key="network.norm_position")
    if values["network.learn_alpha"] and (recurrent or not values["network.residual"]):
        raise ConfigError(tr("learn_alpha learns the residual branch's alpha: it needs residual = true "
                             "(and the MLP)"), key="network.learn_alpha")
    if values["network.parametrization"] == "mup" and recurrent:
        raise ConfigError(tr("mup is for the MLP (network.model = mlp)"), key="network.parametrization")
    if values["data.task"] == "spirals" and values["data.input_dim"] < 2:
        raise ConfigError(tr("spirals need input_dim >= 2 (got 1)"), key="data.input_dim")


# What a change of model, task or loss brings along so the three fit together (the UI's way
# out of _check_consistency's refusals): keyed by (option, new value) -> companions to set.
def fit_change(base: Config, name: str, value: Any) -> tuple[Config, dict[str, Any]]:
    """``base`` with ``name`` set to ``value`` and, where the model, task and loss would no
    longer fit together, the companions changed to ones that do; returns them too."""
    values = {**base.as_dict(), name: option(name).coerce(value)}
    model, task, loss = values["network.model"], values["data.task"], values["training.loss"]
    recurrent = model != "mlp"
    if name == "network.model" and recurrent != (task in SEQUENCE_TASKS):
        task = ("copy_first" if loss == "cross_entropy" else "adding") if recurrent else \
            {"adding": "teacher", "copy_first": "blobs"}[task]
    elif name == "data.task" and recurrent != (task in SEQUENCE_TASKS):
        model = "mlp" if recurrent else "rnn"
    elif name == "training.loss":
        if loss == "cross_entropy" and task not in CLASSIFICATION_TASKS:
            task = "copy_first" if recurrent else "blobs"
        elif loss == "mse" and task == "copy_first":
            task = "adding"
    if task == "adding" or task not in CLASSIFICATION_TASKS:
        loss = "mse"
    elif task == "copy_first":
        loss = "cross_entropy"
    fitted = {"network.model": model, "data.task": task, "training.loss": loss}
    companions = {key: new for key, new in fitted.items() if key != name and new != values[key]}
    return Config.from_overrides({name: values[name], **companions}, base), companions
