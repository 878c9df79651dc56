"""The RL meta-problem: a learned drift (LPO) meta-trained by ES on short population-PPO runs.

On the one meta-trainer (:class:`~metaloss.outer.trainer.MetaTrainer`), with the same loop,
non-finite guard, early stopping (``outer.patience``), checkpoints, callbacks and TensorBoard as
the supervised families. A meta-batch is ``outer.meta_batch`` meta-train variants with one
training seed each; the meta-loss of a candidate drift on a variant is minus the mean episodic
return over the last ``task.fitness_fraction`` of a ``task.meta_total_steps``-step PPO run
(:func:`metaloss.rl.population.train_population`) that uses the candidate as its policy
objective. Every candidate of an ES population shares the variants and seeds (common random
numbers: same initial agents, same environment resets), and the whole population × variants
trains as one batched computation — or, under ``torch.distributed``, split across processes
(:class:`metaloss.rl.evaluate.DistributedEvaluator`); since a run's numbers do not depend on the
other runs, both give the same fitness. Meta-validation: minus the mean return on
``outer.val_tasks`` fixed meta-validation variants with fixed seeds.

ES is the only estimator (returns are not differentiable through the environment); settings the
RL families do not use are refused in one line (:attr:`RLTaskConfig.unused` when the config is
parsed, :func:`check_rl_settings` for the family and dtype).

References:
    Lu et al., "Discovered Policy Optimisation", NeurIPS 2022 (LPO: a drift meta-trained by ES).
    Salimans et al., "Evolution Strategies as a Scalable Alternative to RL", 2017.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from metaloss.config import ConfigError, LossConfig, RunConfig
from metaloss.losses.module import LossModule
from metaloss.outer.problem import MetaObjective, MetaProblem
from metaloss.rl.config import RLTaskConfig, check_rl_settings
from metaloss.rl.envs import EnvFamily, EnvTask
from metaloss.rl.evaluate import Evaluator, LocalEvaluator
from metaloss.rl.objectives import LearnedDrift, dpo_drift
from metaloss.rl.population import RunSpec
from metaloss.seeds import VALID_INIT_SEED
from metaloss.tasks.base import Split
from metaloss.typing import Params

__all__ = ["VALID_SEED", "RLBatch", "RLProblem", "fit_drift", "make_drift", "rl_task_config"]

VALID_SEED = VALID_INIT_SEED
"""Training seed of meta-validation variant 0 (variant ``i`` uses ``VALID_SEED + i``)."""


def rl_task_config(config: RunConfig) -> RLTaskConfig:
    """The run's RL task options, or a :class:`ConfigError` naming ``task.family``."""
    if not isinstance(config.task, RLTaskConfig):
        raise ConfigError(
            f"task.family: expected an RL family (cartpole, acrobot), got {config.task.family!r}"
        )
    return config.task


def fit_drift(
    drift: LearnedDrift, generator: torch.Generator, steps: int = 300, lr: float = 0.01
) -> float:
    """Regress ``drift`` onto DPO's closed-form drift on random ``(log_ratio, advantage)`` pairs
    (``log r ~ U[−0.7, 0.7]``, ``A ~ N(0, 1)``); returns the final mean squared error."""
    log_ratio = (torch.rand(1024, generator=generator) * 2 - 1) * 0.7
    adv = torch.randn(1024, generator=generator)
    target = dpo_drift(log_ratio, adv)
    optimizer = torch.optim.Adam(drift.parameters(), lr=lr)
    error = torch.zeros(())
    with torch.enable_grad():
        for _ in range(steps):
            error = ((drift.drift(log_ratio, adv) - target) ** 2).mean()
            optimizer.zero_grad()
            error.backward()
            optimizer.step()
    return float(error.detach())


def make_drift(config: LossConfig, init: str, generator: torch.Generator) -> LearnedDrift:
    """A learned drift of ``config``'s features and widths, initialised by ``init``: ``random``
    (uniform ± init_scale/√fan_in), ``zero`` (random, output layer zero: no drift) or ``dpo``
    (random, then :func:`fit_drift`)."""
    try:
        drift = LearnedDrift.from_config(config, "policy", generator)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    if init == "zero":
        with torch.no_grad():
            drift.net[-1].weight.zero_()  # type: ignore[operator]
    if init == "dpo":
        fit_drift(drift, generator)
    return drift


