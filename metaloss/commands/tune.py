"""``metaloss tune``: tune a learned loss or a baseline with Optuna on meta-validation tasks.

Every target gets the same trial budget over its search space: the config's ``tune.space``
entries for it, and for what they do not mention a default space (the inner learning rate on a
log scale over ``evaluation.lr_grid``; ``outer.lr`` for the learned loss; each baseline's own
parameter, e.g. Huber's δ). The best configuration is written as a YAML file that
``metaloss train`` reads as is.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from metaloss.commands.arguments import (
    Command,
    argument,
    config_argument,
    out_option,
    overrides_option,
)
from metaloss.commands.common import create_folder, plan_folder
from metaloss.commands.progress import progress_bar
from metaloss.config import load_config
from metaloss.tuning import known_targets, tune
from metaloss.tuning.objective import search_space
from metaloss.tuning.storage import journal_path, make_storage
from metaloss.tuning.study import check_study, study_name

__all__ = ["TrialProgress", "dashboard_hint", "register", "run"]

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class TrialProgress:
    """A tqdm bar on stderr over a study's trial budget, used as an Optuna trial callback:
    after each trial it shows how many of the study's trials are finished (by any worker, and
    by an earlier run this one resumes), the best value so far and the last trial's state."""

    def __init__(self, budget: int, target: str) -> None:
        self.budget = budget
        self.bar = progress_bar(budget, f"tune {target}", "trial", mininterval=0.0)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        finished = study.get_trials(deepcopy=False, states=_FINISHED)
        self.bar.n = min(self.budget, len(finished))
        values = [
            t.value for t in finished if t.state == TrialState.COMPLETE and t.value is not None
        ]
        self.bar.set_postfix(
            best=f"{min(values):.4g}" if values else "-",
            last=f"#{trial.number} {trial.state.name.lower()}",
            refresh=False,
        )
        self.bar.refresh()

    def close(self) -> None:
        """Close the bar (once this worker is done)."""
        self.bar.close()


def dashboard_hint(storage: str) -> str:
    """How to browse the study: the optuna-dashboard command if it is installed, else how to
    install it (the ``dashboard`` extra)."""
    if importlib.util.find_spec("optuna_dashboard") is not None:
        return f"(view: optuna-dashboard {storage})"
    return f"(to browse it: pip install 'metaloss[dashboard]', then optuna-dashboard {storage})"


def run(args: argparse.Namespace) -> int:
    if args.trials < 1:
        raise ValueError(f"--trials: expected an integer >= 1, got {args.trials}")
    if args.heartbeat < 1:
        raise ValueError(f"--heartbeat: expected an integer >= 1, got {args.heartbeat}")
    config = load_config(args.config, args.overrides)
    space = search_space(config, args.target)  # checked before anything is written
    plan = plan_folder(args.out, config, "tune", shared=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = None
    if args.storage is not None:  # connect (and create the schema) before writing anything
        storage = make_storage(args.storage, Path("."), heartbeat_interval=args.heartbeat)
    elif plan.path is not None and os.path.lexists(journal_path(plan.path)):
        storage = make_storage(None, plan.path, heartbeat_interval=args.heartbeat)  # reads only
    if storage is not None:
        check_study(storage, study_name(config, args.target, args.study), args.target)
    out = create_folder(plan)
    where = args.storage or journal_path(out)
    if args.out is None:
        print(
            f"metaloss tune: new tuning folder {out} (more workers: --out {out})", file=sys.stderr
        )
    print(
        f"metaloss tune: {args.target} on {config.name}, study budget {args.trials} trials, "
        f"storage {where}\nsearch space:\n" + "\n".join(f"  {d.describe()}" for d in space),
        file=sys.stderr,
    )
    progress = TrialProgress(args.trials, args.target)
    try:
        if storage is None:  # a new tuning folder: its journal
            storage = make_storage(None, out, heartbeat_interval=args.heartbeat)
        result = tune(
            config,
            args.target,
            args.trials,
            out,
            storage=storage,
            name=args.study,
            callbacks=[progress],
        )
    finally:
        progress.close()
    print(result.trials_md.read_text())
    if result.best_config is None:
        print(f"no trial completed (this worker ran {result.ran}); see {result.trials_md}")
    else:
        print(
            f"best meta-validation objective {result.best_value:.6g} "
            f"(trial {result.study.best_trial.number}); "
            f"this worker ran {result.ran} trials"
        )
    print("outputs:")
    for path in (
        result.best_config,
        result.best_config and result.best_config.with_suffix(".json"),
        result.trials_md,
        result.trials_csv,
    ):
        if path is not None:
            print(f"  {path}")
    print(
        f"  {result.out_dir}/tensorboard/  "
        f"(view: tensorboard --logdir {result.out_dir}/tensorboard)"
    )
    print(f"  {where}  {dashboard_hint(str(where))}")
    return 0


register = Command(
    "tune",
    "tune a learned loss or a baseline with Optuna (same budget for each)",
    __doc__,
    run,
    (
        config_argument(
            "config file or shipped name, e.g. outliers (tune.space optional: every target "
            "has a default search space)"
        ),
        argument(
            "--target",
            default="learned",
            help=f"what to tune: {', '.join(known_targets())} (default: learned)",
        ),
        argument(
            "--trials",
            type=int,
            required=True,
            help="trial budget of the study (shared by all workers)",
        ),
        out_option(
            "tuning folder: study journal, best.yaml, tables; shared by targets and workers, so "
            "an earlier tuning folder is continued"
        ),
        argument(
            "--storage",
            default=None,
            metavar="URL",
            help="SQLAlchemy URL of a shared study database (default: the journal file in --out)",
        ),
        argument(
            "--study",
            default=None,
            metavar="NAME",
            help="study name (default: <config name>-<target>)",
        ),
        overrides_option("outer.steps=50"),
        argument(
            "--heartbeat",
            type=int,
            default=30,
            metavar="SECONDS",
            help="heartbeat interval of running trials; a trial silent for 4 intervals is retried",
        ),
    ),
).register
