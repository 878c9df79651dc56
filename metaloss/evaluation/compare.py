"""Learned loss vs MSE on held-out tasks, at the meta-training learning rate *and* at each loss's
best learning rate from a grid selected on meta-train tasks (ML3's advantage over MSE can vanish
once MSE's learning rate is tuned; this report shows both). Each loss is compared with the tuned
reference task by task (paired t and Wilcoxon tests, :mod:`metaloss.evaluation.stats`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from metaloss.config import RunConfig
from metaloss.evaluation.formatting import PAIRED_COLUMNS, format_p, paired_cells
from metaloss.evaluation.meta_test import LossRun, eval_set, run_loss, select_lr, steps_to_reach
from metaloss.evaluation.stats import (
    DEFAULT_MIN_PAIRS,
    MeanCI,
    PairedComparison,
    mean_ci,
    paired_comparison,
    verdict_rule,
)
from metaloss.losses import baseline
from metaloss.losses.kinds import kind_spec
from metaloss.markdown import table_head, table_row
from metaloss.tasks import Split, TaskFamily
from metaloss.tasks.registry import family_spec
from metaloss.typing import PerSampleLoss

__all__ = ["Comparison", "ComparisonRow", "compare_with_mse"]


@dataclass(frozen=True)
class ComparisonRow:
    """One loss at one learning rate on the meta-test runs.

    ``vs_tuned`` pairs this loss with the tuned reference loss task by task (each task's final
    error averaged over its seeds; ``None`` for the tuned reference itself)."""

    name: str
    lr: float
    lr_source: str
    test: MeanCI
    steps_to_mse: int | None
    steps_to_tuned_mse: int | None
    diverged: int
    vs_tuned: PairedComparison | None


@dataclass(frozen=True)
class Comparison:
    rows: list[ComparisonRow]
    runs: int
    steps: int
    lr_scores: dict[str, dict[float, float]]
    reference: str = "MSE"
    """The hand-designed reference loss: MSE for regression, CE for classification."""
    tasks: int = 0
    """Held-out tasks (the pairs of ``vs_tuned``); ``runs`` = tasks × seeds."""
    min_pairs: int = DEFAULT_MIN_PAIRS
    metric: str = "test MSE"
    """How the family names its test metric (its spec's ``metric``)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "tasks": self.tasks,
            "inner_steps": self.steps,
            "min_pairs": self.min_pairs,
            "rows": [
                {
                    **{k: v for k, v in vars(r).items() if k not in ("test", "vs_tuned")},
                    "test_mean": r.test.mean,
                    "test_ci95": _number(r.test.half_width),
                    "vs_tuned": None
                    if r.vs_tuned is None
                    else {k: _number(v) for k, v in r.vs_tuned.to_dict().items()},
                }
                for r in self.rows
            ],
            "lr_selection_scores_outer_valid": {
                k: {str(lr): s for lr, s in v.items()} for k, v in self.lr_scores.items()
            },
        }

    def verdict(self) -> str:
        """Tuned learned loss vs tuned reference, by the rule of
        :func:`metaloss.evaluation.stats.paired_comparison`."""
        rows = {r.name: r for r in self.rows}
        paired = rows["learned (tuned lr)"].vs_tuned
        assert paired is not None
        ref = self.reference
        words = {
            "better": f"tuned learned beats tuned {ref}",
            "worse": f"tuned learned loses to tuned {ref}",
            "no significant difference": f"tuned learned ties tuned {ref}",
            "too few pairs": f"tuned learned vs tuned {ref}: too few tasks to tell",
            "not finite": f"tuned learned vs tuned {ref}: a run did not stay finite",
        }
        return (
            f"{words[paired.verdict]}: paired Δ {paired.difference} over {paired.n} tasks "
            f"(p t {format_p(paired.p_t)}, p Wilcoxon {format_p(paired.p_wilcoxon)})"
        )

    def markdown(self) -> str:
        ref = self.reference
        seeds = self.runs // self.tasks if self.tasks else 1
        columns = ["loss", "lr", "lr from", self.metric, f"steps to {ref}@same-lr final"]
        columns += [f"steps to tuned-{ref} final", "diverged", *PAIRED_COLUMNS]
        lines = [
            f"{self.metric[0].upper()}{self.metric[1:]} after {self.steps} inner steps on {self.tasks} held-out tasks × "
            f"{seeds} seed(s) (mean ± 95% CI over runs); steps = first inner step whose mean "
            f"error reaches the target. Paired columns: this loss − tuned {ref}, task by task "
            "(each task's error averaged over its seeds; negative is better).",
            "",
            verdict_rule(self.min_pairs, "tasks"),
            "",
            *table_head(columns),
        ]
        for r in self.rows:
            s1 = "never" if r.steps_to_mse is None else str(r.steps_to_mse)
            s2 = "never" if r.steps_to_tuned_mse is None else str(r.steps_to_tuned_mse)
            paired = (
                paired_cells(r.vs_tuned)
                if r.vs_tuned is not None
                else ["(reference)"] + [""] * (len(PAIRED_COLUMNS) - 1)
            )
            cells = [r.name, f"{r.lr:g}", r.lr_source, str(r.test), s1, s2, str(r.diverged)]
            lines.append(table_row([*cells, *paired]))
        return "\n".join([*lines, "", self.verdict()]) + "\n"


