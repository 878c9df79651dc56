"""Meta-gradient estimators behind one interface, named by horizon and method as in
google/learned_optimization: ``full_grad``, ``truncated_grad`` and ``antithetic_es``.

An estimator receives the meta-parameters and a *meta-objective*
(:class:`metaloss.outer.problem.MetaObjective`: meta-parameters and a back-propagation horizon
to one value per task, and a population of parameter sets to a table of values). It returns
the mean meta-loss and an estimate of its gradient.

References:
    Salimans et al., "Evolution Strategies as a Scalable Alternative to RL", 2017 (antithetic ES,
    centred-rank fitness shaping).
    Wu et al., "Understanding Short-Horizon Bias in Stochastic Meta-Optimization", ICLR 2018
    (truncated back-propagation through the inner loop).
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import torch
from torch import Tensor

from metaloss.config import OuterConfig
from metaloss.outer.problem import MetaObjective
from metaloss.typing import Params

__all__ = [
    "AntitheticES",
    "EstimatorOut",
    "FullGrad",
    "GradientEstimator",
    "MetaObjective",
    "TruncatedGrad",
    "centred_ranks",
    "make_estimator",
]


class EstimatorOut(NamedTuple):
    """A meta-gradient estimate: the mean meta-loss (detached), the gradient per parameter, the
    per-task meta-losses at the current meta-parameters (detached) and, for population-based
    estimators, each perturbed candidate's mean meta-loss (``None`` otherwise)."""

    meta_loss: Tensor
    grads: Params
    per_task: Tensor
    candidates: Tensor | None = None


class GradientEstimator(Protocol):
    """Turns a meta-objective into a meta-gradient estimate."""

    name: str

    def estimate(
        self, params: Params, objective: MetaObjective, generator: torch.Generator
    ) -> EstimatorOut: ...


class FullGrad:
    """Exact gradient by back-propagation through the whole inner unroll."""

    name = "full_grad"
    backprop_steps: int | None = None

    def estimate(
        self, params: Params, objective: MetaObjective, generator: torch.Generator
    ) -> EstimatorOut:
        leaves = {k: v.detach().requires_grad_() for k, v in params.items()}
        per_task = objective(leaves, self.backprop_steps)
        meta_loss = per_task.mean()
        grads = torch.autograd.grad(meta_loss, list(leaves.values()), allow_unused=True)
        out = {
            k: torch.zeros_like(v) if g is None else g
            for (k, v), g in zip(leaves.items(), grads, strict=True)
        }
        return EstimatorOut(meta_loss.detach(), out, per_task.detach())


class TruncatedGrad(FullGrad):
    """Gradient through the last ``truncation`` inner steps only (cheaper, short-horizon biased)."""

    name = "truncated_grad"

    def __init__(self, truncation: int) -> None:
        self.backprop_steps = truncation


def centred_ranks(values: Tensor) -> Tensor:
    """Ranks of ``values`` scaled to [-0.5, 0.5] (Salimans et al., 2017)."""
    ranks = torch.empty_like(values)
    ranks[values.argsort()] = torch.arange(values.numel(), dtype=values.dtype, device=values.device)
    return ranks / max(values.numel() - 1, 1) - 0.5


class AntitheticES:
    """Antithetic evolution strategies: a gradient estimate that needs only objective values.

    For ``population`` noise directions ``e_i ~ N(0, I)`` it evaluates ``f(θ ± σ e_i)`` and
    returns ``Σ (f⁺_i − f⁻_i) e_i / (2 σ population)``, optionally with centred-rank fitness.
    Use it for meta-objectives that are not differentiable (e.g. RL returns).

    Args:
        population: number of antithetic pairs.
        sigma: perturbation scale.
        rank_shaping: replace objective values by centred ranks before combining.
    """

    name = "antithetic_es"

    def __init__(self, population: int, sigma: float, rank_shaping: bool = True) -> None:
        self.population = population
        self.sigma = sigma
        self.rank_shaping = rank_shaping

    def estimate(
        self, params: Params, objective: MetaObjective, generator: torch.Generator
    ) -> EstimatorOut:
        """Evaluate ``θ + σe_1..θ + σe_P, θ − σe_1..θ − σe_P, θ`` in one call of
        ``objective.many`` (so a problem can evaluate the whole population in one batched
        computation or across processes) and combine the antithetic pairs."""
        flat = torch.cat([v.detach().flatten() for v in params.values()])
        # Drawn on the (CPU) generator and moved: the same noise on every device.
        noise = torch.randn((self.population, flat.numel()), generator=generator, dtype=flat.dtype)
        noise = noise.to(flat.device)
        candidates = [_unflatten(flat + self.sigma * e, params) for e in noise]
        candidates += [_unflatten(flat - self.sigma * e, params) for e in noise]
        candidates.append({k: v.detach() for k, v in params.items()})
        values = objective.many(candidates)
        return self.combine(values, noise, params)

    def combine(self, values: Tensor, noise: Tensor, params: Params) -> EstimatorOut:
        """The estimate from the meta-losses ``values [2P + 1, tasks]`` of the candidates in
        :meth:`estimate`'s order and their ``noise [P, dims]``."""
        flat = torch.cat([v.detach().flatten() for v in params.values()])
        means = values[: 2 * self.population].mean(1)
        fitness = means
        if self.rank_shaping:
            fitness = centred_ranks(fitness)
            scale = 1.0 / (self.population * self.sigma)
        else:
            scale = 1.0 / (2 * self.population * self.sigma)
        diff = fitness[: self.population] - fitness[self.population :]
        grad_flat = scale * (diff.to(flat.dtype) @ noise)
        per_task = values[-1]
        return EstimatorOut(per_task.mean(), _unflatten(grad_flat, params), per_task, means)


def _unflatten(flat: Tensor, like: Params) -> Params:
    out, start = {}, 0
    for k, v in like.items():
        out[k] = flat[start : start + v.numel()].view_as(v)
        start += v.numel()
    return out


def make_estimator(config: OuterConfig) -> FullGrad | AntitheticES:
    """The estimator named by ``config.estimator``."""
    if config.estimator == "truncated_grad":
        return TruncatedGrad(config.truncation)
    if config.estimator == "antithetic_es":
        return AntitheticES(config.es_population, config.es_sigma, config.es_rank_shaping)
    return FullGrad()
