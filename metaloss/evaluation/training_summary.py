"""A summary of the health of a meta-training run, read off its history: does the
meta-validation objective rise after its lowest point (the meta-objective overfits the
meta-train tasks), does the meta-gradient norm spike or grow, were steps skipped as non-finite,
did the run blow up. It describes every run, healthy or not; deciding that a run failed (a
warning, an exit code) is not its job.

:mod:`metaloss.evaluation.diagnostics` judges a *learner's* training curve inside one task; this
module judges the *meta*-training curve of the loss itself. Validations are noisy (a few dozen
fixed tasks), so the trend is judged on their running median over ``smooth`` validations, not
on the single best one. Rules, with the constants of :class:`HealthThresholds`:

- ``overfitting``: at least ``min_after`` validations follow the lowest point of the running
  median, the running median ends more than ``rise_fraction`` of ``|lowest|`` above it, and
  the least-squares trend of the raw validations from that point on is positive with a
  one-sided p-value below ``trend_p`` (:func:`scipy.stats.linregress`);
- ``spike``: a step whose meta-gradient norm exceeds ``spike_factor`` times the median of the
  ``window`` steps before it (needs ``window`` finite steps of history); the report also gives
  the median norm of the last tenth of the steps against that of the first tenth;
- ``diverged``: a non-finite last validation, or a last validation further above the best
  than ``blowup_factor`` times the improvement made up to the best (at least a tenth of
  ``|best|``): the run went somewhere it should not.

Nothing here prints; ``metaloss train`` prints :meth:`HealthReport.lines` and TensorBoard shows
them as the text ``health/summary``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from metaloss.outer.trainer import StepRecord, ValidationRecord

__all__ = ["HealthReport", "HealthThresholds", "Spike", "assess_training", "find_spikes"]


@dataclass(frozen=True)
class HealthThresholds:
    """The constants of the rules in the module docstring."""

    smooth: int = 5
    min_after: int = 3
    rise_fraction: float = 0.01
    trend_p: float = 0.05
    spike_factor: float = 5.0
    window: int = 50
    blowup_factor: float = 10.0


@dataclass(frozen=True)
class Spike:
    """A meta-step whose gradient norm is ``ratio`` times the running median before it."""

    step: int
    grad_norm: float
    ratio: float


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
    spikes: tuple[Spike, ...]
    norm_growth: float
    skipped_steps: tuple[int, ...]
    clipped_fraction: float
    grad_clip: float
    diverged: bool
    last_value: float
    notes: tuple[str, ...] = field(default=())
    thresholds: HealthThresholds = field(default=HealthThresholds())

    @property
    def healthy(self) -> bool:
        """No overfitting, spikes, skipped steps or divergence."""
        return not (self.overfitting or self.spikes or self.skipped_steps or self.diverged)

    def lines(self) -> list[str]:
        """The summary as short lines (what ``metaloss train`` prints)."""
        return [
            self._validation_line(),
            self._gradient_line(),
            self._skipped_line(),
            *self.notes,
        ]

    def _validation_line(self) -> str:
        if self.diverged:
            return (
                f"meta-validation: DIVERGED: best {self.best_value:.4g} at step {self.best_step}, "
                f"last {self.last_value:.4g}"
            )
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
        if not self.spikes:
            return f"meta-gradient norm: no spikes{growth}{clipped}"
        largest = max(self.spikes, key=lambda s: s.ratio)
        return (
            f"meta-gradient norm: {len(self.spikes)} spike(s) above "
            f"{self.thresholds.spike_factor:g}x the median of its previous "
            f"{self.thresholds.window} steps, first at step {self.spikes[0].step} (largest "
            f"{largest.ratio:.0f}x at step {largest.step}){growth}{clipped}"
        )

    def _skipped_line(self) -> str:
        if not self.skipped_steps:
            return "skipped (non-finite) meta-steps: none"
        shown = ", ".join(str(s) for s in self.skipped_steps[:10])
        more = f" and {len(self.skipped_steps) - 10} more" if len(self.skipped_steps) > 10 else ""
        return f"skipped (non-finite) meta-steps: {len(self.skipped_steps)} (steps {shown}{more})"


def find_spikes(
    steps: Sequence[StepRecord], thresholds: HealthThresholds = HealthThresholds()
) -> list[Spike]:
    """Steps whose meta-gradient norm exceeds ``spike_factor`` times the median of the
    ``window`` finite norms before it."""
    spikes = []
    history: list[float] = []
    for record in steps:
        norm = record.grad_norm
        if len(history) >= thresholds.window and math.isfinite(norm):
            median = float(np.median(history[-thresholds.window :]))
            if median > 0 and norm > thresholds.spike_factor * median:
                spikes.append(Spike(record.step, norm, norm / median))
        if math.isfinite(norm):
            history.append(norm)
    return spikes


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
    thresholds: HealthThresholds = HealthThresholds(),
) -> HealthReport:
    """Judge a meta-training history (a :class:`~metaloss.outer.trainer.TrainResult`'s
    ``steps`` and ``validations``; ``grad_clip`` is ``outer.grad_clip``)."""
    t = thresholds
    spikes = tuple(find_spikes(steps, t))
    skipped = tuple(r.step for r in steps if r.skipped)
    norms = [r.grad_norm for r in steps if not r.skipped and math.isfinite(r.grad_norm)]
    clipped = sum(n > grad_clip for n in norms) / len(norms) if grad_clip and norms else 0.0
    finite = [r for r in validations if math.isfinite(r.value)]
    nan = float("nan")
    if not finite:
        return HealthReport(
            len(steps), -1, nan, -1, nan, nan, 0, nan, nan, False, spikes, _norm_growth(steps),
            skipped, clipped, grad_clip, True, nan, ("no finite meta-validation objective",), t,
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
    last = validations[-1].value
    scale = max(float(y[0]) - best.value, 0.1 * abs(best.value), 1e-12)
    diverged = not math.isfinite(last) or last - best.value > t.blowup_factor * scale
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
        spikes=spikes,
        norm_growth=_norm_growth(steps),
        skipped_steps=skipped,
        clipped_fraction=clipped,
        grad_clip=grad_clip,
        diverged=diverged,
        last_value=last,
        thresholds=t,
    )
