"""Learned loss vs MSE on held-out tasks, at the meta-training learning rate *and* at each loss's
best learning rate from a grid selected on meta-train tasks (ML3's advantage over MSE can vanish
once MSE's learning rate is tuned; this report shows both)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from metaloss.config import RunConfig
from metaloss.evaluation.meta_test import LossRun, eval_set, run_loss, select_lr, steps_to_reach
from metaloss.evaluation.stats import MeanCI, mean_ci, paired_t_test
from metaloss.losses import baseline
from metaloss.tasks import Split, TaskFamily
from metaloss.typing import PerSampleLoss

__all__ = ["Comparison", "ComparisonRow", "compare_with_mse"]


@dataclass(frozen=True)
class ComparisonRow:
    """One loss at one learning rate on the meta-test runs."""

    name: str
    lr: float
    lr_source: str
    test: MeanCI
    steps_to_mse: int | None
    steps_to_tuned_mse: int | None
    diverged: int
    diff_vs_tuned_mse: MeanCI
    p_vs_tuned_mse: float


@dataclass(frozen=True)
class Comparison:
    rows: list[ComparisonRow]
    runs: int
    steps: int
    lr_scores: dict[str, dict[float, float]]
    reference: str = "MSE"
    """The hand-designed reference loss: MSE for regression, CE for classification."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "inner_steps": self.steps,
            "rows": [
                {
                    **{k: v for k, v in vars(r).items() if k not in ("test", "diff_vs_tuned_mse")},
                    "test_mean": r.test.mean,
                    "test_ci95": r.test.half_width,
                    "paired_diff_vs_tuned_mse": r.diff_vs_tuned_mse.mean,
                    "paired_diff_ci95": r.diff_vs_tuned_mse.half_width,
                }
                for r in self.rows
            ],
            "lr_selection_scores_outer_valid": {
                k: {str(lr): s for lr, s in v.items()} for k, v in self.lr_scores.items()
            },
        }

    def verdict(self) -> str:
        """Tuned learned loss vs tuned MSE, judged on the paired difference's 95% CI."""
        rows = {r.name: r for r in self.rows}
        diff = rows["learned (tuned lr)"].diff_vs_tuned_mse
        ref = self.reference
        if diff.high < 0:
            return f"tuned learned beats tuned {ref}: paired Δ {diff} (CI below 0)"
        if diff.low > 0:
            return f"tuned learned loses to tuned {ref}: paired Δ {diff} (CI above 0)"
        return f"tuned learned ties tuned {ref}: paired Δ {diff} (CI contains 0)"

    def markdown(self) -> str:
        ref = self.reference
        lines = [
            f"Clean test {ref} after {self.steps} inner steps on {self.runs} held-out runs "
            "(mean ± 95% CI); steps = first inner step whose mean error reaches the target; "
            f"Δ = paired difference to tuned {ref} on the same tasks and initialisations "
            "(mean ± 95% CI; negative is better) with its paired t-test p-value.",
            "",
            f"| loss | lr | lr from | test {ref} | steps to {ref}@same-lr final | steps to tuned-{ref} final | diverged | Δ vs tuned {ref} | p |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in self.rows:
            s1 = "never" if r.steps_to_mse is None else str(r.steps_to_mse)
            s2 = "never" if r.steps_to_tuned_mse is None else str(r.steps_to_tuned_mse)
            paired = r.p_vs_tuned_mse == r.p_vs_tuned_mse  # not NaN: not the reference row
            p = f"{r.p_vs_tuned_mse:.2g}" if paired else ""
            diff = str(r.diff_vs_tuned_mse) if paired else "(reference)"
            lines.append(
                f"| {r.name} | {r.lr:g} | {r.lr_source} | {r.test} | {s1} | {s2} | {r.diverged} | {diff} | {p} |"
            )
        return "\n".join([*lines, "", self.verdict()]) + "\n"


def compare_with_mse(
    learned: PerSampleLoss,
    family: TaskFamily,
    config: RunConfig,
    test_tasks: int | None = None,
    seeds: int | None = None,
) -> Comparison:
    """Meta-test ``learned`` against MSE on fixed held-out tasks (see module docstring); for a
    classification family the reference is cross-entropy instead."""
    ev = config.evaluation
    test = eval_set(family, config, Split.META_TEST, test_tasks or ev.test_tasks, seeds or ev.seeds)
    grid_set = eval_set(family, config, Split.META_TRAIN, ev.grid_tasks)
    ref = "mse" if family.kind == "regression" else "ce"
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
    rows = []
    for run, source in runs:
        _, p = paired_t_test(run.final, tuned.final) if run is not tuned else (0.0, float("nan"))
        rows.append(
            ComparisonRow(
                run.name,
                run.lr,
                source,
                mean_ci(run.final),
                steps_to_reach(run.curves, mse_final),
                steps_to_reach(run.curves, tuned_final),
                int(run.diverged.sum()),
                mean_ci(run.final - tuned.final),
                p,
            )
        )
    return Comparison(
        rows,
        test.runs,
        config.inner.steps,
        {ref: mse_scores, "learned": learned_scores},
        ref.upper(),
    )
