"""Statistics for honest reports, from :mod:`scipy.stats`: means with t-based confidence
intervals, and paired comparisons that report the paired t test beside the Wilcoxon
signed-rank test, a win rate and a verdict.

**The verdict rule** (:func:`paired_comparison`, stated in every report by :func:`verdict_rule`):
a difference is called *better* or *worse* only when

1. it rests on at least ``min_pairs`` pairs (``evaluation.min_pairs``, default
   :data:`DEFAULT_MIN_PAIRS`; fewer pairs give ``"too few pairs"`` whatever the p-values), and
2. both the paired t test (Student 1908) and the Wilcoxon signed-rank test (Wilcoxon 1945)
   reject "no difference" at ``alpha`` (5%), in the same direction (the sign of the mean
   difference for the t test, of the signed-rank sum for Wilcoxon).

Otherwise it is ``"no significant difference"``. Reports flag results that rest on fewer than
:data:`FEW_PAIRS` pairs. A pair whose difference is not finite (a diverged run scored +inf)
makes the comparison ``"not finite"`` rather than a p-value.

**Ties and zero differences.** Wilcoxon runs with ``zero_method="zsplit"`` (Pratt 1959's
discussion; scipy's name): a pair with exactly zero difference keeps its place in the ranking
and its rank is split half to the positive and half to the negative side, so ties count as
evidence of no difference and ``n`` stays the number of pairs. With zeros or tied magnitudes
scipy's ``method="auto"`` computes the p-value by exhaustive permutation up to 13 pairs and by
the tie-corrected normal approximation above; without them, exactly up to 50 pairs. All pairs
tied at zero give p = 1. The win rate counts a tie as half a win, consistently.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.stats
from torch import Tensor

__all__ = [
    "DEFAULT_MIN_PAIRS",
    "FEW_PAIRS",
    "MeanCI",
    "PairedComparison",
    "Verdict",
    "mean_ci",
    "paired_comparison",
    "paired_t_test",
    "t_quantile",
    "verdict_rule",
    "wilcoxon_test",
]

DEFAULT_MIN_PAIRS = 6
"""Default of ``evaluation.min_pairs``: the fewest pairs at which the two-sided exact Wilcoxon
signed-rank test can reach p < 0.05 at all (with 5 pairs its smallest p-value is 1/16)."""

FEW_PAIRS = 10
"""Reports flag comparisons resting on fewer pairs than this."""

Verdict = Literal["better", "worse", "no significant difference", "too few pairs", "not finite"]

Values = Tensor | np.ndarray | Sequence[float]


def _array(values: Values) -> np.ndarray:
    if isinstance(values, Tensor):
        return values.detach().double().flatten().cpu().numpy()  # type: ignore[no-any-return]
    return np.asarray(values, dtype=np.float64).ravel()


def t_quantile(dof: float, confidence: float = 0.95) -> float:
    """The two-sided ``confidence`` quantile of Student's t with ``dof`` degrees of freedom
    (``scipy.stats.t.ppf``; NaN below one degree of freedom)."""
    if not dof >= 1:
        return float("nan")
    return float(scipy.stats.t.ppf(0.5 + confidence / 2, dof))


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
        """Whether the two intervals share a point."""
        return self.low <= other.high and other.low <= self.high

    def __str__(self) -> str:
        return f"{self.mean:.4g} ± {self.half_width:.2g}"


def mean_ci(values: Values, confidence: float = 0.95) -> MeanCI:
    """Mean and t-based CI half-width ``t_{n-1} · s / √n`` of 1-D values (one value: infinite
    half-width; none, or a non-finite value: NaN)."""
    v = _array(values)
    n = v.size
    if n == 0:
        return MeanCI(float("nan"), float("nan"), 0)
    if n == 1:
        return MeanCI(float(v[0]), float("inf"), 1)
    if not np.isfinite(v).all():  # e.g. a diverged run scored +inf: no interval
        with np.errstate(invalid="ignore"):
            return MeanCI(float(np.mean(v)), float("nan"), n)
    sem = float(np.std(v, ddof=1)) / math.sqrt(n)
    return MeanCI(float(np.mean(v)), t_quantile(n - 1, confidence) * sem, n)


def paired_t_test(a: Values, b: Values) -> tuple[float, float]:
    """Paired t statistic of ``a - b`` and its two-sided p-value (``scipy.stats.ttest_rel``).

    Fewer than two pairs give NaN; pairs that all differ by the same amount give t = 0, p = 1
    for a zero difference and t = ±inf, p = 0 otherwise (scipy's limit cases, without its
    precision warning)."""
    x, y = _array(a), _array(b)
    d = x - y
    if d.size < 2 or not np.isfinite(d).all():
        return float("nan"), float("nan")
    if np.all(d == d[0]):
        if d[0] == 0:
            return 0.0, 1.0
        return math.copysign(math.inf, float(d[0])), 0.0
    result = scipy.stats.ttest_rel(x, y)
    return float(result.statistic), float(result.pvalue)


def wilcoxon_test(a: Values, b: Values) -> tuple[float, float]:
    """Signed-rank sum of ``a - b`` (positive: ``a`` mostly larger) and the two-sided p-value
    of the Wilcoxon signed-rank test (``scipy.stats.wilcoxon``, ``zero_method="zsplit"``; see
    the module docstring). Fewer than two pairs or a non-finite difference give NaN."""
    d = _array(a) - _array(b)
    if d.size < 2 or not np.isfinite(d).all():
        return float("nan"), float("nan")
    if np.all(d == 0):
        return 0.0, 1.0
    ranks = scipy.stats.rankdata(np.abs(d))
    signed = float(np.sum(np.sign(d) * ranks))
    ties = bool((d == 0).any()) or np.unique(np.abs(d)).size < d.size
    if ties and d.size <= _EXHAUSTIVE_PAIRS:
        return signed, _exhaustive_signed_rank_p(d, ranks)
    result = scipy.stats.wilcoxon(d, zero_method="zsplit")
    return signed, float(result.pvalue)


_EXHAUSTIVE_PAIRS = 13
"""Up to this many pairs with ties or zeros, ``scipy.stats.wilcoxon`` enumerates all sign flips."""


def _exhaustive_signed_rank_p(d: np.ndarray, ranks: np.ndarray) -> float:
    """The p-value ``scipy.stats.wilcoxon(d, zero_method="zsplit")`` gives with ties or zeros
    on at most 13 pairs, i.e. ``scipy.stats.permutation_test`` over all 2^n sign flips of the
    zsplit positive-rank sum, with the statistic vectorised (scipy evaluates it once per
    flip, seconds at n = 13)."""

    def positive_rank_sum(x: np.ndarray, axis: int) -> np.ndarray:
        # zsplit adds half the rank of each zero; a sign flip leaves zeros as they are, so that
        # constant shifts the statistic and its null distribution alike and is left out.
        x = np.moveaxis(x, axis, -1)
        return np.sum(ranks * (x > 0), axis=-1)  # type: ignore[no-any-return]

    result = scipy.stats.permutation_test(
        (d,),
        positive_rank_sum,
        permutation_type="samples",
        vectorized=True,
        n_resamples=np.inf,
        alternative="two-sided",
    )
    return float(result.pvalue)


@dataclass(frozen=True)
class PairedComparison:
    """``a`` against ``b`` over paired values (e.g. the same tasks).

    Attributes:
        n: number of pairs.
        difference: mean of ``a - b`` with its t-based 95% CI.
        t: paired t statistic; p_t: its two-sided p-value.
        signed_rank: the signed-rank sum of ``a - b`` (its sign is Wilcoxon's direction).
        p_wilcoxon: two-sided p-value of the Wilcoxon signed-rank test.
        win_rate: fraction of pairs where ``a`` is better (ties count half).
        verdict: ``a`` is ``"better"`` / ``"worse"`` than ``b`` by the rule of the module
            docstring, or ``"no significant difference"``, ``"too few pairs"``, ``"not finite"``.
        min_pairs: the minimum the verdict was held to; higher_is_better: the direction used;
            alpha: the level of both tests.
    """

    n: int
    difference: MeanCI
    t: float
    p_t: float
    signed_rank: float
    p_wilcoxon: float
    win_rate: float
    verdict: Verdict
    min_pairs: int
    higher_is_better: bool = False
    alpha: float = 0.05

    @property
    def few_pairs(self) -> bool:
        """Whether the comparison rests on fewer than :data:`FEW_PAIRS` pairs."""
        return self.n < FEW_PAIRS

    @property
    def tests_disagree(self) -> bool:
        """Exactly one of the two tests rejects, or both reject in opposite directions (a mean
        pulled one way by a few large differences, most pairs the other way); the verdict is
        then no difference."""
        t_rejects, w_rejects = self.p_t < self.alpha, self.p_wilcoxon < self.alpha
        if t_rejects != w_rejects:
            return True
        return t_rejects and math.copysign(1, self.t) != math.copysign(1, self.signed_rank)

    def to_dict(self) -> dict[str, float | int | str | bool]:
        """Plain JSON-ready values (non-finite floats are left to the caller)."""
        return {
            "n": self.n,
            "difference": self.difference.mean,
            "difference_ci95": self.difference.half_width,
            "t": self.t,
            "p_t": self.p_t,
            "signed_rank": self.signed_rank,
            "p_wilcoxon": self.p_wilcoxon,
            "tests_disagree": self.tests_disagree,
            "win_rate": self.win_rate,
            "verdict": self.verdict,
            "min_pairs": self.min_pairs,
            "few_pairs": self.few_pairs,
        }


def paired_comparison(
    a: Values,
    b: Values,
    *,
    min_pairs: int = DEFAULT_MIN_PAIRS,
    higher_is_better: bool = False,
    alpha: float = 0.05,
) -> PairedComparison:
    """Compare ``a`` with ``b`` pair by pair (see the module docstring for the verdict rule).

    Example:
        >>> c = paired_comparison([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [2.0, 3.5, 4.0, 5.5, 6.0, 7.5])
        >>> c.verdict, c.win_rate, round(c.p_wilcoxon, 5)
        ('better', 1.0, 0.03125)
    """
    x, y = _array(a), _array(b)
    if x.shape != y.shape:
        raise ValueError(
            f"paired_comparison: expected as many values in a as in b, got {x.size} and {y.size}"
        )
    d = x - y
    n = int(d.size)
    t, p_t = paired_t_test(x, y)
    signed, p_w = wilcoxon_test(x, y)
    better = d > 0 if higher_is_better else d < 0
    win_rate = float((better.sum() + 0.5 * (d == 0).sum()) / n) if n else float("nan")
    verdict: Verdict
    if n < min_pairs:
        verdict = "too few pairs"
    elif not np.isfinite(d).all():
        verdict = "not finite"
    elif p_t < alpha and p_w < alpha and math.copysign(1, t) == math.copysign(1, signed):
        a_larger = t > 0
        verdict = "better" if a_larger == higher_is_better else "worse"
    else:
        verdict = "no significant difference"
    return PairedComparison(
        n, mean_ci(d), t, p_t, signed, p_w, win_rate, verdict, min_pairs, higher_is_better, alpha
    )


def verdict_rule(min_pairs: int, pairs: str = "pairs") -> str:
    """The verdict rule in one sentence, for the top of every report (``pairs``: what a pair
    is, e.g. ``"tasks"``)."""
    return (
        f'Verdicts: "better"/"worse" only when the paired t test and the Wilcoxon '
        f"signed-rank test both give p < 0.05 in the same direction, on at least {min_pairs} "
        f'{pairs} (fewer: "too few pairs"); otherwise "no significant difference". '
        "† marks a no-difference verdict where the tests disagree (one rejects, or both reject "
        f"in opposite directions: mean and ranks point different ways). Comparisons "
        f"on fewer than {FEW_PAIRS} {pairs} are marked ⚠. Wilcoxon zero differences split their "
        "rank between both signs; the win rate counts a tie as half."
    )
