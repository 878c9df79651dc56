"""The benchmark harness: every loss trains fresh learners on the same fixed held-out tasks, with
the same budget, after the same selection on meta-train tasks.

A benchmark is a set of *contenders* (learned losses, hand-designed baselines, an oracle) run on
a set of *rows* (conditions such as an outlier fraction, or a transfer task family). For each
row and contender:

1. **Selection** on meta-train tasks, scored on their ``outer_valid`` split: the learner's
   learning rate from ``evaluation.lr_grid`` for *every* contender, learned ones included,
   jointly with the contender's own parameter when it has several values (e.g. Huber's delta).
   Selection never reads a test split and never sees a meta-test task.
2. **Meta-test** on ``evaluation.test_tasks`` fixed meta-test tasks times ``evaluation.seeds``
   learner initialisations (identical for every contender), recording the task metric on the
   test split after every inner step.

Scores are per task (averaged over seeds): means with 95% CIs over tasks, win rates and paired
t-tests over tasks, and the fraction of the best-baseline-to-oracle gap a learned loss closes.

**Transfer.** ``benchmark.split=transfer`` runs the rows of ``benchmark.transfer`` instead of
``benchmark.rows``: conditions a user's own project changes and meta-training never saw (a real
data set, a linear learner or an MLP of another shape, the other inner optimiser, a longer
horizon, another batch size). A row may override any run setting (``set:``, validated like
``--set``) besides the task (``task:``); selection and meta-test are exactly as above, on
meta-train and meta-test tasks *of that condition*, so every loss's learning rate and every
baseline's parameter is selected for the condition on rows or tasks that no test score reads.
``benchmark.split=transfer_valid`` runs ``benchmark.transfer_valid`` the same way: conditions
(data sets, set-ups) that no transfer row uses, for choosing between candidate losses without
reading a transfer row.
Some contenders are not losses of the inner loop: a classical robust fit
(:mod:`metaloss.evaluation.fits`) enters rows with a linear learner only, and a baseline whose
own parameters are learned with the model (Barron's adaptive loss) gets a learner with free
outputs for them (:data:`metaloss.losses.baselines.FREE_OUTPUTS`).
Families plug in through the task-family interface only; classification, multi-task or RL
families reuse the harness unchanged (the metric is the family's ``objective``). A kind may add
metrics of the final learners (accuracy and the cross-entropy
decomposition for classification) and its own oracle (MSE on the clean samples for regression,
cross-entropy on the clean labels for classification): both come from the family's
:class:`~metaloss.tasks.registry.FamilySpec`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

import torch
from torch import Tensor

from metaloss.config import (
    BaselineSpec,
    BenchmarkRow,
    ConfigError,
    RunConfig,
    apply_overrides,
    parse,
    to_dict,
)
from metaloss.evaluation.diagnostics import count_diagnoses
from metaloss.evaluation.fits import FITS, Fit, fit_scores
from metaloss.evaluation.meta_test import EvalSet, eval_set, run_loss, select_lr
from metaloss.evaluation.stats import (
    DEFAULT_MIN_PAIRS,
    MeanCI,
    PairedComparison,
    mean_ci,
    paired_comparison,
)
from metaloss.losses import baseline
from metaloss.losses.baselines import (
    FREE_OUTPUTS,
    baseline_parameters,
    baseline_table,
    refused_value,
)
from metaloss.losses.kinds import kind_spec
from metaloss.losses.learned import LearnedLoss
from metaloss.seeds import GRID_INIT_SEED, INIT_SEED_STRIDE, TEST_INIT_SEED
from metaloss.tasks import Split, Task, TaskFamily, family_spec, make_family
from metaloss.typing import PerSampleLoss

__all__ = [
    "BASELINE_VIEWS",
    "TASK_VIEWS",
    "BenchmarkResult",
    "Comparison",
    "Contender",
    "Entry",
    "Row",
    "TaskView",
    "compare",
    "contenders_from_config",
    "describe_condition",
    "mixed_loss",
    "plan_size",
    "rows_from_config",
    "run_benchmark",
    "select",
    "tested_split",
]

Progress = Callable[[str], None]
Role = Literal["learned", "baseline", "oracle"]


@dataclass(frozen=True)
class Contender:
    """A loss entered in the benchmark.

    Args:
        name: how reports call it.
        role: ``"learned"`` (compared with every baseline), ``"baseline"`` or ``"oracle"``.
        make: ``make(**params) -> per-sample loss``.
        param: the name of the parameter passed to ``make`` (empty: none).
        values: the parameter's values; several are selected on meta-train tasks.
        view: how this contender sees a task (the oracle's clean-only view); ``None``: as is.
        lr_grid: this contender's learning rates (empty: ``evaluation.lr_grid``); one rate and
            one value skip selection, as for losses tuned by ``metaloss tune``.
        fit: a classical fit (:data:`metaloss.evaluation.fits.FITS`) instead of a loss: entered
            on linear-learner rows only, with its parameter selected like a loss's.
        free_outputs: learner outputs this loss trains with the model (its own parameters).
    """

    name: str
    role: Role
    make: Callable[..., PerSampleLoss]
    param: str = ""
    values: tuple[float, ...] = ()
    view: Callable[[Task], Task] | None = None
    lr_grid: tuple[float, ...] = ()
    fit: Fit | None = None
    free_outputs: int = 0

    def loss(self, value: float | None) -> PerSampleLoss:
        """The per-sample loss with its parameter set to ``value`` (``None``: no parameter)."""
        return self.make() if value is None else self.make(**{self.param: value})

    def params(self, value: float | None) -> dict[str, float]:
        """The keyword arguments that set the parameter to ``value``."""
        return {} if value is None else {self.param: value}

    def enters(self, row: Row) -> bool:
        """Whether this contender runs on ``row`` (a classical fit needs a linear learner)."""
        return self.fit is None or not row.config.learner.hidden


@dataclass(frozen=True)
class Row:
    """A benchmark condition: a name, its task family and the run config it is evaluated with."""

    name: str
    family: TaskFamily
    config: RunConfig


@dataclass(frozen=True)
class Selection:
    """The selected learning rate and parameter value, with every candidate's score
    (mean final ``outer_valid`` metric on meta-train tasks; keys like ``"delta=0.3 lr=0.01"``)."""

    lr: float
    value: float | None
    scores: dict[str, float]


@dataclass(frozen=True)
class Entry:
    """One contender on one row.

    Attributes:
        per_task: the final test metric of each meta-test task, averaged over seeds (``[tasks]``).
        curve: the mean test metric after each inner step ``0..K`` (``[K+1]``).
        diagnoses: how many runs' curves were diagnosed as each of
            :data:`metaloss.evaluation.diagnostics.DIAGNOSES`; empty when the curves were not
            diagnosed (a classical fit has no curve; an RL return curve is not a loss curve).
        diverged: runs whose inner gradients became NaN/Inf.
        metrics: extra final metrics per task (the family spec's ``metrics``), ``[tasks]`` each.
    """

    row: str
    name: str
    role: Role
    selection: Selection
    param: str
    per_task: Tensor
    curve: Tensor
    diagnoses: dict[str, int]
    diverged: int
    metrics: dict[str, Tensor] = field(default_factory=dict)

    @property
    def score(self) -> MeanCI:
        """Mean final test metric over tasks, with its 95% CI."""
        return mean_ci(self.per_task)


@dataclass(frozen=True)
class Comparison:
    """A learned loss against one baseline on one row, paired by task (``paired``: learned
    minus baseline; see :func:`metaloss.evaluation.stats.paired_comparison`)."""

    row: str
    learned: str
    baseline: str
    paired: PairedComparison
    separated: bool

    @property
    def difference(self) -> float:
        return self.paired.difference.mean

    @property
    def win_rate(self) -> float:
        return self.paired.win_rate

    @property
    def p_value(self) -> float:
        """The paired t test's p-value."""
        return self.paired.p_t


@dataclass
class BenchmarkResult:
    """Every entry of a benchmark, with what it was run with."""

    entries: list[Entry]
    rows: list[str]
    metric: str
    test_tasks: int
    seeds: int
    inner_steps: dict[str, int]
    extra: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, bool] = field(default_factory=dict)
    """Extra metrics reported (name -> higher is better)."""
    split: str = "meta_test"
    """The tested tasks: ``meta_test`` (held-out) or ``meta_valid`` (candidate screening)."""
    higher_is_better: bool = False
    """Direction of ``metric`` (e.g. ``True`` for an RL family's episodic return)."""
    min_pairs: int = DEFAULT_MIN_PAIRS
    """``evaluation.min_pairs``: fewest tasks on which a comparison may be called better/worse."""

    def entry(self, row: str, name: str) -> Entry:
        for e in self.entries:
            if e.row == row and e.name == name:
                return e
        raise KeyError(f"no entry {name!r} in row {row!r}")

    def row_entries(self, row: str) -> list[Entry]:
        return [e for e in self.entries if e.row == row]

    def gap_closed(
        self, row: str, learned: str, baseline: str | None = None
    ) -> tuple[str, float] | None:
        """``(best baseline, fraction)`` of the best-baseline-to-oracle gap closed by ``learned``
        on ``row`` (1: as good as the oracle, 0: as the best baseline); ``None`` without an oracle.
        With ``baseline``, the gap from that baseline instead of the best one."""
        entries = self.row_entries(row)
        baselines = [e for e in entries if e.role == "baseline" and baseline in (None, e.name)]
        oracles = [e for e in entries if e.role == "oracle"]
        if not baselines or not oracles:
            return None
        best = min(baselines, key=lambda e: e.score.mean)
        gap = best.score.mean - oracles[0].score.mean
        value = (
            (best.score.mean - self.entry(row, learned).score.mean) / gap
            if gap > 0
            else float("nan")
        )
        return best.name, value


# ------------------------------------------------------------------------------------------------
# Building contenders and rows from a config.


BASELINE_VIEWS: dict[str, Callable[[Task], Task]] = {}
"""Baselines that see the tasks through a view, by name (e.g. ``equal_weights_standardised``:
targets standardised as a practitioner would); filled by the modules that define them."""


@dataclass(frozen=True)
class TaskView:
    """A view of the tasks that learned losses may also be benchmarked under
    (``benchmark.learned_views``): ``apply`` maps stacked tasks to what the contender trains and
    is tested on; ``kinds`` are the loss kinds whose tasks it understands."""

    apply: Callable[[Task], Task]
    kinds: frozenset[str]


TASK_VIEWS: dict[str, TaskView] = {}
"""Views by the name ``benchmark.learned_views`` uses; filled by the modules that define them."""


def contenders_from_config(
    config: RunConfig,
    learned: dict[str, PerSampleLoss],
    family: TaskFamily | None = None,
    learned_baselines: dict[str, PerSampleLoss] | None = None,
) -> list[Contender]:
    """The learned losses given, then the config's baselines (and learned losses entered as
    baselines, e.g. Meta-Weight-Net-style reweighting), then the oracle of ``family``'s kind
    (default: regression) if enabled."""
    contenders = [Contender(name, "learned", _constant(fn)) for name, fn in learned.items()]
    contenders += _mixed_contenders(config, learned)
    contenders += _scaled_contenders(config, learned)
    contenders += _viewed_contenders(config, learned)
    contenders += [
        Contender(name, "baseline", _constant(fn)) for name, fn in (learned_baselines or {}).items()
    ]
    baselines = baseline_table()
    for i, spec in enumerate(config.benchmark.baselines):
        if spec.name not in baselines and spec.name not in FITS:
            known = ", ".join(sorted({*baselines, *FITS}))
            raise ConfigError(
                f"benchmark.baselines[{i}].name: expected one of {known}, got {spec.name!r}"
            )
        if bool(spec.param) != bool(spec.values):
            raise ConfigError(
                f"benchmark.baselines[{i}]: expected both param and values, or neither"
            )
        if spec.param and spec.name in baselines:
            _check_baseline_values(i, spec, family_spec(config.task.family).kind)
        contenders.append(
            Contender(
                spec.name,
                "baseline",
                _named_baseline(spec.name),
                spec.param,
                spec.values,
                fit=FITS.get(spec.name),
                free_outputs=FREE_OUTPUTS.get(spec.name, 0),
                view=BASELINE_VIEWS.get(spec.name),
            )
        )
    if config.benchmark.oracle:
        oracle = family_spec(config.task.family).oracle
        if oracle is None:
            raise ConfigError(
                f"benchmark.oracle: the {config.task.family} family has no oracle; set oracle: false"
            )
        contenders.append(Contender(oracle.name, "oracle", oracle.loss, view=oracle.view))
    names = [c.name for c in contenders]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"--loss: expected distinct loss names, got {', '.join(duplicates)} twice")
    return contenders


