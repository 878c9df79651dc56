"""Noisy-label classification tasks on real data sets bundled with scikit-learn and statsmodels
(:mod:`metaloss.datasets.classification`): digits with all 10 classes, ``anes96`` (7 classes),
``fair`` (binary) and ``make_classification`` (4 classes, generated from a fixed seed).

Used to meta-test (and, for out-of-distribution meta-validation, to select) losses meta-trained
on other families. The rows are split once, with the family seed, into a *pool* and a fixed
*held-out* set (``held_out``, a fraction of the rows, stratified by class). Every task draws its
``train`` and ``outer_valid`` rows from the pool; the ``test`` split of meta-test tasks is the
whole held-out set, and tasks of the other splits (which select learning rates, loss parameters
and candidate losses) take their ``test`` rows from the pool too, so no selection ever touches a
row a meta-test score is computed on. Features are standardised with the pool's mean and std.

Label noise is injected into the inner-training labels only, exactly as in the few-shot families
(:func:`metaloss.tasks.classification.flip_labels`: symmetric, or pair-flip ``c -> c+1 mod C``);
the meta-objective's and the test rows keep their clean labels. Batches carry ``clean_y``,
``noise_mask`` and ``clean`` in ``extras``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from metaloss.config import ConfigError, TaskConfig, setting
from metaloss.datasets.classification import load_classification
from metaloss.tasks.base import Batch, ConfiguredFamily, Split, Task
from metaloss.tasks.classification import (
    check_noise_rate,
    classification_metrics,
    draw_noise,
    flip_labels,
    noise_rate_setting,
    noise_type_setting,
    pair_fraction_setting,
)
from metaloss.tasks.oracles import CLEAN_LABELS_ORACLE
from metaloss.tasks.registry import FamilySpec, register_family

__all__ = ["ClassificationDataConfig", "ClassificationDataFamily", "stratified_split"]


@dataclass(frozen=True)
class ClassificationDataConfig(TaskConfig):
    """Options of the bundled-data classification family."""

    family: str = setting("classification_data", "name of the task family")
    dataset: Literal[
        "digits", "anes96", "fair", "make_classification", "wine", "breast_cancer", "iris"
    ] = setting(
        "digits",
        "bundled data set: digits (10 classes), anes96 (7), fair (2), make_classification (4); "
        "for out-of-distribution meta-validation only: wine (3), breast_cancer (2), iris (3)",
    )
    n_train: int = setting(200, "inner-training rows per task (noisy labels)", ge=2)
    n_outer_valid: int = setting(
        100, "rows per task for the meta-objective and selection (clean labels)", ge=1
    )
    held_out: float = setting(
        0.25, "fraction of the rows held out as the test split of meta-test tasks", gt=0, lt=1
    )
    noise_type: Literal["symmetric", "pair", "mixed"] = noise_type_setting()
    noise_rate: tuple[float, float] = noise_rate_setting()
    pair_fraction: float = pair_fraction_setting()

    def __post_init__(self) -> None:
        check_noise_rate(self)


def stratified_split(labels: Tensor, fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Row indices ``(pool, held)``: ``round(fraction * n_c)`` rows of every class ``c`` held out,
    chosen uniformly with ``seed``; both sorted."""
    generator = torch.Generator().manual_seed(seed)
    held = []
    for c in labels.unique().tolist():
        rows = (labels == c).nonzero().squeeze(1)
        rows = rows[torch.randperm(len(rows), generator=generator)]
        held.append(rows[: round(fraction * len(rows))])
    held_rows = torch.cat(held).sort().values
    mask = torch.ones(len(labels), dtype=torch.bool)
    mask[held_rows] = False
    return mask.nonzero().squeeze(1), held_rows


class ClassificationDataFamily(ConfiguredFamily[ClassificationDataConfig]):
    """Random sub-samples of one bundled classification data set, with noisy training labels.

    Example:
        >>> family = ClassificationDataFamily(ClassificationDataConfig(dataset="anes96"))
        >>> family.out_features, family.task(Split.META_TEST, 0).test.x.shape
        (7, torch.Size([237, 9]))
    """

    kind = "classification"

    def __init__(self, config: ClassificationDataConfig) -> None:
        super().__init__(config)
        x, y = load_classification(config.dataset)
        self.pool, self.held = stratified_split(y, config.held_out, config.seed)
        needed = config.n_train + config.n_outer_valid + len(self.held)
        if needed > len(self.pool):
            raise ConfigError(
                f"task.n_train: {config.dataset} has {len(self.pool)} pool rows, but n_train + "
                f"n_outer_valid + a test split of {len(self.held)} rows needs {needed} (lower them "
                f"or held_out)"
            )
        mean, std = x[self.pool].mean(0), x[self.pool].std(0)
        self.x = (x - mean) / torch.where(std > 1e-6, std, torch.ones_like(std))
        self.y = y
        self.in_features = x.shape[1]
        self.out_features = int(y.max()) + 1

    @staticmethod
    def objective(pred: Tensor, target: Tensor) -> Tensor:
        """Per-sample cross-entropy: the meta-objective and the test metric."""
        log_probs = torch.log_softmax(pred, dim=-1)
        return -log_probs.gather(-1, target.long().unsqueeze(-1)).squeeze(-1)

    def make_task(self, generator: torch.Generator, split: Split) -> Task:
        c = self.config
        rows = self.pool[torch.randperm(len(self.pool), generator=generator)]
        train_rows = rows[: c.n_train]
        valid_rows = rows[c.n_train : c.n_train + c.n_outer_valid]
        test_rows = self.held if split is Split.META_TEST else rows[-len(self.held) :]
        rate, noise_type = draw_noise(c, generator)
        clean_y = self.y[train_rows]
        noisy, mask = flip_labels(clean_y, self.out_features, rate, noise_type, generator)
        extras = {"clean_y": clean_y, "noise_mask": mask, "clean": ~mask}
        return Task(
            Batch(self.x[train_rows], noisy, extras),
            self._clean(valid_rows),
            self._clean(test_rows),
        )

    def _clean(self, rows: Tensor) -> Batch:
        y = self.y[rows]
        none = torch.zeros(len(rows), dtype=torch.bool)
        return Batch(self.x[rows], y, {"clean_y": y, "noise_mask": none, "clean": ~none})


register_family(
    FamilySpec(
        "classification_data",
        ClassificationDataConfig,
        ClassificationDataFamily,
        kind="classification",
        metric="test cross-entropy",
        zoo_loss="noisy-labels",
        oracle=CLEAN_LABELS_ORACLE,
        metrics=classification_metrics,
    )
)
