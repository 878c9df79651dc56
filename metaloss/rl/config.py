"""Options of the reinforcement-learning families (``task.family: cartpole`` or ``acrobot``).

An RL *task* is a gymnasium classic-control environment whose physical parameters are scaled by
multipliers drawn per task. Meta-train and meta-validation tasks draw every multiplier from
``train_scale``; held-out meta-test variants draw every multiplier from the band of ``test_scale``
that lies *outside* ``train_scale`` (disjoint ranges), and the unmodified environment is a
meta-test row of its own. The PPO loop that trains a policy on one task (the inner loop) is
configured by :class:`PPOConfig`; the evolution-strategies outer loop reads ``outer.*`` and the
learned objective's network reads ``loss.*`` of the run config.

This module holds plain dataclasses only (no gymnasium import), so configs parse quickly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from metaloss.config import (
    ConfigError,
    RunConfig,
    TaskConfig,
    setting,
)

__all__ = [
    "AcrobotConfig",
    "CartPoleConfig",
    "PPOConfig",
    "RLTaskConfig",
    "check_rl_settings",
    "is_rl_config",
]


@dataclass(frozen=True)
class PPOConfig:
    """The PPO training loop (defaults: CleanRL's ``ppo.py`` for classic control).

    Reference: Schulman et al., "Proximal Policy Optimization Algorithms", 2017; Huang et al.,
    "The 37 Implementation Details of Proximal Policy Optimization", ICLR blog track 2022.
    """

    num_envs: int = setting(4, "parallel environments per training run", ge=1)
    num_steps: int = setting(128, "steps per environment per rollout", ge=1)
    total_steps: int = setting(500_000, "environment steps of one training run", ge=1)
    lr: float = setting(2.5e-4, "Adam learning rate of the agent", gt=0)
    anneal_lr: bool = setting(True, "decay the learning rate linearly to 0 over the run")
    gamma: float = setting(0.99, "discount factor", ge=0, le=1)
    gae_lambda: float = setting(0.95, "GAE lambda", ge=0, le=1)
    minibatches: int = setting(4, "minibatches per epoch", ge=1)
    epochs: int = setting(4, "optimisation epochs per rollout", ge=1)
    norm_adv: bool = setting(True, "normalise advantages per minibatch")
    clip_coef: float = setting(0.2, "PPO clip epsilon (the ppo_clip objective only)", gt=0)
    clip_vloss: bool = setting(True, "clip the value loss like the policy ratio")
    ent_coef: float = setting(0.01, "entropy bonus coefficient", ge=0)
    vf_coef: float = setting(0.5, "value loss coefficient", ge=0)
    max_grad_norm: float = setting(0.5, "clip the agent's gradient to this norm", gt=0)
    hidden: tuple[int, ...] = setting((64, 64), "hidden widths of the actor and critic MLPs", ge=1)
    compile: bool = setting(
        False,
        "torch.compile population PPO's rollout steps, GAE and minibatch update (the batched "
        "torch environments; train_ppo's gymnasium path refuses it): faster after a first "
        "compile of one to two minutes per process and shapes; the numbers agree with eager to "
        "float32 rounding, not bit for bit",
    )


@dataclass(frozen=True)
class RLTaskConfig(TaskConfig):
    """Options shared by the RL families: the environment distribution, the inner PPO loop, the
    ES fitness and the benchmark's budget. The benchmark's sizes and grids are the shared
    sections': ``evaluation.test_tasks`` held-out variants, ``evaluation.seeds`` training seeds
    per row, ``evaluation.grid_tasks`` meta-train variants for selection, ``evaluation.lr_grid``,
    and ``benchmark.baselines`` (``ppo_clip`` with ``param: clip_coef`` values, ``dpo``)."""

    unused: ClassVar[tuple[str, ...]] = (
        "learner",
        "inner",
        "loss.output",
        "loss.zero_at_target",
        "loss.form",
        "outer.truncation",
        "outer.prefetch",
        "outer.variants",
        "outer.inner_lr_scale",
        "outer.valid_variants",
        "outer.valid_lr_scales",
        "outer.objective_transform",
        "benchmark.learned_baselines",
        "benchmark.oracle",
        "benchmark.rows",
        "benchmark.transfer",
        "benchmark.split",
    )
    """Settings no RL command reads (the agents are ``task.ppo.*``, the inner loop is PPO, RL
    meta-trains with antithetic ES on ``task.*`` variants, and the benchmark's rows are the default
    environment and ``evaluation.test_tasks`` held-out variants): refused when set."""

    env: str = setting("CartPole-v1", "gymnasium environment id")
    train_scale: tuple[float, float] = setting(
        (0.75, 1.33), "multiplier range of each physical parameter for meta-train/valid tasks", gt=0
    )
    test_scale: tuple[float, float] = setting(
        (0.6, 1.67),
        "outer multiplier range of held-out variants (the part outside train_scale)",
        gt=0,
    )
    ppo: PPOConfig = field(default_factory=PPOConfig, metadata={"doc": "the PPO inner loop"})
    meta_total_steps: int = setting(
        30_000, "environment steps of each ES fitness training run", ge=1
    )
    fitness_fraction: float = setting(
        0.3, "fitness: mean return of episodes in this last part of a run", gt=0, le=1
    )
    drift_init: Literal["random", "dpo", "zero"] = setting(
        "dpo",
        "initial learned drift: random weights, a regression fit of DPO's drift, or zero output",
    )
    bench_total_steps: int = setting(
        50_000, "environment steps per benchmark run (equal for every objective)", ge=1
    )
    threshold: float = setting(475.0, "return threshold of the steps-to-threshold metric")

    def __post_init__(self) -> None:
        low, high = self.train_scale
        outer_low, outer_high = self.test_scale
        if not low <= 1.0 <= high:
            raise ConfigError(
                f"task.train_scale: expected a range around 1.0, got {list(self.train_scale)}"
            )
        if not (outer_low < low and outer_high > high):
            raise ConfigError(
                f"task.test_scale: expected a range strictly wider than train_scale {list(self.train_scale)}, "
                f"got {list(self.test_scale)}"
            )


@dataclass(frozen=True)
class CartPoleConfig(RLTaskConfig):
    """CartPole-v1 with gravity, cart mass, pole mass, pole length and force scaled per task."""

    family: str = setting("cartpole", "name of the task family")
    env: Literal["CartPole-v1"] = setting("CartPole-v1", "gymnasium environment id")


@dataclass(frozen=True)
class AcrobotConfig(RLTaskConfig):
    """Acrobot-v1 with both link masses and lengths scaled per task."""

    family: str = setting("acrobot", "name of the task family")
    env: Literal["Acrobot-v1"] = setting("Acrobot-v1", "gymnasium environment id")
    threshold: float = setting(-100.0, "return threshold of the steps-to-threshold metric")


def is_rl_config(task: TaskConfig) -> bool:
    """Whether a run's task options describe an RL family."""
    return isinstance(task, RLTaskConfig)


def check_rl_settings(config: RunConfig) -> None:
    """Refuse, in one line naming the setting, a non-RL family, a ``dtype`` other than float32 or
    a ``device`` other than the CPU (the settings RL does not read are refused when the config is
    parsed: :attr:`RLTaskConfig.unused`)."""
    if not isinstance(config.task, RLTaskConfig):
        raise ConfigError(
            f"task.family: expected an RL family (cartpole, acrobot), got {config.task.family!r}"
        )
    if config.dtype != "float32":
        raise ConfigError(f"dtype: RL runs in float32; expected float32, got {config.dtype!r}")
    if config.device not in ("auto", "cpu"):
        raise ConfigError(
            f"device: RL runs on the CPU; expected auto or cpu, got {config.device!r}"
        )
