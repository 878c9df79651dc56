"""``metaloss tune``: tune a learned loss or a baseline with Optuna on meta-validation tasks.

Every target gets the same trial budget over its part of the config's ``tune.space``; the
best configuration is written as a YAML file that ``metaloss train`` reads as is.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import optuna

from metaloss.commands.common import add_out, add_overrides, create_folder, plan_folder
from metaloss.config import load_config
from metaloss.tuning import known_targets, resolve_space, tune
from metaloss.tuning.space import check_target
from metaloss.tuning.storage import journal_path, make_storage
from metaloss.tuning.study import check_study, study_name

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg, unused-ignore]
    p = subparsers.add_parser(
        "tune",
        help="tune a learned loss or a baseline with Optuna (same budget for each)",
        description=__doc__,
    )
    p.add_argument("config", type=Path, help="YAML run config with a tune.space section")
    p.add_argument(
        "--target",
        default="learned",
        help=f"what to tune: {', '.join(known_targets())} (default: learned)",
    )
    p.add_argument(
        "--trials",
        type=int,
        required=True,
        help="trial budget of the study (shared by all workers)",
    )
    add_out(
        p,
        "tuning folder: study journal, best.yaml, tables; shared by targets and workers, so an "
        "earlier tuning folder is continued",
    )
    p.add_argument(
        "--storage",
        default=None,
        metavar="URL",
        help="SQLAlchemy URL of a shared study database (default: the journal file in --out)",
    )
    p.add_argument(
        "--study", default=None, metavar="NAME", help="study name (default: <config name>-<target>)"
    )
    add_overrides(p, "outer.steps=50")
    p.add_argument(
        "--heartbeat",
        type=int,
        default=30,
        metavar="SECONDS",
        help="heartbeat interval of running trials; a trial silent for 4 intervals is retried",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.trials < 1:
        raise ValueError(f"--trials: expected an integer >= 1, got {args.trials}")
    if args.heartbeat < 1:
        raise ValueError(f"--heartbeat: expected an integer >= 1, got {args.heartbeat}")
    config = load_config(args.config, args.overrides)
    check_target(args.target)
    resolve_space(config, args.target)  # a bad search space is refused before any side effect
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
        f"storage {where}",
        file=sys.stderr,
    )
    result = tune(
        config,
        args.target,
        args.trials,
        out,
        args.storage,
        args.study,
        heartbeat_interval=args.heartbeat,
        storage=storage,
    )
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
    if args.storage is None:
        print(f"  {where}  (view: optuna-dashboard {where})")
    return 0
