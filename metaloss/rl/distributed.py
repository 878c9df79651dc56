"""RL meta-training across processes with ``torch.distributed`` (gloo), launched with torchrun.

Every process runs the same :class:`~metaloss.outer.trainer.MetaTrainer` with the same seed, so
all draw the same meta-batches and ES noise; the ES population's training runs (candidates ×
variants) and the validation runs are split across the processes by
:class:`~metaloss.rl.evaluate.DistributedEvaluator`, and every process receives every run's
fitness, so every process computes the same estimate and takes the same step (centred ranks
included). Only rank 0 writes ``config.yaml``, checkpoints, TensorBoard events and
``loss.safetensors``. The numbers are those of a single-process run.

    GLOO_SOCKET_IFNAME=lo torchrun --nnodes 1 --nproc-per-node 2 \\
        --rdzv-backend c10d --rdzv-endpoint 127.0.0.1:29500 \\
        -m metaloss.rl.distributed configs/cartpole.yaml --out runs/cartpole-2p

Across machines: the same command on each machine with ``--nnodes N`` and a reachable
rendezvous endpoint (torchrun's documentation).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch.distributed as dist

from metaloss.commands.common import add_overrides, prepare_run_folder
from metaloss.config import RunConfig, load_config, to_dict
from metaloss.outer.trainer import Callback, MetaTrainer, TrainResult
from metaloss.rl.evaluate import DistributedEvaluator
from metaloss.rl.problem import RLProblem

__all__ = ["distributed_trainer", "main"]


def distributed_trainer(
    config: RunConfig, out_dir: Path | None, callbacks: Sequence[Callback] = ()
) -> MetaTrainer:
    """A trainer whose RL problem splits its populations across the default process group
    (initialise it first); checkpoints only on rank 0."""
    problem = RLProblem(config, DistributedEvaluator())
    rank0 = dist.get_rank() == 0
    return MetaTrainer(
        config, out_dir if rank0 else None, callbacks if rank0 else (), problem=problem
    )


def _save(result: TrainResult, config: RunConfig, out: Path) -> Path:
    from metaloss.export import save_loss

    return save_loss(
        result.loss,
        out / "loss.safetensors",
        to_dict(config),
        {
            "best_step": result.best_step,
            "best_valid_return": -result.best_value,
            "processes": dist.get_world_size(),
        },
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for ``torchrun ... -m metaloss.rl.distributed CONFIG --out DIR``."""
    from metaloss.rl.summary import RLSummaryCallback

    parser = argparse.ArgumentParser(prog="torchrun ... -m metaloss.rl.distributed")
    parser.add_argument("config", type=Path, help="an RL config, e.g. configs/cartpole.yaml")
    parser.add_argument("--out", type=Path, required=True, help="run folder (rank 0 writes)")
    add_overrides(parser, "outer.steps=5")
    parser.add_argument("--resume", action="store_true", help="continue the run's checkpoint")
    args = parser.parse_args(argv)
    config = load_config(args.config, args.overrides)
    RLProblem(config)  # refuse bad settings before any process group or folder
    dist.init_process_group("gloo")
    try:
        rank0 = dist.get_rank() == 0
        out = prepare_run_folder(args.out, config, args.resume) if rank0 else args.out
        summary = RLSummaryCallback(out) if rank0 else None
        trainer = distributed_trainer(config, out, [summary] if summary else [])
        result = trainer.train(resume=args.resume)
        if summary is not None:
            summary.close()
            path = _save(result, config, out)
            print(
                f"best meta-validation return {-result.best_value:.2f} at step {result.best_step}"
            )
            print(f"outputs: {path}, {out / 'config.yaml'}, {out / 'checkpoint.pt'}")
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
