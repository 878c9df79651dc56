"""A real tabular regression set with outliers injected into its training targets: scikit-learn's
bundled diabetes data (442 patients, 10 features; no download). Used to meta-test, never to
meta-train, a loss learned on synthetic tasks ("does it transfer?").

The rows are split once, with the family seed, into a *pool* for inner training and
meta-objectives and a fixed *held-out* set. Every task draws its ``train`` and ``outer_valid``
rows from the pool; the ``test`` split of meta-test tasks is the held-out set, and tasks of
the other splits (used to select learning rates and loss parameters) take their ``test`` rows
from the pool too, so selection never touches a row any meta-test score is computed on.
Features are standardised; targets are standardised with the pool's mean and std. A fraction
``epsilon`` of the training targets is replaced by outliers as in
:func:`metaloss.tasks.outliers.contaminate` (amplitude 1, the targets' std).

Reference: Efron, Hastie, Johnstone and Tibshirani, "Least Angle Regression", Ann. Statist., 2004
(the diabetes data).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from metaloss.config import TaskConfig, setting
from metaloss.tasks.base import Batch, Split, Task, TaskFamily
from metaloss.tasks.oracles import CLEAN_SAMPLES_ORACLE
from metaloss.tasks.outliers import OUTLIER_KINDS, OutlierKind, contaminate
from metaloss.tasks.registry import FamilySpec, register_family

__all__ = ["DiabetesConfig", "DiabetesFamily", "load_diabetes_tensors"]


@dataclass(frozen=True)
class DiabetesConfig(TaskConfig):
    """Options of the diabetes transfer family."""

    epsilon: tuple[float, float] = setting(
        (0.2, 0.2), "range of the outlier fraction epsilon", ge=0, le=1
    )
    outliers: tuple[OutlierKind, ...] = setting(OUTLIER_KINDS, "outlier kinds, one drawn per task")
    outlier_scale: tuple[float, float] = setting(
        (3.0, 10.0), "outlier offsets, in target stds", gt=0
    )
    n_train: int = setting(100, "inner-training rows per task", ge=1)
    n_outer_valid: int = setting(100, "rows per task for the meta-objective", ge=1)
    held_out: int = setting(142, "rows held out as the test split of meta-test tasks", ge=1)

    def __post_init__(self) -> None:
        pool = 442 - self.held_out
        if self.n_train + self.n_outer_valid > pool:
            raise ValueError(
                f"n_train + n_outer_valid: expected at most {pool} (442 rows minus held_out), "
                f"got {self.n_train + self.n_outer_valid}"
            )


def load_diabetes_tensors() -> tuple[Tensor, Tensor]:
    """Features ``[442, 10]`` (unit std) and raw targets ``[442]`` of scikit-learn's diabetes data."""
    try:
        from sklearn.datasets import load_diabetes
    except ImportError:
        raise ImportError(
            "task.family diabetes: scikit-learn is not installed; run `pip install scikit-learn`"
        ) from None
    data = load_diabetes()
    x = torch.as_tensor(data.data, dtype=torch.float32)
    return x / x.std(0, keepdim=True), torch.as_tensor(data.target, dtype=torch.float32)


class DiabetesFamily(TaskFamily):
    """Random sub-samples of the diabetes data with contaminated training targets.

    Example:
        >>> family = DiabetesFamily(DiabetesConfig())  # doctest: +SKIP
        >>> family.task(Split.META_TEST, 0).test.x.shape  # doctest: +SKIP
        torch.Size([142, 10])
    """

    kind = "regression"

    def __init__(self, config: DiabetesConfig) -> None:
        super().__init__(config.seed)
        self.config = config
        x, y = load_diabetes_tensors()
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(config.seed))
        self.pool, self.held = order[config.held_out :], order[: config.held_out]
        mean, std = y[self.pool].mean(), y[self.pool].std()
        self.x, self.y = x, ((y - mean) / std).unsqueeze(-1)
        self.in_features = x.shape[1]
        self.out_features = 1

    def make_task(self, generator: torch.Generator, split: Split) -> Task:
        c, g = self.config, generator
        rows = self.pool[torch.randperm(len(self.pool), generator=g)]
        train_rows = rows[: c.n_train]
        valid_rows = rows[c.n_train : c.n_train + c.n_outer_valid]
        test_rows = self.held if split is Split.META_TEST else rows[-c.held_out :]
        epsilon = float(c.epsilon[0] + (c.epsilon[1] - c.epsilon[0]) * torch.rand((), generator=g))
        kind = c.outliers[int(torch.randint(len(c.outliers), (), generator=g))]
        clean_y = self.y[train_rows]
        y, clean = contaminate(clean_y, epsilon, kind, 1.0, c.outlier_scale, g)
        train = Batch(self.x[train_rows], y, {"clean_y": clean_y, "clean": clean})
        return Task(train, self._clean(valid_rows), self._clean(test_rows))

    def _clean(self, rows: Tensor) -> Batch:
        y = self.y[rows]
        return Batch(
            self.x[rows], y, {"clean_y": y, "clean": torch.ones(y.shape, dtype=torch.bool)}
        )


register_family(
    FamilySpec(
        "diabetes",
        DiabetesConfig,
        DiabetesFamily,
        kind="regression",
        metric="test MSE",
        zoo_loss="robust-regression",
        oracle=CLEAN_SAMPLES_ORACLE,
    )
)
