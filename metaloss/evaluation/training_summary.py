"""A description of a meta-training run for the person who started it, read off its history:
does the meta-validation objective rise after its lowest point (the meta-objective overfits the
meta-train tasks), how does the meta-gradient norm move, were steps skipped, did the run blow up.
It describes every run, healthy or not.

The verdicts a run can fail on — divergence, explosion, meta-gradient spikes, skipped steps —
are :mod:`metaloss.evaluation.training_health`'s (its rules and thresholds; ``metaloss train``
prints its findings as warnings and exits with status 3 on an error). This module reports them
and adds only what that detector does not judge:

- ``overfitting`` (a trend, not a failure): validations are noisy (a few dozen fixed tasks), so
  it is judged on their running median over ``smooth`` validations, not on the single best
  one: at least ``min_after`` validations follow the lowest point of the running median, the
  running median ends more than ``rise_fraction`` of ``|lowest|`` above it, and the
  least-squares trend of the raw validations from that point on is positive with a one-sided
  p-value below ``trend_p`` (:func:`scipy.stats.linregress`) — constants of
  :class:`HealthThresholds`;
- norm growth: the median meta-gradient norm of the last tenth of the steps against that of the
  first tenth, the largest jump of the norm over its running median (spike or not), and the
  share of steps clipped at ``outer.grad_clip``.

:mod:`metaloss.evaluation.diagnostics` judges a *learner's* training curve inside one task; this
module and training_health judge the *meta*-training curve of the loss itself. Nothing here
prints; ``metaloss train`` prints :meth:`HealthReport.lines` and TensorBoard shows them as the
text ``health/summary``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from metaloss.evaluation.training_health import (
    RISE_RATIO,
    SPIKE_RATIO,
    SPIKE_WINDOW,
    GradientJump,
    TrainingHealth,
    diagnose_training,
)
from metaloss.outer.trainer import StepRecord, ValidationRecord

__all__ = ["HealthReport", "HealthThresholds", "assess_training"]


@dataclass(frozen=True)
class HealthThresholds:
    """The constants of the overfitting trend (see the module docstring)."""

    smooth: int = 5
    min_after: int = 3
    rise_fraction: float = 0.01
    trend_p: float = 0.05


@dataclass(frozen=True)
class HealthReport:
    """The verdicts on one meta-training history (see the module docstring)."""

    steps: int
    best_step: int
    best_value: float
    low_step: int
    low_value: float
    end_value: float
    validations_after_low: int
    trend_per_100_steps: float
    trend_p: float
    overfitting: bool
    norm_growth: float
    clipped_fraction: float
    grad_clip: float
    last_value: float
    health: TrainingHealth
    notes: tuple[str, ...] = field(default=())
    thresholds: HealthThresholds = field(default=HealthThresholds())

    @property
    def spikes(self) -> tuple[GradientJump, ...]:
        """The detector's meta-gradient spikes."""
        return self.health.spikes

    @property
    def skipped_steps(self) -> tuple[int, ...]:
        """The meta-steps skipped for non-finite meta-gradients."""
        return self.health.skipped

    @property
    def diverged(self) -> bool:
        """The detector's verdict: the meta-validation objective became non-finite or exploded."""
        return self.health.diverged

    @property
    def healthy(self) -> bool:
        """No finding of the detector and no overfitting trend."""
        return self.health.healthy and not self.overfitting

    def lines(self) -> list[str]:
        """The summary as short lines (what ``metaloss train`` prints)."""
        return [
            self._validation_line(),
            self._gradient_line(),
            self._skipped_line(),
            *self.notes,
        ]

    def _validation_line(self) -> str:
        codes = [f.code for f in self.health.findings if f.code in ("nonfinite", "exploded")]
        if self.diverged:
            return (
                f"meta-validation: DIVERGED ({', '.join(codes)}): best {self.best_value:.4g} at "
                f"step {self.best_step}, last {self.last_value:.4g}"
            )
        rising = any(f.code == "diverging" for f in self.health.findings)
        warned = (
            f"; the last validation is at least {RISE_RATIO:g}x the best (diverging)"
            if rising
            else ""
        )
        return self._trend_line() + warned

    def _trend_line(self) -> str:
        smooth = self.thresholds.smooth
        head = (
            f"meta-validation: best {self.best_value:.4g} at step {self.best_step} of "
            f"{self.steps} (the saved loss)"
        )
        if self.validations_after_low == 0:
            return f"{head}; still improving when training stopped"
        rise = (self.end_value - self.low_value) / max(abs(self.low_value), 1e-12)
        trend = (
            f"its running median (over {smooth} validations) is lowest at step {self.low_step} "
            f"({self.low_value:.4g}) and ends at {self.end_value:.4g} ({rise:+.1%}); "
        )
        if math.isnan(self.trend_per_100_steps):
            trend += "too few validations after it to judge a trend"
        else:
            trend += (
                f"trend since step {self.low_step} {self.trend_per_100_steps:+.3g} per 100 steps"
            )
        if not math.isnan(self.trend_p):
            trend += f" (p {self.trend_p:.2g})"
        if self.overfitting:
            advice = (
                "; the best step is a low validation among higher ones"
                if self.best_step > self.low_step
                else ""
            )
            return (
                f"{head}; {trend}: the meta-objective overfits after step ~{self.low_step}"
                f"{advice} (consider fewer outer.steps, or outer.patience)"
            )
        return f"{head}; {trend}: no rise"

    def _gradient_line(self) -> str:
        growth = (
            f"; its median over the last tenth of the steps is {self.norm_growth:.2g}x that "
            "over the first tenth"
            if math.isfinite(self.norm_growth)
            else ""
        )
        clipped = (
            f"; clipped at outer.grad_clip={self.grad_clip:g} on {self.clipped_fraction:.0%} of steps"
            if self.grad_clip
            else ""
        )
        largest = self.health.largest_jump
        if not self.spikes:
            jump = (
                f" (largest jump {largest.ratio:.2g}x its running median, at step "
                f"{largest.step}; a spike is >= {SPIKE_RATIO:g}x)"
                if largest is not None
                else ""
            )
            return f"meta-gradient norm: no spikes{jump}{growth}{clipped}"
        assert largest is not None
        return (
            f"meta-gradient norm: {len(self.spikes)} spike(s) at or above {SPIKE_RATIO:g}x the "
            f"median of its previous {SPIKE_WINDOW} steps, first at step {self.spikes[0].step} "
            f"(largest {largest.ratio:.3g}x at step {largest.step}){growth}{clipped}"
        )

    def _skipped_line(self) -> str:
        if not self.skipped_steps:
            return "skipped (non-finite) meta-steps: none"
        shown = ", ".join(str(s) for s in self.skipped_steps[:10])
        more = f" and {len(self.skipped_steps) - 10} more" if len(self.skipped_steps) > 10 else ""
        return f"skipped (non-finite) meta-steps: {len(self.skipped_steps)} (steps {shown}{more})"


