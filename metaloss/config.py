"""Typed, frozen run configurations, loaded from YAML and validated at the edge.

Every field is declared once, with its type, its default, its allowed range and a line of
documentation (:func:`setting`). :func:`parse` turns a plain mapping (from YAML, plus
``--set key=value`` overrides) into these dataclasses and raises :class:`ConfigError` with a
single line that names the field and what was expected, before any work starts.

Task families declare their own option classes (subclasses of :class:`TaskConfig`) and register
them with :func:`register_task_config`; the ``task.family`` key picks the class.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import stat
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Union, get_args, get_origin

import yaml

from metaloss.errors import ConfigError, elide, printable

__all__ = [
    "BaselineSpec",
    "BenchmarkConfig",
    "BenchmarkRow",
    "ConfigError",
    "EvalConfig",
    "InnerConfig",
    "LearnerConfig",
    "LossConfig",
    "OuterConfig",
    "RunConfig",
    "SearchParam",
    "TaskConfig",
    "TuneConfig",
    "Variant",
    "apply_overrides",
    "derive_config",
    "load_config",
    "load_yaml",
    "parse",
    "register_task_config",
    "setting",
    "to_dict",
]


MAX_CONFIG_BYTES = 1 << 20
"""Largest config file read (1 MiB; the shipped configs are a few KiB)."""
MAX_YAML_NODES = 10_000
"""Most YAML nodes in a config or override, counted while parsing and again with every alias
expanded (a few-hundred-byte "billion laughs" file expands to ~10^9 nodes and is refused before
it is built); the largest shipped config has about 200."""
MAX_INT = 2**31 - 1
"""Upper bound of every integer setting that declares none (sizes beyond it never fit memory)."""
MAX_SEED = 2**32 - 1
"""Largest seed: both torch.Generator and numpy (Optuna's samplers, gymnasium) accept it."""
MAX_WIDTH = 4096
"""Widest hidden layer of the learner and loss networks (a width-4096 layer is 16M weights)."""
MAX_STRING = 10_000
"""Longest string setting."""


def setting(
    default: Any,
    doc: str,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    min_items: int | None = None,
    max_items: int | None = None,
) -> Any:
    """Declare a config field with its documentation and numeric bounds (inclusive ``ge``/``le``,
    exclusive ``gt``/``lt``). Bounds apply to numbers and to every element of a tuple;
    ``min_items``/``max_items`` bound the length of a tuple. Integers without an upper bound are
    bounded by :data:`MAX_INT`."""
    bounds = {"ge": ge, "gt": gt, "le": le, "lt": lt}
    sizes = {"min_items": min_items, "max_items": max_items}
    return field(default=default, metadata={"doc": doc, **bounds, **sizes})


# --------------------------------------------------------------------------------------------
# Task options: a tagged union keyed by ``family``.


@dataclass(frozen=True)
class TaskConfig:
    """Options of a task family. Subclasses add the family's own fields."""

    family: str = setting("sine", "name of the task family")
    seed: int = setting(
        0, "seed of the family's fixed parameters (not of the sampled tasks)", ge=0, le=MAX_SEED
    )

    unused: ClassVar[tuple[str, ...]] = ()
    """Sections or dotted settings of a run config that this family does not read; a config
    that sets one of them to anything but its default is refused (:func:`parse`)."""

    _registry: ClassVar[dict[str, type[TaskConfig]]] = {}


def register_task_config(name: str) -> Any:
    """Class decorator: make ``task.family: name`` parse into the decorated class."""

    def decorate(cls: type[TaskConfig]) -> type[TaskConfig]:
        TaskConfig._registry[name] = cls
        return cls

    return decorate


# --------------------------------------------------------------------------------------------
# The parts of a run.


@dataclass(frozen=True)
class LearnerConfig:
    """The inner model trained on each task (see :mod:`metaloss.learners`)."""

    hidden: tuple[int, ...] = setting(
        (40, 40), "hidden layer widths of the learner MLP", ge=1, le=MAX_WIDTH, max_items=32
    )
    activation: Literal["relu", "tanh"] = setting("relu", "hidden activation")
    log_variances: int = setting(
        0,
        "free learner parameters (zero at init) appended to every output row: per-task "
        "log-variances for uncertainty weighting; multi-task families need task.max_heads",
        ge=0,
        le=1024,
    )


@dataclass(frozen=True)
class LossConfig:
    """The learned per-sample loss network (see :class:`metaloss.losses.LearnedLoss`)."""

    features: tuple[str, ...] = setting(
        ("residual", "abs_residual", "target"),
        "named per-sample input features of the loss",
        min_items=1,
        max_items=64,
    )
    hidden: tuple[int, ...] = setting(
        (32, 32), "hidden layer widths of the loss network", ge=1, le=MAX_WIDTH, max_items=32
    )
    activation: Literal["relu", "tanh", "softplus", "elu"] = setting("elu", "hidden activation")
    output: Literal["identity", "softplus", "square", "abs", "sigmoid"] = setting(
        "softplus", "transform applied to the network's output"
    )
    zero_at_target: bool = setting(
        True, "subtract the loss at a perfect prediction, so that loss(target, target) == 0"
    )
    init_scale: float = setting(1.0, "scale of the loss network's initial weights", gt=0)
    form: Literal["loss", "weight"] = setting(
        "loss",
        "the output is the per-sample loss ('loss') or a per-sample weight multiplying "
        "cross-entropy or, for regression, the squared residual ('weight', as in Meta-Weight-Net)",
    )


@dataclass(frozen=True)
class InnerConfig:
    """The differentiable inner loop: K optimisation steps of the learner on one task."""

    steps: int = setting(10, "inner optimisation steps K", ge=1, le=10_000)
    lr: float = setting(0.01, "inner learning rate", gt=0)
    optimizer: Literal["sgd", "adam"] = setting("sgd", "inner optimiser (functional, pure)")
    momentum: float = setting(0.0, "SGD momentum", ge=0, lt=1)
    betas: tuple[float, float] = setting((0.9, 0.999), "Adam betas", ge=0, lt=1)
    eps: float = setting(1e-8, "Adam epsilon (inside the square root: safe at zero)", gt=0)
    grad_clip: float = setting(0.0, "clip each inner gradient to this norm; 0 disables", ge=0)
    backend: Literal["auto", "bmm", "func", "higher"] = setting(
        "auto",
        "differentiation backend: auto (bmm where the learner allows it, else func), bmm "
        "(stacked parameters, batched matmuls, hand-written inner backward; MLP learners), func "
        "(torch.func, vmap over tasks) or higher (task loop)",
    )
    compile: bool = setting(
        False,
        "torch.compile the inner unroll (bmm backend): faster after a first compile that can take "
        "minutes; the compile time and recompiles are reported",
    )


@dataclass(frozen=True)
class Variant:
    """A variant of the run's inner problem: overrides of its ``task.*``, ``learner.*`` and
    ``inner.*`` settings (``task.family=NAME`` starts from that family's defaults). Used as a
    meta-training variant (drawn per meta-step with probability proportional to ``weight``) or
    as a meta-validation condition."""

    name: str = setting("", "name used in logs and reports")
    weight: float = setting(1.0, "relative probability of drawing this variant per meta-step", gt=0)
    set: tuple[str, ...] = setting(
        (), "overrides KEY=VALUE under task., learner. or inner., e.g. inner.optimizer=adam"
    )


@dataclass(frozen=True)
class OuterConfig:
    """The outer loop: meta-optimiser, gradient estimator, guards, validation, checkpoints."""

    steps: int = setting(1000, "meta-training steps", ge=1, le=100_000_000)
    lr: float = setting(3e-3, "meta learning rate (Adam)", gt=0)
    meta_batch: int = setting(16, "tasks per meta-step", ge=1, le=65_536)
    prefetch: bool = setting(
        True,
        "draw the next meta-batch in a worker process during the current meta-step (same "
        "numbers as drawing in line; Linux with two or more CPUs, else drawn in line)",
    )
    estimator: Literal["full_grad", "truncated_grad", "antithetic_es"] = setting(
        "full_grad", "meta-gradient estimator"
    )
    truncation: int = setting(
        5, "truncated_grad: back-propagate through the last T steps", ge=1, le=10_000
    )
    es_population: int = setting(
        16, "antithetic_es: number of perturbation pairs", ge=1, le=100_000
    )
    es_sigma: float = setting(0.05, "antithetic_es: perturbation scale", gt=0)
    es_rank_shaping: bool = setting(True, "antithetic_es: use centred ranks as fitness")
    grad_clip: float = setting(1.0, "clip the meta-gradient to this norm; 0 disables", ge=0)
    max_nonfinite: int = setting(20, "stop after this many skipped non-finite steps", ge=0)
    val_every: int = setting(25, "validate on meta-validation tasks every N steps", ge=1)
    val_tasks: int = setting(32, "number of fixed meta-validation tasks", ge=1, le=1_000_000)
    patience: int = setting(0, "early stopping: validations without improvement; 0 disables", ge=0)
    checkpoint_every: int = setting(25, "write a checkpoint every N steps", ge=1)
    shape_every: int = setting(50, "log the learned loss shape every N steps", ge=1)
    variants: tuple[Variant, ...] = setting(
        (),
        "meta-train over a mixture of inner problems: one variant is drawn per meta-step "
        "(empty: the run's own settings at every step)",
    )
    inner_lr_scale: tuple[float, float] = setting(
        (1.0, 1.0),
        "per meta-step multiplier of inner.lr, drawn log-uniformly from this range, so the loss "
        "works across learning rates (the benchmark selects each loss's rate); [1, 1]: no draw",
        gt=0,
    )
    valid_variants: tuple[Variant, ...] = setting(
        (),
        "meta-validation conditions, averaged (e.g. held-out task families, for an "
        "out-of-distribution choice of the best step; empty: the run's own settings)",
    )
    valid_lr_scales: tuple[float, ...] = setting(
        (),
        "meta-validate every condition at its best inner rate: the lowest mean objective over "
        "inner.lr times each factor, as the benchmark selects each loss's rate (a loss that only "
        "makes up for a poor fixed rate then wins nothing); empty: the condition's own rate",
        gt=0,
    )
    objective_transform: Literal["none", "log"] = setting(
        "none",
        "transform of each task's meta-objective before averaging over tasks; 'log' weighs tasks "
        "by relative error, so tasks with large errors do not dominate the meta-gradient",
    )


@dataclass(frozen=True)
class EvalConfig:
    """Meta-testing: fresh learners trained on held-out tasks."""

    test_tasks: int = setting(100, "number of fixed held-out meta-test tasks", ge=1, le=1_000_000)
    test_start: int = setting(
        0,
        "index of the first meta-test task: a later range gives fresh tasks (e.g. for a "
        "confirmation run after a decision was taken on tasks 0..test_tasks-1); the meta-train "
        "tasks that select learning rates and parameters are unchanged",
        ge=0,
        le=1_000_000_000,
    )
    seeds: int = setting(1, "learner initialisations per test task", ge=1, le=10_000)
    lr_grid: tuple[float, ...] = setting(
        (0.001, 0.003, 0.01, 0.03, 0.1, 0.3),
        "learning rates searched for each loss",
        gt=0,
        min_items=1,
        max_items=1000,
    )
    grid_tasks: int = setting(
        64, "meta-train tasks used to select learning rates", ge=1, le=1_000_000
    )
    min_pairs: int = setting(
        6,
        "fewest pairs (e.g. meta-test tasks) on which a report may call a difference better or "
        "worse (fewer: 'too few pairs'); 6 is the least at which the two-sided Wilcoxon test "
        "can reach p < 0.05",
        ge=6,
        le=1_000_000,
    )


@dataclass(frozen=True)
class SearchParam:
    """One dimension of the search space of ``metaloss tune`` (see :mod:`metaloss.tuning`):
    a numeric range (``low``/``high``, optionally ``log``) or a list of ``choices``."""

    param: str = setting("", "dotted setting to tune, e.g. inner.lr, loss.width, huber.delta")
    low: float | None = setting(None, "lower end of the range")
    high: float | None = setting(None, "upper end of the range")
    log: bool = setting(False, "sample the range on a log scale")
    choices: tuple[int | float | str, ...] = setting((), "categorical values instead of a range")
    targets: tuple[str, ...] = setting((), "targets it applies to (empty: decided by its prefix)")


@dataclass(frozen=True)
class TuneConfig:
    """Hyper-parameter search with Optuna (``metaloss tune``); ignored by other commands."""

    space: tuple[SearchParam, ...] = setting((), "the search space, one entry per setting")
    seed: int = setting(0, "seed of the TPE sampler", ge=0, le=MAX_SEED)
    startup_trials: int = setting(5, "random trials before TPE; trials before pruning", ge=0)
    warmup_steps: int = setting(0, "median pruner: never prune before this meta-step", ge=0)
    penalty: float = setting(1e6, "objective reported for a diverged trial (finite)", gt=0)


@dataclass(frozen=True)
class BaselineSpec:
    """A hand-designed loss in ``metaloss benchmark``: a name from
    :data:`metaloss.losses.BASELINES` and optionally one parameter with its values (one value:
    fixed; several: selected on meta-train tasks together with the learning rate)."""

    name: str = setting("mse", "baseline loss name (mse, l1, huber, ...)")
    param: str = setting("", "name of the loss's parameter, e.g. delta; empty: none")
    values: tuple[float, ...] = setting((), "the parameter's value, or the values to select from")


@dataclass(frozen=True)
class BenchmarkRow:
    """One condition of a benchmark, e.g. one outlier fraction, or a transfer task family."""

    name: str = setting("default", "row name, used in reports")
    task: tuple[str, ...] = setting(
        (), "task overrides KEY=VALUE (family=NAME starts from that family's defaults)"
    )
    set: tuple[str, ...] = setting(
        (),
        "overrides KEY=VALUE of any other run setting for this row, as with --set (e.g. "
        "learner.hidden=[], inner.optimizer=sgd, inner.steps=500, evaluation.lr_grid=[0.1, 1])",
    )


@dataclass(frozen=True)
class BenchmarkConfig:
    """``metaloss benchmark``: which losses run on which rows (sizes are in ``evaluation``)."""

    losses: tuple[str, ...] = setting(
        (),
        "learned losses (files or zoo names) used when --loss is omitted; empty: the family's zoo loss",
    )
    baselines: tuple[BaselineSpec, ...] = setting(
        (BaselineSpec("mse"), BaselineSpec("l1")), "hand-designed losses to compare with"
    )
    learned_baselines: tuple[str, ...] = setting(
        (),
        "learned losses (files or zoo names) entered as baselines, e.g. Meta-Weight-Net-style "
        "reweighting meta-trained by the same engine",
    )
    oracle: bool = setting(
        False, "also run MSE on the clean training samples only (train.extras['clean'])"
    )
    learned_mix: tuple[float, ...] = setting(
        (),
        "mixing weights m in [0, 1]: each learned loss L also enters as (1 - m) * reference + "
        "m * L (the kind's reference loss: CE, MSE, equal weights), m selected on meta-train "
        "tasks with the learning rate like a baseline's parameter (m = 0 is the reference loss "
        "itself, m = 1 the learned loss); empty: no mixed contender",
        ge=0,
        le=1,
    )
    learned_scale: tuple[float, ...] = setting(
        (),
        "scales c > 0: each learned loss also enters as '<loss> (scale)' at scale c, selected "
        "on meta-train tasks with the learning rate like a baseline's parameter (as Tukey's c "
        "or label smoothing's epsilon). Regression (a loss whose features read a batch scale "
        "estimate): every such estimate multiplied by c (c > 1: residuals look smaller, "
        "towards the squared loss; c < 1: larger). Classification: a temperature, the loss "
        "reads logits / c (c < 1: softer predictions; compare with the ce_temperature "
        "baseline); empty: no scaled contender",
        gt=0,
    )
    learned_views: tuple[str, ...] = setting(
        (),
        "views of the tasks under which each learned loss also enters, as '<loss> (<view>)': "
        "standardise_targets (multi-task: each regression head standardised with its training "
        "targets, the preprocessing the equal_weights_standardised baseline gets; test scores "
        "stay in raw units); empty: none",
    )
    rows: tuple[BenchmarkRow, ...] = setting(
        (), "conditions; empty: one row, the task as configured"
    )
    transfer: tuple[BenchmarkRow, ...] = setting(
        (),
        "transfer conditions, run by benchmark.split=transfer: what a user's own project changes "
        "(another data set, learner, inner optimiser, horizon, batch size), never seen in "
        "meta-training; selection on meta-train tasks of each condition as for rows",
    )
    transfer_valid: tuple[BenchmarkRow, ...] = setting(
        (),
        "out-of-distribution validation conditions, run by benchmark.split=transfer_valid: data "
        "sets and set-ups that no transfer row uses, to choose between candidate losses without "
        "reading a transfer row",
    )
    split: Literal["meta_test", "meta_valid", "transfer", "transfer_valid"] = setting(
        "meta_test",
        "tasks the losses are tested on: 'meta_test' (the held-out benchmark tasks of "
        "benchmark.rows), 'meta_valid' (meta-validation tasks: to choose between candidate "
        "losses or runs without ever reading a meta-test task), 'transfer' (the held-out tasks "
        "of benchmark.transfer's conditions) or 'transfer_valid' (those of "
        "benchmark.transfer_valid's)",
    )


@dataclass(frozen=True)
class RunConfig:
    """Everything a meta-training run needs; ``metaloss train`` reads one from YAML."""

    name: str = setting("sine", "run name, used in reports")
    seed: int = setting(
        0, "seed of the run (task sampling, initialisations, ES noise)", ge=0, le=MAX_SEED
    )
    dtype: Literal["float32", "float64"] = setting("float32", "floating point precision")
    device: str = setting(
        "auto",
        "where tensors live: auto (cuda if available, else mps, else cpu), cpu, cuda, cuda:N or "
        "mps; random draws are made on CPU generators and moved, so a seed gives the same tasks "
        "on every device",
    )
    task: TaskConfig = field(default_factory=TaskConfig, metadata={"doc": "task family"})
    learner: LearnerConfig = field(default_factory=LearnerConfig, metadata={"doc": "learner"})
    loss: LossConfig = field(default_factory=LossConfig, metadata={"doc": "learned loss"})
    inner: InnerConfig = field(default_factory=InnerConfig, metadata={"doc": "inner loop"})
    outer: OuterConfig = field(default_factory=OuterConfig, metadata={"doc": "outer loop"})
    evaluation: EvalConfig = field(default_factory=EvalConfig, metadata={"doc": "meta-testing"})
    tune: TuneConfig = field(default_factory=TuneConfig, metadata={"doc": "hyper-parameter search"})
    benchmark: BenchmarkConfig = field(
        default_factory=BenchmarkConfig, metadata={"doc": "benchmark"}
    )

    def __post_init__(self) -> None:
        from metaloss.device import resolve_device

        try:
            resolve_device(self.device)
        except ValueError as error:
            raise ConfigError(str(error)) from None
        low, high = self.outer.inner_lr_scale
        if low > high:
            raise ConfigError(
                f"outer.inner_lr_scale: expected [low, high] with low <= high, got {[low, high]}"
            )
        if self.outer.estimator == "truncated_grad" and self.outer.truncation >= self.inner.steps:
            raise ConfigError(
                f"outer.truncation: expected fewer than inner.steps={self.inner.steps} steps "
                f"for truncated_grad, got {self.outer.truncation}"
            )


# --------------------------------------------------------------------------------------------
# Parsing.


_SCALARS: dict[Any, tuple[str, str]] = {
    int: ("an integer", "integers"),
    float: ("a number", "numbers"),
    bool: ("true or false", "true/false values"),
    str: ("a string", "strings"),
    type(None): ("null", "nulls"),
}
"""How an expected scalar type is named in a message: (one value, several values)."""


def _describe(tp: Any, plural: bool = False) -> str:
    """The expected type ``tp`` in words: ``a list of integers``, ``an integer or null``; with
    ``plural``, the words for several values of it (``lists of 2 values (...)``)."""
    origin = get_origin(tp)
    if origin is Literal:
        choices = ", ".join(repr(a) for a in get_args(tp))
        return f"values, each one of {choices}" if plural else f"one of {choices}"
    if origin is tuple:
        args = get_args(tp)
        head = "lists" if plural else "a list"
        if len(args) == 2 and args[1] is Ellipsis:
            return f"{head} of {_describe(args[0], plural=True)}"
        return f"{head} of {len(args)} values ({', '.join(_describe(a) for a in args)})"
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a, plural) for a in get_args(tp))
    if tp in _SCALARS:
        return _SCALARS[tp][1 if plural else 0]
    name = getattr(tp, "__name__", str(tp))
    return f"{name} values" if plural else name


