"""Meta-training a learned policy objective (LPO's drift) with antithetic evolution strategies.

Each meta-step draws a few meta-train environment variants and training seeds, perturbs the drift
network's weights antithetically (the engine's :class:`~metaloss.outer.estimators.AntitheticES`),
trains a fresh PPO agent with every candidate objective on every variant for a short run, and
scores each candidate by the mean episodic return over the last part of its runs (averaged over
the variants). All candidates share the variants and seeds (common random numbers). The centred
ranks of the scores give the search gradient, which Adam applies to the drift network. Every
``val_every`` steps the current objective is scored on fixed meta-validation variants and the
best one is kept; every ``checkpoint_every`` steps an atomic checkpoint is written, from which
:meth:`RLMetaTrainer.train` resumes. The population's training runs go to a process pool.

References:
    Lu et al., "Discovered Policy Optimisation", NeurIPS 2022 (LPO: a drift meta-trained by ES).
    Salimans et al., "Evolution Strategies as a Scalable Alternative to RL", 2017.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from metaloss.config import ConfigError, LossConfig, RunConfig, to_dict
from metaloss.outer.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from metaloss.outer.estimators import AntitheticES
from metaloss.outer.problem import MetaObjective
from metaloss.rl.config import PPOConfig, RLTaskConfig
from metaloss.rl.envs import EnvFamily, EnvTask
from metaloss.rl.objectives import LearnedDrift, dpo_drift
from metaloss.rl.pool import WorkerPool
from metaloss.rl.ppo import train_ppo
from metaloss.seeds import VALID_INIT_SEED
from metaloss.tasks.base import Split

__all__ = [
    "CHECKPOINT_NAME",
    "FitnessJob",
    "RLCallback",
    "RLMetaTrainer",
    "RLStepRecord",
    "RLTrainResult",
    "RLValidation",
    "fit_drift",
    "make_drift",
    "rl_task_config",
    "run_fitness_job",
]


def rl_task_config(config: RunConfig) -> RLTaskConfig:
    """The run's RL task options, or a :class:`ConfigError` naming ``task.family``."""
    if not isinstance(config.task, RLTaskConfig):
        raise ConfigError(
            f"task.family: expected an RL family (cartpole, acrobot), got {config.task.family!r}"
        )
    return config.task


# ------------------------------------------------------------------------------ the objective


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
        drift = LearnedDrift(config.features, config.hidden, config.activation)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    with torch.no_grad():
        for p in drift.parameters():
            fan_in = p.shape[-1] if p.dim() > 1 else p.numel()
            bound = config.init_scale / max(fan_in, 1) ** 0.5
            p.copy_((2 * torch.rand(p.shape, generator=generator) - 1) * bound)
        if init == "zero":
            last = drift.net[-1]
            last.weight.zero_()  # type: ignore[operator]
    if init == "dpo":
        fit_drift(drift, generator)
    return drift


# ------------------------------------------------------------------------------ fitness jobs


@dataclass(frozen=True)
class FitnessJob:
    """One short PPO training run of one candidate objective on one variant (picklable)."""

    architecture: dict[str, Any]
    weights: dict[str, Tensor]
    task: EnvTask
    ppo: PPOConfig
    total_steps: int
    fraction: float
    seed: int


def run_fitness_job(job: FitnessJob) -> float:
    """The mean episodic return over the last ``fraction`` of the run."""
    drift = LearnedDrift(**job.architecture, reduction="none")
    drift.load_state_dict(job.weights)
    with torch.enable_grad():  # ES evaluates candidates under no_grad; PPO needs gradients
        run = train_ppo(job.task, job.ppo, drift, job.seed, job.total_steps)
    return run.final_return(job.fraction)


# ------------------------------------------------------------------------------ records


@dataclass(frozen=True)
class RLStepRecord:
    """One ES step: the mean fitness (return) of the centre and of the population, the search
    gradient's norm, seconds."""

    step: int
    centre_return: float
    population_return: float
    best_return: float
    grad_norm: float
    seconds: float


@dataclass(frozen=True)
class RLValidation:
    """Mean return of the current objective on the fixed meta-validation variants."""

    step: int
    value: float
    best: bool


