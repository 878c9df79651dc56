"""The supervised meta-problem: a learned loss trained through differentiable inner unrolls.

Each meta-batch is ``outer.meta_batch`` meta-train tasks of one *variant* of the inner problem
with fresh learner initialisations; the meta-loss of a task is the family's objective on its
``outer_valid`` split after K inner steps with the learned loss (ML3). Variants
(``outer.variants``) let one run meta-train over a mixture of inner problems — other task
families, learner architectures, inner optimisers, horizons or batch sizes — drawn once per
meta-step, so a learned loss is pushed to work beyond one setting; without variants every step
uses the run's own settings (and draws exactly the random numbers it always did).
``outer.inner_lr_scale`` also draws the inner learning rate per meta-step (log-uniformly around
``inner.lr``), since a benchmark or a user selects the rate a loss is trained with. Validation
averages the meta-loss over the conditions of ``outer.valid_variants`` (default: the run's own
settings), e.g. held-out task families, for an out-of-distribution choice of the best step.

References:
    Bechtle et al., "Meta Learning via Learned Loss" (ML3), ICPR 2020.
    Metz et al., "Tasks, stability, architecture, and compute: Training more effective learned
    optimizers, and using them to train themselves", 2020 (meta-training over a broad mixture
    of inner problems for generalisation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.func import functional_call

from metaloss.config import ConfigError, RunConfig, Variant, derive_config
from metaloss.device import resolve_device, to_device
from metaloss.inner import InnerBackend, make_backend, task_batched
from metaloss.learners import init_params, make_learner
from metaloss.losses.kinds import kind_spec
from metaloss.losses.module import LossModule
from metaloss.outer.prefetch import Prefetcher
from metaloss.outer.problem import MetaObjective, MetaProblem
from metaloss.seeds import VALID_INIT_SEED
from metaloss.tasks import Split, Task, TaskFamily, make_family
from metaloss.tasks.base import cast_task
from metaloss.typing import Params, PerSampleLoss

__all__ = [
    "Condition",
    "SupervisedBatch",
    "SupervisedProblem",
    "supervised_family",
]


@dataclass(frozen=True)
class Condition:
    """One setting of the inner problem: its config, task family, learner and backend."""

    name: str
    config: RunConfig
    family: TaskFamily
    learner: nn.Module
    backend: InnerBackend


class SupervisedBatch(NamedTuple):
    """A meta-batch: which variant it was drawn from, its stacked tasks and initialisations,
    and its inner learning rate (``None``: the variant's ``inner.lr``)."""

    variant: int
    tasks: Task
    inits: Params
    lr: float | None = None


class SupervisedProblem(MetaProblem):
    """Meta-train a learned loss (its kind's class, e.g. :class:`~metaloss.losses.LearnedLoss`)
    on a task family (or a mixture of
    inner problems) by back-propagating through unrolled inner loops.

    Args:
        config: the run configuration.
        family: the task family of the run's own condition (default: ``config.task``'s).

    Example:
        >>> from metaloss.config import parse
        >>> problem = SupervisedProblem(parse({"outer": {"meta_batch": 2}}))
        >>> batch = problem.sample(torch.Generator().manual_seed(0))
        >>> batch.tasks.train.x.shape
        torch.Size([2, 10, 1])
    """

    def __init__(self, config: RunConfig, family: TaskFamily | None = None) -> None:
        self.config = config
        self.dtype = getattr(torch, config.dtype)
        self.device = resolve_device(config.device)
        self.base = self._condition("run", config, family)
        self.variants = [
            self._variant(v, "outer.variants", i) for i, v in enumerate(config.outer.variants)
        ] or [self.base]
        self.weights = torch.tensor(  # for draws on the (CPU) generator
            [v.weight for v in config.outer.variants] or [1.0], dtype=torch.float64, device="cpu"
        )
        valid = config.outer.valid_variants
        self.valid_conditions = [
            self._variant(v, "outer.valid_variants", i) for i, v in enumerate(valid)
        ] or [self.base]
        self._valid_sets: list[tuple[Task, Params]] | None = None
        self._prefetch = Prefetcher(self._draw, config.outer.prefetch)

    # ---------------------------------------------------------------- conditions

    def _condition(
        self, name: str, config: RunConfig, family: TaskFamily | None = None
    ) -> Condition:
        family = family or make_family(config.task)
        learner = make_learner(config.learner, family.in_features, family.out_features).to(
            device=self.device, dtype=self.dtype
        )
        backend = make_backend(learner, config.inner, family.objective)
        return Condition(name, config, family, learner, backend)

    def _variant(self, variant: Variant, where: str, index: int) -> Condition:
        label = f"{where}[{index}]" + (f" ({variant.name})" if variant.name else "")
        config = derive_config(self.config, variant.set, label, ("task", "learner", "inner"))
        try:
            condition = self._condition(variant.name or f"variant {index}", config)
        except ValueError as error:
            raise ConfigError(f"{label}: {error}") from None
        if condition.family.kind != self.base.family.kind:
            raise ConfigError(
                f"{label}: expected a {self.base.family.kind} task family like the run's, got "
                f"{condition.family.kind} ({config.task.family})"
            )
        return condition

    @property
    def family(self) -> TaskFamily:
        """The task family of the run's own settings."""
        return self.base.family

    @property
    def learner(self) -> nn.Module:
        """The learner module of the run's own settings (structure only)."""
        return self.base.learner

    @property
    def backend(self) -> InnerBackend:
        """The inner-loop backend of the run's own settings."""
        return self.base.backend

    # ---------------------------------------------------------------- the interface

    def make_loss(self, generator: torch.Generator) -> LossModule:
        family = self.base.family
        loss = kind_spec(family.kind).loss_class.from_config(
            self.config.loss, family.kind, generator, num_classes=family.out_features
        )
        return loss.to(device=self.device, dtype=self.dtype)

    def sample(self, generator: torch.Generator) -> SupervisedBatch:
        """The next meta-batch (with ``outer.prefetch``, drawn in a worker process during the
        previous meta-step; the batches and the generator's states are exactly those of drawing
        in line, see :mod:`metaloss.outer.prefetch`)."""
        batch = self._prefetch.sample(generator)
        self._prefetch.start()  # the one after it, while this one is used
        return batch._replace(
            tasks=to_device(batch.tasks, self.device), inits=to_device(batch.inits, self.device)
        )

    def close(self) -> None:
        self._prefetch.close()

    def _draw(self, generator: torch.Generator) -> SupervisedBatch:
        index = 0
        if len(self.variants) > 1:
            index = int(torch.multinomial(self.weights, 1, generator=generator))
        condition = self.variants[index]
        size = self.config.outer.meta_batch
        drawn = condition.family.sample(Split.META_TRAIN, size, generator)
        tasks = cast_task(drawn, self.dtype)  # on the CPU: sample() moves it to the device
        inits = init_params(condition.learner, size, generator, self.dtype, "cpu")
        low, high = self.config.outer.inner_lr_scale
        lr = None
        if (low, high) != (1.0, 1.0):
            u = float(torch.rand((), generator=generator, dtype=torch.float64))
            lr = condition.config.inner.lr * math.exp(math.log(low) + u * math.log(high / low))
        return SupervisedBatch(index, tasks, inits, lr)

    def objective(self, loss: LossModule, batch: SupervisedBatch) -> MetaObjective:
        condition = self.variants[batch.variant]
        return self._objective(loss, condition, batch.tasks, batch.inits, batch.lr)

    def _objective(
        self,
        loss: LossModule,
        condition: Condition,
        tasks: Task,
        inits: Params,
        lr: float | None = None,
    ) -> MetaObjective:
        log = self.config.outer.objective_transform == "log"

        batched = bool(getattr(loss, "elementwise", False))
        swap_once = not condition.config.inner.compile

        def unroll(loss_fn: PerSampleLoss, backprop_steps: int | None) -> Tensor:
            fn = task_batched(loss_fn) if batched else loss_fn
            return condition.backend.run(
                fn, inits, tasks, backprop_steps=backprop_steps, lr=lr
            ).meta_objective

        def per_task(params: Params, backprop_steps: int | None) -> Tensor:
            if swap_once:  # the loss's parameters swapped once for the whole unroll
                holder = _LossHolder(loss)
                named = {f"loss.{k}": v for k, v in params.items()}
                run = partial(_unroll_with_held_loss, unroll, backprop_steps)
                value: Tensor = functional_call(holder, named, (run,))
            else:  # swapped at every call (what torch.compile has been tested with)

                def loss_fn(pred: Tensor, target: Tensor) -> Tensor:
                    return functional_call(loss, params, (pred, target), {"reduction": "none"})  # type: ignore[no-any-return]

                value = unroll(loss_fn, backprop_steps)
            return value.clamp_min(1e-12).log() if log else value

        return MetaObjective(per_task)

    def validation_set(self, condition: int = 0) -> tuple[Task, Params]:
        """The fixed meta-validation tasks and initialisations of a validation condition
        (independent of the run seed)."""
        if self._valid_sets is None:
            count = self.config.outer.val_tasks
            self._valid_sets = []
            for c in self.valid_conditions:
                drawn = c.family.tasks(Split.META_VALID, count)
                tasks = to_device(cast_task(drawn, self.dtype), self.device)
                generator = torch.Generator().manual_seed(VALID_INIT_SEED)
                self._valid_sets.append(
                    (tasks, init_params(c.learner, count, generator, self.dtype, self.device))
                )
        return self._valid_sets[condition]

    def validate(self, loss: LossModule) -> float:
        """The meta-loss on the fixed meta-validation tasks, averaged over tasks and then over
        the validation conditions; with ``outer.valid_lr_scales`` each condition's value is its
        lowest over those multiples of its inner rate (NaN only if every rate gives NaN/Inf)."""
        params = {k: v.detach() for k, v in loss.named_parameters()}
        scales = self.config.outer.valid_lr_scales
        values = []
        with torch.no_grad():
            for i, condition in enumerate(self.valid_conditions):
                tasks, inits = self.validation_set(i)
                rates: list[float | None] = [condition.config.inner.lr * f for f in scales]
                rates = rates or [None]
                at_rates = [
                    float(self._objective(loss, condition, tasks, inits, lr)(params).mean())
                    for lr in rates
                ]
                finite = [v for v in at_rates if math.isfinite(v)]
                values.append(min(finite) if finite else math.nan)
        return sum(values) / len(values)

    def describe(self) -> dict[str, Any]:
        """Names of the training variants and validation conditions (for logs)."""
        return {
            "variants": [v.name for v in self.variants],
            "valid_variants": [v.name for v in self.valid_conditions],
        }


class _LossHolder(nn.Module):
    """Holds the loss so that ``functional_call`` can swap its parameters for a whole unroll
    (once, instead of at each of the K loss evaluations); ``forward(run)`` calls ``run(loss)``."""

    def __init__(self, loss: LossModule) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, run: Any) -> Tensor:
        return run(self.loss)  # type: ignore[no-any-return]


def _unroll_with_held_loss(unroll: Any, backprop_steps: int | None, loss: LossModule) -> Tensor:
    return unroll(loss.per_sample_for_gradient, backprop_steps)  # type: ignore[no-any-return]


def supervised_family(trainer: Any) -> TaskFamily:
    """The task family of a trainer's supervised problem (unwrapping a sharded one)."""
    problem = getattr(trainer.problem, "inner", trainer.problem)
    if not isinstance(problem, SupervisedProblem):
        raise TypeError(f"expected a supervised problem, got {type(problem).__name__}")
    return problem.family
