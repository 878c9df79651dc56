"""The default backend: ``torch.func`` (``functional_call``, ``grad``) with ``vmap`` over tasks.

Every task of a meta-batch runs in one batched computation; ordinary autograd flows through the
nested ``grad`` calls, so ``meta_objective.backward()`` differentiates the whole unroll.
"""

from __future__ import annotations

from torch import Tensor
from torch.func import functional_call, grad, vmap

from metaloss.inner.backend import GradFn, PerSampleLoss, PerTaskBackend, TaskFn
from metaloss.inner.optim import Params
from metaloss.inner.unroll import InnerResult
from metaloss.tasks.base import Batch, Task

__all__ = ["FuncBackend"]


class FuncBackend(PerTaskBackend):
    """Unroll inner loops of stacked tasks with ``torch.func``, batched over tasks by ``vmap``."""

    name = "func"

    def forward(self, params: Params, x: Tensor) -> Tensor:
        return functional_call(self.learner, params, (x,))  # type: ignore[no-any-return]

    def grad_fn(self, loss_fn: PerSampleLoss) -> GradFn:
        def inner_objective(params: Params, batch: Batch) -> Tensor:
            return loss_fn(self.forward(params, batch.x), batch.y).mean()

        return grad(inner_objective)  # type: ignore[no-any-return]

    def map_tasks(self, one_task: TaskFn, init_params: Params, tasks: Task) -> InnerResult:
        return vmap(one_task)(init_params, tasks)  # type: ignore[no-any-return]
