"""Registration of the reinforcement-learning task families (``cartpole``, ``acrobot``).

Importing this module (the package root does) registers their specs and, through
:mod:`metaloss.rl.objectives`, the ``policy`` loss kind, the ``LearnedDrift`` architecture (so
policy loss files load) and the ``ppo_clip`` / ``dpo`` baselines; it imports no gymnasium.
"""

from __future__ import annotations

from typing import Any

from metaloss.config import RunConfig
from metaloss.rl import objectives  # noqa: F401  (registers the policy kind and LearnedDrift)
from metaloss.rl.config import AcrobotConfig, CartPoleConfig, RLTaskConfig
from metaloss.tasks.registry import FamilySpec, register_family

__all__: list[str] = []


def _env_family(config: RLTaskConfig) -> Any:
    from metaloss.rl.envs import EnvFamily

    return EnvFamily(config)


def _problem(config: RunConfig) -> Any:
    from metaloss.rl.problem import RLProblem

    return RLProblem(config)


for _name, _config in (("cartpole", CartPoleConfig), ("acrobot", AcrobotConfig)):
    register_family(
        FamilySpec(
            _name,
            _config,
            _env_family,
            kind="policy",
            metric="episodic return",
            higher_is_better=True,
            zoo_loss=_name,
            problem=_problem,
        )
    )