def _viewed_contenders(config: RunConfig, learned: dict[str, PerSampleLoss]) -> list[Contender]:
    """``benchmark.learned_views``: each learned loss also as ``"<loss> (<view>)"``, trained and
    tested through the view (e.g. on standardised targets, as a baseline with that view is)."""
    kind = family_spec(config.task.family).kind
    viewed = []
    for i, name in enumerate(config.benchmark.learned_views):
        view = TASK_VIEWS.get(name)
        if view is None:
            known = ", ".join(sorted(TASK_VIEWS)) or "none"
            raise ConfigError(
                f"benchmark.learned_views[{i}]: expected one of {known}, got {name!r}"
            )
        if kind not in view.kinds:
            raise ConfigError(
                f"benchmark.learned_views[{i}]: {name} applies to {', '.join(sorted(view.kinds))} "
                f"tasks, not to the {config.task.family} family's {kind} tasks"
            )
        viewed += [
            Contender(f"{loss} ({name})", "learned", _constant(fn), view=view.apply)
            for loss, fn in learned.items()
        ]
    return viewed


def _mixed_contenders(config: RunConfig, learned: dict[str, PerSampleLoss]) -> list[Contender]:
    """``benchmark.learned_mix``: each learned loss as ``(1 - m) * reference + m * learned``, with
    ``m`` selected on meta-train tasks like a baseline's parameter (named ``"<loss> + <ref> mix"``)."""
    values = config.benchmark.learned_mix
    if not values or not learned:
        return []
    reference = kind_spec(family_spec(config.task.family).kind).reference
    if reference is None:
        raise ConfigError(
            f"benchmark.learned_mix: the {config.task.family} family's kind has no reference loss "
            "to mix with; expected learned_mix: []"
        )
    return [
        Contender(f"{name} + {reference} mix", "learned", mixed_loss(fn, reference), "mix", values)
        for name, fn in learned.items()
    ]


