"""The inner-loop backend interface.

:class:`InnerBackend` is what the outer loop and meta-testing call: :meth:`InnerBackend.run`
trains one learner per task of a stacked batch and returns batched :class:`InnerResult` s.
:class:`PerTaskBackend` implements it for backends that express one task's unroll
(:func:`metaloss.inner.unroll.unroll`) and map it over tasks (``torch.func`` + ``vmap``,
``higher``'s task loop); the batched-matmul backend runs all tasks at once by itself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn

from metaloss.config import InnerConfig
from metaloss.inner.optim import FunctionalOptimizer, Params, make_optimizer
from metaloss.inner.unroll import InnerResult, Objective, unroll
from metaloss.tasks.base import Batch, Task
from metaloss.typing import PerSampleLoss

__all__ = ["GradFn", "InnerBackend", "PerSampleLoss", "PerTaskBackend", "TaskFn", "UnrollPlan"]

GradFn = Callable[[Params, Batch], Params]
TaskFn = Callable[[Params, Task], InnerResult]


@dataclass(frozen=True)
class UnrollPlan:
    """What one :meth:`InnerBackend.run` call asks of every task's unroll.

    Args:
        optimizer: the inner optimiser, with the call's learning rate.
        backprop_steps: keep the meta-graph through the last T steps only (``None``: all).
        record: the split whose objective is recorded at every step (``None``: no curve).
    """

    optimizer: FunctionalOptimizer
    backprop_steps: int | None
    record: str | None


class InnerBackend(ABC):
    """Unroll inner loops of stacked tasks and return batched :class:`InnerResult` s.

    Args:
        learner: the learner module (only its structure is used; parameters come per task).
        config: inner-loop settings.
        objective: per-sample meta-objective (the task family's), a function of one task's
            predictions and targets.
    """

    name: str

    def __init__(self, learner: nn.Module, config: InnerConfig, objective: Objective) -> None:
        self.learner = learner
        self.config = config
        self.objective = objective

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
        """Train a learner per task with ``loss_fn`` (``lr`` overrides ``config.lr``).

        ``loss_fn(pred, target)`` is one task's per-sample loss; the inner objective of a task is
        its mean. A function marked with :func:`metaloss.inner.task_batched` may be called with
        stacked tasks instead. Gradients flow into whatever ``loss_fn`` closes over while grad
        mode is on. See :func:`metaloss.inner.unroll.unroll` for ``backprop_steps``, ``record``
        and the non-finite guard, whose semantics every backend shares.
        """
        plan = UnrollPlan(make_optimizer(self.config, lr), backprop_steps, record)
        return self.unroll_tasks(loss_fn, init_params, tasks, plan)

    @abstractmethod
    def unroll_tasks(
        self, loss_fn: PerSampleLoss, init_params: Params, tasks: Task, plan: UnrollPlan
    ) -> InnerResult:
        """:meth:`run` with the call's options gathered in ``plan`` (what a backend implements)."""

    def report(self) -> dict[str, float]:
        """Backend statistics worth logging (e.g. compile time and recompiles); default none."""
        return {}


class PerTaskBackend(InnerBackend):
    """A backend that differentiates one task's inner objective and maps the unroll over tasks.

    The non-finite guard is checked once per call: the unroll runs unguarded (recording only
    whether each task's inner gradients stayed finite) and is repeated with the per-step guard
    only when some task went non-finite, so the common case pays for no ``where`` at all and the
    result is the same as with the guard at every step.
    """

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

    def unroll_tasks(
        self, loss_fn: PerSampleLoss, init_params: Params, tasks: Task, plan: UnrollPlan
    ) -> InnerResult:
        grad_fn = self.grad_fn(loss_fn)

        def task_fn(guard: bool) -> TaskFn:
            def one_task(params: Params, task: Task) -> InnerResult:
                return unroll(
                    params,
                    task,
                    grad_fn=grad_fn,
                    forward=self.forward,
                    optimizer=plan.optimizer,
                    steps=self.config.steps,
                    objective=self.objective,
                    backprop_steps=plan.backprop_steps,
                    grad_clip=self.config.grad_clip,
                    record=plan.record,
                    guard=guard,
                )

            return one_task

        out = self.map_tasks(task_fn(False), init_params, tasks)
        if bool(out.finite.all()):
            return out
        del out  # frees the unguarded graph before the guarded run builds its own
        return self.map_tasks(task_fn(True), init_params, tasks)
