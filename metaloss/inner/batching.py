"""Per-task functions applied to stacked tasks: ``vmap`` unless a function says it need not.

A per-sample loss or objective is written for one task: ``fn(pred, target)`` with ``pred`` of
shape ``[n, out]``. Some of them (a learned loss with batch-level scale features, a family's
objective that flattens from dim 1) would mix tasks if called on stacked ``[tasks, n, out]``
tensors, so the batched backend maps them over tasks with ``torch.func.vmap``. A function that is
known to treat every leading index independently can be marked with :func:`task_batched`; it is
then called on the stacked tensors directly, which is cheaper.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor
from torch.func import vmap

__all__ = ["TaskBatched", "is_task_batched", "task_batched", "task_means"]

PerSample = Callable[[Tensor, Tensor], Tensor]


class TaskBatched:
    """A per-sample function declared safe to call on stacked tasks (see :func:`task_batched`)."""

    def __init__(self, fn: PerSample) -> None:
        self.fn = fn

    def __call__(self, pred: Tensor, target: Tensor) -> Tensor:
        return self.fn(pred, target)


def task_batched(fn: PerSample) -> TaskBatched:
    """Declare that ``fn(pred, target)`` may be called on stacked tasks ``[tasks, n, ...]``.

    The caller promises that ``fn`` on stacked inputs equals ``fn`` applied to each task and
    stacked, e.g. an elementwise loss such as MSE or a learned loss whose features are all
    elementwise. A function that reduces over the whole batch (a median, a mean over samples)
    must not be marked.
    """
    return fn if isinstance(fn, TaskBatched) else TaskBatched(fn)


def is_task_batched(fn: Callable[..., Tensor]) -> bool:
    """Whether ``fn`` was marked with :func:`task_batched`."""
    return isinstance(fn, TaskBatched)


def task_means(fn: PerSample) -> Callable[[Tensor, Tensor], Tensor]:
    """``(pred, target) -> [tasks]``: the mean of ``fn`` over each task's samples, for stacked
    ``pred`` and ``target`` (directly if ``fn`` is :func:`task_batched`, else by ``vmap``)."""
    if is_task_batched(fn):

        def direct(pred: Tensor, target: Tensor) -> Tensor:
            values = fn(pred, target)
            return values.reshape(values.shape[0], -1).mean(1)

        return direct

    def one(pred: Tensor, target: Tensor) -> Tensor:
        return fn(pred, target).mean()

    return vmap(one)  # type: ignore[no-any-return]
