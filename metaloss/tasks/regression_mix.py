"""A broad synthetic regression family for meta-training robust losses that transfer to real data.

The outlier family (:mod:`metaloss.tasks.outliers`) has nearly noise-free, symmetric targets, so
a loss meta-trained on it learns that any residual beyond a few typical residuals is an outlier
— which is wrong on real data, whose legitimate targets are noisy, skewed, censored at zero or
heteroscedastic. Each task here draws, besides a clean function (as in the outlier family) of
``in_features`` correlated inputs of which only some are relevant:

- a noise level: the noise's std relative to the clean function's, log-uniform in ``noise``
  (real tabular data have signal-to-noise ratios from about 0.3 to 10);
- a noise shape from ``noise_kinds``: ``gaussian``; ``student_t`` (3 degrees of freedom,
  symmetric heavy tails); ``skewed`` (a centred log-normal of random sign: right- or
  left-skewed); ``censored`` (a Tobit model: the target is ``max(c, f + noise)`` with ``c`` a
  random quantile between the 20th and the 70th, so a large share of targets sits exactly on the
  floor, like counts of rare events);
- heteroscedasticity: the noise std is multiplied by ``exp(g * v.x)`` (normalised to mean 1)
  with ``g`` uniform in ``heteroscedasticity``;
- a target scale and offset: targets are standardised with a reference sample of the task,
  then multiplied by a factor log-uniform in ``target_scale`` and shifted by up to one scale.

The noise is part of the data, not contamination: the ``outer_valid`` and ``test`` targets are
the conditional means ``E[y | x]`` (the clean function itself, or the Tobit mean for censored
noise), so the meta-objective rewards estimating the mean, which a loss that discards
legitimate tails does not. Then a fraction ``epsilon`` of the *training* targets is replaced by
outliers exactly as in :func:`metaloss.tasks.outliers.contaminate`, with offsets in units of
the std of the noisy targets (as the transfer benchmark injects them into real data).
``train.extras["clean"]`` marks the uncontaminated rows (for the oracle).

The number of training samples is drawn per *meta-batch* from ``n_train`` (all tasks of a
meta-batch share it, so they stack); fixed task sets (meta-validation, meta-test) use the first
value.

References:
    Tobin, "Estimation of Relationships for Limited Dependent Variables", Econometrica, 1958.
    Huber, "Robust Estimation of a Location Parameter", Ann. Math. Statist., 1964.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from metaloss.config import TaskConfig, setting
from metaloss.tasks.base import (
    SPLIT_SIZE,
    Batch,
    ConfiguredFamily,
    Split,
    Task,
    stack_tasks,
    task_generator,
)
from metaloss.tasks.oracles import CLEAN_SAMPLES_ORACLE
from metaloss.tasks.outliers import FUNCTIONS, OUTLIER_KINDS, FunctionName, OutlierKind, contaminate
from metaloss.tasks.registry import FamilySpec, register_family

__all__ = ["NOISE_KINDS", "RegressionMixConfig", "RegressionMixFamily", "tobit_mean"]

NoiseKind = Literal["gaussian", "student_t", "skewed", "censored"]
NOISE_KINDS: tuple[str, ...] = ("gaussian", "student_t", "skewed", "censored")
_REFERENCE = 512


@dataclass(frozen=True)
class RegressionMixConfig(TaskConfig):
    """Options of the broad regression family."""

    family: str = setting("regression_mix", "name of the task family")
    functions: tuple[FunctionName, ...] = setting(
        ("linear", "linear", "polynomial", "sine", "mlp"),
        "clean function families, one drawn per task (repeat a name to weigh it)",
    )
    in_features: int = setting(6, "input dimension", ge=1, le=1000)
    relevant: tuple[float, float] = setting(
        (0.3, 1.0), "range of the share of inputs the clean function depends on", gt=0, le=1
    )
    noise: tuple[float, float] = setting(
        (0.05, 2.0), "range of the noise std relative to the clean function's (log-uniform)", gt=0
    )
    noise_kinds: tuple[NoiseKind, ...] = setting(NOISE_KINDS, "noise shapes, one drawn per task")
    heteroscedasticity: tuple[float, float] = setting(
        (0.0, 1.0), "range of g in the noise std factor exp(g * v.x)", ge=0
    )
    target_scale: tuple[float, float] = setting(
        (0.3, 3.0), "range of the targets' scale after standardising (log-uniform)", gt=0
    )
    epsilon: tuple[float, float] = setting(
        (0.0, 0.45), "range of the outlier fraction epsilon, drawn per task", ge=0, le=1
    )
    clean_fraction: float = setting(
        0.3, "probability that a task has no outliers (epsilon = 0)", ge=0, le=1
    )
    outliers: tuple[OutlierKind, ...] = setting(OUTLIER_KINDS, "outlier kinds, one drawn per task")
    outlier_scale: tuple[float, float] = setting(
        (3.0, 10.0), "outlier offsets, in stds of the noisy targets", gt=0
    )
    n_train: tuple[int, ...] = setting(
        (32,),
        "inner-training samples per task, one value drawn per meta-batch (fixed task sets use the "
        "first)",
        ge=2,
    )
    n_outer_valid: int = setting(64, "clean samples per task for the meta-objective", ge=1)
    n_test: int = setting(256, "clean held-out test samples per task", ge=1)

    def __post_init__(self) -> None:
        for name in (
            "relevant",
            "noise",
            "heteroscedasticity",
            "target_scale",
            "epsilon",
            "outlier_scale",
        ):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"{name}: expected low <= high, got [{low}, {high}]")
        for name in ("functions", "noise_kinds", "outliers", "n_train"):
            if not getattr(self, name):
                raise ValueError(f"{name}: expected at least one value")


def _uniform(bounds: tuple[float, float], g: torch.Generator) -> float:
    low, high = bounds
    return low + (high - low) * float(torch.rand((), generator=g))


def _log_uniform(bounds: tuple[float, float], g: torch.Generator) -> float:
    return math.exp(_uniform((math.log(bounds[0]), math.log(bounds[1])), g))


def _choice(options: tuple, g: torch.Generator):  # type: ignore[no-untyped-def, type-arg]
    return options[int(torch.randint(len(options), (), generator=g))]


def tobit_mean(mean: Tensor, std: Tensor, floor: Tensor | float) -> Tensor:
    """``E[max(floor, mean + std * z)]`` for standard normal ``z`` (Tobin, 1958)."""
    a = (mean - floor) / std
    normal = torch.distributions.Normal(torch.zeros(()), torch.ones(()))
    return floor + (mean - floor) * normal.cdf(a) + std * normal.log_prob(a).exp()


class _TaskModel:
    """One task's data-generating process: inputs, clean function, noise and its mean."""

    def __init__(self, c: RegressionMixConfig, g: torch.Generator) -> None:
        d = c.in_features
        mixing = torch.randn(d, d, generator=g) / math.sqrt(d) + torch.eye(d)
        self.mixing = mixing / mixing.norm(dim=0, keepdim=True)  # correlated, unit-variance inputs
        self.floor = 0.0
        relevant = max(1, round(_uniform(c.relevant, g) * d))
        self.active = torch.randperm(d, generator=g)[:relevant]
        self.f = FUNCTIONS[_choice(c.functions, g)](relevant, g)
        self.kind = _choice(c.noise_kinds, g)
        self.noise = _log_uniform(c.noise, g)
        self.hetero = _uniform(c.heteroscedasticity, g)
        direction = torch.randn(d, generator=g)
        self.direction = direction / direction.norm().clamp_min(1e-6)
        self.sign = 1.0 if float(torch.rand((), generator=g)) < 0.5 else -1.0
        self.tail = _uniform((0.5, 1.2), g)  # log-normal shape of skewed noise
        self.floor_quantile = _uniform((0.2, 0.7), g)
        x = self.inputs(_REFERENCE, g)
        signal = self.f(x[:, self.active])
        self.f_mean, self.f_std = signal.mean(), signal.std().clamp_min(1e-6)
        self.sd_spread = self._spread(x).mean()
        y, _ = self.sample(x, g, calibrate=True)
        self.y_mean, self.y_std = y.mean(), y.std().clamp_min(1e-6)

    def inputs(self, n: int, g: torch.Generator) -> Tensor:
        return torch.randn(n, self.mixing.shape[0], generator=g) @ self.mixing

    def _spread(self, x: Tensor) -> Tensor:
        return torch.exp(self.hetero * (x @ self.direction))

    def clean(self, x: Tensor) -> Tensor:
        return (self.f(x[:, self.active]) - self.f_mean) / self.f_std

    def _std(self, x: Tensor) -> Tensor:
        return self.noise * self._spread(x) / self.sd_spread

    def sample(
        self, x: Tensor, g: torch.Generator, calibrate: bool = False
    ) -> tuple[Tensor, Tensor]:
        """Noisy targets and their conditional means (both before standardising)."""
        mean, std = self.clean(x), self._std(x)
        z = torch.randn(x.shape[0], generator=g)
        if self.kind == "student_t":
            chi2 = torch.randn(x.shape[0], 3, generator=g).pow(2).sum(-1)
            return mean + std * z / torch.sqrt(chi2 / 3) / math.sqrt(3.0), mean
        if self.kind == "skewed":
            s = self.tail
            centred = (torch.exp(s * z) - math.exp(s * s / 2)) / math.sqrt(
                (math.exp(s * s) - 1) * math.exp(s * s)
            )
            return mean + std * self.sign * centred, mean
        if self.kind == "censored":
            latent = mean + std * z
            if calibrate:
                self.floor = float(torch.quantile(latent, self.floor_quantile))
            return latent.clamp_min(self.floor), tobit_mean(mean, std, self.floor)
        return mean + std * z, mean

    def standardise(self, y: Tensor, scale: float, shift: float) -> Tensor:
        return ((y - self.y_mean) / self.y_std * scale + shift * scale).unsqueeze(-1)