def _fail(path: str, expected: str, value: Any) -> typing.NoReturn:
    raise ConfigError(f"{path}: expected {expected}, got {elide(value)}")


_FLOAT = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
"""Decimal numbers, ``1e-3`` and ``.5E2`` included: YAML 1.1 (PyYAML) reads a number in
scientific notation without a dot as a string, YAML 1.2 and every user as a number."""


def _bounded(tp: Any, meta: Mapping[str, Any]) -> Mapping[str, Any]:
    """``meta`` with the implicit bounds of an integer setting that declares none."""
    if tp is not int:
        return meta
    extra: dict[str, Any] = {}
    if meta.get("le") is None and meta.get("lt") is None:
        extra["le"] = MAX_INT
    if meta.get("ge") is None and meta.get("gt") is None:
        extra["ge"] = -MAX_INT
    return {**meta, **extra} if extra else meta


def _check_bounds(path: str, tp: Any, value: float, meta: Mapping[str, Any]) -> None:
    checks = {
        "ge": lambda v, b: v >= b,
        "gt": lambda v, b: v > b,
        "le": lambda v, b: v <= b,
        "lt": lambda v, b: v < b,
    }
    for key, ok in checks.items():
        bound = meta.get(key)
        if bound is not None and not ok(value, bound):
            _fail(path, _describe(tp) + _bounds_text({key: bound}), value)


