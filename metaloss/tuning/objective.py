"""The objective of a tuning trial: the meta-validation metric, never a test split.

Both kinds of target are scored on the same quantity: the mean ``outer_valid`` objective after K
inner steps on the fixed meta-validation tasks and learner initialisations that
:meth:`metaloss.outer.MetaTrainer.validation_set` defines.

* A baseline (``mse``, ``l1``, ``huber``, ...) trains fresh learners on those tasks with the
  trial's inner learning rate and its own parameters (:func:`metaloss.evaluation.run_loss`).
* ``learned`` meta-trains a loss with the trial's settings (:class:`MetaTrainer`); every
  validation is reported to the trial, so the median pruner (Optuna's ``MedianPruner``) can stop
  unpromising trials early, and the objective is the best validation (as early stopping keeps).

A trial that diverges (NaN/Inf meta-gradients, a non-finite validation, a baseline run that
blows up) or whose settings are an invalid combination is *pruned* with a finite penalty as its
last reported value, and the reason is stored in the trial's ``diverged`` user attribute:
returning NaN would make TPE keep sampling the bad region.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import optuna
import torch

from metaloss.config import ConfigError, RunConfig
from metaloss.evaluation import EvalSet, eval_set, run_loss
from metaloss.losses import baseline
from metaloss.losses.module import LossModule
from metaloss.outer import Callback, MetaTrainer, NonFiniteError, ValidationRecord
from metaloss.seeds import VALID_INIT_SEED
from metaloss.tasks import Split, TaskFamily, make_family
from metaloss.tuning.pruning import DIVERGED_ATTR, prune_as_diverged
from metaloss.tuning.space import (
    LEARNED,
    Dimension,
    TrialSettings,
    apply_values,
    resolve_space,
    suggest,
)

__all__ = [
    "DIVERGED_ATTR",
    "PER_TASK_ATTR",
    "PRUNED_ATTR",
    "Diverged",
    "baseline_objective",
    "learned_objective",
    "make_objective",
    "search_space",
]

PRUNED_ATTR = "pruned"
"""User attribute holding why the median pruner stopped a trial."""
PER_TASK_ATTR = "per_task"
"""User attribute of a complete trial: its objective on each meta-validation task (the value is
their mean), so that reports can give a CI and pair trials task by task."""

Objective = Callable[[optuna.Trial], float]


class Diverged(Exception):
    """A trial produced non-finite values; the message says where."""


class _ReportValidations(Callback):
    """Report each meta-validation to the trial and ask the pruner whether to stop (not at the
    last meta-step: a finished trial is complete, whatever its rank)."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial
        self.last_step = -1

    def on_validation(self, trainer: MetaTrainer, record: ValidationRecord) -> None:
        if not math.isfinite(record.value):
            raise Diverged(f"meta-validation objective {record.value} at meta-step {record.step}")
        self.trial.report(record.value, record.step)
        self.last_step = record.step
        if record.step < trainer.config.outer.steps and self.trial.should_prune():
            message = f"median pruner at meta-step {record.step} (value {record.value:.4g})"
            self.trial.set_user_attr(PRUNED_ATTR, message)
            raise optuna.TrialPruned(message)


def validation_set(config: RunConfig, family: TaskFamily) -> EvalSet:
    """The meta-validation tasks and initialisations meta-training validates on (the same as
    :meth:`MetaTrainer.validation_set`, without building a trainer)."""
    return eval_set(family, config, Split.META_VALID, config.outer.val_tasks, 1, VALID_INIT_SEED)


