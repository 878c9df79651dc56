"""The RL benchmark: PPO's clip (tuned), DPO and learned drifts on held-out environment variants.

Every objective trains fresh agents with the *same* PPO loop and the same environment-step budget
(``task.bench_total_steps``). Each objective's learning rate (``evaluation.lr_grid``) and PPO's
clip ε (``task.clip_grid``) are selected on ``task.tune_tasks`` meta-train variants only, by final
return; held-out rows (the unmodified environment and ``task.bench_variants`` meta-test variants
from the disjoint outer parameter band) are never seen while selecting. Each row reports, over
``task.bench_seeds`` seeds (the same seeds for every objective, so pairs are matched): the final
return (mean return of the episodes that ended in the last 10% of the budget) and the steps to
reach ``task.threshold`` (the mean of the last 20 episode returns; a run that never reaches it
counts as the full budget), each as mean ± 95% CI, and a paired t-test of the learned objective
against tuned PPO over all (row, seed) pairs.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

from metaloss.config import RunConfig
from metaloss.evaluation.stats import MeanCI, mean_ci, paired_t_test
from metaloss.rl.config import PPOConfig, RLTaskConfig
from metaloss.rl.envs import EnvFamily, EnvTask
from metaloss.rl.objectives import LearnedDrift, PolicyObjective, make_objective
from metaloss.rl.pool import WorkerPool
from metaloss.rl.ppo import train_ppo
from metaloss.tasks.base import Split

__all__ = [
    "BenchJob",
    "ObjectiveSpec",
    "RLBenchmarkResult",
    "RLRow",
    "run_bench_job",
    "run_rl_benchmark",
]

FINAL_FRACTION = 0.1
_TUNE_SEED = 20_000
_TEST_SEED = 10_000


@dataclass(frozen=True)
class ObjectiveSpec:
    """A policy objective that can be sent to a worker: a closed form by name, or a learned
    drift's architecture and weights."""

    name: str
    kind: str
    clip_coef: float = 0.2
    architecture: dict[str, Any] | None = None
    weights: dict[str, Tensor] | None = None

    @classmethod
    def learned(cls, name: str, drift: LearnedDrift) -> ObjectiveSpec:
        arch = {
            k: v
            for k, v in drift.architecture().items()
            if k in ("features", "hidden", "activation")
        }
        weights = {k: v.detach().clone() for k, v in drift.state_dict().items()}
        return cls(name, "learned", architecture=arch, weights=weights)

    def build(self) -> PolicyObjective:
        """The objective as a callable ``(log_ratio, advantages) -> per-sample loss``."""
        if self.kind != "learned":
            return make_objective(self.kind, clip_coef=self.clip_coef)
        drift = LearnedDrift(**(self.architecture or {}), reduction="none")
        drift.load_state_dict(self.weights or {})
        return drift


@dataclass(frozen=True)
class BenchJob:
    """One training run of one objective on one variant with one seed."""

    spec: ObjectiveSpec
    task: EnvTask
    ppo: PPOConfig
    total_steps: int
    seed: int
    threshold: float


def run_bench_job(job: BenchJob) -> tuple[float, int | None]:
    """Final return and steps to the threshold (``None``: not reached) of one run."""
    with torch.enable_grad():
        run = train_ppo(job.task, job.ppo, job.spec.build(), job.seed, job.total_steps)
    return run.final_return(FINAL_FRACTION), run.steps_to_threshold(job.threshold)


@dataclass(frozen=True)
class RLRow:
    """One objective on one environment variant, over seeds."""

    objective: str
    variant: str
    lr: float
    clip_coef: float | None
    finals: list[float]
    steps: list[int | None]
    budget: int

    @property
    def final(self) -> MeanCI:
        return mean_ci(torch.tensor(self.finals))

    @property
    def steps_to_threshold(self) -> MeanCI:
        return mean_ci(torch.tensor([float(self.budget if s is None else s) for s in self.steps]))

    @property
    def reached(self) -> int:
        return sum(s is not None for s in self.steps)