def _check_items(
    path: str, tp: Any, value: list[Any] | tuple[Any, ...], meta: Mapping[str, Any]
) -> None:
    low, high = meta.get("min_items"), meta.get("max_items")
    if low is not None and len(value) < low:
        _fail(path, f"{_describe(tp)} with at least {low} item{'s' if low > 1 else ''}", value)
    if high is not None and len(value) > high:
        _fail(path, f"{_describe(tp)} with at most {high} items", f"{len(value)} items")


def _convert(path: str, tp: Any, value: Any, meta: Mapping[str, Any]) -> Any:
    origin = get_origin(tp)
    if origin is Literal:
        if isinstance(value, (list, dict)) or value not in get_args(tp):
            _fail(path, _describe(tp), value)
        return value
    if origin in (Union, types.UnionType):
        for option in get_args(tp):
            try:
                return _convert(path, option, value, meta)
            except ConfigError:
                continue
        _fail(path, _describe(tp), value)
    if origin is tuple:
        return _convert_tuple(path, tp, value, meta)
    if tp is type(None):
        if value is not None:
            _fail(path, "null", value)
        return None
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _build(path, tp, value)
    if tp is bool:
        if not isinstance(value, bool):
            _fail(path, "true or false", value)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(path, _describe(tp) + _bounds_text(meta), value)
        _check_bounds(path, tp, value, _bounded(tp, meta))
        return value
    if tp is float:
        return _convert_float(path, value, meta)
    if tp is str:
        if not isinstance(value, str):
            _fail(path, "a string", value)
        if len(value) > MAX_STRING:
            _fail(path, f"a string of at most {MAX_STRING} characters", f"{len(value)} characters")
        return value
    raise TypeError(f"unsupported config type {tp!r} at {path}")  # a bug in a config class


