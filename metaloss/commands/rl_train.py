"""``metaloss rl-train``: meta-train a learned policy objective (LPO's drift) with antithetic ES
on an RL family (``configs/cartpole.yaml``, ``configs/acrobot.yaml``) and save it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from metaloss.commands.common import add_overrides, prepare_run_folder
from metaloss.commands.config import config_epilog
from metaloss.config import load_config, to_dict
from metaloss.export import save_loss
from metaloss.rl.meta import (
    CHECKPOINT_NAME,
    RLCallback,
    RLMetaTrainer,
    RLStepRecord,
    RLValidation,
    rl_task_config,
)
from metaloss.rl.summary import RLSummaryCallback

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "rl-train",
        help="meta-train a learned policy objective with ES (RL families)",
        description=__doc__,
        epilog=config_epilog(),
    )
    p.add_argument("config", help="config file or shipped name of an RL family, e.g. cartpole")
    p.add_argument("--out", type=Path, default=None, help="run folder (default: runs/<name>)")
    add_overrides(p, "outer.steps=5")
    p.add_argument("--resume", action="store_true", help="continue the run folder's checkpoint")
    p.set_defaults(func=run)


class _Progress(RLCallback):
    """One line per ES step and validation on stderr."""

    def on_step(self, trainer: RLMetaTrainer, record: RLStepRecord) -> None:
        print(
            f"step {record.step}: centre return {record.centre_return:.1f}, population "
            f"{record.population_return:.1f} (best {record.best_return:.1f}), |g| {record.grad_norm:.3g}, "
            f"{record.seconds:.0f} s",
            file=sys.stderr,
            flush=True,
        )

    def on_validation(self, trainer: RLMetaTrainer, record: RLValidation) -> None:
        best = " (best)" if record.best else ""
        print(
            f"validation at step {record.step}: return {record.value:.1f}{best}",
            file=sys.stderr,
            flush=True,
        )


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides)
    task = rl_task_config(config)
    out = prepare_run_folder(args.out, config, args.resume)
    outer = config.outer
    print(
        f"metaloss rl-train: {config.name}, {outer.steps} ES steps × {2 * outer.es_population + 1} candidates × "
        f"{outer.meta_batch} variants × {task.meta_total_steps} env steps, writing to {out}",
        file=sys.stderr,
    )
    summary = RLSummaryCallback(out, shape_every=max(1, outer.shape_every))
    trainer = RLMetaTrainer(config, out, callbacks=[_Progress(), summary])
    try:
        result = trainer.train(resume=args.resume)
    finally:
        summary.close()
    loss_path = save_loss(
        result.objective,
        out / "loss.safetensors",
        to_dict(config),
        {"best_step": result.best_step, "best_valid_return": result.best_value},
    )
    print(f"best meta-validation return {result.best_value:.2f} at step {result.best_step}")
    print(
        "outputs:\n"
        + "\n".join(f"  {p}" for p in (loss_path, out / "config.yaml", out / CHECKPOINT_NAME))
    )
    print(f"  {out}/events.out.tfevents.*  (view: tensorboard --logdir {out.parent})")
    return 0
