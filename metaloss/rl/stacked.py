"""A population of PPO agents as stacked tensors: batched actor-critic MLPs, Adam and clipping.

Run ``r`` of a population owns slice ``r`` of every tensor: its weights ``[R, in, out]``, its
Adam moments and step count, its learning rate. Every operation is batched over runs (batched
matrix products, elementwise updates), and no operation mixes runs, so each run follows exactly
the algorithm of a single :class:`~metaloss.rl.ppo.Agent` trained with ``torch.optim.Adam``
(``eps = 1e-5``) and ``torch.nn.utils.clip_grad_norm_``; ``tests/test_rl_population.py`` checks
one update against :mod:`metaloss.rl.ppo`'s.

``traced=True`` (what ``task.ppo.compile`` uses) computes the same network in a form
``torch.compile`` can trace and differentiate with ``torch.func.grad``: ``tanh`` as
``2 σ(2x) − 1`` without :class:`_Tanh`'s custom backward, and no lone-run pairing.

Hand-written batched products (``torch.baddbmm``) rather than ``torch.func.vmap`` over
``functional_call``: on this project's 2-core CPU machine they were about 1.7× faster for the
agent's forward and backward passes (``experiments/rl_throughput.py --compare-vmap``).

References:
    Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
    Huang et al., "The 37 Implementation Details of Proximal Policy Optimization", 2022.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from torch import Tensor

from metaloss.rl.ppo import Agent

__all__ = ["Params", "StackedAdam", "StackedAgent", "adam_step", "clip_grad_norms", "fast_tanh"]

Params = dict[str, Tensor]


class _Tanh(torch.autograd.Function):
    """``tanh(x) = 2 σ(2x) − 1`` with ``tanh``'s own backward ``g (1 − y²)``.

    The same function as ``torch.tanh`` to within 2e-7 (float32) or 4e-16 (float64) absolute;
    several times faster on CPUs where torch's ``tanh`` kernel is not vectorised (measured here:
    ``experiments/rl_throughput.py --compare-vmap`` prints both)."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor) -> Tensor:
        y = torch.sigmoid(x * 2).mul_(2).sub_(1)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> Tensor:
        (y,) = ctx.saved_tensors  # type: ignore[attr-defined]
        return torch.ops.aten.tanh_backward(grad, y)


def fast_tanh(x: Tensor) -> Tensor:
    """``tanh`` computed through the sigmoid (see :class:`_Tanh`); differentiable."""
    out = _Tanh.apply(x)
    assert isinstance(out, Tensor)
    return out


def _linear_names(agent: Agent, head: str) -> list[str]:
    module = getattr(agent, head)
    return [f"{head}.{i}" for i, layer in enumerate(module) if isinstance(layer, torch.nn.Linear)]


class StackedAgent:
    """``R`` actor-critic agents (tanh MLPs, as :class:`~metaloss.rl.ppo.Agent`) in stacked tensors.

    Args:
        agents: the runs' initial agents (e.g. built with each run's generator, so a run starts
            from exactly the weights :func:`~metaloss.rl.ppo.train_ppo` would give it).

    Example:
        >>> agents = [Agent(4, 2, (8,), torch.Generator().manual_seed(s)) for s in (0, 1)]
        >>> stacked = StackedAgent(agents)
        >>> stacked.log_probs(torch.zeros(2, 5, 4)).shape
        torch.Size([2, 5, 2])
    """

    def __init__(self, agents: Sequence[Agent]) -> None:
        if not agents:
            raise ValueError("agents: expected at least one")
        self.heads = {h: _linear_names(agents[0], h) for h in ("actor", "critic")}
        stacked: Params = {}
        for names in self.heads.values():
            for name in names:
                weights = [a.get_parameter(f"{name}.weight").detach() for a in agents]
                biases = [a.get_parameter(f"{name}.bias").detach() for a in agents]
                stacked[f"{name}.weight"] = torch.stack([w.T for w in weights])
                stacked[f"{name}.bias"] = torch.stack(biases).unsqueeze(1)
        self.flat = torch.cat([t.flatten(1) for t in stacked.values()], dim=1)
        """Every run's parameters in one row ``[R, P]`` (the optimiser updates this in place)."""
        self.shapes = {name: tuple(t.shape[1:]) for name, t in stacked.items()}
        """Each layer's per-run shape (weights ``(in, out)``, biases ``(1, out)``)."""
        self.params: Params = {
            name: view.requires_grad_(True) for name, view in self.unflatten(self.flat).items()
        }
        """Views of :attr:`flat` per layer (weights ``[R, in, out]``, biases ``[R, 1, out]``),
        leaves that require gradients."""

    def unflatten(self, flat: Tensor) -> Params:
        """Per-layer views of ``[R, P]`` parameters laid out like :attr:`flat`."""
        params: Params = {}
        offset = 0
        for name, shape in self.shapes.items():
            width = math.prod(shape)
            params[name] = flat[:, offset : offset + width].view(flat.shape[0], *shape)
            offset += width
        return params

    def flat_grad(self, grads: Sequence[Tensor]) -> Tensor:
        """Gradients for :attr:`params` (in order) as one ``[R, P]`` tensor like :attr:`flat`."""
        return torch.cat([g.flatten(1) for g in grads], dim=1)

    @property
    def runs(self) -> int:
        return next(iter(self.params.values())).shape[0]

    def _mlp(self, head: str, x: Tensor, params: Params, traced: bool) -> Tensor:
        names = self.heads[head]
        # eager: a batch of one takes other kernels (the critic's 1-wide layer rounds
        # differently, and an activation of fewer elements than one vectorised block of the
        # CPU's elementwise loop is computed by its scalar tail), so a lone run goes through the
        # whole network as a pair with itself: its numbers are then those of a population of two.
        # Equal numbers in every population need each run's activations to fill whole blocks
        # (32 float32 values on AVX-512, 16 on AVX2): true for hidden widths that are multiples
        # of 32, as shipped; with narrower layers a run's last bits may depend on its population.
        lone = x.shape[0] == 1 and not traced
        if lone:
            x = x.expand(2, *x.shape[1:])
        for i, name in enumerate(names):
            bias, weight = params[f"{name}.bias"], params[f"{name}.weight"]
            if lone:
                bias, weight = bias.expand(2, -1, -1), weight.expand(2, -1, -1)
            x = torch.baddbmm(bias, x, weight)
            if i < len(names) - 1:
                x = torch.sigmoid(x * 2) * 2 - 1 if traced else fast_tanh(x)
        return x[:1] if lone else x

    def log_probs(self, obs: Tensor, params: Params | None = None, traced: bool = False) -> Tensor:
        """Log-probabilities of every action ``[R, N, n_actions]`` for observations ``[R, N, d]``
        (``traced``: in the form for ``torch.compile``, equal to float rounding)."""
        return torch.log_softmax(self._mlp("actor", obs, params or self.params, traced), dim=-1)

    def value(self, obs: Tensor, params: Params | None = None, traced: bool = False) -> Tensor:
        """State values ``[R, N]``."""
        return self._mlp("critic", obs, params or self.params, traced).squeeze(-1)

    def agent(self, run: int, template: Agent) -> Agent:
        """Run ``run``'s current weights in a copy of ``template`` (an :class:`Agent` of the same
        architecture)."""
        state = {
            name: value[run].T if name.endswith("weight") else value[run].squeeze(0)
            for name, value in self.params.items()
        }
        result = copy.deepcopy(template)
        result.load_state_dict(state)
        return result


