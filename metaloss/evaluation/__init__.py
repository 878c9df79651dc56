"""Meta-testing, statistics and reports."""

from metaloss.evaluation import multitask as _multitask  # noqa: F401  (per-head metrics of multi-task problems)
from metaloss.evaluation.formatting import PAIRED_COLUMNS, format_p, paired_cells
from metaloss.evaluation.meta_test import (
    EvalSet,
    LossRun,
    eval_set,
    run_loss,
    select_lr,
    steps_to_reach,
)
from metaloss.evaluation.stats import (
    DEFAULT_MIN_PAIRS,
    MeanCI,
    PairedComparison,
    mean_ci,
    paired_comparison,
    paired_t_test,
    verdict_rule,
    wilcoxon_test,
)

__all__ = [
    "DEFAULT_MIN_PAIRS",
    "PAIRED_COLUMNS",
    "EvalSet",
    "LossRun",
    "MeanCI",
    "PairedComparison",
    "eval_set",
    "format_p",
    "mean_ci",
    "paired_cells",
    "paired_comparison",
    "paired_t_test",
    "run_loss",
    "select_lr",
    "steps_to_reach",
    "verdict_rule",
    "wilcoxon_test",
]
