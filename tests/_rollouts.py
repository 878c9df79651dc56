"""Helpers shared by the RL tests: what a rollout's masks say about its episodes."""

from __future__ import annotations

from torch import Tensor

__all__ = ["episode_lengths"]


def episode_lengths(dones: Tensor, valid: Tensor) -> list[float]:
    """The length in valid steps of every episode that ends in a rollout (``dones`` and
    ``valid`` are ``[steps, envs]``), environment by environment: what CartPole's recorded
    returns must be, since it pays 1 per real step."""
    steps, envs = dones.shape
    lengths = []
    for i in range(envs):
        count = 0
        for t in range(steps):
            count += int(valid[t, i])
            if dones[t, i]:
                lengths.append(float(count))
                count = 0
    return lengths
