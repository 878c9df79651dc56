"""The default backend: ``torch.func`` (``functional_call``, ``grad``) with ``vmap`` over tasks.

Every task of a meta-batch runs in one batched computation; ordinary autograd flows through the
nested ``grad`` calls, so ``meta_objective.backward()`` differentiates the whole unroll.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from metaloss.config import InnerConfig
from metaloss.inner.optim import Params, make_optimizer
from metaloss.inner.unroll import InnerResult, Objective, unroll
from metaloss.tasks.base import Batch, Task

__all__ = ["FuncBackend"]

PerSampleLoss = Callable[[Tensor, Tensor], Tensor]


class FuncBackend:
    """Unroll inner loops of stacked tasks with ``torch.func`` and ``vmap``.

    Args:
        learner: the learner module (its own parameters are never used, only its structure).
        config: inner-loop settings.
        objective: per-sample meta-objective (the task family's).
    """

    name = "func"

    def __init__(self, learner: nn.Module, config: InnerConfig, objective: Objective) -> None:
        self.learner = learner
        self.config = config
        self.objective = objective

    def forward(self, params: Params, x: Tensor) -> Tensor:
        return functional_call(self.learner, params, (x,))  # type: ignore[no-any-return]

    def run(
        self,
        loss_fn: PerSampleLoss,
        init_params: Params,
        tasks: Task,
        *,
        backprop_steps: int | None = None,
        record: str | None = None,
        lr: float | None = None,
    ) -> InnerResult:
        """Train a learner per task with ``loss_fn`` and return the batched results."""
        optimizer = make_optimizer(self.config, lr)

        def inner_objective(params: Params, batch: Batch) -> Tensor:
            return loss_fn(self.forward(params, batch.x), batch.y).mean()

        def one_task(params: Params, task: Task) -> InnerResult:
            return unroll(
                params,
                task,
                grad_fn=grad(inner_objective),
                forward=self.forward,
                optimizer=optimizer,
                steps=self.config.steps,
                objective=self.objective,
                backprop_steps=backprop_steps,
                grad_clip=self.config.grad_clip,
                record=record,
            )

        return vmap(one_task)(init_params, tasks)  # type: ignore[no-any-return]