def _scaled_contenders(config: RunConfig, learned: dict[str, PerSampleLoss]) -> list[Contender]:
    """``benchmark.learned_scale``: each learned loss at scale ``c`` (regression: every batch
    scale estimate its features divide by times ``c``; classification: the logits divided by
    ``c``, a temperature), ``c`` selected on meta-train tasks like a baseline's parameter (named
    ``"<loss> (scale)"``)."""
    values = config.benchmark.learned_scale
    if not values:
        return []
    contenders = []
    for name, fn in learned.items():
        if not isinstance(fn, LearnedLoss) or not fn.reads_scale:
            raise ConfigError(
                f"benchmark.learned_scale: {name} is neither a learned classification loss nor "
                "has a feature that reads a batch scale estimate (see metaloss.losses.scale); "
                "expected learned_scale: [] for it"
            )
        contenders.append(Contender(f"{name} (scale)", "learned", fn.with_scale, "scale", values))
    return contenders


def mixed_loss(learned: PerSampleLoss, reference: str) -> Callable[..., PerSampleLoss]:
    """``make(mix=m)``: the per-sample loss ``(1 - m) * reference + m * learned`` (``m = 0``:
    the reference loss alone, ``m = 1``: the learned loss alone, neither evaluating the other)."""
    ref = baseline(reference)

    def make(mix: float) -> PerSampleLoss:
        if mix == 0.0:
            return ref
        if mix == 1.0:
            return learned
        return lambda pred, target: (1.0 - mix) * ref(pred, target) + mix * learned(pred, target)

    return make


