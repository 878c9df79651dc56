"""The ``higher`` backend (Grefenstette et al., "Generalized Inner Loop Meta-Learning", 2019).

The learner is made functional with ``higher.monkeypatch`` and differentiated with
``torch.autograd.grad(create_graph=True)``, one task at a time. It shares the update rules of
:mod:`metaloss.inner.optim` with the ``torch.func`` backend, so the two must give the same
meta-gradients; it exists as a cross-check and for code already written against ``higher``.
``higher`` is optional: install ``metaloss[higher]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from metaloss.config import InnerConfig
from metaloss.inner.optim import Params, make_optimizer
from metaloss.inner.unroll import InnerResult, Objective, unroll
from metaloss.tasks.base import Batch, Task, stack_tasks, unstack_task

__all__ = ["HigherBackend"]

PerSampleLoss = Callable[[Tensor, Tensor], Tensor]


def _import_higher() -> Any:
    try:
        import higher
    except ImportError:
        raise ImportError(
            "inner.backend: 'higher' is not installed; run `pip install 'metaloss[higher]'` "
            "or use inner.backend=func"
        ) from None
    return higher


class HigherBackend:
    """Unroll inner loops task by task with ``higher``'s functional modules."""

    name = "higher"

    def __init__(self, learner: nn.Module, config: InnerConfig, objective: Objective) -> None:
        self.learner = learner
        self.config = config
        self.objective = objective
        self.names = [n for n, _ in learner.named_parameters()]
        self.fmodel = _import_higher().monkeypatch(learner, copy_initial_weights=True)

    def forward(self, params: Params, x: Tensor) -> Tensor:
        return self.fmodel(x, params=[params[n] for n in self.names])  # type: ignore[no-any-return]

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
        """Train a learner per task with ``loss_fn``; results stacked like the ``func`` backend's."""
        optimizer = make_optimizer(self.config, lr)
        create_graph = torch.is_grad_enabled()

        def grad_fn(params: Params, batch: Batch) -> Params:
            differentiable = create_graph and torch.is_grad_enabled()
            with torch.enable_grad():
                leaves = {
                    n: p if p.requires_grad else p.detach().requires_grad_()
                    for n, p in params.items()
                }
                loss = loss_fn(self.forward(leaves, batch.x), batch.y).mean()
                grads = torch.autograd.grad(
                    loss, list(leaves.values()), create_graph=differentiable
                )
            return dict(zip(leaves, grads, strict=True))

        results = []
        count = next(iter(init_params.values())).shape[0]
        for i in range(count):
            results.append(
                unroll(
                    {n: p[i] for n, p in init_params.items()},
                    unstack_task(tasks, i),
                    grad_fn=grad_fn,
                    forward=self.forward,
                    optimizer=optimizer,
                    steps=self.config.steps,
                    objective=self.objective,
                    backprop_steps=backprop_steps,
                    grad_clip=self.config.grad_clip,
                    record=record,
                )
            )
        return stack_tasks(results)  # type: ignore[arg-type,return-value]
