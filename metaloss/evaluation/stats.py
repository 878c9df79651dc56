"""Small statistics for honest reports: means with 95% confidence intervals, paired tests."""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

__all__ = ["MeanCI", "mean_ci", "paired_t_test", "t_quantile_975"]

# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom.
_T975 = [
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
]


def t_quantile_975(dof: int) -> float:
    """The 97.5% quantile of Student's t with ``dof`` degrees of freedom (beyond 30, interpolated
    in 1/dof towards the normal quantile 1.96)."""
    if dof < 1:
        return float("nan")
    if dof <= 30:
        return _T975[dof - 1]
    return 1.959964 + (2.042 - 1.959964) * 30 / dof


@dataclass(frozen=True)
class MeanCI:
    """A mean with the half-width of its 95% confidence interval over ``n`` values."""

    mean: float
    half_width: float
    n: int

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    def overlaps(self, other: MeanCI) -> bool:
        return self.low <= other.high and other.low <= self.high

    def __str__(self) -> str:
        return f"{self.mean:.4g} ± {self.half_width:.2g}"


def mean_ci(values: Tensor) -> MeanCI:
    """Mean and t-based 95% CI half-width of a 1-D tensor of finite values."""
    v = values.detach().double().flatten()
    n = v.numel()
    if n == 0:
        return MeanCI(float("nan"), float("nan"), 0)
    if n == 1:
        return MeanCI(float(v[0]), float("inf"), 1)
    sem = float(v.std(unbiased=True)) / math.sqrt(n)
    return MeanCI(float(v.mean()), t_quantile_975(n - 1) * sem, n)


def paired_t_test(a: Tensor, b: Tensor) -> tuple[float, float]:
    """Paired t statistic of ``a - b`` and its two-sided p-value (normal approximation for the
    tail beyond 30 degrees of freedom; exact enough for reporting with n >= 30)."""
    d = (a - b).double().flatten()
    n = d.numel()
    sd = float(d.std(unbiased=True)) if n > 1 else float("nan")
    if n < 2 or sd == 0:
        return float("nan"), float("nan")
    t = float(d.mean()) / (sd / math.sqrt(n))
    p = math.erfc(abs(t) / math.sqrt(2))
    return t, p
