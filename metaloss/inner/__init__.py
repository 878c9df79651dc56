"""The differentiable inner loop. Only this package knows the differentiation backend."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from metaloss.config import InnerConfig
from metaloss.inner.backend import InnerBackend
from metaloss.inner.func_backend import FuncBackend
from metaloss.inner.optim import SGD, Adam, FunctionalOptimizer, Params, make_optimizer
from metaloss.inner.unroll import InnerResult, unroll

__all__ = [
    "SGD",
    "Adam",
    "FuncBackend",
    "FunctionalOptimizer",
    "InnerBackend",
    "InnerResult",
    "Params",
    "make_backend",
    "make_optimizer",
    "unroll",
]


def make_backend(
    learner: nn.Module, config: InnerConfig, objective: Callable[[Tensor, Tensor], Tensor]
) -> InnerBackend:
    """The backend named by ``config.backend`` (``"func"`` or ``"higher"``)."""
    if config.backend == "higher":
        from metaloss.inner.higher_backend import HigherBackend

        return HigherBackend(learner, config, objective)
    return FuncBackend(learner, config, objective)