def _convert_tuple(path: str, tp: Any, value: Any, meta: Mapping[str, Any]) -> tuple[Any, ...]:
    args = get_args(tp)
    variadic = len(args) == 2 and args[1] is Ellipsis
    if not isinstance(value, (list, tuple)):
        if not variadic:
            _fail(path, _describe(tp), value)
        value = [value]  # a single value is a list of one
    _check_items(path, tp, value, meta)
    if variadic:
        return tuple(_convert(f"{path}[{i}]", args[0], v, meta) for i, v in enumerate(value))
    if len(value) != len(args):
        _fail(path, _describe(tp), value)
    return tuple(
        _convert(f"{path}[{i}]", a, v, meta)
        for i, (a, v) in enumerate(zip(args, value, strict=True))
    )


def _convert_float(path: str, value: Any, meta: Mapping[str, Any]) -> float:
    if isinstance(value, str) and len(value) < 64 and _FLOAT.fullmatch(value.strip()):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(path, "a number" + _bounds_text(meta), value)
    try:
        number = float(value)
    except OverflowError:  # an integer beyond the float range
        _fail(path, "a finite number", value)
    if not math.isfinite(number):
        _fail(path, "a finite number", value)
    _check_bounds(path, float, number, meta)
    return number


def _bounds_text(meta: Mapping[str, Any]) -> str:
    signs = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    parts = [f"{signs[k]} {meta[k]}" for k in signs if meta.get(k) is not None]
    return (" " + " and ".join(parts)) if parts else ""


