"""``metaloss rl-train``: meta-train a learned policy objective (LPO's drift) with antithetic ES
on an RL family (``configs/cartpole.yaml``, ``configs/acrobot.yaml``) on the shared meta-trainer,
and save it. ``metaloss train`` with an RL config runs this command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from metaloss.commands.arguments import (
    RESUME,
    Command,
    config_argument,
    out_option,
    overrides_option,
    switch,
)
from metaloss.commands.common import create_folder, plan_folder
from metaloss.commands.progress import ProgressCallback
from metaloss.config import RunConfig, load_config, to_dict
from metaloss.export import save_loss
from metaloss.outer.checkpoint import CHECKPOINT_NAME
from metaloss.outer.trainer import MetaTrainer, TrainResult
from metaloss.rl.problem import RLProblem, rl_task_config
from metaloss.rl.summary import RLSummaryCallback

__all__ = ["register", "run"]


def _announce(config: RunConfig, out: Path, processes: int) -> None:
    task, outer = rl_task_config(config), config.outer
    where = f" on {processes} processes" if processes > 1 else ""
    print(
        f"metaloss rl-train: {config.name}, {outer.steps} ES steps × {2 * outer.es_population + 1} "
        f"candidates × {outer.meta_batch} variants × {task.meta_total_steps} env steps{where}, "
        f"writing to {out}",
        file=sys.stderr,
    )


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides)
    problem = RLProblem(config)  # refuses unused settings before the run folder is written
    if getattr(args, "distributed", False):
        return _run_distributed(args, config)
    plan = plan_folder(args.out, config, "rl-train", args.resume)  # checks only
    trainer = MetaTrainer(config, plan.path, problem=problem)
    out = create_folder(plan, config)  # the first side effect, after every check
    trainer.out_dir = out
    _announce(config, out, 1)
    summary = RLSummaryCallback(out)
    trainer.callbacks = [ProgressCallback(), summary]
    try:
        result = trainer.train(resume=args.resume)
    finally:
        summary.close()
    _finish(result, config, out, {})
    return 0


def _run_distributed(args: argparse.Namespace, config: RunConfig) -> int:
    """Under torchrun: every process trains its share of each population; rank 0 writes."""
    import torch.distributed as dist

    from metaloss.commands.distributed import leave, prepared_folder
    from metaloss.rl.distributed import distributed_trainer

    dist.init_process_group("gloo")
    try:
        out = prepared_folder(args, config, "rl-train")
        rank0, world = dist.get_rank() == 0, dist.get_world_size()
        summary = RLSummaryCallback(out) if rank0 else None
        if rank0:
            _announce(config, out, world)
        trainer = distributed_trainer(config, out, [summary] if summary else [])
        try:
            result = trainer.train(resume=args.resume)
        finally:
            if summary is not None:
                summary.close()
        if rank0:
            _finish(result, config, out, {"processes": world})
    finally:
        dist.destroy_process_group()
    leave(0)  # no interpreter teardown (see metaloss.commands.distributed.leave)


def _finish(result: TrainResult, config: RunConfig, out: Path, extra: dict[str, object]) -> None:
    loss_path = save_loss(
        result.loss,
        out / "loss.safetensors",
        to_dict(config),
        {"best_step": result.best_step, "best_valid_return": -result.best_value, **extra},
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


register = Command(
    "rl-train",
    "meta-train a learned policy objective with ES (RL families)",
    __doc__,
    run,
    (
        config_argument("config file or shipped name of an RL family, e.g. cartpole"),
        out_option("run folder"),
        overrides_option("outer.steps=5"),
        RESUME,
        switch(
            "--distributed",
            "split each ES population across the processes of a torchrun launch (docs/rl.md)",
        ),
    ),
).register
