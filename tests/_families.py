"""Task families shared by the selection, report and evaluation tests: fixtures whose right
answers can be computed by hand."""

from __future__ import annotations

import torch

from metaloss.tasks.base import Batch, Split, Task, TaskFamily

__all__ = ["ConstantTargets"]


class ConstantTargets(TaskFamily):
    """x = 1 everywhere; task ``i``'s targets all equal ``offset + N(0, 1)``. With MSE, one SGD
    step of a linear learner turns the residual ``e = w + b - y`` into ``e (1 - 4 lr)``."""

    def __init__(self, offset: float = 0.0) -> None:
        super().__init__()
        self.offset = offset

    def make_task(self, generator: torch.Generator, split: Split) -> Task:
        y = self.offset + float(torch.randn((), generator=generator))

        def batch(n: int) -> Batch:
            return Batch(torch.ones(n, 1), torch.full((n, 1), y), {})

        return Task(batch(4), batch(3), batch(5))
