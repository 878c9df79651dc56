"""The backend-neutral inner loop: K optimiser steps on a task's ``train`` split.

Per-task backends supply how to differentiate the inner objective (``grad_fn``) and how to run
the learner (``forward``); everything else, including truncation and the non-finite guard, lives
here once (the batched-matmul backend implements the same semantics on stacked tasks).

The non-finite guard: a task whose inner gradient is NaN or Inf at some step is frozen at its
last finite parameters (the step is not applied, nor any later one) and reported in
:attr:`InnerResult.finite`; its meta-objective and curve are those of the frozen learner, so a
diverged run is never propagated as NaN into values. (Its meta-gradient is not made finite: the
trainer skips such meta-steps.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor

from metaloss.inner.optim import FunctionalOptimizer, Params, clip_by_global_norm
from metaloss.tasks.base import Batch, Task, tree_map

__all__ = ["InnerResult", "first_tracked_step", "unroll"]

Objective = Callable[[Tensor, Tensor], Tensor]


class InnerResult(NamedTuple):
    """What one inner run produced (leading task dimension when batched).

    Attributes:
        meta_objective: the family objective on ``outer_valid`` after the last step.
        curve: objective on the recorded split after each step ``0..K`` (``[K+1]``), or empty.
        finite: whether every inner gradient was finite (a run that diverged is frozen at its
            last finite parameters and reported here, never propagated as NaN).
        params: the learner's final parameters.
    """

    meta_objective: Tensor
    curve: Tensor
    finite: Tensor
    params: Params


def _tree_detach(value: Any) -> Any:
    return tree_map(Tensor.detach, value)


def first_tracked_step(steps: int, backprop_steps: int | None) -> int:
    """The first of ``steps`` inner steps the meta-graph is kept through (truncated backprop
    through the last ``backprop_steps``; ``None``: all, step 0)."""
    return 0 if backprop_steps is None else max(steps - backprop_steps, 0)


def unroll(
    params: Params,
    task: Task,
    *,
    grad_fn: Callable[[Params, Batch], Params],
    forward: Callable[[Params, Tensor], Tensor],
    optimizer: FunctionalOptimizer,
    steps: int,
    objective: Objective,
    backprop_steps: int | None = None,
    grad_clip: float = 0.0,
    record: str | None = None,
    detach: Callable[[Any], Any] = _tree_detach,
    guard: bool = True,
) -> InnerResult:
    """Run ``steps`` inner updates of one task and score the result on ``outer_valid``.

    Args:
        backprop_steps: keep the graph through the last T steps only (truncated backprop);
            ``None`` keeps all of them (full unroll).
        record: name of a split (``"test"``, ``"outer_valid"``, ``"train"``) whose objective is
            recorded after every step, or ``None``.
        guard: freeze a task at its first non-finite inner gradient (see the module docstring).
            With ``guard=False`` the updates are applied regardless and only
            :attr:`InnerResult.finite` is computed: it is exactly the guarded run's, so a caller
            can run unguarded and repeat with the guard only when some task was not finite.
    """
    state = optimizer.init(params)
    alive = torch.ones((), dtype=torch.bool, device=next(iter(params.values())).device)
    curve: list[Tensor] = []
    tracking = torch.is_grad_enabled()
    first_tracked = first_tracked_step(steps, backprop_steps)

    def score(p: Params) -> Tensor:
        batch = getattr(task, record)  # type: ignore[arg-type]
        return objective(forward(p, batch.x), batch.y).mean()

    if record:
        curve.append(score(params))
    for k in range(steps):
        # Steps before the truncation point build no meta-graph at all (memory stays O(T)).
        with torch.set_grad_enabled(tracking and k >= first_tracked):
            if k == first_tracked and k > 0:
                params, state = detach(params), detach(state)
            grads = grad_fn(params, task.train)
            # A sum is non-finite whenever any element is (NaN, or Inf of either sign): one
            # reduction per tensor is much cheaper under vmap than isfinite(...).all() per tensor.
            finite = torch.isfinite(sum(g.sum() for g in grads.values()))  # type: ignore[arg-type]
            if grad_clip:
                grads = clip_by_global_norm(grads, grad_clip)
            new_params, state = optimizer.update(grads, state, params)
            alive = alive & finite
            if guard:
                params = {n: torch.where(alive, new_params[n], params[n]) for n in params}
            else:
                params = new_params
            if record:
                curve.append(score(params))
    batch = task.outer_valid
    meta_objective = objective(forward(params, batch.x), batch.y).mean()
    empty = meta_objective.new_zeros(0)
    return InnerResult(meta_objective, torch.stack(curve) if curve else empty, alive, params)
