"""Meta-testing, statistics and reports."""

from metaloss.evaluation import multitask as _multitask  # noqa: F401  (per-head metrics of multi-task problems)
from metaloss.evaluation.meta_test import (
    EvalSet,
    LossRun,
    eval_set,
    run_loss,
    select_lr,
    steps_to_reach,
)
from metaloss.evaluation.stats import MeanCI, mean_ci, paired_t_test

__all__ = [
    "EvalSet",
    "LossRun",
    "MeanCI",
    "eval_set",
    "mean_ci",
    "paired_t_test",
    "run_loss",
    "select_lr",
    "steps_to_reach",
]
