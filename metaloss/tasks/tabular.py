"""Real tabular regression data with outliers injected into the training targets: the transfer
family for losses meta-trained on synthetic tasks ("does it work on my data?").

Any data set of :mod:`metaloss.datasets` (scikit-learn's diabetes; statsmodels' fair,
macrodata, statecrime, ccard, stackloss), chosen by ``task.dataset``. The rows are split once,
with the family seed, into a *pool* for inner training and meta-objectives and a fixed
*held-out* set (``held_out`` of the rows, at most ``max_held_out``). Every task draws its
``train`` and ``outer_valid`` rows from the pool; the
``test`` split of meta-test tasks is the held-out set, and tasks of the other splits (used to
select learning rates and loss parameters) take their ``test`` rows from the pool too, so
selection never touches a row any meta-test score is computed on. Because the held-out set is
fixed, scores of one row are conditional on it (another ``task.seed`` holds out other rows).

Features are standardised with the pool's mean and std; targets are standardised with the
pool's mean and std and multiplied by ``target_scale`` (the target's units). Skewed and
heavy-tailed targets are kept as they are: they are legitimate data, not outliers. A fraction
``epsilon`` of the training targets is replaced by outliers as in
:func:`metaloss.tasks.outliers.contaminate` (amplitude: ``target_scale``, the targets' std);
``outer_valid`` and ``test`` are clean. ``train.extras["clean"]`` marks the clean training
rows (for the oracle) and ``extras["clean_y"]`` holds the uncontaminated targets.

``task.family: diabetes`` is kept as a name for the diabetes data set with the sizes it had
before this family was generalised (100 train rows, 100 outer-valid rows, 142 held out).

Reference: Efron, Hastie, Johnstone and Tibshirani, "Least Angle Regression", Ann. Statist., 2004
(the diabetes data); the other sources are cited in :mod:`metaloss.datasets`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from metaloss.config import TaskConfig, setting
from metaloss.datasets import load_regression, regression_names
from metaloss.tasks.base import Batch, ConfiguredFamily, Split, Task
from metaloss.tasks.oracles import CLEAN_SAMPLES_ORACLE
from metaloss.tasks.outliers import OUTLIER_KINDS, OutlierKind, contaminate
from metaloss.tasks.registry import FamilySpec, register_family

__all__ = ["DiabetesConfig", "TabularConfig", "TabularFamily", "split_sizes"]

_DEFAULT_CAP = 256


@dataclass(frozen=True)
class TabularConfig(TaskConfig):
    """Options of the real-data regression family."""

    family: str = setting("tabular", "name of the task family")

    dataset: str = setting(
        "diabetes",
        "bundled regression data set: " + ", ".join(regression_names()),
    )
    epsilon: tuple[float, float] = setting(
        (0.2, 0.2), "range of the outlier fraction epsilon, drawn per task", ge=0, le=1
    )
    outliers: tuple[OutlierKind, ...] = setting(OUTLIER_KINDS, "outlier kinds, one drawn per task")
    outlier_scale: tuple[float, float] = setting(
        (3.0, 10.0), "outlier offsets, in target stds", gt=0
    )
    held_out: float = setting(
        0.3,
        "fraction of the rows held out once (family seed) as the test split of meta-test tasks",
        gt=0,
        le=0.5,
    )
    max_held_out: int = setting(
        1000,
        "at most this many held-out rows (large data sets: the test split stays cheap to score)",
        ge=1,
    )
    n_train: int = setting(
        0, f"inner-training rows per task; 0: 60% of the pool, at most {_DEFAULT_CAP}", ge=0
    )
    n_outer_valid: int = setting(
        0,
        f"rows per task for the meta-objective; 0: the rest of the pool, at most {_DEFAULT_CAP}",
        ge=0,
    )
    target_scale: float = setting(
        1.0, "the targets' units: standardised targets are multiplied by this", gt=0
    )

    def __post_init__(self) -> None:
        if self.dataset not in regression_names():
            raise ValueError(
                f"dataset: expected one of {', '.join(regression_names())}, got {self.dataset!r}"
            )
        for name in ("epsilon", "outlier_scale"):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"{name}: expected low <= high, got [{low}, {high}]")
        if not self.outliers:
            raise ValueError("outliers: expected at least one outlier kind")


@dataclass(frozen=True)
class DiabetesConfig(TabularConfig):
    """The diabetes data with its historical sizes (see the module docstring)."""

    family: str = setting("diabetes", "name of the task family")

    held_out: float = setting(142 / 442, "fraction of the rows held out", gt=0, le=0.5)
    n_train: int = setting(100, "inner-training rows per task", ge=0)
    n_outer_valid: int = setting(100, "rows per task for the meta-objective", ge=0)


def split_sizes(config: TabularConfig, rows: int) -> tuple[int, int, int]:
    """``(held_out, n_train, n_outer_valid)`` row counts for a data set of ``rows`` rows; raises
    ``ValueError`` naming the setting when they do not fit."""
    held = min(config.max_held_out, max(1, round(config.held_out * rows)))
    pool = rows - held
    n_train = config.n_train or min(_DEFAULT_CAP, round(0.6 * pool))
    n_valid = config.n_outer_valid or min(_DEFAULT_CAP, pool - n_train)
    if n_train < 2 or n_valid < 1 or n_train + n_valid > pool:
        raise ValueError(
            f"n_train + n_outer_valid: expected at least 2 + 1 and at most {pool} (the "
            f"{config.dataset} pool: {rows} rows minus {held} held out), got {n_train} + {n_valid}"
        )
    return held, n_train, n_valid


def _standardise(values: Tensor, reference: Tensor) -> Tensor:
    std = reference.std(0, keepdim=True)
    return (values - reference.mean(0, keepdim=True)) / torch.where(std > 0, std, 1.0)


class TabularFamily(ConfiguredFamily[TabularConfig]):
    """Random sub-samples of one bundled data set, with contaminated training targets.

    Args:
        config: the family's options (:class:`TabularConfig`).

    Example:
        >>> family = TabularFamily(TabularConfig(dataset="diabetes"))
        >>> family.task(Split.META_TEST, 0).test.x.shape
        torch.Size([133, 10])
    """

    kind = "regression"

    def __init__(self, config: TabularConfig) -> None:
        super().__init__(config)
        data = load_regression(config.dataset)
        held, self.n_train, self.n_outer_valid = split_sizes(config, data.rows)
        order = torch.randperm(data.rows, generator=torch.Generator().manual_seed(config.seed))
        self.pool, self.held = order[held:], order[:held]
        x = _standardise(data.x, data.x[self.pool])
        y = _standardise(data.y, data.y[self.pool]) * config.target_scale
        self.x, self.y = x.float(), y.float().unsqueeze(-1)
        self.in_features = data.x.shape[1]

    def make_task(self, generator: torch.Generator, split: Split) -> Task:
        c, g = self.config, generator
        rows = self.pool[torch.randperm(len(self.pool), generator=g)]
        train_rows = rows[: self.n_train]
        valid_rows = rows[self.n_train : self.n_train + self.n_outer_valid]
        test_rows = self.held if split is Split.META_TEST else rows[-len(self.held) :]
        epsilon = float(c.epsilon[0] + (c.epsilon[1] - c.epsilon[0]) * torch.rand((), generator=g))
        kind = c.outliers[int(torch.randint(len(c.outliers), (), generator=g))]
        clean_y = self.y[train_rows]
        y, clean = contaminate(clean_y, epsilon, kind, c.target_scale, c.outlier_scale, g)
        train = Batch(self.x[train_rows], y, {"clean_y": clean_y, "clean": clean})
        return Task(train, self._clean(valid_rows), self._clean(test_rows))

    def _clean(self, rows: Tensor) -> Batch:
        y = self.y[rows]
        return Batch(
            self.x[rows], y, {"clean_y": y, "clean": torch.ones(y.shape, dtype=torch.bool)}
        )


def _spec(name: str, config: type[TabularConfig]) -> FamilySpec:
    return FamilySpec(
        name,
        config,
        TabularFamily,
        kind="regression",
        metric="test MSE",
        zoo_loss="robust-regression",
        oracle=CLEAN_SAMPLES_ORACLE,
    )


register_family(_spec("tabular", TabularConfig))
register_family(_spec("diabetes", DiabetesConfig))
