"""Data-parallel meta-training with ``torch.distributed`` (gloo on CPU), launched with torchrun.

Every process holds the whole loss network and the same random generator. Each meta-step, all
processes draw the same meta-batch; each one unrolls only its shard of the tasks, and the
shard meta-gradients are combined with one all-reduce, weighted by shard size, so every
process applies the *same* meta-gradient as a single process unrolling the whole meta-batch
(exactly, up to the order of floating-point sums). Every process validates on the whole
(deterministic) meta-validation set; only rank 0 writes checkpoints and the loss file.

Exact for ``full_grad`` and ``truncated_grad``, and for ``antithetic_es`` without rank shaping
(its estimate is linear in the objective values); centred ranks need every task's value on
every process, so ``antithetic_es`` with ``es_rank_shaping: true`` is refused.

Launch with ``metaloss train --distributed`` under torchrun (all traffic on loopback)::

    GLOO_SOCKET_IFNAME=lo torchrun --nnodes 1 --nproc-per-node 2 \\
        --rdzv-backend c10d --rdzv-endpoint 127.0.0.1:29500 \\
        -m metaloss train configs/sine.yaml --out runs/sine-ddp --distributed

Reference: Li et al., "PyTorch Distributed: Experiences on Accelerating Data Parallel
Training", VLDB 2020 (gradient all-reduce across replicas).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor

from metaloss.config import ConfigError, RunConfig
from metaloss.losses.module import LossModule
from metaloss.outer.estimators import EstimatorOut, GradientEstimator
from metaloss.outer.problem import MetaObjective, MetaProblem
from metaloss.outer.supervised import SupervisedBatch, SupervisedProblem
from metaloss.outer.trainer import Callback, MetaTrainer
from metaloss.tasks import Task, TaskFamily
from metaloss.tasks.base import unstack_task

__all__ = ["AllReduceEstimator", "DistributedMetaTrainer", "ShardedProblem", "shard_bounds"]


def shard_bounds(count: int, rank: int, world: int) -> tuple[int, int]:
    """``[start, stop)`` of rank ``rank``'s contiguous share of ``count`` items (sizes differ
    by at most one)."""
    base, extra = divmod(count, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def _slice_task(tasks: Task, start: int, stop: int) -> Task:
    return unstack_task(tasks, slice(start, stop))


class AllReduceEstimator:
    """Wrap an estimator: its shard estimate becomes the whole meta-batch's estimate.

    Args:
        inner: the estimator run on this process's shard.
        shard: ``(start, stop)`` of this process's tasks within the meta-batch.
        total: the meta-batch size.
    """

    def __init__(self, inner: GradientEstimator, shard: tuple[int, int], total: int) -> None:
        self.inner = inner
        self.name = inner.name
        self.shard = shard
        self.total = total

    def estimate(
        self, params: dict[str, Tensor], objective: MetaObjective, generator: torch.Generator
    ) -> EstimatorOut:
        out = self.inner.estimate(params, objective, generator)
        start, stop = self.shard
        weight = (stop - start) / self.total
        names = list(out.grads)
        flat = torch.cat(
            [out.grads[k].flatten() * weight for k in names] + [out.meta_loss.reshape(1) * weight]
        )
        dist.all_reduce(flat)
        per_task = torch.zeros(self.total, dtype=out.per_task.dtype)
        per_task[start:stop] = out.per_task
        dist.all_reduce(per_task)
        grads, offset = {}, 0
        for k in names:
            n = out.grads[k].numel()
            grads[k] = flat[offset : offset + n].view_as(out.grads[k])
            offset += n
        return EstimatorOut(flat[-1], grads, per_task)


class ShardedProblem(MetaProblem):
    """A supervised problem whose meta-batches are this process's shard of the meta-batch every
    process draws alike (the generator advances identically on every rank). Validation is run
    whole on every process (it is deterministic, so every rank gets the same value)."""

    def __init__(self, inner: SupervisedProblem, shard: tuple[int, int]) -> None:
        self.inner = inner
        self.shard = shard
        self.estimators = inner.estimators

    def make_loss(self, generator: torch.Generator) -> LossModule:
        return self.inner.make_loss(generator)

    def sample(self, generator: torch.Generator) -> SupervisedBatch:
        batch = self.inner.sample(generator)
        start, stop = self.shard
        inits = {k: v[start:stop] for k, v in batch.inits.items()}
        return batch._replace(tasks=_slice_task(batch.tasks, start, stop), inits=inits)

    def objective(self, loss: LossModule, batch: SupervisedBatch) -> MetaObjective:
        return self.inner.objective(loss, batch)

    def validate(self, loss: LossModule) -> float:
        return self.inner.validate(loss)

    def close(self) -> None:
        self.inner.close()


class DistributedMetaTrainer(MetaTrainer):
    """A :class:`MetaTrainer` whose meta-batches are sharded across the processes of the
    default ``torch.distributed`` group (initialise it first).

    Example:
        >>> dist.init_process_group("gloo")  # doctest: +SKIP
        >>> result = DistributedMetaTrainer(config, out_dir).train()  # doctest: +SKIP
    """

    def __init__(
        self,
        config: RunConfig,
        out_dir: Path | None = None,
        callbacks: Sequence[Callback] = (),
        family: TaskFamily | None = None,
    ) -> None:
        outer = config.outer
        if outer.estimator == "antithetic_es" and outer.es_rank_shaping:
            raise ConfigError(
                "outer.es_rank_shaping: expected false for distributed antithetic_es, got true"
            )
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        if outer.meta_batch < self.world:
            raise ConfigError(
                f"outer.meta_batch: expected at least one task per process ({self.world}), got {outer.meta_batch}"
            )
        self.shard = shard_bounds(outer.meta_batch, self.rank, self.world)
        problem = ShardedProblem(SupervisedProblem(config, family), self.shard)
        super().__init__(config, out_dir, callbacks, problem=problem)
        self.estimator = AllReduceEstimator(self.estimator, self.shard, outer.meta_batch)  # type: ignore[assignment]

    def save(self) -> None:
        if self.rank == 0:
            super().save()