def _constant(fn: PerSampleLoss) -> Callable[..., PerSampleLoss]:
    return lambda: fn


def _check_baseline_values(i: int, spec: BaselineSpec, kind: str) -> None:
    """Raise :class:`ConfigError` naming the field if baseline ``spec.name`` takes no keyword
    ``spec.param`` or refuses one of ``spec.values`` (see :func:`refused_value`)."""
    known = baseline_parameters(spec.name)
    if spec.param not in known:
        raise ConfigError(
            f"benchmark.baselines[{i}].param: {spec.name} takes "
            f"{', '.join(known) or 'no parameter'}, got {spec.param!r}"
        )
    for j, value in enumerate(spec.values):
        reason = refused_value(spec.name, spec.param, value, kind)
        if reason is not None:
            raise ConfigError(
                f"benchmark.baselines[{i}].values[{j}]: {spec.name} refuses "
                f"{spec.param}={value:g} ({reason})"
            )


def _named_baseline(name: str) -> Callable[..., PerSampleLoss]:
    return lambda **params: baseline(name, **params)


def rows_from_config(config: RunConfig) -> list[Row]:
    """The rows of ``benchmark.rows`` (default: one row, the configured task), or with
    ``benchmark.split=transfer`` (``transfer_valid``) those of ``benchmark.transfer``
    (``benchmark.transfer_valid``)."""
    split = config.benchmark.split
    if split in ("transfer", "transfer_valid"):
        specs = getattr(config.benchmark, split)
        if not specs:
            raise ConfigError(
                f"benchmark.{split}: expected at least one row for benchmark.split={split}"
            )
        return [_row(config, i, spec, split) for i, spec in enumerate(specs)]
    specs = config.benchmark.rows or (BenchmarkRow("default", ()),)
    return [_row(config, i, spec) for i, spec in enumerate(specs)]