@dataclass
class RLTrainResult:
    """The best objective (by meta-validation return) and the run's history."""

    objective: LearnedDrift
    steps: list[RLStepRecord]
    validations: list[RLValidation]
    best_step: int
    best_value: float


class RLCallback:
    """Hooks called by :class:`RLMetaTrainer`; override the ones you need."""

    def on_start(self, trainer: RLMetaTrainer) -> None:
        """Before the first step (also after a resume)."""

    def on_step(self, trainer: RLMetaTrainer, record: RLStepRecord) -> None:
        """After every ES step."""

    def on_validation(self, trainer: RLMetaTrainer, record: RLValidation) -> None:
        """After every validation."""

    def on_end(self, trainer: RLMetaTrainer, result: RLTrainResult) -> None:
        """After training, with the best objective restored."""


# ------------------------------------------------------------------------------ the trainer


class RLMetaTrainer:
    """Meta-train a :class:`LearnedDrift` with antithetic ES on an RL family.

    Reads ``task.*`` (variants, PPO, fitness run length, workers, initialisation), ``loss.*``
    (features, widths, activation) and ``outer.*`` (``steps``, ``lr``, ``meta_batch`` variants
    per step, ``es_population`` pairs, ``es_sigma``, ``es_rank_shaping``, ``grad_clip``,
    ``val_every``, ``val_tasks``, ``checkpoint_every``) of the run config.

    Args:
        config: the run configuration (an RL family).
        out_dir: where checkpoints go (``None``: none).
        callbacks: progress and logging hooks.

    Example:
        >>> from metaloss.config import load_config
        >>> trainer = RLMetaTrainer(load_config("configs/cartpole.yaml"))  # doctest: +SKIP
        >>> result = trainer.train()                                          # doctest: +SKIP
    """

    def __init__(
        self, config: RunConfig, out_dir: Path | None = None, callbacks: Sequence[RLCallback] = ()
    ) -> None:
        self.config = config
        self.task_config = rl_task_config(config)
        self.out_dir = out_dir
        self.callbacks = list(callbacks)
        self.family = EnvFamily(self.task_config)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.objective = make_drift(config.loss, self.task_config.drift_init, self.generator)
        outer = config.outer
        self.estimator = AntitheticES(outer.es_population, outer.es_sigma, outer.es_rank_shaping)
        self.optimizer = torch.optim.Adam(self.objective.parameters(), lr=outer.lr)
        self.step = 0
        self.best_value = float("-inf")
        self.best_step = -1
        self.best_state: dict[str, Tensor] = {}
        self.steps: list[RLStepRecord] = []
        self.validations: list[RLValidation] = []
        self.pool = WorkerPool(self.task_config.workers)

    # ---------------------------------------------------------------- evaluation

    def returns(
        self, candidates: list[dict[str, Tensor]], tasks: list[EnvTask], seeds: list[int]
    ) -> Tensor:
        """Fitness ``[candidates, tasks]``: each candidate trains one agent per (task, seed)."""
        arch = self.objective.architecture()
        arch = {k: v for k, v in arch.items() if k in ("features", "hidden", "activation")}
        tc = self.task_config
        jobs = [
            FitnessJob(
                arch,
                {k: v.detach().clone() for k, v in c.items()},
                task,
                tc.ppo,
                tc.meta_total_steps,
                tc.fitness_fraction,
                seed,
            )
            for c in candidates
            for task, seed in zip(tasks, seeds, strict=True)
        ]
        values = torch.tensor(self.pool.map(run_fitness_job, jobs), dtype=torch.float64)
        return values.view(len(candidates), len(tasks))

    def validate(self) -> float:
        """Mean return of the current objective on the fixed meta-validation variants."""
        count = self.config.outer.val_tasks
        tasks = self.family.tasks(Split.META_VALID, count)
        seeds = [VALID_INIT_SEED + i for i in range(count)]
        params = {k: v.detach() for k, v in self.objective.named_parameters()}
        return float(self.returns([params], tasks, seeds).mean())

    # ---------------------------------------------------------------- one step

    def meta_step(self) -> RLStepRecord:
        """One antithetic-ES step on freshly sampled meta-train variants and seeds."""
        start = time.perf_counter()
        tasks = self.family.sample(Split.META_TRAIN, self.config.outer.meta_batch, self.generator)
        seeds = torch.randint(0, 1 << 31, (len(tasks),), generator=self.generator).tolist()
        table: list[Tensor] = []

        def evaluate(candidates: list[dict[str, Tensor]]) -> list[Tensor]:
            table.append(self.returns(candidates, tasks, seeds))
            return [-row.float() for row in table[-1]]  # ES minimises: meta-loss = −return

        params: dict[str, Tensor] = dict(self.objective.named_parameters())
        objective = MetaObjective(
            lambda p, _: evaluate([p])[0], lambda cands: torch.stack(evaluate(list(cands)))
        )
        out = self.estimator.estimate(params, objective, self.generator)
        grad_norm = float(torch.sqrt(sum((g.double() ** 2).sum() for g in out.grads.values())))  # type: ignore[arg-type]
        clip = self.config.outer.grad_clip
        scale = min(1.0, clip / (grad_norm + 1e-12)) if clip else 1.0
        for name, p in self.objective.named_parameters():
            p.grad = out.grads[name] * scale
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        population = table[-1][:-1].mean(1)
        return RLStepRecord(
            self.step,
            float(table[-1][-1].mean()),
            float(population.mean()),
            float(population.max()),
            grad_norm,
            time.perf_counter() - start,
        )

    # ---------------------------------------------------------------- checkpoints

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this trainer is."""
        return {
            "format": 1,
            "config": json.dumps(to_dict(self.config), sort_keys=True),
            "step": self.step,
            "objective": {k: v.detach().clone() for k, v in self.objective.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "best_value": self.best_value,
            "best_step": self.best_step,
            "best_state": self.best_state,
            "steps": [list(vars(r).values()) for r in self.steps],
            "validations": [list(vars(r).values()) for r in self.validations],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (the config must match, except ``outer.steps``)."""
        saved, current = json.loads(state["config"]), to_dict(self.config)
        saved["outer"].pop("steps", None)
        current["outer"].pop("steps", None)
        if saved != current:
            raise ValueError("--resume: the checkpoint was written with a different config")
        self.step = state["step"]
        self.objective.load_state_dict(state["objective"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.best_value, self.best_step = state["best_value"], state["best_step"]
        self.best_state = state["best_state"]
        self.steps = [RLStepRecord(*r) for r in state["steps"]]
        self.validations = [RLValidation(*r) for r in state["validations"]]

    def save(self) -> None:
        if self.out_dir is not None:
            save_checkpoint(self.state_dict(), self.out_dir / CHECKPOINT_NAME)

    def resume(self) -> bool:
        """Load the run folder's checkpoint if there is one; return whether it did."""
        path = None if self.out_dir is None else self.out_dir / CHECKPOINT_NAME
        if path is None or not path.exists():
            return False
        self.load_state_dict(load_checkpoint(path))
        return True

    # ---------------------------------------------------------------- the loop

    def _validation(self) -> RLValidation:
        value = self.validate()
        best = value > self.best_value
        if best:
            self.best_value, self.best_step = value, self.step
            self.best_state = {
                k: v.detach().clone() for k, v in self.objective.state_dict().items()
            }
        record = RLValidation(self.step, value, best)
        self.validations.append(record)
        return record

    def _emit(self, hook: str, *args: Any) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(self, *args)

    def train(self, resume: bool = False) -> RLTrainResult:
        """Run ES to ``outer.steps`` (continuing the checkpoint with ``resume``)."""
        outer = self.config.outer
        try:
            if resume:
                self.resume()
            if self.step == 0 and not self.validations:
                self._emit("on_validation", self._validation())
            self._emit("on_start")
            while self.step < outer.steps:
                record = self.meta_step()
                self.steps.append(record)
                self._emit("on_step", record)
                if self.step % outer.val_every == 0 or self.step == outer.steps:
                    self._emit("on_validation", self._validation())
                if self.step % outer.checkpoint_every == 0 or self.step == outer.steps:
                    self.save()
        finally:
            self.close()
        if self.best_state:
            self.objective.load_state_dict(self.best_state)
        result = RLTrainResult(
            self.objective, self.steps, self.validations, self.best_step, self.best_value
        )
        self._emit("on_end", result)
        return result

    def close(self) -> None:
        """Stop the worker processes."""
        self.pool.close()
