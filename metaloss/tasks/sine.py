"""Sine regression, as in MAML (Finn et al., 2017) and ML3 (Bechtle et al., "Meta Learning via
Learned Loss", ICPR 2020): y = A sin(x - phi), A ~ U[0.1, 5], phi ~ U[0, pi], x ~ U[-5, 5]."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from metaloss.config import TaskConfig, setting
from metaloss.tasks.base import Batch, ConfiguredFamily, Split, Task
from metaloss.tasks.registry import FamilySpec, register_family

__all__ = ["SineConfig", "SineFamily"]


@dataclass(frozen=True)
class SineConfig(TaskConfig):
    """Options of the sine family."""

    amplitude: tuple[float, float] = setting((0.1, 5.0), "amplitude range A", ge=0)
    phase: tuple[float, float] = setting((0.0, math.pi), "phase range phi")
    x_range: tuple[float, float] = setting((-5.0, 5.0), "input range")
    n_train: int = setting(10, "inner-training samples per task (K-shot)", ge=1)
    n_outer_valid: int = setting(50, "samples per task for the meta-objective", ge=1)
    n_test: int = setting(100, "held-out test samples per task", ge=1)
    noise: float = setting(0.0, "std of Gaussian noise on inner-training targets", ge=0)


def _uniform(
    bounds: tuple[float, float], shape: tuple[int, ...], g: torch.Generator
) -> torch.Tensor:
    low, high = bounds
    return low + (high - low) * torch.rand(shape, generator=g)


class SineFamily(ConfiguredFamily[SineConfig]):
    """Sine-wave regression tasks with amplitude and phase drawn per task.

    Example:
        >>> family = SineFamily(SineConfig())
        >>> task = family.task(Split.META_TEST, 0)
        >>> task.train.x.shape
        torch.Size([10, 1])
    """

    kind = "regression"

    def make_task(self, generator: torch.Generator, split: Split) -> Task:
        c = self.config
        amplitude = _uniform(c.amplitude, (), generator)
        phase = _uniform(c.phase, (), generator)

        def batch(n: int, noise: float) -> Batch:
            x = _uniform(c.x_range, (n, 1), generator)
            clean = amplitude * torch.sin(x - phase)
            y = clean + noise * torch.randn((n, 1), generator=generator)
            return Batch(x, y, {"clean_y": clean})

        return Task(batch(c.n_train, c.noise), batch(c.n_outer_valid, 0.0), batch(c.n_test, 0.0))


register_family(FamilySpec("sine", SineConfig, SineFamily, kind="regression", metric="test MSE"))