@dataclass(frozen=True)
class RLBatch:
    """One meta-batch: meta-train variants and one training seed per variant."""

    tasks: tuple[EnvTask, ...]
    seeds: tuple[int, ...]


def _drift_with(template: LearnedDrift, params: Params) -> LearnedDrift:
    drift = LearnedDrift(**template.architecture(), reduction="none")
    drift.load_state_dict({k: v.detach() for k, v in params.items()})
    return drift


class RLProblem(MetaProblem):
    """ES fitness of candidate drifts on short population-PPO runs (see the module docstring).

    Args:
        config: the run configuration (an RL family).
        evaluator: trains a population of runs (default: in this process, batched).

    Example:
        >>> from metaloss.config import load_config
        >>> from metaloss.outer.trainer import MetaTrainer
        >>> config = load_config("configs/cartpole.yaml")  # doctest: +SKIP
        >>> result = MetaTrainer(config, problem=RLProblem(config)).train()  # doctest: +SKIP
    """

    estimators = ("antithetic_es",)

    def __init__(self, config: RunConfig, evaluator: Evaluator | None = None) -> None:
        check_rl_settings(config)
        self.config = config
        self.task_config = rl_task_config(config)
        self.family = EnvFamily(self.task_config)
        self.evaluator = evaluator or LocalEvaluator()

    def make_loss(self, generator: torch.Generator) -> LossModule:
        return make_drift(self.config.loss, self.task_config.drift_init, generator)

    def sample(self, generator: torch.Generator) -> RLBatch:
        tasks = self.family.sample(Split.META_TRAIN, self.config.outer.meta_batch, generator)
        seeds = torch.randint(0, 1 << 31, (len(tasks),), generator=generator).tolist()
        return RLBatch(tuple(tasks), tuple(seeds))

    def returns(
        self, template: LearnedDrift, candidates: Sequence[Params], batch: RLBatch
    ) -> Tensor:
        """Fitness returns ``[candidates, variants]``: each candidate trains one agent per
        (variant, seed) of ``batch``, all in one population."""
        tc = self.task_config
        drifts = [_drift_with(template, c) for c in candidates]
        runs = [
            RunSpec(task, seed, drift)
            for drift in drifts
            for task, seed in zip(batch.tasks, batch.seeds, strict=True)
        ]
        results = self.evaluator(runs, tc.ppo, tc.meta_total_steps)
        values = [r.final_return(tc.fitness_fraction) for r in results]
        return torch.tensor(values, dtype=torch.float64).view(len(candidates), len(batch.tasks))

    def objective(self, loss: LossModule, batch: RLBatch) -> MetaObjective:
        if not isinstance(loss, LearnedDrift):
            raise TypeError(f"RLProblem: expected a LearnedDrift, got {type(loss).__name__}")

        def population(candidates: Sequence[Params]) -> Tensor:
            return -self.returns(loss, candidates, batch)

        def per_task(params: Params, backprop_steps: int | None) -> Tensor:
            return population([params])[0]

        return MetaObjective(per_task, population)

    def validation_batch(self) -> RLBatch:
        """The fixed meta-validation variants and seeds (independent of the run's seed)."""
        count = self.config.outer.val_tasks
        tasks = self.family.tasks(Split.META_VALID, count)
        return RLBatch(tuple(tasks), tuple(VALID_SEED + i for i in range(count)))

    def validate(self, loss: LossModule) -> float:
        """Minus the mean return of ``loss`` on the meta-validation variants."""
        assert isinstance(loss, LearnedDrift)
        params = {k: v.detach() for k, v in loss.named_parameters()}
        with torch.no_grad():
            return float(-self.returns(loss, [params], self.validation_batch()).mean())

    def close(self) -> None:
        self.evaluator.close()
