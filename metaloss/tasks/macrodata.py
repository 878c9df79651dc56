"""Multi-task problems on real data in raw units: several statsmodels ``macrodata`` series as
regression heads of one shared learner (:mod:`metaloss.datasets.macrodata`).

Each problem draws T of the six candidate heads (``task.heads``; in random order, so a head slot
holds a different series from problem to problem) and random rows. The targets keep their raw
units (billions of dollars of change beside rates in percent: squared errors differ by about six
orders of magnitude); the inputs are standardised with the pool's statistics. The rows are split
once, with the family seed, into a pool and a held-out set (``held_out``); only the ``test``
split of meta-test problems reads the held-out quarters, and problems of the other splits (which
select learning rates) take their test rows from the pool. The layout of targets and
predictions is the one of :mod:`metaloss.tasks.multitask` with block width 1, so every
multi-task loss applies unchanged; the objective is the mean over heads of each head's squared
error divided by that series' variance on the pool (the losses never read it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from metaloss.config import ConfigError, TaskConfig, setting
from metaloss.datasets.macrodata import MACRO_HEADS, load_macrodata
from metaloss.tasks.base import Batch, Split, Task, TaskFamily
from metaloss.tasks.multitask import REGRESSION, MultiTaskFamily, head_metrics
from metaloss.tasks.registry import FamilySpec, register_family

__all__ = ["MacrodataConfig", "MacrodataFamily"]


@dataclass(frozen=True)
class MacrodataConfig(TaskConfig):
    """Options of the macrodata multi-task family."""

    family: str = setting("macrodata", "name of the task family")
    heads: tuple[int, int] = setting(
        (2, 6), "range of the number of heads T per problem (of the 6 series)", ge=1, le=6
    )
    n_train: int = setting(64, "inner-training quarters per problem", ge=2)
    n_outer_valid: int = setting(32, "quarters per problem for the meta-objective", ge=1)
    held_out: float = setting(
        0.25,
        "fraction of the quarters held out as the test split of meta-test problems",
        gt=0,
        lt=1,
    )

    def __post_init__(self) -> None:
        if self.heads[0] > self.heads[1]:
            raise ConfigError(f"task.heads: expected low <= high, got {list(self.heads)}")


class MacrodataFamily(MultiTaskFamily):
    """Problems of T raw-unit macroeconomic heads (see the module docstring).

    Example:
        >>> family = MacrodataFamily(MacrodataConfig(heads=(3, 3)))
        >>> family.task(Split.META_TEST, 0).test.y.shape  # [quarters, 3 M], M = 6 head slots
        torch.Size([50, 18])
    """

    kind = "multitask"

    def __init__(self, config: MacrodataConfig) -> None:  # type: ignore[override]
        TaskFamily.__init__(self, config.seed)
        self.macro = config
        x, heads = load_macrodata()
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(config.seed))
        held = round(config.held_out * len(x))
        self.pool, self.held = order[held:], order[:held]
        if config.n_train + config.n_outer_valid + held > len(self.pool):
            raise ConfigError(
                f"task.n_train: macrodata has {len(self.pool)} pool quarters, but n_train + "
                f"n_outer_valid + a test split of {held} needs {config.n_train + config.n_outer_valid + held}"
            )
        mean, std = x[self.pool].mean(0), x[self.pool].std(0)
        self.x = (x - mean) / torch.where(std > 1e-6, std, torch.ones_like(std))
        self.targets = heads
        self.variances = heads[self.pool].var(0)
        self.in_features = x.shape[1]
        self.heads = len(MACRO_HEADS)
        self.width = 1
        self.out_features = self.heads

    def make_task(self, generator: torch.Generator, split: Split) -> Task:
        c = self.macro
        rows = self.pool[torch.randperm(len(self.pool), generator=generator)]
        count = int(torch.randint(c.heads[0], c.heads[1] + 1, (1,), generator=generator))
        chosen = torch.randperm(self.heads, generator=generator)[:count]
        parts = (
            rows[: c.n_train],
            rows[c.n_train : c.n_train + c.n_outer_valid],
            self.held if split is Split.META_TEST else rows[-len(self.held) :],
        )
        return Task(*(self._batch(part, chosen) for part in parts))

    def _batch(self, rows: torch.Tensor, chosen: torch.Tensor) -> Batch:
        m, t = self.heads, len(chosen)
        y = torch.zeros(len(rows), 3 * m)
        y[:, 2 * m :] = 1.0
        y[:, :t] = self.targets[rows][:, chosen]
        y[:, m : m + t] = float(REGRESSION)
        y[:, 2 * m : 2 * m + t] = self.variances[chosen]
        series = torch.full((m,), -1, dtype=torch.long)
        series[:t] = chosen
        return Batch(self.x[rows], y, {"series": series})


register_family(
    FamilySpec(
        "macrodata",
        MacrodataConfig,
        MacrodataFamily,
        kind="multitask",
        metric="test objective",
        zoo_loss="multitask",
        metrics=head_metrics,
    )
)
