"""The search space of ``metaloss tune``: read from the config's ``tune.space``, checked at the
edge with one-line errors, sampled by an Optuna trial, and applied to a run configuration.

A search-space entry names a dotted setting of the run config (``inner.lr``, ``outer.lr``,
``outer.meta_batch``, ``outer.truncation``, ``inner.steps``, ``loss.activation``, ...), one of
two shorthands for the loss network's shape (``loss.width`` and ``loss.depth``, which set
``loss.hidden`` to ``depth`` layers of ``width`` units), or a baseline's own parameter
(``huber.delta``: the ``delta`` argument of :func:`metaloss.losses.baselines.huber`).

Which targets an entry applies to follows from its prefix unless ``targets`` says otherwise:
``outer.*`` and ``loss.*`` tune the learned loss only, ``<baseline>.*`` that baseline only, and
everything else (``inner.lr``, ...) every target, so that each target is tuned with the same
trial budget over the settings that matter to it.

Every target also has a *default space* (:func:`default_space`), so a config without
``tune.space`` can be tuned: the inner learning rate on a log scale over the range of
``evaluation.lr_grid``; for ``learned`` also the meta learning rate ``outer.lr`` (a decade
either side of the config's value, log scale); for a baseline each of its own parameters, over
the range of its values in ``benchmark.baselines`` if the config lists several (one value:
fixed at it), else over :data:`DEFAULT_PARAM_RANGES`, else a decade either side of the
function's default. An entry of ``tune.space`` for the same setting replaces the default one
(``choices: [value]`` fixes it); the defaults fill in what ``tune.space`` does not mention.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from dataclasses import dataclass
from typing import Any, Literal, get_origin

from metaloss.config import ConfigError, RunConfig, SearchParam, parse, to_dict
from metaloss.losses.baselines import baseline_parameters, baseline_table, refused_value
from metaloss.tasks import family_spec

__all__ = [
    "DEFAULT_PARAM_RANGES",
    "LEARNED",
    "Dimension",
    "TrialSettings",
    "apply_values",
    "check_target",
    "default_space",
    "known_targets",
    "resolve_space",
    "suggest",
]

LEARNED = "learned"
_SHAPE_PARAMS = ("loss.width", "loss.depth")
_LEARNED_SECTIONS = ("outer", "loss")
_FORBIDDEN_SECTIONS = ("tune", "evaluation", "task")

Kind = Literal["float", "int", "categorical"]

DEFAULT_PARAM_RANGES: dict[str, tuple[float, float, bool]] = {
    "huber.delta": (0.05, 5.0, True),
    "tukey.c": (1.0, 10.0, True),
    "barron.scale_init": (0.1, 10.0, True),
    "gce.q": (0.1, 1.0, False),
    "label_smoothing.epsilon": (0.01, 0.5, True),
    "sce.alpha": (0.01, 1.0, True),
    "sce.beta": (0.1, 10.0, True),
}
"""``(low, high, log)`` of baseline parameters whose valid range is narrower than a decade
either side of their default (GCE's ``q`` is in (0, 1]), or whose useful range is known."""


@dataclass(frozen=True)
class Dimension:
    """One checked search-space entry: ``kind`` decides which ``trial.suggest_*`` samples it."""

    param: str
    kind: Kind
    low: float | None
    high: float | None
    log: bool
    choices: tuple[Any, ...]
    targets: tuple[str, ...]
    origin: str = "tune.space"
    """Where the entry comes from: ``tune.space`` or the default it was derived from."""

    def describe(self) -> str:
        """One line for logs, e.g. ``inner.lr in [0.001, 0.3] (log); tune.space``."""
        if self.kind == "categorical":
            where = f"one of {list(self.choices)}"
        else:
            where = f"in [{self.low:g}, {self.high:g}]" + (" (log" if self.log else " (linear")
            where += f" {self.kind})" if self.kind == "int" else ")"
        return f"{self.param} {where}; {self.origin}"


@dataclass(frozen=True)
class TrialSettings:
    """A trial's sampled values applied: the run config and the baseline's own parameters."""

    config: RunConfig
    baseline_params: dict[str, float]
    values: dict[str, Any]


def known_targets() -> tuple[str, ...]:
    """``learned`` and the names of the registered baselines."""
    return (LEARNED, *sorted(baseline_table()))


def check_target(target: str) -> str:
    """``target`` if it is ``learned`` or a baseline name; otherwise a one-line error."""
    if target not in known_targets():
        raise ConfigError(f"--target: expected one of {', '.join(known_targets())}, got {target!r}")
    return target


# ------------------------------------------------------------------------------ checking


def _setting_type(path: str, param: str) -> Any:
    """The declared type of the dotted run-config setting ``param``."""
    node: Any = RunConfig
    parts = param.split(".")
    for i, part in enumerate(parts):
        hints = typing.get_type_hints(node)
        names = [f.name for f in dataclasses.fields(node)]
        if part not in names:
            where = ".".join(parts[:i]) or "the run config"
            raise ConfigError(
                f"{path}: expected a setting of {where} ({', '.join(names)}), got {param!r}"
            )
        node = hints[part]
        if i < len(parts) - 1 and not (isinstance(node, type) and dataclasses.is_dataclass(node)):
            raise ConfigError(
                f"{path}: {'.'.join(parts[: i + 1])} is a value, not a group of settings"
            )
    if isinstance(node, type) and dataclasses.is_dataclass(node):
        raise ConfigError(f"{path}: expected a single setting, got the group {param!r}")
    return node


def _kind_of(path: str, param: str) -> Kind:
    """Whether ``param`` is sampled as a float, an integer or from choices only."""
    section = param.split(".")[0]
    if param in _SHAPE_PARAMS:
        return "int"
    if section in baseline_table():
        name = param.split(".", 1)[1] if "." in param else ""
        allowed = baseline_parameters(section)
        if name not in allowed:
            listed = ", ".join(f"{section}.{p}" for p in allowed) or "none"
            raise ConfigError(
                f"{path}: expected a parameter of baseline {section} ({listed}), got {param!r}"
            )
        return "float"
    if section in _FORBIDDEN_SECTIONS or param in ("name", "seed"):
        raise ConfigError(f"{path}: {param!r} cannot be tuned")
    tp = _setting_type(path, param)
    if tp is int:
        return "int"
    if tp is float:
        return "float"
    if get_origin(tp) is Literal or tp in (bool, str):
        return "categorical"
    raise ConfigError(
        f"{path}: {param!r} is a list setting; tune loss.width/loss.depth or use choices"
    )


def _default_targets(param: str) -> tuple[str, ...]:
    section = param.split(".")[0]
    if section in baseline_table():
        return (section,)
    if section in _LEARNED_SECTIONS:
        return (LEARNED,)
    return known_targets()


def _check_range(path: str, entry: SearchParam, kind: Kind) -> None:
    if entry.low is None or entry.high is None:
        raise ConfigError(
            f"{path}: expected low and high (a range) or choices, got neither for {entry.param!r}"
        )
    if not entry.low < entry.high:
        raise ConfigError(f"{path}.high: expected a value > low={entry.low:g}, got {entry.high:g}")
    if entry.log and entry.low <= 0:
        raise ConfigError(f"{path}.low: expected a value > 0 for a log range, got {entry.low:g}")
    if kind == "int" and not (float(entry.low).is_integer() and float(entry.high).is_integer()):
        raise ConfigError(
            f"{path}: expected integer low/high for {entry.param!r}, "
            f"got {entry.low:g}..{entry.high:g}"
        )


def _check_entry(index: int, entry: SearchParam) -> Dimension:
    path = f"tune.space[{index}]"
    if not entry.param:
        raise ConfigError(f"{path}.param: expected a setting such as inner.lr, got {entry.param!r}")
    kind = _kind_of(f"{path}.param", entry.param)
    for target in entry.targets:
        if target not in known_targets():
            raise ConfigError(
                f"{path}.targets: expected some of {', '.join(known_targets())}, got {target!r}"
            )
    if entry.choices:
        if entry.low is not None or entry.high is not None:
            raise ConfigError(
                f"{path}: expected either low/high or choices for {entry.param!r}, got both"
            )
        kind = "categorical"
    elif kind == "categorical":
        raise ConfigError(
            f"{path}.choices: expected a list of values for {entry.param!r}, got none"
        )
    else:
        _check_range(path, entry, kind)
    targets = entry.targets or _default_targets(entry.param)
    return Dimension(entry.param, kind, entry.low, entry.high, entry.log, entry.choices, targets)


def resolve_space(config: RunConfig, target: str) -> list[Dimension]:
    """Check every entry of ``config.tune.space`` and return those that apply to ``target``,
    followed by the entries of :func:`default_space` for settings they do not mention.

    Raises:
        ConfigError: one line naming the entry (``tune.space[i]...``) and what was expected.
    """
    check_target(target)
    dims = [_check_entry(i, entry) for i, entry in enumerate(config.tune.space)]
    kind = family_spec(config.task.family).kind
    seen: set[str] = set()
    for i, dim in enumerate(dims):
        if dim.param in seen:
            raise ConfigError(f"tune.space[{i}].param: {dim.param!r} appears twice")
        seen.add(dim.param)
        _check_baseline_range(f"tune.space[{i}]", dim, kind)
    chosen = [d for d in dims if target in d.targets]
    given = {d.param for d in chosen}
    return chosen + [d for d in default_space(config, target) if d.param not in given]


def _check_baseline_range(path: str, dim: Dimension, kind: str) -> None:
    """The ends of a baseline parameter's range (or each of its choices) must be values the
    baseline accepts (see :func:`metaloss.losses.baselines.refused_value`); the valid values of
    every baseline parameter form an interval, so the ends stand for the range."""
    name, _, param = dim.param.partition(".")
    if name not in baseline_table():
        return
    checked = (
        [("choices", value) for value in dim.choices]
        if dim.choices
        else [("low", dim.low), ("high", dim.high)]
    )
    for field, value in checked:
        if value is None:
            continue
        reason = refused_value(name, param, float(value), kind)
        if reason is not None:
            raise ConfigError(f"{path}.{field}: {name} refuses {param}={float(value):g} ({reason})")


# ------------------------------------------------------------------------------ defaults


def _decade(value: float) -> tuple[float, float]:
    return value / 10, value * 10


def _learning_rate(config: RunConfig, target: str) -> Dimension:
    grid = config.evaluation.lr_grid
    low, high = (min(grid), max(grid)) if len(set(grid)) > 1 else _decade(config.inner.lr)
    origin = "evaluation.lr_grid" if len(set(grid)) > 1 else "inner.lr (a decade either side)"
    return Dimension("inner.lr", "float", low, high, True, (), (target,), f"default, from {origin}")


def _baseline_param(config: RunConfig, name: str, param: str) -> Dimension | None:
    key = f"{name}.{param}"
    listed = [
        b.values
        for b in config.benchmark.baselines
        if b.name == name and b.param == param and b.values
    ]
    if listed:
        values = tuple(sorted(set(listed[0])))
        if len(values) == 1:
            return Dimension(
                key,
                "categorical",
                None,
                None,
                False,
                values,
                (name,),
                "default, from benchmark.baselines",
            )
        log = values[0] > 0
        return Dimension(
            key,
            "float",
            values[0],
            values[-1],
            log,
            (),
            (name,),
            "default, from benchmark.baselines",
        )
    if key in DEFAULT_PARAM_RANGES:
        low, high, log = DEFAULT_PARAM_RANGES[key]
        return Dimension(key, "float", low, high, log, (), (name,), "default range")
    default = inspect.signature(baseline_table()[name]).parameters[param].default
    if isinstance(default, (int, float)) and not isinstance(default, bool) and default > 0:
        low, high = _decade(float(default))
        origin = f"default, a decade either side of the function's default {default:g}"
        return Dimension(key, "float", low, high, True, (), (name,), origin)
    return None  # no range can be guessed: the parameter keeps its default


def default_space(config: RunConfig, target: str) -> list[Dimension]:
    """The search space ``target`` gets without a ``tune.space`` (see the module docstring):
    the inner learning rate, plus ``outer.lr`` for ``learned`` or the baseline's own
    parameters."""
    check_target(target)
    dims = [_learning_rate(config, target)]
    if target == LEARNED:
        low, high = _decade(config.outer.lr)
        dims.append(
            Dimension(
                "outer.lr",
                "float",
                low,
                high,
                True,
                (),
                (LEARNED,),
                "default, a decade either side of outer.lr",
            )
        )
        return dims
    for param in baseline_parameters(target):
        dim = _baseline_param(config, target, param)
        if dim is not None:
            dims.append(dim)
    return dims


# ------------------------------------------------------------------------------ sampling


class _Trial(typing.Protocol):
    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...
    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False) -> int: ...
    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