def _row(config: RunConfig, index: int, spec: BenchmarkRow, section: str = "rows") -> Row:
    where = f"benchmark.{section}[{index}] ({spec.name})"
    task = list(spec.task)
    others = []
    for item in spec.set:
        key = item.partition("=")[0].strip()
        if key == "benchmark" or key.startswith("benchmark."):
            raise ConfigError(
                f"{where}: set: a row cannot change the benchmark section, got {item!r}"
            )
        if key in (
            "evaluation.test_tasks",
            "evaluation.test_start",
            "evaluation.seeds",
            "evaluation",
        ):
            raise ConfigError(
                f"{where}: set: every row is tested on the same tasks and seeds; "
                f"expected no {key} override, got {item!r}"
            )
        if key.startswith("task."):
            task.append(item.strip()[len("task.") :])
        else:
            others.append(item)
    data = to_dict(config)
    if "family" in [item.partition("=")[0].strip() for item in task]:
        data["task"] = {}
    try:
        row_config = parse(apply_overrides(data, [f"task.{item}" for item in task] + others))
        family = make_family(row_config.task)
    except (ConfigError, ValueError) as error:
        raise ConfigError(f"{where}: {error}") from None
    return Row(spec.name, family, row_config)


# ------------------------------------------------------------------------------------------------
# Running.


