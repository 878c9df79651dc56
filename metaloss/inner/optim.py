"""Pure functional optimisers for differentiable inner loops.

Each optimiser maps ``(grads, state, params) -> (params, state)`` without touching its inputs, so
gradients can flow through every update (``create_graph``-style), as in metaopt/torchopt and
facebookresearch/higher. Parameters are dicts of tensors (any leading task dimension is fine).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import torch
from torch import Tensor

from metaloss.config import InnerConfig

__all__ = ["SGD", "Adam", "FunctionalOptimizer", "Params", "clip_by_global_norm", "make_optimizer"]

Params = dict[str, Tensor]


class FunctionalOptimizer(Protocol):
    """``init`` builds the state for some parameters; ``update`` applies one step."""

    def init(self, params: Params) -> Any: ...

    def update(self, grads: Params, state: Any, params: Params) -> tuple[Params, Any]: ...


class SGD:
    """Stochastic gradient descent with optional heavy-ball momentum (as ``torch.optim.SGD``)."""

    def __init__(self, lr: float, momentum: float = 0.0) -> None:
        self.lr = lr
        self.momentum = momentum

    def init(self, params: Params) -> Params:
        return {k: torch.zeros_like(v) for k, v in params.items()} if self.momentum else {}

    def update(self, grads: Params, state: Params, params: Params) -> tuple[Params, Params]:
        if not self.momentum:
            return {k: params[k] - self.lr * grads[k] for k in params}, state
        buffers = {k: self.momentum * state[k] + grads[k] for k in params}
        return {k: params[k] - self.lr * buffers[k] for k in params}, buffers


class AdamState(NamedTuple):
    step: int
    m: Params
    v: Params


class Adam:
    """Adam (Kingma & Ba, 2015) with the epsilon inside the square root.

    ``sqrt(v_hat + eps**2)`` instead of ``sqrt(v_hat) + eps`` keeps the derivative of the update
    finite when a parameter's second moment is exactly zero (dead units): ``d sqrt(v)/dv`` is
    infinite at ``v = 0``, and multiplied by a zero gradient it gives NaN meta-gradients.
    For ``v_hat >> eps**2`` the update equals torch's Adam to within ``eps``.
    """

    def __init__(
        self, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8
    ) -> None:
        self.lr = lr
        self.beta1, self.beta2 = betas
        self.eps = eps

    def init(self, params: Params) -> AdamState:
        zeros = {k: torch.zeros_like(v) for k, v in params.items()}
        return AdamState(0, zeros, dict(zeros))

    def update(self, grads: Params, state: AdamState, params: Params) -> tuple[Params, AdamState]:
        step = state.step + 1
        b1, b2 = self.beta1, self.beta2
        m = {k: b1 * state.m[k] + (1 - b1) * grads[k] for k in params}
        v = {k: b2 * state.v[k] + (1 - b2) * grads[k] * grads[k] for k in params}
        c1, c2 = 1 - b1**step, 1 - b2**step
        new = {
            k: params[k] - self.lr * (m[k] / c1) / torch.sqrt(v[k] / c2 + self.eps**2)
            for k in params
        }
        return new, AdamState(step, m, v)


def make_optimizer(config: InnerConfig, lr: float | None = None) -> FunctionalOptimizer:
    """The inner optimiser named by ``config`` (``lr`` overrides ``config.lr``)."""
    rate = config.lr if lr is None else lr
    if config.optimizer == "adam":
        return Adam(rate, config.betas, config.eps)
    return SGD(rate, config.momentum)


def clip_by_global_norm(grads: Params, max_norm: float) -> Params:
    """Scale ``grads`` so that their joint L2 norm is at most ``max_norm`` (per task under vmap)."""
    norm = torch.sqrt(sum((g * g).sum() for g in grads.values()))  # type: ignore[arg-type]
    scale = torch.clamp(max_norm / (norm + 1e-12), max=1.0)
    return {k: g * scale for k, g in grads.items()}