def _is_config_class(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _build(path: str, cls: type, data: Any) -> Any:
    prefix = f"{path}." if path else ""
    if isinstance(data, cls):
        return data
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        _fail(path or "config", "a mapping of settings", data)
    if cls is TaskConfig or (isinstance(cls, type) and issubclass(cls, TaskConfig)):
        family = data.get("family", "sine")
        if not isinstance(family, str) or family not in TaskConfig._registry:
            known = ", ".join(sorted(TaskConfig._registry))
            _fail(f"{prefix}family", f"one of {known}", family)
        cls = TaskConfig._registry[family]
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in data:
        if not isinstance(key, str) or key not in fields:
            name = printable(str(key), 60)
            _fail(f"{prefix}{name}", f"a known setting ({', '.join(fields)})", "unknown key")
    kwargs = {
        name: _convert(f"{prefix}{name}", hints[name], data.get(name), fields[name].metadata)
        for name in fields
        if name in data or _is_config_class(hints[name])
    }
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{path or 'config'}: {error}") from None


def parse(data: Mapping[str, Any] | None) -> RunConfig:
    """Build a validated :class:`RunConfig` from a plain mapping.

    Task families register their option classes when :mod:`metaloss.tasks` is imported, which
    the package's ``__init__`` does before any submodule (this one included) can be used.
    """
    config = typing.cast(RunConfig, _build("", RunConfig, data or {}))
    _refuse_unused(config)
    return config


def _refuse_unused(config: RunConfig) -> None:
    """A setting the task family does not read, set to anything but its default, is refused:
    it would otherwise be silently dropped."""
    defaults = to_dict(RunConfig(task=type(config.task)()))
    given = to_dict(config)
    for path in type(config.task).unused:
        value, default = given, defaults
        for part in path.split("."):
            value, default = value.get(part, {}), default.get(part, {})
        if value != default:
            raise ConfigError(
                f"{path}: not used by the {config.task.family} family; remove it "
                f"(unused here: {', '.join(type(config.task).unused)})"
            )


def to_dict(config: Any) -> dict[str, Any]:
    """A plain, YAML/JSON-ready mapping of a config (tuples become lists)."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        return value

    return typing.cast(dict[str, Any], plain(config))


class _ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing duplicate keys (a second ``outer:`` section would silently
    replace the first)."""

    composed = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        """Count the nodes as they are parsed, so a huge document stops being parsed early."""
        self.composed += 1
        if self.composed > MAX_YAML_NODES:
            raise ConfigError(f"{{where}}: expected at most {MAX_YAML_NODES} YAML values")
        return super().compose_node(parent, index)  # type: ignore[no-any-return]

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key is not None and key in seen and key != "<<":
                line = key_node.start_mark.line + 1
                raise ConfigError(f"{{where}}: duplicate key {elide(key)} (line {line})")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_: set[int]) -> int:
    """How many nodes ``node`` stands for with every alias expanded (memoised, so a billion-laughs
    graph is measured in linear time); raises on a recursive alias."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_:
        raise ConfigError("{where}: a YAML alias refers to itself (recursive structure)")
    open_.add(key)
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(child, sizes, open_) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            size += _expanded_size(k, sizes, open_) + _expanded_size(v, sizes, open_)
    open_.discard(key)
    sizes[key] = size
    return size


def load_yaml(text: str, where: str) -> Any:
    """Parse YAML text safely and in bounded work: no Python tags, no duplicate keys, at most
    :data:`MAX_YAML_NODES` nodes with aliases expanded, bounded nesting. Errors are
    :class:`ConfigError` naming ``where`` (a file or ``--set key``)."""
    loader: _ConfigLoader | None = None
    try:
        loader = _ConfigLoader(text)
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node, {}, set())
        if size > MAX_YAML_NODES:
            raise ConfigError(
                f"{where}: expected at most {MAX_YAML_NODES} YAML values with aliases expanded, "
                f"got {size:.3g} (an alias bomb?)"
            )
        return loader.construct_document(node)
    except ConfigError as error:
        raise ConfigError(str(error).replace("{where}", where)) from None
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply (expected a config, not a puzzle)") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(error, "problem", None) or getattr(error, "reason", None)
        reason = f": {elide(problem, 60)[1:-1]}" if isinstance(problem, str) else ""
        raise ConfigError(f"{where}: not valid YAML{line}{reason}") from None
    finally:
        if loader is not None:
            loader.dispose()


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to a nested mapping."""
    result = to_nested_copy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {elide(item)}: expected key=value, e.g. outer.steps=50")
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(f"--set {elide(key)}: expected a value of at most 1 MiB")
        try:
            value = load_yaml(raw, f"--set {printable(key, 60)}")
        except ConfigError as error:
            if "not valid YAML" not in str(error):
                raise
            value = raw  # e.g. --set name=a:b: not YAML, taken as the string it is
        parts = key.split(".")
        if not all(parts):
            raise ConfigError(f"--set {elide(key)}: expected a dotted key such as outer.steps")
        node = result
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(
                    f"{printable(key, 60)}: '{printable(part, 60)}' is a value, not a group of settings"
                )
            node = child
        node[parts[-1]] = value
    return result


