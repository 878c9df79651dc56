"""``metaloss train --distributed``: data-parallel meta-training under torchrun.

Every launched process meta-trains its shard of each meta-batch
(:class:`~metaloss.outer.distributed.DistributedMetaTrainer`); rank 0 alone checks and writes the
run folder (with the same guard as ``metaloss train``: an existing run is refused without
``--resume``), its checkpoints and the loss file, and tells the other ranks whether it may go
on, so a refused folder stops every process with the same one-line error. RL configs take the
same launch (``metaloss train cartpole --distributed``): :mod:`metaloss.commands.rl_train` splits
the ES population's runs across the processes instead (:mod:`metaloss.rl.distributed`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import NoReturn

import torch.distributed as dist

from metaloss.commands.common import prepare_run_folder
from metaloss.config import RunConfig, to_dict
from metaloss.export import save_loss
from metaloss.outer.distributed import DistributedMetaTrainer

__all__ = ["leave", "prepared_folder", "run_distributed"]


def leave(code: int) -> NoReturn:
    """End a torchrun process whose group is destroyed and whose outputs are closed, without
    interpreter teardown. A rank that tears its interpreter down can abort there ('terminate
    called without an active exception', SIGABRT; the failure pytorch/pytorch#179291 describes
    for gloo): measured here in 5 of 45 two-process ``metaloss rl-train --distributed`` runs,
    always in a rank other than 0, which made torchrun stop rank 0 with SIGTERM before it had
    written the loss file; 0 of 40 with this exit."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def prepared_folder(args: argparse.Namespace, config: RunConfig, command: str = "train") -> Path:
    """Rank 0 prepares the run folder of ``command``; every rank gets it, or rank 0's refusal
    as its own."""
    outcome: list[object] = [None]
    if dist.get_rank() == 0:
        try:
            outcome[0] = str(prepare_run_folder(args.out, config, args.resume, command))
        except (ValueError, OSError) as error:  # RunFolderError is a ValueError
            outcome[0] = error
    dist.broadcast_object_list(outcome, src=0)
    if isinstance(outcome[0], Exception):
        raise outcome[0]
    return Path(str(outcome[0]))


def run_distributed(args: argparse.Namespace, config: RunConfig) -> int:
    """Meta-train ``config`` with every process of the torchrun launch."""
    from metaloss.summary import SummaryCallback

    dist.init_process_group("gloo")
    try:
        out = prepared_folder(args, config)
        rank, world = dist.get_rank(), dist.get_world_size()
        if rank == 0:
            print(
                f"metaloss train --distributed: {config.name}, {config.outer.steps} meta-steps on "
                f"{world} processes, writing to {out}",
                file=sys.stderr,
            )
        summary = SummaryCallback(out) if rank == 0 else None
        trainer = DistributedMetaTrainer(config, out, callbacks=[summary] if summary else [])
        try:
            result = trainer.train(resume=args.resume)
        finally:
            if summary is not None:
                summary.close()
        if rank == 0:
            extra = {
                "best_step": result.best_step,
                "best_valid_objective": result.best_value,
                "processes": world,
            }
            path = save_loss(result.loss, out / "loss.safetensors", to_dict(config), extra)
            print(
                f"best meta-validation objective {result.best_value:.4g} at step {result.best_step}"
            )
            print(f"outputs:\n  {path}\n  {out / 'config.yaml'}")
            print(f"compare it with: metaloss benchmark {out / 'config.yaml'} --loss {path}")
    finally:
        dist.destroy_process_group()
    leave(0)
