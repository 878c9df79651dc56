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
        -m metaloss train cartpole --out runs/cartpole-2p --distributed

(the launch of :mod:`metaloss.commands.distributed`; ``metaloss rl-train ... --distributed`` is
the same). Across machines: the same command on each machine with ``--nnodes N`` and a reachable
rendezvous endpoint (torchrun's documentation).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch.distributed as dist

from metaloss.config import RunConfig
from metaloss.outer.trainer import Callback, MetaTrainer
from metaloss.rl.evaluate import DistributedEvaluator
from metaloss.rl.problem import RLProblem

__all__ = ["distributed_trainer"]


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