def suggest(trial: _Trial, dims: list[Dimension]) -> dict[str, Any]:
    """Sample one value per dimension from an Optuna trial (names are the dotted settings)."""
    values: dict[str, Any] = {}
    for d in dims:
        if d.kind == "categorical":
            values[d.param] = trial.suggest_categorical(d.param, list(d.choices))
        elif d.kind == "int":
            values[d.param] = trial.suggest_int(
                d.param, int(d.low or 0), int(d.high or 0), log=d.log
            )
        else:
            values[d.param] = trial.suggest_float(
                d.param, float(d.low or 0), float(d.high or 0), log=d.log
            )
    return values


def apply_values(config: RunConfig, values: dict[str, Any]) -> TrialSettings:
    """``config`` with ``values`` set, re-validated; baseline parameters are returned apart.

    Raises:
        ConfigError: the combination is invalid (e.g. ``outer.truncation >= inner.steps``).
    """
    data = to_dict(config)
    baseline_params: dict[str, float] = {}
    width = values.get("loss.width", config.loss.hidden[0] if config.loss.hidden else 32)
    depth = values.get("loss.depth", len(config.loss.hidden))
    for param, value in values.items():
        section, _, rest = param.partition(".")
        if section in baseline_table():
            baseline_params[rest] = float(value)
        elif param not in _SHAPE_PARAMS:
            node = data
            for part in param.split(".")[:-1]:
                node = node[part]
            node[param.split(".")[-1]] = value
    if any(p in values for p in _SHAPE_PARAMS):
        data["loss"]["hidden"] = [int(width)] * int(depth)
    return TrialSettings(parse(data), baseline_params, dict(values))