def derive_config(
    config: RunConfig,
    overrides: tuple[str, ...] | list[str],
    where: str,
    sections: tuple[str, ...] = ("task", "learner", "inner"),
) -> RunConfig:
    """``config`` with dotted ``overrides`` (``KEY=VALUE``) applied under the allowed
    ``sections``; ``task.family=NAME`` resets the task section to that family's defaults.
    Errors name ``where`` (e.g. ``outer.variants[0]``)."""
    data = to_dict(config)
    for item in overrides:
        key = item.partition("=")[0].strip()
        if key.split(".")[0] not in sections:
            allowed = ", ".join(f"{s}." for s in sections)
            raise ConfigError(f"{where}: expected overrides under {allowed} got {item!r}")
        if key == "task.family":
            data["task"] = {}
    try:
        return parse(apply_overrides(data, list(overrides)))
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None


def to_nested_copy(data: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of nested mappings (leaves are shared)."""
    return {k: to_nested_copy(v) if isinstance(v, Mapping) else v for k, v in data.items()}


def _not_a_config(info: os.stat_result) -> str | None:
    if stat.S_ISDIR(info.st_mode):
        return "is a folder, expected a YAML file"
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file (a pipe or device?), expected a YAML file"
    if info.st_size > MAX_CONFIG_BYTES:
        return f"is {info.st_size} bytes, expected a YAML file of at most 1 MiB"
    return None


def read_config_text(path: Path) -> str:
    """The text of a config file: a regular file (not a pipe, device or folder), at most
    :data:`MAX_CONFIG_BYTES`, UTF-8. Checked with ``stat`` before it is opened (without
    blocking) and again on the open descriptor."""
    name = printable(str(path), 200)
    try:
        problem = _not_a_config(os.stat(path))
    except FileNotFoundError:
        raise ConfigError(f"config: no such file {name!r}") from None
    except OSError as error:
        raise ConfigError(f"config: cannot read {name} ({error.strerror})") from None
    if problem is not None:
        raise ConfigError(f"config: {name} {problem}")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as error:
        raise ConfigError(f"config: cannot open {name} ({error.strerror})") from None
    problem = _not_a_config(os.fstat(fd))  # the path may have been swapped since the stat
    if problem is not None:
        os.close(fd)
        raise ConfigError(f"config: {name} {problem}")
    with os.fdopen(fd, "rb") as handle:
        try:
            data = handle.read(MAX_CONFIG_BYTES + 1)  # /proc files report size 0
        except OSError as error:
            raise ConfigError(f"config: cannot read {name} ({error.strerror})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config: {name} is larger than 1 MiB, expected a YAML config")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"config: {name} is not UTF-8 text (byte {error.start})") from None


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML config (a file, a shipped name such as ``outliers``, or ``None``: the
    built-in defaults), apply overrides and validate."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not os.path.lexists(path):  # not a file here: the name of a shipped config?
            from metaloss.named_configs import resolve_config

            path = resolve_config(path)
        loaded = load_yaml(read_config_text(path), f"config: {printable(str(path), 200)}") or {}
        if not isinstance(loaded, dict):
            raise ConfigError(
                f"config: expected a mapping of settings in {printable(str(path), 200)}"
            )
        data = loaded
    return parse(apply_overrides(data, overrides or []))