def _view(data: EvalSet, view: Callable[[Task], Task] | None) -> EvalSet:
    return data if view is None else replace(data, tasks=view(data.tasks))


def select(
    contender: Contender, row: Row, data: EvalSet, progress: Progress | None = None
) -> Selection:
    """Select ``contender``'s learning rate (and parameter value) on ``data``, which must hold
    meta-train or meta-validation tasks; only their ``outer_valid`` split is scored."""
    if data.split is Split.META_TEST:
        raise ValueError(
            "select: expected meta-train or meta-validation tasks, got meta-test tasks"
        )
    row, data = _prepared(contender, row, data)
    if contender.fit is not None:
        return _select_fit(contender, row, data, progress)
    grid = contender.lr_grid or row.config.evaluation.lr_grid
    values: Sequence[float | None] = contender.values or (None,)
    if len(values) == 1 and len(grid) == 1:
        return Selection(grid[0], values[0], {})
    best: tuple[float, float, float | None] = (float("inf"), grid[0], values[0])
    scores: dict[str, float] = {}
    for value in values:
        lr, lr_scores = select_lr(contender.loss(value), row.family, row.config, grid, data)
        prefix = "" if value is None else f"{contender.param}={value:g} "
        scores.update({f"{prefix}lr={rate:g}": s for rate, s in lr_scores.items()})
        if lr_scores[lr] < best[0]:
            best = (lr_scores[lr], lr, value)
        if progress:
            progress(f"{row.name}: select {contender.name}")
    return Selection(best[1], best[2], scores)


def _select_fit(
    contender: Contender, row: Row, data: EvalSet, progress: Progress | None
) -> Selection:
    """A classical fit's parameter value with the lowest mean ``outer_valid`` objective."""
    assert contender.fit is not None
    values: Sequence[float | None] = contender.values or (None,)
    scores: dict[str, float] = {}
    best: tuple[float, float | None] = (float("inf"), values[0])
    for value in values:
        per_run = fit_scores(
            contender.fit, contender.params(value), data.tasks, "outer_valid", row.family.objective
        )
        score = float(torch.where(torch.isfinite(per_run), per_run, torch.inf).mean())
        scores["" if value is None else f"{contender.param}={value:g}"] = score
        if score < best[0]:
            best = (score, value)
        if progress:
            progress(f"{row.name}: select {contender.name}")
    return Selection(float("nan"), best[1], scores)


class _LeadingOutputs(TaskFamily):
    """A family whose learners carry extra free outputs: its objective reads the first
    ``out_features`` outputs (the prediction) only."""

    def __init__(self, family: TaskFamily) -> None:
        super().__init__(family.seed)
        self.base = family
        self.kind = family.kind
        self.in_features = family.in_features
        self.out_features = family.out_features

    def make_task(self, generator: torch.Generator, split: Split) -> Task:
        return self.base.make_task(generator, split)

    def task(self, split: Split, index: int) -> Task:
        return self.base.task(split, index)

    def objective(self, pred: Tensor, target: Tensor) -> Tensor:  # type: ignore[override]
        return self.base.objective(pred[..., : self.out_features], target)


def _prepared(contender: Contender, row: Row, data: EvalSet) -> tuple[Row, EvalSet]:
    """The row and data ``contender`` runs on: its view of the tasks, and a learner with its free
    outputs (zero at initialisation; every other initial parameter is shared) if it has any."""
    data = _view(data, contender.view)
    if not contender.free_outputs:
        return row, data
    if row.family.kind != "regression" or row.config.learner.log_variances:
        raise ConfigError(
            f"benchmark.baselines: {contender.name} trains free learner outputs, which needs a "
            f"regression row whose learner has none (row {row.name!r})"
        )
    learner = replace(row.config.learner, log_variances=contender.free_outputs)
    config = replace(row.config, learner=learner)
    first = next(iter(data.inits.values()))
    free = torch.zeros((data.runs, contender.free_outputs), dtype=first.dtype, device=first.device)
    return (
        Row(row.name, _LeadingOutputs(row.family), config),
        replace(data, inits={**data.inits, "log_variances": free}),
    )


