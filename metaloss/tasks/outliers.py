"""Regression with outliers in the training targets: the robust-regression task family.

Each task draws a clean function ``f`` (linear, polynomial, sine or a small random MLP teacher)
of ``in_features`` inputs, scaled to an amplitude drawn per task. Every split gets Gaussian
noise-free targets except ``train``: its targets carry small Gaussian noise, and a fraction
``epsilon`` of them (exactly ``round(epsilon * n_train)`` samples at random positions) is
replaced by outliers: a large offset of one sign per task (``one_sided``), a large offset of a
random sign per sample (``two_sided``) or heavy-tailed Cauchy noise (``heavy_tailed``).
``outer_valid`` and ``test`` are clean, so the meta-objective and the test metric are the error
against the true function.

``train.extras["clean"]`` is the mask of uncontaminated training samples (``True`` = clean),
so that an oracle (MSE on the clean samples only) can be run; ``extras["clean_y"]`` holds the
noise-free targets of every split.

References:
    Huber, "Robust Estimation of a Location Parameter", Ann. Math. Statist., 1964 (the
    contamination model: a fraction epsilon of samples from an arbitrary distribution).
    Bechtle et al., "Meta Learning via Learned Loss" (ML3), ICPR 2020.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from metaloss.config import TaskConfig, setting
from metaloss.tasks.base import Batch, ConfiguredFamily, Split, Task
from metaloss.tasks.oracles import CLEAN_SAMPLES_ORACLE
from metaloss.tasks.registry import FamilySpec, register_family

__all__ = ["FUNCTIONS", "OUTLIER_KINDS", "OutliersConfig", "OutliersFamily", "contaminate"]

FunctionName = Literal["linear", "polynomial", "sine", "mlp"]
OutlierKind = Literal["one_sided", "two_sided", "heavy_tailed"]
OUTLIER_KINDS: tuple[str, ...] = ("one_sided", "two_sided", "heavy_tailed")


@dataclass(frozen=True)
class OutliersConfig(TaskConfig):
    """Options of the outlier-regression family."""

    family: str = setting("outliers", "name of the task family")

    functions: tuple[FunctionName, ...] = setting(
        ("linear", "polynomial", "sine", "mlp"), "clean function families, one drawn per task"
    )
    in_features: int = setting(2, "input dimension", ge=1, le=1000)
    x_range: tuple[float, float] = setting(
        (-2.0, 2.0), "inputs are uniform in this range, per dimension"
    )
    amplitude: tuple[float, float] = setting(
        (0.5, 2.0), "std of the clean function over inputs", gt=0
    )
    noise: float = setting(0.1, "std of the Gaussian noise on every inner-training target", ge=0)
    epsilon: tuple[float, float] = setting(
        (0.0, 0.4),
        "range of the outlier fraction epsilon, drawn per task (equal bounds: fixed)",
        ge=0,
        le=1,
    )
    clean_fraction: float = setting(
        0.0,
        "probability that a task has no outliers at all (epsilon = 0) instead of epsilon drawn "
        "from its range: weighs clean tasks in meta-training, so robustness is not bought with "
        "a loss on clean data",
        ge=0,
        le=1,
    )
    outliers: tuple[OutlierKind, ...] = setting(OUTLIER_KINDS, "outlier kinds, one drawn per task")
    outlier_scale: tuple[float, float] = setting(
        (3.0, 10.0),
        "offset of an outlier, in units of the task's amplitude (Cauchy: its scale is the low end)",
        gt=0,
    )
    n_train: int = setting(32, "inner-training samples per task", ge=1)
    n_outer_valid: int = setting(64, "clean samples per task for the meta-objective", ge=1)
    n_test: int = setting(256, "clean held-out test samples per task", ge=1)

    def __post_init__(self) -> None:
        for name in ("x_range", "amplitude", "epsilon", "outlier_scale"):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"{name}: expected low <= high, got [{low}, {high}]")
        if not self.functions:
            raise ValueError("functions: expected at least one function family")
        if not self.outliers:
            raise ValueError("outliers: expected at least one outlier kind")


def _uniform(bounds: tuple[float, float], shape: tuple[int, ...], g: torch.Generator) -> Tensor:
    low, high = bounds
    return low + (high - low) * torch.rand(shape, generator=g)


def _linear(d: int, g: torch.Generator) -> Callable[[Tensor], Tensor]:
    w = torch.randn(d, generator=g)
    return lambda x: x @ w


def _polynomial(d: int, g: torch.Generator) -> Callable[[Tensor], Tensor]:
    w, u = torch.randn(d, generator=g), torch.randn(d, generator=g)
    a = torch.randn(d, d, generator=g) / d
    cubic = torch.randn((), generator=g) / 3
    return lambda x: x @ w + ((x @ a) * x).sum(-1) + cubic * (x @ u) ** 3 / max(d, 1)


def _sine(d: int, g: torch.Generator) -> Callable[[Tensor], Tensor]:
    u = torch.randn(d, generator=g)
    u = u / u.norm().clamp_min(1e-6)
    frequency = _uniform((0.5, 2.0), (), g)
    phase = _uniform((0.0, 2 * math.pi), (), g)
    return lambda x: torch.sin(frequency * (x @ u) + phase)


def _mlp(d: int, g: torch.Generator, width: int = 16) -> Callable[[Tensor], Tensor]:
    w1, b1 = torch.randn(d, width, generator=g), torch.randn(width, generator=g)
    w2 = torch.randn(width, generator=g)
    return lambda x: torch.tanh(x @ w1 + b1) @ w2


FUNCTIONS: dict[str, Callable[[int, torch.Generator], Callable[[Tensor], Tensor]]] = {
    "linear": _linear,
    "polynomial": _polynomial,
    "sine": _sine,
    "mlp": _mlp,
}
"""Clean function families: ``FUNCTIONS[name](in_features, generator) -> f``, ``f: [n, d] -> [n]``."""


def contaminate(
    y: Tensor,
    epsilon: float,
    kind: str,
    scale: float,
    offset: tuple[float, float],
    g: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """Replace exactly ``round(epsilon * n)`` of the ``n`` targets ``y`` (``[n, 1]``) by outliers.

    Returns the contaminated targets and the mask of clean samples. ``scale`` is the task's
    amplitude; offsets are ``scale * U[offset]`` (``one_sided``: one sign for all outliers;
    ``two_sided``: a random sign each) and ``heavy_tailed`` adds ``scale * offset[0]`` times
    standard Cauchy noise.
    """
    n = y.shape[0]
    count = min(n, round(epsilon * n))
    order = torch.randperm(n, generator=g)
    clean = torch.ones(n, dtype=torch.bool)
    clean[order[:count]] = False
    magnitude = scale * _uniform(offset, (n, 1), g)
    if kind == "one_sided":
        sign = torch.where(torch.rand((), generator=g) < 0.5, -1.0, 1.0)
        shift = sign * magnitude
    elif kind == "two_sided":
        shift = torch.where(torch.rand((n, 1), generator=g) < 0.5, -1.0, 1.0) * magnitude
    elif kind == "heavy_tailed":
        cauchy = torch.tan(math.pi * (torch.rand((n, 1), generator=g) - 0.5))
        shift = scale * offset[0] * cauchy
    else:
        raise ValueError(f"outlier kind: expected one of {', '.join(OUTLIER_KINDS)}, got {kind!r}")
    mask = clean.unsqueeze(-1)
    return torch.where(mask, y, y + shift), mask


class OutliersFamily(ConfiguredFamily[OutliersConfig]):
    """Regression tasks whose inner-training targets contain a fraction epsilon of outliers.

    Args:
        config: the family's options (:class:`OutliersConfig`).

    Example:
        >>> family = OutliersFamily(OutliersConfig(epsilon=(0.25, 0.25)))
        >>> task = family.task(Split.META_TEST, 0)
        >>> float((~task.train.extras["clean"]).float().mean())
        0.25
    """

    kind = "regression"

    def __init__(self, config: OutliersConfig) -> None:
        super().__init__(config)
        self.in_features = config.in_features

    def make_task(self, generator: torch.Generator, split: Split) -> Task:
        c, g = self.config, generator
        name = c.functions[int(torch.randint(len(c.functions), (), generator=g))]
        f = FUNCTIONS[name](c.in_features, g)
        reference = f(_uniform(c.x_range, (256, c.in_features), g))
        amplitude = float(_uniform(c.amplitude, (), g))
        shift = float(_uniform((-1.0, 1.0), (), g))
        mean, std = reference.mean(), reference.std().clamp_min(1e-6)

        def clean_batch(n: int) -> tuple[Tensor, Tensor]:
            x = _uniform(c.x_range, (n, c.in_features), g)
            return x, (amplitude * (f(x) - mean) / std + shift).unsqueeze(-1)

        x, clean_y = clean_batch(c.n_train)
        noisy = clean_y + c.noise * torch.randn(clean_y.shape, generator=g)
        epsilon = float(_uniform(c.epsilon, (), g))
        if c.clean_fraction > 0 and float(torch.rand((), generator=g)) < c.clean_fraction:
            epsilon = 0.0  # drawn only when used, so clean_fraction = 0 keeps the task stream
        kind = c.outliers[int(torch.randint(len(c.outliers), (), generator=g))]
        y, clean = contaminate(noisy, epsilon, kind, amplitude, c.outlier_scale, g)
        train = Batch(x, y, {"clean_y": clean_y, "clean": clean})
        return Task(
            train, self._clean(*clean_batch(c.n_outer_valid)), self._clean(*clean_batch(c.n_test))
        )

    @staticmethod
    def _clean(x: Tensor, y: Tensor) -> Batch:
        return Batch(x, y, {"clean_y": y, "clean": torch.ones(y.shape, dtype=torch.bool)})


register_family(
    FamilySpec(
        "outliers",
        OutliersConfig,
        OutliersFamily,
        kind="regression",
        metric="test MSE",
        zoo_loss="robust-regression",
        oracle=CLEAN_SAMPLES_ORACLE,
    )
)
