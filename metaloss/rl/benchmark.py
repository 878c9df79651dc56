"""The RL benchmark: tuned PPO clip, DPO and learned drifts on held-out environment variants.

Every objective trains fresh agents with the *same* population-PPO loop and the same budget
(``task.bench_total_steps``). Rows: the unmodified environment and ``evaluation.test_tasks``
held-out meta-test variants (multipliers from the band of ``task.test_scale`` outside
``task.train_scale``). For every objective, the agent's learning rate (``evaluation.lr_grid``)
and the baseline's own parameter (``benchmark.baselines``: PPO's ``clip_coef`` values) are
selected on ``evaluation.grid_tasks`` meta-train variants (one seed each), by mean final return;
the held-out rows are never read while selecting. Each row then trains every objective with
``evaluation.seeds`` seeds, the same seeds for every objective (pairs share initial agents and
environment resets).

Results are :class:`metaloss.evaluation.benchmark.BenchmarkResult` entries, so the statistics,
comparisons and writers are the shared ones (:mod:`metaloss.evaluation.report`): per row, the
"tasks" of an entry are its seeds; the main metric is the final return (mean return of the
episodes ending in the last 10% of the budget; higher is better), the extra metric
``steps to threshold`` is the first step at which the mean of the last 20 episode returns reaches
``task.threshold`` (the full budget if never). :func:`pooled_comparisons` adds paired
comparisons (t and Wilcoxon tests, win rate, verdict) over all held-out (variant, seed) pairs.
All runs of a phase (selection, test) train as one population, in this process or across a
``torch.distributed`` group.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from metaloss.config import ConfigError, RunConfig
from metaloss.evaluation.benchmark import BenchmarkResult, Entry, Selection
from metaloss.evaluation.stats import PairedComparison, paired_comparison
from metaloss.rl.config import RLTaskConfig, check_rl_settings
from metaloss.rl.envs import EnvFamily, EnvTask
from metaloss.rl.evaluate import Evaluator, LocalEvaluator
from metaloss.rl.objectives import ClipObjective, DPOObjective, LearnedDrift, RunObjective
from metaloss.rl.population import RunSpec
from metaloss.rl.ppo import PPORun
from metaloss.tasks.base import Split

__all__ = [
    "FINAL_FRACTION",
    "STEPS_METRIC",
    "PolicyContender",
    "Pooled",
    "policy_contenders",
    "pooled_comparisons",
    "return_curve",
    "run_rl_benchmark",
    "select_setting",
]

FINAL_FRACTION = 0.1
STEPS_METRIC = "steps to threshold"
CURVE_POINTS = 20
_TUNE_SEED = 20_000
_TEST_SEED = 10_000

Progress = Callable[[str], None]


@dataclass(frozen=True)
class PolicyContender:
    """A policy objective entered in the benchmark: ``make(value)`` gives the run objective for
    a value of its parameter (``values``: selected on meta-train variants; empty: none)."""

    name: str
    role: str
    make: Callable[[float | None], RunObjective]
    param: str = ""
    values: tuple[float, ...] = ()

    def settings(self, lr_grid: Sequence[float]) -> list[tuple[float | None, float]]:
        """Every ``(value, lr)`` to select from."""
        return [(v, lr) for v in (self.values or (None,)) for lr in lr_grid]

    def label(self, value: float | None, lr: float) -> str:
        return ("" if value is None else f"{self.param}={value:g} ") + f"lr={lr:g}"


def _constant(drift: LearnedDrift) -> Callable[[float | None], RunObjective]:
    return lambda _value: drift


def _clip(value: float | None) -> RunObjective:
    return ClipObjective(0.2 if value is None else value)


def policy_contenders(config: RunConfig, learned: dict[str, LearnedDrift]) -> list[PolicyContender]:
    """The learned drifts, then ``benchmark.baselines`` (``ppo_clip``, optionally with
    ``param: clip_coef`` values, and ``dpo``), refused in one line if it names anything else."""
    out = [PolicyContender(name, "learned", _constant(drift)) for name, drift in learned.items()]
    for i, spec in enumerate(config.benchmark.baselines):
        where = f"benchmark.baselines[{i}]"
        if spec.name == "ppo_clip" and spec.param in ("", "clip_coef"):
            for j, value in enumerate(spec.values):
                if not 0 < value < 1:
                    raise ConfigError(
                        f"{where}.values[{j}]: expected a clip epsilon 0 < clip_coef < 1, "
                        f"got {value:g}"
                    )
            out.append(PolicyContender("ppo_clip", "baseline", _clip, spec.param, spec.values))
        elif spec.name == "dpo" and not spec.param:
            out.append(PolicyContender("dpo", "baseline", lambda _v: DPOObjective()))
        elif spec.name in ("ppo_clip", "dpo"):
            raise ConfigError(
                f"{where}.param: expected clip_coef for ppo_clip and none for dpo, got {spec.param!r}"
            )
        else:
            raise ConfigError(
                f"{where}.name: expected ppo_clip or dpo for an RL family, got {spec.name!r}"
            )
    names = [c.name for c in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"benchmark.baselines: expected distinct objectives, got {names}")
    return out


def select_setting(scores: dict[tuple[float | None, float], float]) -> tuple[float | None, float]:
    """The ``(value, lr)`` with the highest mean final return (non-finite scores lose; ties: the
    first in the grid)."""
    finite = {k: v for k, v in scores.items() if v == v and abs(v) != float("inf")}
    if not finite:
        return next(iter(scores))
    return max(finite, key=lambda k: finite[k])


def return_curve(run: PPORun, budget: int, points: int = CURVE_POINTS) -> Tensor:
    """Mean return of the episodes ending in each of ``points`` equal parts of the budget (the
    previous part's value where none ended; NaN before the first episode)."""
    steps = torch.tensor(run.episode_steps, dtype=torch.float64)
    returns = torch.tensor(run.episode_returns, dtype=torch.float64)
    edges = torch.linspace(0, budget, points + 1, dtype=torch.float64)
    out = torch.full((points,), float("nan"), dtype=torch.float64)
    for i in range(points):
        inside = (steps > edges[i]) & (steps <= edges[i + 1])
        if bool(inside.any()):
            out[i] = returns[inside].mean()
        elif i > 0:
            out[i] = out[i - 1]
    return out


def _steps(run: PPORun, threshold: float, budget: int) -> float:
    reached = run.steps_to_threshold(threshold)
    return float(budget if reached is None else reached)


def _train(
    evaluator: Evaluator,
    config: RunConfig,
    jobs: list[tuple[EnvTask, int, RunObjective, float]],
) -> list[PPORun]:
    task = config.task
    assert isinstance(task, RLTaskConfig)
    runs = [RunSpec(t, seed, objective, lr) for t, seed, objective, lr in jobs]
    return evaluator(runs, task.ppo, task.bench_total_steps)


def _select_all(
    contenders: Sequence[PolicyContender],
    config: RunConfig,
    family: EnvFamily,
    evaluator: Evaluator,
) -> list[Selection]:
    grid = config.evaluation.lr_grid
    variants = family.tasks(Split.META_TRAIN, config.evaluation.grid_tasks)
    jobs, keys = [], []
    for c in contenders:
        for value, lr in c.settings(grid):
            keys.append((c, value, lr))
            jobs += [(v, _TUNE_SEED + j, c.make(value), lr) for j, v in enumerate(variants)]
    results = _train(evaluator, config, jobs)
    finals = [r.final_return(FINAL_FRACTION) for r in results]
    selections = []
    for c in contenders:
        scores = {}
        for i, (owner, value, lr) in enumerate(keys):
            if owner is c:
                chunk = finals[i * len(variants) : (i + 1) * len(variants)]
                scores[(value, lr)] = sum(chunk) / len(chunk)
        value, lr = select_setting(scores)
        labels = {c.label(v, r): s for (v, r), s in scores.items()}
        selections.append(Selection(lr, value, labels))
    return selections


def run_rl_benchmark(
    config: RunConfig,
    learned: dict[str, LearnedDrift],
    evaluator: Evaluator | None = None,
    progress: Progress | None = None,
) -> BenchmarkResult:
    """Select every objective's settings on meta-train variants, then train every objective on
    every held-out row with every seed (see the module docstring); deterministic for a config."""
    check_rl_settings(config)
    task = config.task
    assert isinstance(task, RLTaskConfig)
    evaluator = evaluator or LocalEvaluator()
    say = progress or (lambda _: None)
    family = EnvFamily(task)
    contenders = policy_contenders(config, learned)
    ev = config.evaluation
    say(f"selecting on {ev.grid_tasks} meta-train variants")
    selections = _select_all(contenders, config, family, evaluator)
    rows = [family.default_task(), *family.tasks(Split.META_TEST, ev.test_tasks, ev.test_start)]
    jobs = [
        (row, _TEST_SEED + s, c.make(chosen.value), chosen.lr)
        for c, chosen in zip(contenders, selections, strict=True)
        for row in rows
        for s in range(ev.seeds)
    ]
    say(f"testing: {len(jobs)} runs on {len(rows)} rows")
    results = _train(evaluator, config, jobs)
    budget = task.bench_total_steps
    entries, i = [], 0
    for c, chosen in zip(contenders, selections, strict=True):
        for row in rows:
            chunk = results[i : i + ev.seeds]
            i += ev.seeds
            finals = torch.tensor([r.final_return(FINAL_FRACTION) for r in chunk])
            steps = torch.tensor([_steps(r, task.threshold, budget) for r in chunk])
            curves = torch.stack([return_curve(r, budget) for r in chunk])
            entries.append(
                Entry(
                    row.name,
                    c.name,
                    "learned" if c.role == "learned" else "baseline",
                    chosen,
                    c.param,
                    finals,
                    curves.nanmean(0).float(),
                    {},  # return curves are not diagnosed: the diagnoses judge loss curves
                    sum(r.skipped_updates > 0 for r in chunk),
                    {STEPS_METRIC: steps},
                )
            )
    result = BenchmarkResult(
        entries,
        [r.name for r in rows],
        "final return",
        ev.seeds,
        1,
        {r.name: budget for r in rows},
        extra={
            "variants": {r.name: r.multipliers() for r in rows},
            "budget_env_steps": budget,
            "threshold": task.threshold,
            "final_fraction": FINAL_FRACTION,
        },
        metrics={STEPS_METRIC: False},
        higher_is_better=True,
    )
    result.extra["pooled"] = [p.to_dict() for p in pooled_comparisons(result)]
    return result


@dataclass(frozen=True)
class Pooled:
    """A learned objective against a baseline, paired over every (variant, seed) of ``rows``."""

    learned: str
    baseline: str
    rows: str
    paired: PairedComparison

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (non-finite floats are left to the caller)."""
        return {
            "learned": self.learned,
            "baseline": self.baseline,
            "rows": self.rows,
            **self.paired.to_dict(),
        }


def pooled_comparisons(result: BenchmarkResult) -> list[Pooled]:
    """Learned minus each baseline in final return, paired over all (row, seed) pairs of the
    held-out variants (every row but ``default``) and of all rows: paired t and Wilcoxon tests,
    win rate and verdict of :func:`metaloss.evaluation.stats.paired_comparison`."""
    out = []
    learned = [e.name for e in result.entries if e.role == "learned" and e.row == result.rows[0]]
    baselines = [e.name for e in result.entries if e.role == "baseline" and e.row == result.rows[0]]
    scopes = {"held-out variants": result.rows[1:], "all rows": result.rows}
    for a in learned:
        for b in baselines:
            for scope, rows in scopes.items():
                if not rows:
                    continue
                xs = torch.cat([result.entry(r, a).per_task for r in rows]).double()
                ys = torch.cat([result.entry(r, b).per_task for r in rows]).double()
                paired = paired_comparison(
                    xs, ys, min_pairs=result.min_pairs, higher_is_better=result.higher_is_better
                )
                out.append(Pooled(a, b, scope, paired))
    return out