@dataclass
class RLBenchmarkResult:
    """All rows, the selection scores on meta-train variants, and the variants' physics."""

    rows: list[RLRow]
    selection: dict[str, dict[str, float]]
    variants: dict[str, dict[str, float]]
    budget: int
    threshold: float
    seeds: int
    extra: dict[str, Any] = field(default_factory=dict)

    def paired(self, a: str, b: str) -> tuple[float, float, int]:
        """Paired t statistic, p-value and pair count of ``a``'s minus ``b``'s final returns."""
        xs, ys = [], []
        for variant in self.variants:
            ra = next(r for r in self.rows if r.objective == a and r.variant == variant)
            rb = next(r for r in self.rows if r.objective == b and r.variant == variant)
            xs += ra.finals
            ys += rb.finals
        t, p = paired_t_test(torch.tensor(xs), torch.tensor(ys))
        return t, p, len(xs)

    def to_dict(self) -> dict[str, Any]:
        rows = [
            {
                "objective": r.objective,
                "variant": r.variant,
                "lr": r.lr,
                "clip_coef": r.clip_coef,
                "final_return_mean": r.final.mean,
                "final_return_ci95": r.final.half_width,
                "steps_to_threshold_mean": r.steps_to_threshold.mean,
                "steps_to_threshold_ci95": r.steps_to_threshold.half_width,
                "reached": r.reached,
                "finals": r.finals,
                "steps": r.steps,
            }
            for r in self.rows
        ]
        return {
            "budget": self.budget,
            "threshold": self.threshold,
            "seeds": self.seeds,
            "rows": rows,
            "selection": self.selection,
            "variants": self.variants,
            **self.extra,
        }

    def csv(self) -> str:
        lines = [
            "objective,variant,lr,clip_coef,final_mean,final_ci95,steps_mean,steps_ci95,reached,seeds"
        ]
        for r in self.rows:
            f, s = r.final, r.steps_to_threshold
            lines.append(
                f"{r.objective},{r.variant},{r.lr},{r.clip_coef if r.clip_coef is not None else ''},"
                f"{f.mean:.4f},{f.half_width:.4f},{s.mean:.1f},{s.half_width:.1f},{r.reached},{len(r.finals)}"
            )
        return "\n".join(lines) + "\n"

    def markdown(self) -> str:
        out = [
            f"Budget {self.budget} env steps per run, {self.seeds} seeds per row (same seeds for every objective). "
            f"Final return: mean return of episodes ending in the last {FINAL_FRACTION:.0%} of the budget. "
            f"Steps to threshold {self.threshold:g}: first step where the mean of the last 20 episode returns "
            "reaches it (never reached = the full budget). Mean ± 95% CI over seeds.",
            "",
            "| variant | objective | lr | clip ε | final return | steps to threshold | reached |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in self.rows:
            clip = f"{r.clip_coef:g}" if r.clip_coef is not None else "–"
            out.append(
                f"| {r.variant} | {r.objective} | {r.lr:g} | {clip} | {r.final.mean:.1f} ± {r.final.half_width:.1f} "
                f"| {r.steps_to_threshold.mean:.0f} ± {r.steps_to_threshold.half_width:.0f} | {r.reached}/{len(r.finals)} |"
            )
        names = sorted({r.objective for r in self.rows})
        out += ["", "Paired t-tests of final return over all (variant, seed) pairs:", ""]
        for a, b in itertools.combinations(names, 2):
            t, p, n = self.paired(a, b)
            out.append(f"- {a} − {b}: t = {t:.2f}, p = {p:.3g} (n = {n})")
        out += ["", "Variants (multipliers of the default physical parameters):", ""]
        for name, mult in self.variants.items():
            out.append(f"- {name}: " + ", ".join(f"{k} × {v:.2f}" for k, v in mult.items()))
        out += ["", "Selection on meta-train variants (mean final return per setting):", ""]
        for name, scores in self.selection.items():
            out.append(f"- {name}: " + ", ".join(f"{k}: {v:.1f}" for k, v in scores.items()))
        return "\n".join(out) + "\n"


Progress = Callable[[str], None]


def _candidates(
    task: RLTaskConfig, lr_grid: tuple[float, ...], learned: dict[str, LearnedDrift]
) -> dict[str, list[tuple[ObjectiveSpec, float]]]:
    grid: dict[str, list[tuple[ObjectiveSpec, float]]] = {
        "ppo_clip": [
            (ObjectiveSpec("ppo_clip", "ppo_clip", clip), lr)
            for clip in task.clip_grid
            for lr in lr_grid
        ],
        "dpo": [(ObjectiveSpec("dpo", "dpo"), lr) for lr in lr_grid],
    }
    for name, drift in learned.items():
        grid[name] = [(ObjectiveSpec.learned(name, drift), lr) for lr in lr_grid]
    return grid


def run_rl_benchmark(
    config: RunConfig,
    learned: dict[str, LearnedDrift],
    progress: Progress | None = None,
) -> RLBenchmarkResult:
    """Select each objective's settings on meta-train variants, then train every objective on
    the held-out rows with every seed at the same budget (see the module docstring)."""
    task = config.task
    if not isinstance(task, RLTaskConfig):
        raise ValueError(f"task.family: expected an RL family, got {task.family!r}")
    say = progress or (lambda _: None)
    family = EnvFamily(task)
    pool = WorkerPool(task.workers)
    try:
        grid = _candidates(task, config.evaluation.lr_grid, learned)
        tune_tasks = family.tasks(Split.META_TRAIN, task.tune_tasks)
        jobs = [
            BenchJob(
                spec,
                variant,
                replace(task.ppo, lr=lr),
                task.bench_total_steps,
                _TUNE_SEED + j,
                task.threshold,
            )
            for options in grid.values()
            for spec, lr in options
            for j, variant in enumerate(tune_tasks)
        ]
        say(f"selecting settings: {len(jobs)} runs on {len(tune_tasks)} meta-train variants")
        scores = [final for final, _ in pool.map(run_bench_job, jobs)]
        chosen, selection = _select(grid, scores, len(tune_tasks))
        rows_tasks = [family.default_task(), *family.tasks(Split.META_TEST, task.bench_variants)]
        eval_jobs = [
            BenchJob(
                spec,
                variant,
                replace(task.ppo, lr=lr),
                task.bench_total_steps,
                _TEST_SEED + s,
                task.threshold,
            )
            for spec, lr in chosen.values()
            for variant in rows_tasks
            for s in range(task.bench_seeds)
        ]
        say(f"evaluating: {len(eval_jobs)} runs on {len(rows_tasks)} held-out rows")
        results = pool.map(run_bench_job, eval_jobs)
    finally:
        pool.close()
    rows, i = [], 0
    for name, (spec, lr) in chosen.items():
        for variant in rows_tasks:
            chunk = results[i : i + task.bench_seeds]
            i += task.bench_seeds
            clip = spec.clip_coef if spec.kind == "ppo_clip" else None
            rows.append(
                RLRow(
                    name,
                    variant.name,
                    lr,
                    clip,
                    [f for f, _ in chunk],
                    [s for _, s in chunk],
                    task.bench_total_steps,
                )
            )
    variants = {t.name: t.multipliers() for t in rows_tasks}
    return RLBenchmarkResult(
        rows, selection, variants, task.bench_total_steps, task.threshold, task.bench_seeds
    )


def _select(
    grid: dict[str, list[tuple[ObjectiveSpec, float]]], scores: list[float], per: int
) -> tuple[dict[str, tuple[ObjectiveSpec, float]], dict[str, dict[str, float]]]:
    chosen: dict[str, tuple[ObjectiveSpec, float]] = {}
    selection: dict[str, dict[str, float]] = {}
    i = 0
    for name, options in grid.items():
        table: dict[str, float] = {}
        best, best_score = options[0], -math.inf
        for spec, lr in options:
            values = [v for v in scores[i : i + per] if math.isfinite(v)]
            i += per
            score = sum(values) / len(values) if values else -math.inf
            label = f"lr={lr:g}" + (f" ε={spec.clip_coef:g}" if spec.kind == "ppo_clip" else "")
            table[label] = score
            if score > best_score:
                best, best_score = (spec, lr), score
        chosen[name] = best
        selection[name] = table
    return chosen, selection
