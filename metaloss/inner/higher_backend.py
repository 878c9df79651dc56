"""The ``higher`` backend (Grefenstette et al., "Generalized Inner Loop Meta-Learning", 2019).

The learner is made functional with ``higher.monkeypatch`` and differentiated with
``torch.autograd.grad(create_graph=True)``, one task at a time. It shares the update rules of
:mod:`metaloss.inner.optim` with the ``torch.func`` backend, so the two must give the same
meta-gradients; it exists as a cross-check and for code already written against ``higher``.
``higher`` is optional: install ``metaloss[higher]``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from metaloss.config import InnerConfig
from metaloss.inner.backend import GradFn, PerSampleLoss, PerTaskBackend, TaskFn
from metaloss.inner.optim import Params
from metaloss.inner.unroll import InnerResult, Objective
from metaloss.tasks.base import Batch, Task, stack_tasks, unstack_task

__all__ = ["HigherBackend"]


def _import_higher() -> Any:
    try:
        import higher
    except ImportError:
        raise ImportError(
            "inner.backend: 'higher' is not installed; run `pip install 'metaloss[higher]'` "
            "or use inner.backend=func"
        ) from None
    return higher


class HigherBackend(PerTaskBackend):
    """Unroll inner loops task by task with ``higher``'s functional modules."""

    name = "higher"

    def __init__(self, learner: nn.Module, config: InnerConfig, objective: Objective) -> None:
        super().__init__(learner, config, objective)
        self.names = [n for n, _ in learner.named_parameters()]
        self.fmodel = _import_higher().monkeypatch(learner, copy_initial_weights=True)

    def forward(self, params: Params, x: Tensor) -> Tensor:
        return self.fmodel(x, params=[params[n] for n in self.names])  # type: ignore[no-any-return]

    def grad_fn(self, loss_fn: PerSampleLoss) -> GradFn:
        create_graph = torch.is_grad_enabled()  # as at the start of run()

        def grads(params: Params, batch: Batch) -> Params:
            differentiable = create_graph and torch.is_grad_enabled()
            with torch.enable_grad():
                leaves = {
                    n: p if p.requires_grad else p.detach().requires_grad_()
                    for n, p in params.items()
                }
                loss = loss_fn(self.forward(leaves, batch.x), batch.y).mean()
                values = torch.autograd.grad(
                    loss, list(leaves.values()), create_graph=differentiable
                )
            return dict(zip(leaves, values, strict=True))

        return grads

    def map_tasks(self, one_task: TaskFn, init_params: Params, tasks: Task) -> InnerResult:
        count = next(iter(init_params.values())).shape[0]
        results = [
            one_task({n: p[i] for n, p in init_params.items()}, unstack_task(tasks, i))
            for i in range(count)
        ]
        return stack_tasks(results)  # type: ignore[arg-type,return-value]