def learned_objective(trial: optuna.Trial, config: RunConfig, family: TaskFamily | None) -> float:
    """Meta-train a loss with ``config``; the best meta-validation objective (pruned early by
    the trial's pruner, or as diverged)."""
    reporter = _ReportValidations(trial)
    trainer = MetaTrainer(config, out_dir=None, callbacks=[reporter], family=family)
    penalty = config.tune.penalty
    try:
        result = trainer.train()
    except (NonFiniteError, Diverged) as error:
        raise prune_as_diverged(
            trial, str(error), penalty, max(trainer.step, reporter.last_step + 1)
        ) from None
    if not math.isfinite(result.best_value):
        raise prune_as_diverged(
            trial, "no finite meta-validation objective", penalty, trainer.step + 1
        )
    trial.set_user_attr("best_step", result.best_step)
    trial.set_user_attr("skipped_steps", result.skipped_steps)
    per_task = None if family is None else _learned_per_task(result.loss, config, family)
    if per_task is not None:
        trial.set_user_attr(PER_TASK_ATTR, per_task)
    return result.best_value


def _learned_per_task(
    loss: LossModule, config: RunConfig, family: TaskFamily
) -> list[float] | None:
    """The best loss's objective on each meta-validation task (as meta-training validates it,
    log-transformed with ``outer.objective_transform: log``); ``None`` with several validation
    conditions (``outer.valid_variants``), whose tasks do not pair one to one."""
    if config.outer.valid_variants:
        return None
    data = validation_set(config, family)
    run = run_loss("learned", loss, family, config, data, config.inner.lr, record="outer_valid")
    final = run.final.double()
    if config.outer.objective_transform == "log":
        final = final.clamp_min(1e-12).log()
    return [float(v) for v in final]


def baseline_objective(
    trial: optuna.Trial, settings: TrialSettings, name: str, family: TaskFamily
) -> float:
    """Train fresh learners on the meta-validation tasks with baseline ``name``; the mean final
    ``outer_valid`` objective (pruned as diverged if any run blew up)."""
    config = settings.config
    loss_fn = baseline(name, **settings.baseline_params)
    run = run_loss(
        name,
        loss_fn,
        family,
        config,
        validation_set(config, family),
        config.inner.lr,
        record="outer_valid",
    )
    bad = run.diverged | ~torch.isfinite(run.final)
    if bool(bad.any()):
        reason = (
            f"{int(bad.sum())} of {bad.numel()} validation runs diverged "
            f"at inner.lr={config.inner.lr:.3g}"
        )
        raise prune_as_diverged(trial, reason, config.tune.penalty, 0)
    trial.set_user_attr(PER_TASK_ATTR, [float(v) for v in run.final])
    return float(run.final.mean())


def search_space(config: RunConfig, target: str) -> list[Dimension]:
    """The checked search space of ``target``: :func:`~metaloss.tuning.space.resolve_space`, or
    for an RL config :func:`metaloss.rl.tune.resolve_rl_space` (PPO's settings)."""
    from metaloss.rl.config import is_rl_config

    if is_rl_config(config.task):
        from metaloss.rl.tune import resolve_rl_space

        return resolve_rl_space(config, target)
    return resolve_space(config, target)


def make_objective(config: RunConfig, target: str, family: TaskFamily | None = None) -> Objective:
    """The Optuna objective tuning ``target`` over ``config.tune.space`` (checked here, so a bad
    search space fails before the first trial). RL configs tune PPO's settings and score their
    baselines with :mod:`metaloss.rl.tune`."""
    from metaloss.rl.config import is_rl_config

    dims = search_space(config, target)
    run_baseline: Callable[[optuna.Trial, TrialSettings, str], float]
    if is_rl_config(config.task):
        from metaloss.rl.tune import rl_baseline_objective

        run_baseline = rl_baseline_objective
    else:
        family = family or make_family(config.task)

        def run_baseline(trial: optuna.Trial, settings: TrialSettings, name: str) -> float:
            assert family is not None
            return baseline_objective(trial, settings, name, family)

    def objective(trial: optuna.Trial) -> float:
        values = suggest(trial, dims)
        try:
            settings = apply_values(config, values)
        except ConfigError as error:
            raise prune_as_diverged(
                trial, f"invalid settings: {error}", config.tune.penalty, 0
            ) from None
        if target == LEARNED:
            return learned_objective(trial, settings.config, family)
        return run_baseline(trial, settings, target)

    return objective
