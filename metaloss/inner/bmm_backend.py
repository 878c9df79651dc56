"""The batched-matmul backend: every task of a meta-batch in one ``baddbmm`` per layer.

For the project's MLP learners (:class:`metaloss.learners.MLP` and
:class:`metaloss.learners.LogVarianceMLP`, including a linear learner with no hidden layer) the
parameters of all tasks are kept in one flat buffer ``[tasks, P]``; each step views it as stacked
weights and biases, runs the forward pass as one ``baddbmm`` per layer and back-propagates the
inner gradient through the layers by hand (``bmm``, ``sum`` and the activations' own derivative
ops). Only the per-sample loss goes through autograd: ``torch.autograd.grad`` of the summed task
losses w.r.t. the predictions, with ``create_graph`` while the meta-gradient is tracked. Every op
of the hand-written backward is itself differentiable, so ``meta_objective.backward()``
differentiates the whole unroll, second-order terms included, and gives the meta-gradients of the
``torch.func`` backend (tested in float64). There is no ``functional_call`` parameter swapping and
no pytree work per step; the optimiser and the non-finite guard act on the flat buffer. The
guard costs one reduction per step: the unroll runs without the per-step ``where`` and is
repeated with it only when some task went non-finite (the semantics of
:mod:`metaloss.inner.unroll`; with ``inner.compile`` the compiled unroll keeps the ``where``).

The per-sample loss and the family objective are per-task functions; they are mapped over tasks
with ``vmap`` unless marked :func:`metaloss.inner.batching.task_batched`.

With ``inner.compile`` the inner step is compiled with ``torch.compile`` (see
:mod:`metaloss.inner.compiled`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from metaloss.config import InnerConfig
from metaloss.inner.backend import InnerBackend, PerSampleLoss, UnrollPlan
from metaloss.inner.batching import task_means
from metaloss.inner.optim import FunctionalOptimizer, Params
from metaloss.inner.unroll import InnerResult, Objective, _tree_detach, first_tracked_step
from metaloss.learners import MLP, LogVarianceMLP
from metaloss.tasks.base import Batch, Task

__all__ = ["BmmBackend", "MLPLayout", "mlp_layout"]

# Activation derivatives as the ops autograd itself uses for them (so that second derivatives are
# those of torch.func too); each takes the upstream gradient and the activation's *output*.
_ACTIVATION_GRADS: dict[type[nn.Module], Callable[[Tensor, Tensor], Tensor]] = {
    nn.ReLU: lambda grad, out: torch.ops.aten.threshold_backward(grad, out, 0),
    nn.Tanh: lambda grad, out: torch.ops.aten.tanh_backward(grad, out),
}
_ACTIVATIONS: dict[type[nn.Module], Callable[[Tensor], Tensor]] = {
    nn.ReLU: torch.relu,
    nn.Tanh: torch.tanh,
}


@dataclass(frozen=True)
class MLPLayout:
    """Where each parameter of an MLP learner lives in the flat per-task buffer.

    Attributes:
        names: parameter names, in buffer order.
        shapes: per-task shape of each parameter.
        layers: ``(weight index, bias index)`` into ``names`` for each linear layer, in order.
        activation: the hidden activation module type (``None`` for a linear learner).
        log_variances: index of :class:`LogVarianceMLP`'s free output columns, or ``None``.
    """

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    layers: tuple[tuple[int, int], ...]
    activation: type[nn.Module] | None
    log_variances: int | None

    @property
    def sizes(self) -> list[int]:
        return [int(torch.Size(s).numel()) for s in self.shapes]


def mlp_layout(learner: nn.Module) -> MLPLayout | None:
    """The layout of ``learner`` if the batched backend can run it, else ``None``.

    Supported: exactly :class:`MLP` or :class:`LogVarianceMLP` (not subclasses, whose forward
    may differ), made of ``nn.Linear`` layers with biases and one activation among ReLU and
    Tanh between them.
    """
    if type(learner) not in (MLP, LogVarianceMLP):
        return None
    children = list(learner.children())
    linears, activations = children[0::2], children[1::2]
    if not linears or len(linears) != len(activations) + 1:
        return None
    if not all(type(m) is nn.Linear and m.bias is not None for m in linears):
        return None
    kinds = {type(m) for m in activations}
    if len(kinds) > 1 or not kinds <= set(_ACTIVATION_GRADS):
        return None
    names = [n for n, _ in learner.named_parameters()]
    shapes = [tuple(p.shape) for _, p in learner.named_parameters()]
    index = {n: i for i, n in enumerate(names)}
    positions = [i for i, m in enumerate(children) if type(m) is nn.Linear]
    layers = tuple((index[f"{i}.weight"], index[f"{i}.bias"]) for i in positions)
    extra = index.get("log_variances") if type(learner) is LogVarianceMLP else None
    if len(names) != 2 * len(layers) + (extra is not None):
        return None
    return MLPLayout(tuple(names), tuple(shapes), layers, next(iter(kinds), None), extra)


@dataclass
class _Forward:
    """The stacked forward pass of one step: inputs of every layer and the prediction."""

    inputs: list[Tensor]
    pred: Tensor


class BmmBackend(InnerBackend):
    """Unroll inner loops of all tasks at once with stacked parameters and batched matmuls.

    Raises ``ValueError`` if the learner is not supported (see :func:`mlp_layout`); use
    :func:`metaloss.inner.make_backend` with ``backend="auto"`` to fall back to ``torch.func``.
    """

    name = "bmm"

    def __init__(self, learner: nn.Module, config: InnerConfig, objective: Objective) -> None:
        super().__init__(learner, config, objective)
        layout = mlp_layout(learner)
        if layout is None:
            raise ValueError(
                f"inner.backend: 'bmm' runs MLP learners (Linear layers with ReLU or Tanh), "
                f"got {type(learner).__name__}; use inner.backend=auto or func"
            )
        self.layout = layout
        self.sizes = layout.sizes
        self.activation = _ACTIVATIONS[layout.activation] if layout.activation else None
        self.activation_grad = _ACTIVATION_GRADS[layout.activation] if layout.activation else None
        self.objective_means = task_means(objective)
        self.unroll: Callable[..., tuple[Tensor, Tensor, Tensor, Tensor]] = self._unroll
        self.compiled: Any = None
        if config.compile:
            from metaloss.inner.compiled import CompiledUnroll

            self.compiled = CompiledUnroll(partial(self._unroll, traceable=True))
            self.unroll = self.compiled

    # ------------------------------------------------------------------ buffer <-> parameters

    def pack(self, params: Params) -> Tensor:
        """Stacked parameters ``{name: [tasks, ...]}`` as one buffer ``[tasks, P]``."""
        missing = set(self.layout.names) ^ set(params)
        if missing:
            raise ValueError(
                f"learner parameters: expected {sorted(self.layout.names)}, got {sorted(params)}"
            )
        count = params[self.layout.names[0]].shape[0]
        return torch.cat([params[n].reshape(count, -1) for n in self.layout.names], dim=1)

    def unpack(self, flat: Tensor) -> list[Tensor]:
        """Views of the buffer as stacked parameters, in :attr:`MLPLayout.names` order."""
        count = flat.shape[0]
        chunks = flat.split(self.sizes, dim=1)
        return [c.view(count, *s) for c, s in zip(chunks, self.layout.shapes, strict=True)]

    # ------------------------------------------------------------------ forward and backward

    def forward_stacked(self, params: list[Tensor], x: Tensor) -> _Forward:
        """Outputs of every task's learner on its inputs ``x`` ``[tasks, ..., in]``."""
        count, batch_shape = x.shape[0], x.shape[1:-1]
        h = x if x.dim() == 3 else x.reshape(count, -1, x.shape[-1])
        inputs = []
        last = len(self.layout.layers) - 1
        for i, (w, b) in enumerate(self.layout.layers):
            inputs.append(h)
            h = torch.baddbmm(params[b].unsqueeze(1), h, params[w].transpose(1, 2))
            if i < last and self.activation is not None:
                h = self.activation(h)
        if self.layout.log_variances is not None:
            extra = params[self.layout.log_variances]
            h = torch.cat([h, extra.unsqueeze(1).expand(count, h.shape[1], -1)], dim=-1)
        pred = h if x.dim() == 3 else h.reshape(count, *batch_shape, h.shape[-1])
        return _Forward(inputs, pred)

    def backward_stacked(self, params: list[Tensor], fwd: _Forward, grad_pred: Tensor) -> Tensor:
        """The gradient ``[tasks, P]`` of the inner objective, from its gradient w.r.t. the
        predictions, back-propagated through the layers (differentiably)."""
        count = grad_pred.shape[0]
        g = grad_pred.reshape(count, -1, grad_pred.shape[-1])
        grads: list[Tensor | None] = [None] * len(params)
        if self.layout.log_variances is not None:
            width = params[self.layout.log_variances].shape[-1]
            grads[self.layout.log_variances] = g[..., -width:].sum(1)
            g = g[..., :-width]
        for i in reversed(range(len(self.layout.layers))):
            w, b = self.layout.layers[i]
            grads[w] = torch.bmm(g.transpose(1, 2), fwd.inputs[i])
            grads[b] = g.sum(1)
            if i > 0:
                g = torch.bmm(g, params[w])
                if self.activation_grad is not None:
                    g = self.activation_grad(g, fwd.inputs[i])
        return torch.cat([t.reshape(count, -1) for t in grads if t is not None], dim=1)

    def _step(
        self, flat: Tensor, x: Tensor, y: Tensor, loss_means: Callable[[Tensor, Tensor], Tensor]
    ) -> Tensor:
        """The inner gradient ``[tasks, P]`` at buffer ``flat`` (the loss's gradient w.r.t. the
        predictions by ``torch.autograd.grad``, with ``create_graph`` in grad mode)."""
        params = self.unpack(flat)
        fwd = self.forward_stacked(params, x)
        differentiable = torch.is_grad_enabled()
        with torch.enable_grad():
            pred = fwd.pred
            leaf = pred if differentiable and pred.requires_grad else pred.detach().requires_grad_()
            (grad_pred,) = torch.autograd.grad(
                loss_means(leaf, y).sum(), leaf, create_graph=differentiable, allow_unused=True
            )
        if grad_pred is None:  # a loss that ignores the prediction
            grad_pred = torch.zeros_like(pred)
        return self.backward_stacked(params, fwd, grad_pred)

    def _step_traceable(
        self, flat: Tensor, x: Tensor, y: Tensor, loss_means: Callable[[Tensor, Tensor], Tensor]
    ) -> Tensor:
        """:meth:`_step` with the loss gradient by ``torch.func.grad`` (for ``torch.compile``)."""
        params = self.unpack(flat)
        fwd = self.forward_stacked(params, x)
        grad_pred = torch.func.grad(lambda pred: loss_means(pred, y).sum())(fwd.pred)
        return self.backward_stacked(params, fwd, grad_pred)

    # ------------------------------------------------------------------ the unroll

    def unroll_tasks(
        self, loss_fn: PerSampleLoss, init_params: Params, tasks: Task, plan: UnrollPlan
    ) -> InnerResult:
        first_tracked = first_tracked_step(self.config.steps, plan.backprop_steps)
        scored = getattr(tasks, plan.record) if plan.record else None
        args = (
            self.pack(init_params),
            tasks.train,
            tasks.outer_valid,
            scored,
            task_means(loss_fn),
            plan.optimizer,
            first_tracked,
        )
        if self.compiled is None:
            # The guard once per unroll: unguarded, recording only which tasks stayed finite,
            # and again with the per-step guard only if one did not (then the result is the
            # guarded one; when every task stayed finite the two are the same to the bit).
            flat, alive, curve, meta_objective = self._unroll(*args, guard=False)
            if not bool(alive.all()):
                flat, alive, curve, meta_objective = self._unroll(*args)
        else:
            flat, alive, curve, meta_objective = self.unroll(*args)
        params = dict(zip(self.layout.names, self.unpack(flat), strict=True))
        return InnerResult(meta_objective, curve, alive, params)

    def _unroll(
        self,
        flat: Tensor,
        train: Batch,
        outer_valid: Batch,
        scored: Batch | None,
        loss_means: Callable[[Tensor, Tensor], Tensor],
        optimizer: FunctionalOptimizer,
        first_tracked: int,
        traceable: bool = False,
        guard: bool = True,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """K steps from buffer ``flat``: ``(final buffer, finite [tasks], curve [tasks, K+1] or
        [tasks, 0], meta-objective [tasks])``, with the semantics of :func:`unroll`; without
        ``guard`` a task whose gradient went non-finite keeps stepping (only ``finite`` says so)."""
        step = self._step_traceable if traceable else self._step
        state = optimizer.init({"flat": flat})
        alive = torch.ones(flat.shape[0], dtype=torch.bool, device=flat.device)
        tracking = torch.is_grad_enabled()
        clip = self.config.grad_clip
        curve: list[Tensor] = []

        def score(buffer: Tensor, batch: Batch) -> Tensor:
            pred = self.forward_stacked(self.unpack(buffer), batch.x).pred
            return self.objective_means(pred, batch.y)

        if scored is not None:
            curve.append(score(flat, scored))
        for k in range(self.config.steps):
            # Steps before the truncation point build no meta-graph at all (memory stays O(T)).
            with torch.set_grad_enabled(tracking and k >= first_tracked):
                if k == first_tracked and k > 0:
                    flat, state = flat.detach(), _tree_detach(state)
                grads = step(flat, train.x, train.y, loss_means)
                # One reduction per task: the sum is non-finite whenever any element is.
                finite = torch.isfinite(grads.sum(1))
                if clip:
                    norm = grads.pow(2).sum(1, keepdim=True).sqrt()
                    grads = grads * torch.clamp(clip / (norm + 1e-12), max=1.0)
                new, state = optimizer.update({"flat": grads}, state, {"flat": flat})
                alive = alive & finite
                flat = torch.where(alive.unsqueeze(1), new["flat"], flat) if guard else new["flat"]
                if scored is not None:
                    curve.append(score(flat, scored))
        meta_objective = score(flat, outer_valid)
        stacked = torch.stack(curve, dim=1) if curve else flat.new_zeros(flat.shape[0], 0)
        return flat, alive, stacked, meta_objective

    def report(self) -> dict[str, float]:
        return {} if self.compiled is None else self.compiled.report()