def tested_split(config: RunConfig) -> Split:
    """The split whose tasks are tested (``benchmark.split``): meta-test (also for transfer
    rows: their held-out tasks), or meta-validation for choosing between candidates without
    reading a meta-test task."""
    return Split.META_VALID if config.benchmark.split == "meta_valid" else Split.META_TEST


def _init_seed(split: Split, seed: int) -> int:
    base = TEST_INIT_SEED if split is Split.META_TEST else GRID_INIT_SEED
    return base + INIT_SEED_STRIDE * seed


def run_row(
    row: Row, contenders: Sequence[Contender], progress: Progress | None = None
) -> list[Entry]:
    """Select and meta-test every contender on one row."""
    ev, seed = row.config.evaluation, row.config.seed
    grid_set = eval_set(
        row.family,
        row.config,
        Split.META_TRAIN,
        ev.grid_tasks,
        1,
        _init_seed(Split.META_TRAIN, seed),
    )
    split = tested_split(row.config)
    test_set = eval_set(
        row.family,
        row.config,
        split,
        ev.test_tasks,
        ev.seeds,
        _init_seed(split, seed),
        start=ev.test_start,
    )
    contenders = [c for c in contenders if c.enters(row)]
    selections = [select(c, row, grid_set, progress) for c in contenders]
    maker = family_spec(row.config.task.family).metrics
    metrics = maker(row.family) if maker else {}
    entries = []
    for contender, chosen in zip(contenders, selections, strict=True):
        if contender.fit is not None:
            entries.append(_fit_entry(contender, chosen, row, test_set))
            if progress:
                progress(f"{row.name}: test {contender.name}")
            continue
        own_row, data = _prepared(contender, row, test_set)
        run = run_loss(
            contender.name,
            contender.loss(chosen.value),
            own_row.family,
            own_row.config,
            data,
            chosen.lr,
            metrics=metrics,
        )
        per_task = run.final.reshape(ev.seeds, ev.test_tasks).mean(0)
        extra = {k: v.reshape(ev.seeds, ev.test_tasks).mean(0) for k, v in run.metrics.items()}
        diagnoses = count_diagnoses(run.curves, run.diverged)
        diverged = int(run.diverged.sum())
        curve = run.curves.mean(0)
        entries.append(_entry(row, contender, chosen, per_task, curve, diagnoses, diverged, extra))
        if progress:
            progress(f"{row.name}: test {contender.name}")
    return entries


def _fit_entry(contender: Contender, chosen: Selection, row: Row, test_set: EvalSet) -> Entry:
    """A classical fit on the test runs: no inner steps, so its curve is flat at its score and
    no curve is diagnosed (empty diagnoses)."""
    assert contender.fit is not None
    ev = row.config.evaluation
    per_run = fit_scores(
        contender.fit, contender.params(chosen.value), test_set.tasks, "test", row.family.objective
    ).to(torch.float32)
    per_task = per_run.reshape(ev.seeds, ev.test_tasks).mean(0)
    curve = torch.full((row.config.inner.steps + 1,), float(per_task.mean()), device="cpu")
    diverged = int((~torch.isfinite(per_run)).sum())
    return _entry(row, contender, chosen, per_task, curve, {}, diverged)


def _entry(
    row: Row,
    contender: Contender,
    chosen: Selection,
    per_task: Tensor,
    curve: Tensor,
    diagnoses: dict[str, int],
    diverged: int,
    metrics: dict[str, Tensor] | None = None,
) -> Entry:
    """The :class:`Entry` of ``contender`` on ``row`` tested with its selection ``chosen``."""
    name, role, param = contender.name, contender.role, contender.param
    return Entry(
        row.name, name, role, chosen, param, per_task, curve, diagnoses, diverged, metrics or {}
    )


