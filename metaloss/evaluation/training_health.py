"""Health of a meta-training run, read off its history: did the meta-validation objective
diverge or explode, did the meta-gradient spike?

The library only diagnoses; ``metaloss train`` prints the findings as warnings at the end of a
run and exits with status 3 when meta-training diverged (an error finding). The checks:

- ``nonfinite``: a meta-validation objective was NaN or Inf (error);
- ``exploded``: after its best, the meta-validation objective reached at least
  :data:`EXPLODE_RATIO` times the best (error);
- ``diverging``: the last meta-validation objective is at least :data:`RISE_RATIO` times the best
  (warning: the saved loss is the best one, but more steps made it worse);
- ``grad_spikes``: meta-gradient norms at least :data:`SPIKE_RATIO` times the median of the
  preceding :data:`SPIKE_WINDOW` finite norms, once :data:`SPIKE_HISTORY` are known (warning);
- ``skipped``: meta-steps skipped for NaN/Inf meta-gradients (warning).

This is the one spike and divergence rule of the package: the end-of-run description
(:mod:`metaloss.evaluation.training_summary`) reports these findings and adds what is not a
verdict (the overfitting trend, norm growth, clipping). The spike bar is high on purpose: on
meta-training runs of the shipped configs the norm reaches 6-12x (one run 93x) its running median
without anything going wrong, while runs that blew up went past 100x dozens of times.

Ratios compare objectives on their own scale: for a positive objective (an MSE, a
cross-entropy) ``value / best``; for ``outer.objective_transform: log`` (a mean log error, possibly
negative) ``exp(value - best)``, the same ratio of the errors. A raw objective whose best is not
positive gets only the non-finite check.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = [
    "EXPLODE_RATIO",
    "RISE_RATIO",
    "SPIKE_HISTORY",
    "SPIKE_RATIO",
    "SPIKE_WINDOW",
    "Finding",
    "GradientJump",
    "TrainingHealth",
    "diagnose_training",
    "find_spikes",
    "gradient_jumps",
    "skipped_steps",
]

EXPLODE_RATIO = 1e6
"""Meta-validation at this many times its best (or more) after the best: exploded."""
RISE_RATIO = 2.0
"""Last meta-validation at this many times its best (or more): diverging."""
SPIKE_RATIO = 100.0
"""A meta-gradient norm this many times the running median (or more): a spike."""
SPIKE_WINDOW = 50
"""Finite norms in the running median of the meta-gradient norm."""
SPIKE_HISTORY = 10
"""Finite norms needed before a step can be judged a spike."""


class _Validation(Protocol):
    @property
    def step(self) -> int: ...
    @property
    def value(self) -> float: ...


class _Step(Protocol):
    @property
    def step(self) -> int: ...
    @property
    def grad_norm(self) -> float: ...
    @property
    def skipped(self) -> bool: ...


@dataclass(frozen=True)
class Finding:
    """One diagnosis: a short code, its severity and a one-line message."""

    code: str
    severity: Literal["warning", "error"]
    message: str


@dataclass(frozen=True)
class GradientJump:
    """A meta-step's gradient norm and its ratio to the running median of the norms before it."""

    step: int
    grad_norm: float
    ratio: float


@dataclass(frozen=True)
class TrainingHealth:
    """All findings of a run (empty: healthy), with the spikes and skipped steps they rest on
    and the largest jump of the meta-gradient norm (``None``: too few steps to judge)."""

    findings: tuple[Finding, ...]
    spikes: tuple[GradientJump, ...] = ()
    skipped: tuple[int, ...] = ()
    largest_jump: GradientJump | None = None

    @property
    def diverged(self) -> bool:
        """Whether any finding is an error (meta-training diverged)."""
        return any(f.severity == "error" for f in self.findings)

    @property
    def healthy(self) -> bool:
        return not self.findings


def _ratio(value: float, best: float, log_scale: bool) -> float | None:
    if log_scale:
        return math.exp(min(value - best, 700.0))
    return value / best if best > 0 else None


