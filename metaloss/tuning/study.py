"""Studies and workers: a seeded TPE sampler, the median pruner, and a worker loop that shares
an exact trial budget with any number of other workers on the same study.

``--trials N`` is the budget of the *study*, not of one process: every worker runs trials
until N trials are finished or running, so a killed run resumed with the same command continues
the count, and several workers together run exactly N trials. A worker that takes a trial
beyond the budget (two workers asking at the same moment) marks it failed with the
``surplus`` user attribute instead of running it; trials of a dead worker (no heartbeat) are
failed and re-queued with their parameters, so none is lost.

References:
    Bergstra et al., "Algorithms for Hyper-Parameter Optimization", NeurIPS 2011 (TPE).
    Akiba et al., "Optuna: A Next-generation Hyperparameter Optimization Framework", KDD 2019.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.samplers import BaseSampler, TPESampler
from optuna.storages import BaseStorage, fail_stale_trials
from optuna.trial import FrozenTrial, TrialState

from metaloss.config import RunConfig, TuneConfig

__all__ = [
    "SURPLUS_ATTR",
    "BudgetReached",
    "TrialSeededTPE",
    "budget_left",
    "check_study",
    "open_study",
    "run_worker",
    "study_name",
]

SURPLUS_ATTR = "surplus"
"""User attribute of a trial asked for beyond the study's budget (failed without running)."""

_COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)

Objective = Callable[[optuna.Trial], float]
TrialCallback = Callable[[optuna.Study, FrozenTrial], None]


class BudgetReached(Exception):
    """The study already holds its budget of trials."""


class TrialSeededTPE(BaseSampler):
    """TPE whose random state is re-seeded from ``seed`` and the trial number before each
    trial: a study run by one worker is reproducible, and workers sharing a study draw
    different startup trials instead of repeating each other's.

    Args:
        seed: the base seed (``tune.seed``).
        startup_trials: random trials before TPE starts modelling.
    """

    def __init__(self, seed: int, startup_trials: int) -> None:
        self.seed = seed
        self.startup_trials = startup_trials
        self._tpe = self._make(0)

    def _make(self, number: int) -> TPESampler:
        return TPESampler(seed=self.seed * 1_000_003 + number, n_startup_trials=self.startup_trials)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._tpe = self._make(trial.number)
        self._tpe.before_trial(study, trial)

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, Any]:
        return self._tpe.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, Any]
    ) -> dict[str, Any]:
        return self._tpe.sample_relative(study, trial, search_space)

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: Any
    ) -> Any:
        return self._tpe.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._tpe.after_trial(study, trial, state, values)


def study_name(config: RunConfig, target: str, name: str | None = None) -> str:
    """``name`` if given, else ``<config name>-<target>``."""
    return name or f"{config.name}-{target}"


def check_study(storage: BaseStorage, name: str, target: str) -> None:
    """Refuse, without writing anything, a study ``name`` that exists and tunes another target.

    Raises:
        ValueError: the study exists and tunes another target.
    """
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return
    existing = storage.get_study_user_attrs(study_id).get("target")
    if existing is not None and existing != target:
        raise ValueError(
            f"--study: study {name!r} tunes {existing!r}, not {target!r}; choose another --study"
        )


def open_study(storage: BaseStorage, name: str, target: str, tune: TuneConfig) -> optuna.Study:
    """Create or load the study ``name`` (minimising), tagged with its target.

    Raises:
        ValueError: the study exists and tunes another target.
    """
    check_study(storage, name, target)
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        direction="minimize",
        sampler=TrialSeededTPE(tune.seed, tune.startup_trials),
        pruner=optuna.pruners.MedianPruner(
            n_startup_trials=tune.startup_trials, n_warmup_steps=tune.warmup_steps
        ),
        load_if_exists=True,
    )
    existing = study.user_attrs.get("target")
    if existing is None:
        study.set_user_attr("target", target)
    elif existing != target:
        raise ValueError(
            f"--study: study {name!r} tunes {existing!r}, not {target!r}; choose another --study"
        )
    return study


def budget_left(study: optuna.Study, budget: int, before: int | None = None) -> int:
    """How many more trials the study may start (counting finished, running and queued trials,
    but not failed ones); with ``before``, counting only trials numbered below it."""
    trials = study.get_trials(deepcopy=False, states=_COUNTED)
    return budget - sum(1 for t in trials if before is None or t.number < before)


def _fail_stale(study: optuna.Study) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        fail_stale_trials(study)


def _guarded(objective: Objective, budget: int) -> Objective:
    def run(trial: optuna.Trial) -> float:
        if budget_left(trial.study, budget, before=trial.number) <= 0:
            trial.set_user_attr(SURPLUS_ATTR, True)
            raise BudgetReached(f"trial {trial.number} is beyond the budget of {budget}")
        return objective(trial)

    return run


def run_worker(
    study: optuna.Study,
    objective: Objective,
    budget: int,
    callbacks: Sequence[TrialCallback] = (),
    poll_seconds: float = 1.0,
) -> int:
    """Run trials until the study holds ``budget`` finished trials; return how many this worker
    ran. While other workers' trials are still running it waits, failing (and so re-queueing)
    those whose heartbeat stopped."""
    ran = 0
    guarded = _guarded(objective, budget)
    while True:
        _fail_stale(study)
        queued = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        if queued or budget_left(study, budget) > 0:
            try:
                study.optimize(guarded, n_trials=1, callbacks=list(callbacks), gc_after_trial=False)
            except BudgetReached:
                continue
            ran += 1
        elif study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            time.sleep(poll_seconds)
        else:
            return ran
