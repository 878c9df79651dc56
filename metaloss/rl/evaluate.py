"""Who trains a population of PPO runs: this process, or every process of a ``torch.distributed``
group, each training its contiguous share of the runs.

A run's numbers do not depend on the other runs of its population
(:mod:`metaloss.rl.population`), so splitting a population across processes gives every run the
same episodes as training it in one process (tested with two processes on loopback). Every
process ends with every run's results, so every process of a distributed ES computes the same
estimate (centred ranks included) and the trainers stay in lockstep.

Launch (all traffic on loopback)::

    GLOO_SOCKET_IFNAME=lo torchrun --nnodes 1 --nproc-per-node 2 \\
        --rdzv-backend c10d --rdzv-endpoint 127.0.0.1:29500 \\
        -m metaloss train cartpole --out runs/cartpole-2p --distributed

Reference: Salimans et al., "Evolution Strategies as a Scalable Alternative to Reinforcement
Learning", 2017 (ES workers that share seeds and exchange only fitness values).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch.distributed as dist

from metaloss.outer.distributed import shard_bounds
from metaloss.rl.config import PPOConfig
from metaloss.rl.population import RunSpec, train_population
from metaloss.rl.ppo import PPORun

__all__ = ["DistributedEvaluator", "Evaluator", "LocalEvaluator"]


class Evaluator(Protocol):
    """``evaluator(runs, ppo, total_steps) -> one PPORun per run``, in order."""

    def __call__(self, runs: Sequence[RunSpec], ppo: PPOConfig, total_steps: int) -> list[PPORun]:
        """Train every run."""
        ...

    def close(self) -> None:
        """Release resources."""
        ...


class LocalEvaluator:
    """Train the whole population in this process, in chunks of at most ``chunk`` runs (bounds
    memory; chunking does not change any run's numbers)."""

    def __init__(self, chunk: int = 512) -> None:
        self.chunk = chunk

    def __call__(self, runs: Sequence[RunSpec], ppo: PPOConfig, total_steps: int) -> list[PPORun]:
        out: list[PPORun] = []
        for start in range(0, len(runs), self.chunk):
            out += train_population(runs[start : start + self.chunk], ppo, total_steps)
        return out

    def close(self) -> None:
        return None


def _pack(run: PPORun) -> tuple[list[int], list[float], int, float, int]:
    return (
        run.episode_steps,
        run.episode_returns,
        run.total_steps,
        run.seconds,
        run.skipped_updates,
    )


class DistributedEvaluator:
    """Train this process's share of the population and exchange the results with the other
    processes of the default group (initialise it first, e.g. ``dist.init_process_group("gloo")``)."""

    def __init__(self, local: LocalEvaluator | None = None) -> None:
        if not dist.is_initialized():
            raise RuntimeError("DistributedEvaluator: torch.distributed is not initialised")
        self.local = local or LocalEvaluator()
        self.rank, self.world = dist.get_rank(), dist.get_world_size()

    def __call__(self, runs: Sequence[RunSpec], ppo: PPOConfig, total_steps: int) -> list[PPORun]:
        start, stop = shard_bounds(len(runs), self.rank, self.world)
        mine = self.local(runs[start:stop], ppo, total_steps) if stop > start else []
        gathered: list[list[tuple[list[int], list[float], int, float, int]] | None] = [
            None
        ] * self.world
        dist.all_gather_object(gathered, [_pack(r) for r in mine])
        return [PPORun(*packed) for part in gathered for packed in part or []]

    def close(self) -> None:
        self.local.close()
