"""The inner-loop backend interface: how to run the learner, differentiate the inner objective,
and map one task's unroll over a stacked batch of tasks. :meth:`InnerBackend.run` is shared."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from torch import Tensor, nn

from metaloss.config import InnerConfig
from metaloss.inner.optim import Params, make_optimizer
from metaloss.inner.unroll import InnerResult, Objective, unroll
from metaloss.tasks.base import Batch, Task
from metaloss.typing import PerSampleLoss

__all__ = ["GradFn", "InnerBackend", "PerSampleLoss", "TaskFn"]

GradFn = Callable[[Params, Batch], Params]
TaskFn = Callable[[Params, Task], InnerResult]


class InnerBackend(ABC):
    """Unroll inner loops of stacked tasks and return batched :class:`InnerResult` s.

    Args:
        learner: the learner module (only its structure is used; parameters come per task).
        config: inner-loop settings.
        objective: per-sample meta-objective (the task family's).
    """

    name: str

    def __init__(self, learner: nn.Module, config: InnerConfig, objective: Objective) -> None:
        self.learner = learner
        self.config = config
        self.objective = objective

    @abstractmethod
    def forward(self, params: Params, x: Tensor) -> Tensor:
        """The learner's output for inputs ``x`` with parameters ``params``."""

    @abstractmethod
    def grad_fn(self, loss_fn: PerSampleLoss) -> GradFn:
        """``(params, batch) -> d mean(loss_fn(forward(params, x), y)) / d params``, differentiable
        w.r.t. whatever ``loss_fn`` closes over while grad mode is on."""

    @abstractmethod
    def map_tasks(self, one_task: TaskFn, init_params: Params, tasks: Task) -> InnerResult:
        """Apply ``one_task`` to every task of the stacked batch and stack the results."""

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
        """Train a learner per task with ``loss_fn`` (``lr`` overrides ``config.lr``); see
        :func:`metaloss.inner.unroll.unroll` for ``backprop_steps`` and ``record``."""
        optimizer = make_optimizer(self.config, lr)
        grad_fn = self.grad_fn(loss_fn)

        def one_task(params: Params, task: Task) -> InnerResult:
            return unroll(
                params,
                task,
                grad_fn=grad_fn,
                forward=self.forward,
                optimizer=optimizer,
                steps=self.config.steps,
                objective=self.objective,
                backprop_steps=backprop_steps,
                grad_clip=self.config.grad_clip,
                record=record,
            )

        return self.map_tasks(one_task, init_params, tasks)