def clip_grad_norms(grad: Tensor, max_norm: float) -> tuple[Tensor, Tensor]:
    """Scale each run's gradient (row of ``[R, P]``) to norm at most ``max_norm``, as
    ``torch.nn.utils.clip_grad_norm_`` per run (factor ``min(1, max_norm / (norm + 1e-6))``);
    returns the scaled gradient and the norms ``[R]``."""
    norms = grad.pow(2).sum(1).sqrt()
    factor = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    return grad * factor.unsqueeze(1), norms


class StackedAdam:
    """Adam for the rows of ``[R, P]`` parameters, with a learning rate per run and runs that sit
    out a step.

    Each row follows ``torch.optim.Adam`` (``betas = (0.9, 0.999)``, ``eps``) with its own step
    count; a run whose ``active`` flag is false keeps its parameters, moments and count (as the
    single-run loop does when it skips a non-finite loss).
    """

    def __init__(
        self, flat: Tensor, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-5
    ) -> None:
        self.flat = flat
        self.betas = betas
        self.eps = eps
        self.exp_avg = torch.zeros_like(flat)
        self.exp_avg_sq = torch.zeros_like(flat)
        self.steps = torch.zeros(flat.shape[0], dtype=torch.float64)

    @torch.no_grad()
    def step(self, grad: Tensor, lr: Tensor, active: Tensor) -> None:
        """One update of every active run (rows of ``grad``) with learning rates ``lr`` ``[R]``."""
        updated, self.exp_avg, self.exp_avg_sq, self.steps = adam_step(
            self.flat,
            self.exp_avg,
            self.exp_avg_sq,
            self.steps,
            grad,
            lr,
            active,
            self.betas,
            self.eps,
        )
        self.flat.copy_(updated)


def adam_step(
    flat: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    steps: Tensor,
    grad: Tensor,
    lr: Tensor,
    active: Tensor,
    betas: tuple[float, float],
    eps: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """:class:`StackedAdam`'s update as a function (no tensor is changed in place): returns the
    new parameters, moments and step counts."""
    beta1, beta2 = betas
    steps = steps + active.to(torch.float64)
    count = steps.clamp(min=1)
    step_size = (lr.to(torch.float64) / (1 - beta1**count)).to(grad.dtype).unsqueeze(1)
    correction = (1 - beta2**count).sqrt().to(grad.dtype).unsqueeze(1)
    # torch.optim.Adam's operations, for every row whether or not the others sit out: a run's
    # rounding must not depend on the rest of its population.
    keep = active.unsqueeze(1)
    m = exp_avg.lerp(grad, 1 - beta1)
    v = torch.addcmul(exp_avg_sq * beta2, grad, grad, value=1 - beta2)
    denom = v.sqrt().div(correction).add(eps)
    updated = torch.addcdiv(flat, m * step_size, denom, value=-1)
    return (
        torch.where(keep, updated, flat),
        torch.where(keep, m, exp_avg),
        torch.where(keep, v, exp_avg_sq),
        steps,
    )