def _number(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _per_task(final: Tensor, seeds: int) -> Tensor:
    """Final errors ``[seeds * tasks]`` (seed-major, as :func:`eval_set` stacks them) averaged
    over seeds, ``[tasks]``."""
    return final.reshape(seeds, -1).mean(0)


def compare_with_mse(learned: PerSampleLoss, family: TaskFamily, config: RunConfig) -> Comparison:
    """Meta-test ``learned`` against its kind's hand-designed reference loss (the kind spec's
    ``reference``: MSE for regression, CE for classification, equal weights for multi-task) on
    fixed held-out tasks (see module docstring), ``config.evaluation`` telling how many tasks,
    seeds and which learning-rate grid."""
    ev = config.evaluation
    test = eval_set(family, config, Split.META_TEST, ev.test_tasks, ev.seeds, start=ev.test_start)
    grid_set = eval_set(family, config, Split.META_TRAIN, ev.grid_tasks)
    ref = kind_spec(family.kind).reference
    if ref is None:
        raise ValueError(f"metaloss train: no reference loss to compare {family.kind} losses with")
    mse = baseline(ref)
    mse_lr, mse_scores = select_lr(mse, family, config, ev.lr_grid, grid_set)
    learned_lr, learned_scores = select_lr(learned, family, config, ev.lr_grid, grid_set)
    same = config.inner.lr
    runs: list[tuple[LossRun, str]] = [
        (run_loss("learned", learned, family, config, test, same), "meta-training"),
        (run_loss(ref, mse, family, config, test, same), "meta-training"),
        (
            run_loss("learned (tuned lr)", learned, family, config, test, learned_lr),
            "grid on meta-train tasks",
        ),
        (
            run_loss(f"{ref} (tuned lr)", mse, family, config, test, mse_lr),
            "grid on meta-train tasks",
        ),
    ]
    mse_final = float(runs[1][0].final.mean())
    tuned = runs[3][0]
    tuned_final = float(tuned.final.mean())
    tuned_tasks = _per_task(tuned.final, ev.seeds)
    rows = []
    for run, source in runs:
        paired = (
            paired_comparison(_per_task(run.final, ev.seeds), tuned_tasks, min_pairs=ev.min_pairs)
            if run is not tuned
            else None
        )
        rows.append(
            ComparisonRow(
                run.name,
                run.lr,
                source,
                mean_ci(run.final),
                steps_to_reach(run.curves, mse_final),
                steps_to_reach(run.curves, tuned_final),
                int(run.diverged.sum()),
                paired,
            )
        )
    return Comparison(
        rows,
        test.runs,
        config.inner.steps,
        {ref: mse_scores, "learned": learned_scores},
        ref.upper(),
        tasks=int(tuned_tasks.numel()),
        min_pairs=ev.min_pairs,
        metric=family_spec(config.task.family).metric,
    )
