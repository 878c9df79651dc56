"""RL tasks: gymnasium classic-control environments with physical parameters sampled per task.

A task is identified by ``(split, index)`` like every metaloss task (:func:`task_generator` gives
each split a disjoint seed range). Meta-train and meta-validation tasks scale every physical
parameter by a multiplier drawn log-uniformly from ``train_scale``; held-out meta-test variants
draw each multiplier from the part of ``test_scale`` outside ``train_scale`` (so the two ranges
are disjoint); :meth:`EnvFamily.default_task` is the unmodified environment, a meta-test row.

Vector environments use gymnasium 1.x's default ``NEXT_STEP`` autoreset: the step *after* a
terminal or truncated step resets that sub-environment, ignores its action and returns reward 0
and the first observation of the next episode. That step is not a transition: the PPO loop
(:mod:`metaloss.rl.ppo`) masks it out. CartPole uses gymnasium's numpy-vectorised
``CartPoleVectorEnv``; Acrobot a ``SyncVectorEnv``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, cast

import torch

from metaloss.rl.config import RLTaskConfig
from metaloss.tasks.base import SPLIT_SIZE, Split, task_generator

__all__ = ["PARAMETERS", "EnvFamily", "EnvTask", "make_vec_env"]

PARAMETERS: dict[str, dict[str, float]] = {
    "CartPole-v1": {
        "gravity": 9.8,
        "masscart": 1.0,
        "masspole": 0.1,
        "length": 0.5,
        "force_mag": 10.0,
    },
    "Acrobot-v1": {
        "LINK_LENGTH_1": 1.0,
        "LINK_LENGTH_2": 1.0,
        "LINK_MASS_1": 1.0,
        "LINK_MASS_2": 1.0,
    },
}
"""The physical parameters scaled per task, with gymnasium's default values."""


@dataclass(frozen=True)
class EnvTask:
    """One environment variant: its id, its parameter values and a name for reports."""

    env_id: str
    params: dict[str, float]
    name: str

    def multipliers(self) -> dict[str, float]:
        """Each parameter divided by its default value."""
        defaults = PARAMETERS[self.env_id]
        return {k: v / defaults[k] for k, v in self.params.items()}


def _log_uniform(low: float, high: float, g: torch.Generator) -> float:
    u = float(torch.rand((), generator=g, dtype=torch.float64))
    return math.exp(math.log(low) + u * (math.log(high) - math.log(low)))


def _outside(inner: tuple[float, float], outer: tuple[float, float], g: torch.Generator) -> float:
    """A multiplier log-uniform on ``[outer_low, inner_low) ∪ (inner_high, outer_high]``."""
    below = math.log(inner[0]) - math.log(outer[0])
    above = math.log(outer[1]) - math.log(inner[1])
    u = float(torch.rand((), generator=g, dtype=torch.float64)) * (below + above)
    if u < below:
        return math.exp(math.log(outer[0]) + u)
    return math.exp(math.log(inner[1]) + (u - below))


class EnvFamily:
    """A distribution over environment variants (the RL analogue of a :class:`TaskFamily`).

    Args:
        config: the family's options (``task.*`` of a run config).

    Example:
        >>> from metaloss.rl.config import CartPoleConfig
        >>> family = EnvFamily(CartPoleConfig())
        >>> family.default_task().params["length"]
        0.5
    """

    def __init__(self, config: RLTaskConfig) -> None:
        if config.env not in PARAMETERS:
            raise ValueError(
                f"task.env: expected one of {', '.join(PARAMETERS)}, got {config.env!r}"
            )
        self.config = config
        self.env_id = config.env

    def default_task(self) -> EnvTask:
        """The unmodified environment."""
        return EnvTask(self.env_id, dict(PARAMETERS[self.env_id]), "default")

    def task(self, split: Split, index: int) -> EnvTask:
        """Task ``index`` of ``split``: deterministic, disjoint seeds per split."""
        g = task_generator(split, index)
        scaled = {}
        for name, default in PARAMETERS[self.env_id].items():
            if split is Split.META_TEST:
                m = _outside(self.config.train_scale, self.config.test_scale, g)
            else:
                m = _log_uniform(*self.config.train_scale, g)
            scaled[name] = default * m
        return EnvTask(self.env_id, scaled, f"{split.name.lower()}-{index}")

    def tasks(self, split: Split, count: int, start: int = 0) -> list[EnvTask]:
        """``count`` consecutive tasks of ``split``."""
        return [self.task(split, start + i) for i in range(count)]

    def sample(self, split: Split, count: int, generator: torch.Generator) -> list[EnvTask]:
        """``count`` random tasks of ``split`` (indices drawn from ``generator``)."""
        return [
            self.task(split, int(i))
            for i in torch.randint(0, SPLIT_SIZE, (count,), generator=generator)
        ]


def _apply_params(env: Any, params: dict[str, float]) -> None:
    for name, value in params.items():
        setattr(env, name, value)
    if hasattr(env, "masspole"):  # CartPole caches derived quantities
        env.total_mass = env.masspole + env.masscart
        env.polemass_length = env.masspole * env.length
    if hasattr(env, "LINK_COM_POS_1"):  # Acrobot: centres of mass at mid-link
        env.LINK_COM_POS_1 = 0.5 * env.LINK_LENGTH_1
        env.LINK_COM_POS_2 = 0.5 * env.LINK_LENGTH_2


def make_vec_env(task: EnvTask, num_envs: int, seed: int) -> tuple[Any, Any]:
    """A gymnasium vector environment of ``task`` (``NEXT_STEP`` autoreset), reset with ``seed``.

    Returns the environment and the first observations as ``(env, obs)``.
    """
    import gymnasium as gym

    if task.env_id == "CartPole-v1":
        env = gym.make_vec(task.env_id, num_envs=num_envs, vectorization_mode="vector_entry_point")
        _apply_params(env.unwrapped, task.params)
    else:
        env = gym.make_vec(task.env_id, num_envs=num_envs, vectorization_mode="sync")
        for sub in cast(Any, env.unwrapped).envs:  # SyncVectorEnv
            _apply_params(sub.unwrapped, task.params)
    mode = env.metadata.get("autoreset_mode")
    if mode is not None and getattr(mode, "value", mode) != "NextStep":
        raise RuntimeError(f"make_vec_env: expected NEXT_STEP autoreset, got {mode}")
    obs, _ = env.reset(seed=seed)
    return env, obs
