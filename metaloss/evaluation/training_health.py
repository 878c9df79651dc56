"""The health of a meta-training run, read off its history: does the meta-validation objective
rise after its best step (the meta-objective overfits the meta-train tasks), does the
meta-gradient norm spike, were steps skipped as non-finite, did the run blow up.

:mod:`metaloss.evaluation.diagnostics` judges a *learner's* training curve inside one task; this
module judges the *meta*-training curve of the loss itself. Rules, with the constants of
:class:`HealthThresholds`:

- ``overfitting``: at least ``min_after`` validations follow the best one, the last of them is
  more than ``rise_fraction`` of ``|best|`` above the best, and the least-squares trend of the
  validations after the best step is positive with one-sided p-value below ``trend_p``
  (:func:`scipy.stats.linregress`);
- ``spike``: a step whose meta-gradient norm exceeds ``spike_factor`` times the median of the
  ``window`` steps before it (needs ``window`` finite steps of history);
- ``diverged``: a non-finite validation, or a last validation more than ``blowup_factor`` times
  as far from the best as the spread of the validations up to the best step (the run went
  somewhere it should not).

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
    last_step: int
    last_value: float
    validations_after_best: int
    trend_per_100_steps: float
    trend_p: float
    overfitting: bool
    spikes: tuple[Spike, ...]
    skipped_steps: tuple[int, ...]
    clipped_fraction: float
    grad_clip: float
    diverged: bool
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
                f"last {self.last_value:.4g} at step {self.last_step}"
            )
        head = (
            f"meta-validation: best {self.best_value:.4g} at step {self.best_step} of {self.steps}"
        )
        if self.validations_after_best == 0:
            return f"{head} (the last validation): still improving when training stopped"
        rise = (self.last_value - self.best_value) / max(abs(self.best_value), 1e-12)
        trend = (
            f"{self.validations_after_best} validations after it, last {self.last_value:.4g} "
            f"({rise:+.1%}); trend after the best {self.trend_per_100_steps:+.3g} per 100 steps"
        )
        if not math.isnan(self.trend_p):
            trend += f" (p {self.trend_p:.2g})"
        if self.overfitting:
            return (
                f"{head}; {trend}: the meta-objective overfits after step {self.best_step} "
                f"(the saved loss is the step-{self.best_step} one; outer.patience stops earlier)"
            )
        return f"{head}; {trend}: no rise after the best"

    def _gradient_line(self) -> str:
        clipped = (
            f"; clipped at outer.grad_clip={self.grad_clip:g} on {self.clipped_fraction:.0%} of steps"
            if self.grad_clip
            else ""
        )
        if not self.spikes:
            return f"meta-gradient norm: no spikes above the running median{clipped}"
        largest = max(self.spikes, key=lambda s: s.ratio)
        first = self.spikes[0]
        return (
            f"meta-gradient norm: {len(self.spikes)} spike(s) above "
            f"{self.thresholds.spike_factor:g}x the median of its previous "
            f"{self.thresholds.window} steps"
            f", first at step {first.step} (largest {largest.ratio:.1f}x at step "
            f"{largest.step}){clipped}"
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


def _trend(after: Sequence[ValidationRecord]) -> tuple[float, float]:
    """Least-squares slope per 100 steps of the validations after the best one, and its
    one-sided p-value for a rise (NaN with fewer than three points)."""
    if len(after) < 3:
        return float("nan"), float("nan")
    x = np.array([r.step for r in after], dtype=float)
    y = np.array([r.value for r in after], dtype=float)
    if np.ptp(y) == 0:
        return 0.0, 1.0
    fit = stats.linregress(x, y, alternative="greater")
    return float(fit.slope) * 100, float(fit.pvalue)


def assess_training(
    steps: Sequence[StepRecord],
    validations: Sequence[ValidationRecord],
    grad_clip: float = 0.0,
    thresholds: HealthThresholds = HealthThresholds(),
) -> HealthReport:
    """Judge a meta-training history (a :class:`~metaloss.outer.trainer.TrainResult`'s
    ``steps`` and ``validations``; ``grad_clip`` is ``outer.grad_clip``)."""
    t = thresholds
    finite = [r for r in validations if math.isfinite(r.value)]
    if not finite:
        return HealthReport(
            len(steps), -1, float("nan"), -1, float("nan"), 0, float("nan"), float("nan"),
            False, tuple(find_spikes(steps, t)), tuple(r.step for r in steps if r.skipped),
            0.0, grad_clip, True, ("no finite meta-validation objective",), t,
        )  # fmt: skip
    best = min(finite, key=lambda r: (r.value, r.step))
    last = validations[-1]
    after = [r for r in validations if r.step > best.step]
    slope, p = _trend([best, *after])
    rise = last.value - best.value
    overfitting = (
        len(after) >= t.min_after
        and rise > t.rise_fraction * abs(best.value)
        and slope > 0
        and p < t.trend_p
    )
    before = [r.value for r in finite if r.step <= best.step]
    spread = (max(before) - best.value) if len(before) > 1 else abs(best.value)
    diverged = not math.isfinite(last.value) or rise > t.blowup_factor * max(spread, 1e-12)
    norms = [r.grad_norm for r in steps if not r.skipped and math.isfinite(r.grad_norm)]
    clipped = sum(n > grad_clip for n in norms) / len(norms) if grad_clip and norms else 0.0
    return HealthReport(
        steps=len(steps),
        best_step=best.step,
        best_value=best.value,
        last_step=last.step,
        last_value=last.value,
        validations_after_best=len(after),
        trend_per_100_steps=slope,
        trend_p=p,
        overfitting=overfitting,
        spikes=tuple(find_spikes(steps, t)),
        skipped_steps=tuple(r.step for r in steps if r.skipped),
        clipped_fraction=clipped,
        grad_clip=grad_clip,
        diverged=diverged,
        thresholds=t,
    )
