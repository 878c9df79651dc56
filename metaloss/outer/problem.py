"""The meta-problem: what the one meta-trainer trains, without the trainer knowing which it is.

Following google/learned_optimization, the inner problem (how a learner is trained with the
current meta-parameters and how the result is scored) is kept apart from the gradient estimator
and the outer optimiser. A :class:`MetaProblem` builds the learned module (the meta-parameters),
draws meta-batches from an explicit generator, turns a meta-batch into a :class:`MetaObjective`
(one meta-loss per task, as a function of the meta-parameters) and scores the fixed
meta-validation set. The trainer (:mod:`metaloss.outer.trainer`) only sees this interface, so
supervised families (a differentiable unroll, :mod:`metaloss.outer.supervised`) and
reinforcement learning (ES fitness of PPO runs, :mod:`metaloss.rl`) share one loop, with the same
guards, early stopping, checkpoints and callbacks.

Meta-losses are always *lower is better*; a problem that maximises (e.g. an episodic return)
reports its negation.

Reference: Metz et al., ``learned_optimization`` (``outer_trainers/truncated_step.py`` and
``gradient_learner.py``: the inner problem and the gradient estimator as two plug-ins).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from metaloss.losses.module import LossModule
from metaloss.typing import Params

__all__ = ["MetaObjective", "MetaProblem"]

PerTaskFn = Callable[[Params, "int | None"], Tensor]
PopulationFn = Callable[[Sequence[Params]], Tensor]


@dataclass(frozen=True)
class MetaObjective:
    """The meta-loss of one meta-batch as a function of the meta-parameters.

    Attributes:
        per_task: ``per_task(params, backprop_steps) -> [tasks]``; differentiable w.r.t.
            ``params`` when the problem is (``backprop_steps``: keep the graph of the last T
            inner steps only; ``None``: all of them).
        population: ``population(candidates) -> [candidates, tasks]``, the meta-losses of many
            parameter sets at once (e.g. a whole ES population in one batched computation);
            ``None``: :meth:`many` calls ``per_task`` once per candidate.
    """

    per_task: PerTaskFn
    population: PopulationFn | None = None

    def __call__(self, params: Params, backprop_steps: int | None = None) -> Tensor:
        return self.per_task(params, backprop_steps)

    def many(self, candidates: Sequence[Params]) -> Tensor:
        """Meta-losses ``[candidates, tasks]`` of every parameter set (no graph is built)."""
        with torch.no_grad():
            if self.population is not None:
                return self.population(candidates)
            return torch.stack([self.per_task(c, None) for c in candidates])


class MetaProblem(ABC):
    """A meta-learning problem: the learned module, its meta-batches, objective and validation.

    Subclasses say which gradient estimators they support (:attr:`estimators`): a problem whose
    meta-loss is not differentiable supports ``antithetic_es`` only.
    """

    estimators: tuple[str, ...] = ("full_grad", "truncated_grad", "antithetic_es")

    @abstractmethod
    def make_loss(self, generator: torch.Generator) -> LossModule:
        """A freshly initialised learned module (the meta-parameters), drawn from ``generator``."""

    @abstractmethod
    def sample(self, generator: torch.Generator) -> Any:
        """One meta-batch of meta-train tasks (and whatever else a step needs, e.g. learner
        initialisations), drawn from ``generator``."""

    @abstractmethod
    def objective(self, loss: LossModule, batch: Any) -> MetaObjective:
        """The per-task meta-loss of ``batch`` as a function of ``loss``'s parameters."""

    @abstractmethod
    def validate(self, loss: LossModule) -> float:
        """The mean meta-loss of ``loss`` on the fixed meta-validation set (independent of the
        run's seed, so validations of different runs are comparable)."""

    def close(self) -> None:
        """Release workers or files the problem holds (called when training ends; by default
        there is nothing to release)."""
        return None