def _running_median(values: np.ndarray, width: int) -> np.ndarray:
    """The median of each value and its neighbours (``width`` values, fewer at the ends)."""
    half = width // 2
    return np.array(
        [np.median(values[max(0, i - half) : i + half + 1]) for i in range(len(values))]
    )


def _trend(steps: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """Least-squares slope per 100 steps and its one-sided p-value for a rise (NaN with fewer
    than three points)."""
    if len(values) < 3:
        return float("nan"), float("nan")
    if np.ptp(values) == 0:
        return 0.0, 1.0
    fit = stats.linregress(steps, values, alternative="greater")
    return float(fit.slope) * 100, float(fit.pvalue)


def _norm_growth(steps: Sequence[StepRecord]) -> float:
    norms = np.array([r.grad_norm for r in steps if not r.skipped and math.isfinite(r.grad_norm)])
    tenth = len(norms) // 10
    if tenth < 5:
        return float("nan")
    first = float(np.median(norms[:tenth]))
    return float(np.median(norms[-tenth:])) / first if first > 0 else float("nan")


def assess_training(
    steps: Sequence[StepRecord],
    validations: Sequence[ValidationRecord],
    grad_clip: float = 0.0,
    log_scale: bool = False,
    thresholds: HealthThresholds = HealthThresholds(),
) -> HealthReport:
    """Describe a meta-training history (a :class:`~metaloss.outer.trainer.TrainResult`'s
    ``steps`` and ``validations``; ``grad_clip`` is ``outer.grad_clip``; ``log_scale``: the
    objective is a mean log error, ``outer.objective_transform: log``). The detector's
    findings are in ``report.health``."""
    t = thresholds
    health = diagnose_training(steps, validations, log_scale)
    norms = [r.grad_norm for r in steps if not r.skipped and math.isfinite(r.grad_norm)]
    clipped = sum(n > grad_clip for n in norms) / len(norms) if grad_clip and norms else 0.0
    finite = [r for r in validations if math.isfinite(r.value)]
    nan = float("nan")
    if not finite:
        return HealthReport(
            len(steps), -1, nan, -1, nan, nan, 0, nan, nan, False, _norm_growth(steps), clipped,
            grad_clip, nan, health, ("no finite meta-validation objective",), t,
        )  # fmt: skip
    best = min(finite, key=lambda r: (r.value, r.step))
    x = np.array([r.step for r in finite], dtype=float)
    y = np.array([r.value for r in finite], dtype=float)
    smoothed = _running_median(y, t.smooth)
    low = int(np.argmin(smoothed))
    after = len(finite) - 1 - low
    slope, p = _trend(x[low:], y[low:])
    rise = float(smoothed[-1] - smoothed[low])
    overfitting = (
        after >= t.min_after
        and rise > t.rise_fraction * abs(float(smoothed[low]))
        and slope > 0
        and p < t.trend_p
    )
    return HealthReport(
        steps=len(steps),
        best_step=best.step,
        best_value=best.value,
        low_step=int(x[low]),
        low_value=float(smoothed[low]),
        end_value=float(smoothed[-1]),
        validations_after_low=after,
        trend_per_100_steps=slope,
        trend_p=p,
        overfitting=overfitting,
        norm_growth=_norm_growth(steps),
        clipped_fraction=clipped,
        grad_clip=grad_clip,
        last_value=validations[-1].value,
        health=health,
        thresholds=t,
    )
