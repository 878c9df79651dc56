"""Hyper-parameter tuning with Optuna: the same trial budget for learned and hand-designed losses,
so that every comparison is tuned against tuned.

The search space lives in the run config (``tune.space``, see :mod:`metaloss.tuning.space`);
the objective is the meta-validation metric (:mod:`metaloss.tuning.objective`); studies live in
an embedded journal file or any SQLAlchemy database (:mod:`metaloss.tuning.storage`); any
number of workers share a study's exact budget (:mod:`metaloss.tuning.study`).

Example:
    >>> from metaloss.tuning import tune
    >>> config = load_config("configs/sine_tune.yaml")
    >>> result = tune(config, "huber", 20, Path("tuning/sine"))  # doctest: +SKIP
    >>> result.best_config   # tuning/sine/huber/best.yaml, accepted by `metaloss train`
"""

from metaloss.tuning.objective import DIVERGED_ATTR, PRUNED_ATTR, make_objective
from metaloss.tuning.report import HParamsCallback, write_best, write_trials
from metaloss.tuning.runner import TuneResult, tune
from metaloss.tuning.space import (
    LEARNED,
    Dimension,
    apply_values,
    check_target,
    known_targets,
    resolve_space,
)
from metaloss.tuning.storage import HeartbeatJournalStorage, make_storage
from metaloss.tuning.study import (
    SURPLUS_ATTR,
    TrialSeededTPE,
    budget_left,
    open_study,
    run_worker,
    study_name,
)

__all__ = [
    "DIVERGED_ATTR",
    "LEARNED",
    "PRUNED_ATTR",
    "SURPLUS_ATTR",
    "Dimension",
    "HParamsCallback",
    "HeartbeatJournalStorage",
    "TrialSeededTPE",
    "TuneResult",
    "apply_values",
    "budget_left",
    "check_target",
    "known_targets",
    "make_objective",
    "make_storage",
    "open_study",
    "resolve_space",
    "run_worker",
    "study_name",
    "tune",
    "write_best",
    "write_trials",
]
