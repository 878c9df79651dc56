"""The differentiable inner loop. Only this package knows the differentiation backend."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from metaloss.config import InnerConfig
from metaloss.inner.backend import InnerBackend, PerTaskBackend
from metaloss.inner.batching import TaskBatched, is_task_batched, task_batched
from metaloss.inner.bmm_backend import BmmBackend, mlp_layout
from metaloss.inner.func_backend import FuncBackend
from metaloss.inner.optim import SGD, Adam, FunctionalOptimizer, Params, make_optimizer
from metaloss.inner.unroll import InnerResult, unroll

__all__ = [
    "SGD",
    "Adam",
    "BmmBackend",
    "FuncBackend",
    "FunctionalOptimizer",
    "InnerBackend",
    "InnerResult",
    "Params",
    "PerTaskBackend",
    "TaskBatched",
    "is_task_batched",
    "make_backend",
    "make_optimizer",
    "task_batched",
    "unroll",
]


def make_backend(
    learner: nn.Module, config: InnerConfig, objective: Callable[[Tensor, Tensor], Tensor]
) -> InnerBackend:
    """The backend named by ``config.backend``.

    ``"auto"`` picks the batched-matmul backend (:class:`BmmBackend`) when it can run the
    learner (see :func:`metaloss.inner.bmm_backend.mlp_layout`) and ``torch.func`` otherwise;
    ``"bmm"``, ``"func"`` and ``"higher"`` force one (``"bmm"`` refuses a learner it cannot run).
    ``inner.compile`` needs the batched backend and is refused otherwise.
    """
    batched = config.backend == "bmm" or (
        config.backend == "auto" and mlp_layout(learner) is not None
    )
    if config.compile and not batched:
        raise ValueError(
            f"inner.compile: compiles the bmm backend's unroll, but inner.backend="
            f"{config.backend} runs {'torch.func' if config.backend != 'higher' else 'higher'} "
            f"for this learner ({type(learner).__name__}); set inner.compile=false"
        )
    if config.backend == "higher":
        from metaloss.inner.higher_backend import HigherBackend

        return HigherBackend(learner, config, objective)
    if batched:
        return BmmBackend(learner, config, objective)
    return FuncBackend(learner, config, objective)