def plan_size(rows: Sequence[Row], contenders: Sequence[Contender]) -> int:
    """How many progress steps :func:`run_benchmark` reports (one per selection value and test)."""
    total = 0
    for row in rows:
        for c in (c for c in contenders if c.enters(row)):
            values = len(c.values) or 1
            grid = len(c.lr_grid or row.config.evaluation.lr_grid)
            selects = values > 1 or (c.fit is None and grid > 1) or c.fit is not None
            total += 1 + (values if selects else 0)
    return total


class RowCache(Protocol):
    """Where finished rows are kept between runs of the same benchmark
    (:class:`metaloss.evaluation.row_store.RowStore`)."""

    def load(self, index: int, row: str) -> list[Entry] | None: ...

    def save(self, index: int, entries: list[Entry]) -> None: ...


def run_benchmark(
    rows: Sequence[Row],
    contenders: Sequence[Contender],
    progress: Progress | None = None,
    cache: RowCache | None = None,
) -> BenchmarkResult:
    """Run every contender on every row (see the module docstring); deterministic for a config.
    With a ``cache``, a row it holds is taken from it and every row run is saved to it."""
    entries: list[Entry] = []
    for index, row in enumerate(rows):
        kept = cache.load(index, row.name) if cache is not None else None
        if kept is not None:
            entries += kept
            if progress:
                for _ in range(plan_size([row], contenders)):
                    progress(f"{row.name}: kept from an earlier run")
            continue
        done = run_row(row, contenders, progress)
        if cache is not None:
            cache.save(index, done)
        entries += done
    first = rows[0].config
    metric = family_spec(first.task.family).metric
    directions: dict[str, bool] = {}
    for row in rows:
        maker = family_spec(row.config.task.family).metrics
        directions |= {
            k: m.higher_is_better for k, m in (maker(row.family) if maker else {}).items()
        }
    extra: dict[str, Any] = {}
    if first.benchmark.split in ("transfer", "transfer_valid"):
        extra["conditions"] = {r.name: describe_condition(r) for r in rows}
    return BenchmarkResult(
        entries,
        [r.name for r in rows],
        metric,
        first.evaluation.test_tasks,
        first.evaluation.seeds,
        {r.name: r.config.inner.steps for r in rows},
        extra=extra,
        metrics=directions,
        split=first.benchmark.split,
        min_pairs=first.evaluation.min_pairs,
    )


def describe_condition(row: Row) -> dict[str, Any]:
    """What a row trains on and with: task family (and data set), learner, inner optimiser,
    horizon, training samples per task, learning-rate grid."""
    task, c = row.config.task, row.config
    dataset = getattr(task, "dataset", None)
    return {
        "task": task.family + (f" ({dataset})" if dataset else ""),
        "learner": "linear"
        if not c.learner.hidden
        else f"MLP {'-'.join(map(str, c.learner.hidden))} {c.learner.activation}",
        "optimizer": c.inner.optimizer,
        "steps": c.inner.steps,
        "train_samples": getattr(row.family, "n_train", getattr(task, "n_train", None)),
        "lr_grid": list(c.evaluation.lr_grid),
    }


def compare(result: BenchmarkResult) -> list[Comparison]:
    """Every learned loss against every baseline on every row, paired by task (the direction is
    ``result.higher_is_better``; verdicts held to ``result.min_pairs`` tasks)."""
    out = []
    for row in result.rows:
        entries = result.row_entries(row)
        for learned in (e for e in entries if e.role == "learned"):
            for base in (e for e in entries if e.role == "baseline"):
                paired = paired_comparison(
                    learned.per_task,
                    base.per_task,
                    min_pairs=result.min_pairs,
                    higher_is_better=result.higher_is_better,
                )
                separated = not learned.score.overlaps(base.score)
                out.append(Comparison(row, learned.name, base.name, paired, separated))
    return out