def _validation_findings(validations: Sequence[_Validation], log_scale: bool) -> list[Finding]:
    if not validations:
        return []
    bad = [v for v in validations if not math.isfinite(v.value)]
    if bad:
        return [
            Finding(
                "nonfinite",
                "error",
                f"the meta-validation objective became {bad[0].value} at step {bad[0].step} "
                f"({len(bad)} of {len(validations)} validations); lower outer.lr or inner.lr",
            )
        ]
    best = min(validations, key=lambda v: v.value)
    after = [v for v in validations if v.step > best.step]
    findings = []
    peak = max(after, key=lambda v: v.value, default=None)
    peak_ratio = _ratio(peak.value, best.value, log_scale) if peak is not None else None
    if peak is not None and peak_ratio is not None and peak_ratio >= EXPLODE_RATIO:
        findings.append(
            Finding(
                "exploded",
                "error",
                f"the meta-validation objective exploded: {peak.value:.3g} at step {peak.step}, "
                f"{peak_ratio:.2g}x its best {best.value:.4g} (step {best.step}); the saved loss "
                "is the best one; lower outer.lr, keep outer.grad_clip, or set outer.patience",
            )
        )
    last = validations[-1]
    last_ratio = _ratio(last.value, best.value, log_scale)
    if not findings and last is not best and last_ratio is not None and last_ratio >= RISE_RATIO:
        findings.append(
            Finding(
                "diverging",
                "warning",
                f"the meta-validation objective rose to {last.value:.4g} at the last validation "
                f"(step {last.step}), {last_ratio:.3g}x its best {best.value:.4g} (step "
                f"{best.step}); the saved loss is the best one; fewer steps, a lower outer.lr or "
                "outer.patience may help",
            )
        )
    return findings


def _finite(record: _Step) -> bool:
    return not record.skipped and math.isfinite(record.grad_norm)


def skipped_steps(steps: Sequence[_Step]) -> tuple[int, ...]:
    """The meta-steps skipped for a NaN/Inf meta-gradient."""
    return tuple(s.step for s in steps if not _finite(s))


def gradient_jumps(steps: Sequence[_Step]) -> list[GradientJump]:
    """Every finite step's norm against the median of the :data:`SPIKE_WINDOW` finite norms
    before it (from the step after :data:`SPIKE_HISTORY` finite norms on; a median of 0 is
    skipped)."""
    jumps = []
    norms: list[float] = []
    for record in steps:
        if not _finite(record):
            continue
        if len(norms) >= SPIKE_HISTORY:
            median = statistics.median(norms[-SPIKE_WINDOW:])
            if median > 0:
                jumps.append(GradientJump(record.step, record.grad_norm, record.grad_norm / median))
        norms.append(record.grad_norm)
    return jumps


def find_spikes(steps: Sequence[_Step]) -> list[GradientJump]:
    """The steps whose norm is at least :data:`SPIKE_RATIO` times its running median."""
    return [jump for jump in gradient_jumps(steps) if jump.ratio >= SPIKE_RATIO]


def _gradient_findings(
    steps: Sequence[_Step], spikes: Sequence[GradientJump], skipped: Sequence[int]
) -> list[Finding]:
    findings = []
    if skipped:
        findings.append(
            Finding(
                "skipped",
                "warning",
                f"{len(skipped)} of {len(steps)} meta-steps had NaN/Inf meta-gradients and were "
                f"skipped (first at step {skipped[0]})",
            )
        )
    if spikes:
        largest = max(spikes, key=lambda jump: jump.ratio)
        findings.append(
            Finding(
                "grad_spikes",
                "warning",
                f"{len(spikes)} meta-gradient spike{'s' if len(spikes) > 1 else ''} (norm >= "
                f"{SPIKE_RATIO:g}x the median of the previous {SPIKE_WINDOW} steps; largest "
                f"{largest.ratio:.3g}x at step {largest.step}); outer.grad_clip bounds the "
                "steps they take",
            )
        )
    return findings


def diagnose_training(
    steps: Sequence[_Step], validations: Sequence[_Validation], log_scale: bool = False
) -> TrainingHealth:
    """Diagnose a run from its meta-steps and validations (lower objectives are better).

    Args:
        steps: the meta-step records (``step``, ``grad_norm``, ``skipped``).
        validations: the validation records (``step``, ``value``), in order.
        log_scale: the objective is a mean log error (``outer.objective_transform: log``).

    Example:
        >>> health = diagnose_training(result.steps, result.validations)  # doctest: +SKIP
        >>> [f.message for f in health.findings]  # doctest: +SKIP
    """
    jumps = gradient_jumps(steps)
    spikes = tuple(jump for jump in jumps if jump.ratio >= SPIKE_RATIO)
    skipped = skipped_steps(steps)
    findings = _validation_findings(validations, log_scale)
    findings += _gradient_findings(steps, spikes, skipped)
    largest = max(jumps, key=lambda jump: jump.ratio, default=None)
    return TrainingHealth(tuple(findings), spikes, skipped, largest)
