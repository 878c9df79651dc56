"""``metaloss rl-train``: meta-train a learned policy objective (LPO's drift) with antithetic ES
on an RL family (``configs/cartpole.yaml``, ``configs/acrobot.yaml``) on the shared meta-trainer,
and save it. ``metaloss train`` with an RL config runs this command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from metaloss.commands.common import add_overrides, prepare_run_folder
from metaloss.commands.progress import ProgressCallback
from metaloss.config import load_config, to_dict
from metaloss.export import save_loss
from metaloss.outer.trainer import CHECKPOINT_NAME, MetaTrainer
from metaloss.rl.problem import RLProblem, rl_task_config
from metaloss.rl.summary import RLSummaryCallback

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "rl-train",
        help="meta-train a learned policy objective with ES (RL families)",
        description=__doc__,
    )
    p.add_argument("config", help="YAML config of an RL family, e.g. configs/cartpole.yaml")
    p.add_argument("--out", type=Path, default=None, help="run folder (default: runs/<name>)")
    add_overrides(p, "outer.steps=5")
    p.add_argument("--resume", action="store_true", help="continue the run folder's checkpoint")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides)
    task = rl_task_config(config)
    problem = RLProblem(config)  # refuses unused settings before the run folder is written
    trainer = MetaTrainer(config, None, problem=problem)
    out = prepare_run_folder(args.out, config, args.resume)
    trainer.out_dir = out
    outer = config.outer
    print(
        f"metaloss rl-train: {config.name}, {outer.steps} ES steps × {2 * outer.es_population + 1} "
        f"candidates × {outer.meta_batch} variants × {task.meta_total_steps} env steps, writing to {out}",
        file=sys.stderr,
    )
    summary = RLSummaryCallback(out)
    trainer.callbacks = [ProgressCallback(), summary]
    try:
        result = trainer.train(resume=args.resume)
    finally:
        summary.close()
    loss_path = save_loss(
        result.loss,
        out / "loss.safetensors",
        to_dict(config),
        {"best_step": result.best_step, "best_valid_return": -result.best_value},
    )
    stopped = " (stopped early: outer.patience)" if result.stopped_early else ""
    print(
        f"best meta-validation return {-result.best_value:.2f} at step {result.best_step}; "
        f"skipped steps: {result.skipped_steps}{stopped}"
    )
    print(
        "outputs:\n"
        + "\n".join(f"  {p}" for p in (loss_path, out / "config.yaml", out / CHECKPOINT_NAME))
    )
    print(f"  {out}/events.out.tfevents.*  (view: tensorboard --logdir {out.parent})")
    return 0