class RegressionMixFamily(ConfiguredFamily[RegressionMixConfig]):
    """Regression tasks with noisy, skewed, censored or heteroscedastic legitimate targets and a
    fraction epsilon of outliers in the training targets (see the module docstring).

    Args:
        config: the family's options (:class:`RegressionMixConfig`).

    Example:
        >>> family = RegressionMixFamily(RegressionMixConfig(n_train=(16, 64)))
        >>> family.task(Split.META_VALID, 0).train.x.shape
        torch.Size([16, 6])
    """

    kind = "regression"

    def __init__(self, config: RegressionMixConfig) -> None:
        super().__init__(config)
        self.in_features = config.in_features

    def make_task(self, generator: torch.Generator, split: Split) -> Task:
        return self._task(generator, self.config.n_train[0])

    def sample(self, split: Split, count: int, generator: torch.Generator) -> Task:
        """``count`` random tasks sharing one ``n_train`` drawn from the config's choices."""
        n = self.config.n_train[
            int(torch.randint(len(self.config.n_train), (), generator=generator))
        ]
        indices = torch.randint(0, SPLIT_SIZE, (count,), generator=generator).tolist()
        return stack_tasks([self._task(task_generator(split, i), n) for i in indices])

    def _task(self, g: torch.Generator, n_train: int) -> Task:
        c = self.config
        model = _TaskModel(c, g)
        scale, shift = _log_uniform(c.target_scale, g), _uniform((-1.0, 1.0), g)
        x = model.inputs(n_train, g)
        noisy, _ = model.sample(x, g)
        noisy = model.standardise(noisy, scale, shift)
        epsilon = _uniform(c.epsilon, g)
        if c.clean_fraction > 0 and float(torch.rand((), generator=g)) < c.clean_fraction:
            epsilon = 0.0
        kind = _choice(c.outliers, g)
        y, clean = contaminate(noisy, epsilon, kind, scale, c.outlier_scale, g)
        train = Batch(x, y, {"clean_y": noisy, "clean": clean})
        return Task(
            train,
            self._mean_batch(model, c.n_outer_valid, scale, shift, g),
            self._mean_batch(model, c.n_test, scale, shift, g),
        )

    @staticmethod
    def _mean_batch(
        model: _TaskModel, n: int, scale: float, shift: float, g: torch.Generator
    ) -> Batch:
        x = model.inputs(n, g)
        _, mean = model.sample(x, g)
        y = model.standardise(mean, scale, shift)
        return Batch(x, y, {"clean_y": y, "clean": torch.ones(y.shape, dtype=torch.bool)})


register_family(
    FamilySpec(
        "regression_mix",
        RegressionMixConfig,
        RegressionMixFamily,
        kind="regression",
        metric="test MSE",
        zoo_loss="robust-regression",
        oracle=CLEAN_SAMPLES_ORACLE,
    )
)
