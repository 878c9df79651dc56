"""``metaloss tune`` on an RL config: PPO's settings, the baselines' own parameters and the
learned drift's meta-training, scored on meta-validation variants only.

The search space (``tune.space``) may name ``task.ppo.<setting>`` (the PPO inner loop: ``lr``,
``ent_coef``, ``epochs``, ... — applied to every target), ``ppo_clip.clip_coef`` and
``dpo.alpha`` / ``dpo.beta`` (that baseline only), and ``outer.*`` / ``loss.*`` (the learned
drift only), with the shared rules of :mod:`metaloss.tuning.space` for everything but
``task.ppo.*``. Objectives (lower is better, like every tuning objective):

* ``ppo_clip`` or ``dpo``: minus the mean final return of fresh agents trained with the trial's
  settings for ``task.bench_total_steps`` steps on the ``outer.val_tasks`` fixed
  meta-validation variants (one batched population; the benchmark's budget and final-return
  window);
* ``learned``: :func:`metaloss.tuning.objective.learned_objective` — meta-training on the shared
  trainer with :class:`~metaloss.rl.problem.RLProblem`, its best meta-validation value.

:func:`metaloss.tuning.objective.make_objective` calls :func:`resolve_rl_space` and
:func:`rl_baseline_objective` for RL configs; everything else is the shared tuning machinery.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import replace

import optuna

from metaloss.config import ConfigError, RunConfig, SearchParam
from metaloss.rl.benchmark import FINAL_FRACTION
from metaloss.rl.config import PPOConfig
from metaloss.rl.evaluate import LocalEvaluator
from metaloss.rl.objectives import ClipObjective, DPOObjective, RunObjective
from metaloss.rl.population import RunSpec
from metaloss.rl.problem import RLProblem, rl_task_config
from metaloss.tuning.pruning import prune_as_diverged
from metaloss.tuning.space import LEARNED, Dimension, Kind, TrialSettings, resolve_space

__all__ = ["RL_TARGETS", "resolve_rl_space", "rl_baseline_objective"]

RL_TARGETS = (LEARNED, "ppo_clip", "dpo")
_PPO = "task.ppo."


def _ppo_dimension(index: int, entry: SearchParam) -> Dimension:
    path = f"tune.space[{index}]"
    name = entry.param[len(_PPO) :]
    hints = typing.get_type_hints(PPOConfig)
    fields = [f.name for f in dataclasses.fields(PPOConfig)]
    if name not in fields:
        raise ConfigError(
            f"{path}.param: expected one of {', '.join(_PPO + f for f in fields)}, got {entry.param!r}"
        )
    kinds: dict[object, Kind] = {int: "int", float: "float", bool: "categorical"}
    kind = kinds.get(hints[name])
    if kind is None:
        raise ConfigError(
            f"{path}.param: {entry.param!r} is a list setting; use choices of a scalar"
        )
    if entry.choices or kind == "categorical":
        if not entry.choices:
            raise ConfigError(
                f"{path}.choices: expected a list of values for {entry.param!r}, got none"
            )
        return Dimension(
            entry.param,
            "categorical",
            None,
            None,
            False,
            entry.choices,
            entry.targets or RL_TARGETS,
        )
    if entry.low is None or entry.high is None or not entry.low < entry.high:
        raise ConfigError(f"{path}: expected low < high (a range) or choices for {entry.param!r}")
    if entry.log and entry.low <= 0:
        raise ConfigError(f"{path}.low: expected a value > 0 for a log range, got {entry.low:g}")
    return Dimension(
        entry.param, kind, entry.low, entry.high, entry.log, (), entry.targets or RL_TARGETS
    )  # type: ignore[arg-type]


def resolve_rl_space(config: RunConfig, target: str) -> list[Dimension]:
    """The checked dimensions of ``config.tune.space`` that apply to ``target`` (one-line
    :class:`ConfigError` naming the entry otherwise)."""
    if target not in RL_TARGETS:
        raise ConfigError(
            f"--target: expected one of {', '.join(RL_TARGETS)} for an RL config, got {target!r}"
        )
    space = config.tune.space
    ppo = [_ppo_dimension(i, e) for i, e in enumerate(space) if e.param.startswith(_PPO)]
    rest = tuple(e for e in space if not e.param.startswith(_PPO))
    shared: list[Dimension] = []
    if rest:
        subset = replace(config, tune=replace(config.tune, space=rest))
        given = {e.param for e in rest}  # not the supervised defaults (inner.lr is not RL's)
        shared = [d for d in resolve_space(subset, target) if d.param in given]
    chosen = [d for d in ppo if target in d.targets] + shared
    if not chosen:
        raise ConfigError(
            f"tune.space: expected at least one entry for target {target!r}, got none"
        )
    return chosen


def _baseline(target: str, params: dict[str, float]) -> RunObjective:
    if target == "ppo_clip":
        return ClipObjective(params.get("clip_coef", 0.2))
    return DPOObjective(params.get("alpha", 2.0), params.get("beta", 0.6))


def _baseline_value(config: RunConfig, objective: RunObjective) -> float:
    task = rl_task_config(config)
    batch = RLProblem(config).validation_batch()
    runs = [RunSpec(t, s, objective) for t, s in zip(batch.tasks, batch.seeds, strict=True)]
    results = LocalEvaluator()(runs, task.ppo, task.bench_total_steps)
    finals = [r.final_return(FINAL_FRACTION) for r in results]
    return -sum(finals) / len(finals)


def rl_baseline_objective(trial: optuna.Trial, settings: TrialSettings, target: str) -> float:
    """Minus the mean final return of ``target`` (``ppo_clip`` or ``dpo``) with the trial's
    settings on the meta-validation variants (pruned as diverged if it is not finite)."""
    config = settings.config
    RLProblem(config)  # refuses settings RL does not use
    value = _baseline_value(config, _baseline(target, settings.baseline_params))
    if not math.isfinite(value):
        raise prune_as_diverged(trial, "no finite return", config.tune.penalty, 0)
    return value
