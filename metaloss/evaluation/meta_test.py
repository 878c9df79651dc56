"""Meta-testing: train fresh learners on held-out tasks with a given loss and record the test
metric after every inner step. Learning rates are selected on meta-train tasks, scored on their
``outer_valid`` split: selection never reads a test split.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from metaloss.config import RunConfig
from metaloss.device import resolve_device, to_device
from metaloss.inner import make_backend
from metaloss.learners import init_params, make_learner
from metaloss.losses.module import gradient_fn
from metaloss.seeds import GRID_INIT_SEED, TEST_INIT_SEED
from metaloss.tasks import Metric, Split, Task, TaskFamily
from metaloss.tasks.base import Batch, cast_task, stack_tasks, unstack_task
from metaloss.typing import PerSampleLoss

__all__ = ["EvalSet", "LossRun", "Metric", "eval_set", "run_loss", "select_lr", "steps_to_reach"]


@dataclass(frozen=True)
class EvalSet:
    """Fixed tasks and learner initialisations (one run per task and seed)."""

    tasks: Task
    inits: dict[str, Tensor]
    split: Split

    @property
    def runs(self) -> int:
        return int(next(iter(self.inits.values())).shape[0])


@dataclass(frozen=True)
class LossRun:
    """Fresh learners trained with one loss at one learning rate.

    Attributes:
        curves: the metric on the recorded split after steps ``0..K``, ``[runs, K+1]``.
        diverged: runs whose inner gradients became NaN/Inf (frozen at their last finite step).
        metrics: extra metrics of the final learners on the recorded split, ``[runs]`` each
            (only those asked for with ``run_loss(metrics=...)``).
    """

    name: str
    lr: float
    curves: Tensor
    diverged: Tensor
    metrics: dict[str, Tensor] = field(default_factory=dict)

    @property
    def final(self) -> Tensor:
        return self.curves[:, -1]


def eval_set(
    family: TaskFamily,
    config: RunConfig,
    split: Split,
    tasks: int,
    seeds: int = 1,
    init_seed: int | None = None,
    start: int = 0,
) -> EvalSet:
    """``tasks`` fixed tasks of ``split`` (from index ``start``) times ``seeds`` learner
    initialisations each."""
    dtype = getattr(torch, config.dtype)
    learner = make_learner(config.learner, family.in_features, family.out_features)
    base = family.tasks(split, tasks, start)
    stacked = stack_tasks([unstack_task(base, i) for _ in range(seeds) for i in range(tasks)])
    seed = (
        init_seed
        if init_seed is not None
        else (TEST_INIT_SEED if split is Split.META_TEST else GRID_INIT_SEED)
    )
    device = resolve_device(config.device)
    generator = torch.Generator().manual_seed(seed)  # on the CPU: the same runs on every device
    inits = init_params(learner, tasks * seeds, generator, dtype, device)
    return EvalSet(to_device(cast_task(stacked, dtype), device), inits, split)


def run_loss(
    name: str,
    loss_fn: PerSampleLoss,
    family: TaskFamily,
    config: RunConfig,
    data: EvalSet,
    lr: float,
    record: str = "test",
    chunk: int = 128,
    metrics: Mapping[str, Metric] | None = None,
) -> LossRun:
    """Train a fresh learner per run of ``data`` with ``loss_fn`` and record ``record``'s metric.

    A :class:`~metaloss.losses.LossModule` trains through its
    :meth:`~metaloss.losses.LossModule.per_sample_for_gradient` (the same gradients).

    No meta-gradient is built (the inner loop runs under ``torch.no_grad``). ``record="test"``
    is for reporting only; use ``"outer_valid"`` for anything that selects. ``metrics`` are
    evaluated once, on the final learners and the same split (see :class:`Metric`). The runs
    happen where ``data`` lives (``config.device``; ``loss_fn`` must be there too); the curves
    and metrics come back on the CPU.
    """
    loss_fn = gradient_fn(loss_fn)  # only its gradients are used
    device = next(iter(data.inits.values())).device
    learner = make_learner(config.learner, family.in_features, family.out_features).to(
        device=device, dtype=getattr(torch, config.dtype)
    )
    backend = make_backend(learner, config.inner, family.objective)
    curves, finite = [], []
    values: dict[str, list[Tensor]] = {k: [] for k in metrics or {}}
    with torch.no_grad():
        for start in range(0, data.runs, chunk):
            stop = min(start + chunk, data.runs)
            tasks = _slice(data.tasks, start, stop)
            inits = {k: v[start:stop] for k, v in data.inits.items()}
            out = backend.run(loss_fn, inits, tasks, record=record, lr=lr)
            curves.append(out.curve)
            finite.append(out.finite)
            if metrics:
                batch: Batch = getattr(tasks, record)
                pred = _predict(learner, out.params, batch.x)
                for key, metric in metrics.items():
                    values[key].append(metric.fn(pred, batch).flatten(1).mean(1))
    extra = {k: torch.cat(v).cpu() for k, v in values.items()}
    return LossRun(name, lr, torch.cat(curves).cpu(), ~torch.cat(finite).cpu(), extra)


def _predict(learner: nn.Module, params: dict[str, Tensor], x: Tensor) -> Tensor:
    """Outputs of learners with stacked ``params`` on stacked inputs ``x`` ``[runs, n, ...]``."""

    def one(p: dict[str, Tensor], xi: Tensor) -> Tensor:
        return functional_call(learner, p, (xi,))  # type: ignore[no-any-return]

    return vmap(one)(params, x)  # type: ignore[no-any-return]


def _slice(tasks: Task, start: int, stop: int) -> Task:
    return unstack_task(tasks, slice(start, stop))


def select_lr(
    loss_fn: PerSampleLoss,
    family: TaskFamily,
    config: RunConfig,
    grid: Sequence[float],
    data: EvalSet,
) -> tuple[float, dict[float, float]]:
    """The learning rate of ``grid`` with the lowest mean final ``outer_valid`` objective on
    ``data`` (which must not be meta-test tasks). Diverged runs score +inf."""
    if data.split is Split.META_TEST:
        raise ValueError(
            "select_lr: expected meta-train or meta-validation tasks, got meta-test tasks"
        )
    scores: dict[float, float] = {}
    for lr in grid:
        run = run_loss("select", loss_fn, family, config, data, lr, record="outer_valid")
        final = torch.where(run.diverged | ~torch.isfinite(run.final), torch.inf, run.final)
        scores[lr] = float(final.mean())
    return min(scores, key=lambda lr: scores[lr]), scores


def steps_to_reach(curves: Tensor, threshold: float) -> int | None:
    """First inner step at which the mean curve is at or below ``threshold`` (``None``: never)."""
    hits = (curves.mean(0) <= threshold).nonzero()
    return int(hits[0]) if len(hits) else None
