"""Quantile regression: predict the τ-quantile of a skewed, heteroscedastic target.

Each task draws a clean function (a sine of random amplitude, phase and frequency) and a noise
whose scale grows with ``|x|`` and whose distribution is skewed (a centred exponential, so the
upper quantiles lie far above the mean). The learner should predict the conditional τ-quantile,
not the mean: the meta-objective and the test metric are the *pinball loss* at τ on noisy
held-out samples, which the true conditional quantile minimises. MSE fits the mean and so pays
at τ ≠ 0.5; the pinball loss of the same τ is the hand-designed answer; a learned loss must find
an asymmetric loss from the meta-objective alone.

This file is the whole family: options, task sampler, objective, its hand-designed baseline
(``pinball``, parameter ``tau``) and its registration.

References:
    Koenker & Bassett, "Regression Quantiles", Econometrica, 1978 (the pinball / check loss).
    Bechtle et al., "Meta Learning via Learned Loss" (ML3), ICPR 2020.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from metaloss.config import ConfigError, TaskConfig, setting
from metaloss.tasks.base import Batch, ConfiguredFamily, Split, Task
from metaloss.tasks.registry import FamilySpec, register_family

__all__ = ["QuantileConfig", "QuantileFamily", "pinball"]


def pinball(pred: Tensor, target: Tensor, tau: float = 0.5) -> Tensor:
    """The pinball loss ``max(τ (y − ŷ), (τ − 1)(y − ŷ))`` per element (Koenker & Bassett,
    1978): minimised by the τ-quantile of ``y``; ``tau = 0.5`` is half the absolute error."""
    if not 0 < tau < 1:
        raise ValueError(f"tau: expected 0 < tau < 1, got {tau}")
    error = target - pred
    return torch.maximum(tau * error, (tau - 1) * error)


@dataclass(frozen=True)
class QuantileConfig(TaskConfig):
    """Options of the quantile-regression family."""

    family: str = setting("quantile", "name of the task family")

    tau: float = setting(
        0.9, "the quantile to predict (the objective is the pinball loss at tau)", gt=0, lt=1
    )
    amplitude: tuple[float, float] = setting((0.5, 2.0), "amplitude range of the clean sine", gt=0)
    frequency: tuple[float, float] = setting((0.5, 1.5), "frequency range of the clean sine", gt=0)
    noise: tuple[float, float] = setting((0.2, 1.0), "noise scale at x = 0, drawn per task", gt=0)
    growth: float = setting(0.5, "noise scale grows as 1 + growth * |x| (heteroscedasticity)", ge=0)
    x_range: tuple[float, float] = setting((-3.0, 3.0), "input range")
    n_train: int = setting(64, "inner-training samples per task", ge=1, le=100_000)
    n_outer_valid: int = setting(128, "samples per task for the meta-objective", ge=1, le=100_000)
    n_test: int = setting(256, "held-out test samples per task", ge=1, le=100_000)

    def __post_init__(self) -> None:
        for name in ("amplitude", "frequency", "noise", "x_range"):
            low, high = getattr(self, name)
            if low > high:
                raise ConfigError(
                    f"task.{name}: expected [low, high] with low <= high, got {[low, high]}"
                )


def _uniform(bounds: tuple[float, float], shape: tuple[int, ...], g: torch.Generator) -> Tensor:
    low, high = bounds
    return low + (high - low) * torch.rand(shape, generator=g)


class QuantileFamily(ConfiguredFamily[QuantileConfig]):
    """Skewed, heteroscedastic sine regression scored by the pinball loss at ``tau``.

    Example:
        >>> family = QuantileFamily(QuantileConfig(tau=0.9))
        >>> task = family.task(Split.META_TEST, 0)
        >>> task.train.y.shape
        torch.Size([64, 1])
    """

    kind = "regression"

    def make_task(self, generator: torch.Generator, split: Split) -> Task:
        c, g = self.config, generator
        amplitude = float(_uniform(c.amplitude, (), g))
        frequency = float(_uniform(c.frequency, (), g))
        phase = float(_uniform((0.0, math.pi), (), g))
        scale = float(_uniform(c.noise, (), g))

        def batch(n: int) -> Batch:
            x = _uniform(c.x_range, (n, 1), g)
            clean = amplitude * torch.sin(frequency * x - phase)
            spread = scale * (1 + c.growth * x.abs())
            noise = -torch.log(torch.rand((n, 1), generator=g).clamp_min(1e-12)) - 1.0  # Exp(1) - 1
            # the true tau-quantile of Exp(1) - 1 is -log(1 - tau) - 1
            quantile = clean + spread * (-math.log(1 - c.tau) - 1.0)
            return Batch(x, clean + spread * noise, {"clean_y": quantile})

        return Task(batch(c.n_train), batch(c.n_outer_valid), batch(c.n_test))

    def objective(self, pred: Tensor, target: Tensor) -> Tensor:  # type: ignore[override]
        """The pinball loss at the family's ``tau`` (per sample)."""
        loss = pinball(pred, target, self.config.tau)
        return loss.flatten(1).mean(1) if loss.dim() > 1 else loss


register_family(
    FamilySpec(
        "quantile",
        QuantileConfig,
        QuantileFamily,
        kind="regression",
        metric="test pinball loss",
        baselines={"pinball": pinball},
    )
)
