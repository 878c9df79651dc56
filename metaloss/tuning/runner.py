"""One call to tune a target: open (or resume) the study, run this worker's share of the budget,
and write the outputs. ``metaloss tune`` is a thin command-line wrapper around :func:`tune`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.storages import BaseStorage

from metaloss.config import RunConfig
from metaloss.tasks import TaskFamily
from metaloss.tuning.objective import make_objective
from metaloss.tuning.report import HParamsCallback, write_best, write_trials
from metaloss.tuning.space import check_target
from metaloss.tuning.storage import corrupt_journal, journal_path, make_storage
from metaloss.tuning.study import TrialCallback, open_study, run_worker, study_name

__all__ = ["TuneResult", "tune"]


@dataclass(frozen=True)
class TuneResult:
    """What a worker did and wrote. ``best_value`` is ``None`` while no trial has completed."""

    study: optuna.Study
    target: str
    ran: int
    out_dir: Path
    best_config: Path | None
    best_value: float | None
    trials_md: Path
    trials_csv: Path


def tune(
    config: RunConfig,
    target: str,
    trials: int,
    out_dir: Path,
    *,
    storage: BaseStorage | None = None,
    name: str | None = None,
    family: TaskFamily | None = None,
    callbacks: Sequence[TrialCallback] = (),
) -> TuneResult:
    """Tune ``target`` (``learned`` or a baseline) over ``config.tune.space`` until the study
    holds ``trials`` trials, then write ``best.yaml``, ``best.json``, ``trials.md``,
    ``trials.csv`` and TensorBoard hparams to ``out_dir/<target>/``.

    Args:
        config: the run config whose ``tune`` section holds the search space.
        target: ``learned`` or a baseline name.
        trials: the study's trial budget (shared by all its workers; resumes continue it).
        out_dir: the tuning folder (also holds the embedded ``study.journal``).
        storage: the study's storage (:func:`~metaloss.tuning.storage.make_storage`: a
            SQLAlchemy URL such as ``postgresql://...`` or the journal file, and the heartbeat
            settings); default: the journal file in ``out_dir`` with the default heartbeat.
        name: the study name (default ``<config.name>-<target>``).
        family: the task family (default: the one ``config.task`` describes).
        callbacks: more ``callback(study, trial)`` hooks called after each trial (e.g. a
            progress bar).

    Example:
        >>> config = load_config("configs/sine_tune.yaml")
        >>> result = tune(config, "mse", 20, Path("tuning/sine"))  # doctest: +SKIP
    """
    check_target(target)
    objective = make_objective(config, target, family)
    if storage is None:
        storage = make_storage(None, out_dir)
    try:
        study = open_study(storage, study_name(config, target, name), target, config.tune)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:  # not a journal Optuna wrote
        raise corrupt_journal(journal_path(out_dir), error) from None
    target_dir = Path(out_dir) / target
    callbacks = [HParamsCallback(target_dir / "tensorboard", target), *callbacks]
    ran = run_worker(study, objective, trials, callbacks, poll_seconds=0.5)
    md, csv_path = write_trials(study, target_dir, config.evaluation.min_pairs)
    best = write_best(study, config, target, target_dir)
    best_value = study.best_value if best is not None else None
    return TuneResult(study, target, ran, target_dir, best, best_value, md, csv_path)
