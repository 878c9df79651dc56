"""Diagnose a learner's training curve: healthy descent, overfitting, oscillation, plateau or
divergence.

Curves are judged on the *task metric* recorded after every inner step (e.g. clean test MSE),
never on the loss value: a learned loss may be negative or non-monotone and still train the
learner well. Rules, checked in this order on a curve ``c[0..K]`` with minimum ``m`` at step
``k*``:

- ``divergence``: the run produced NaN/Inf (it was frozen at its last finite step) or the curve
  is not finite;
- ``oscillation``: the curve's total variation exceeds ``oscillation_ratio`` times that of the
  monotone path ``c[0] -> m -> c[K]``, with at least ``min_reversals`` changes of direction;
- ``overfitting``: it rises after its minimum: ``c[K] - m`` exceeds ``rise_fraction`` of the
  descent ``c[0] - m`` and ``rise_relative`` of ``m``;
- ``plateau``: it barely improves: ``c[0] - m < plateau_fraction * c[0]``;
- ``healthy``: otherwise.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["DIAGNOSES", "Thresholds", "count_diagnoses", "diagnose"]

DIAGNOSES = ("healthy", "overfitting", "oscillation", "plateau", "divergence")


@dataclass(frozen=True)
class Thresholds:
    """The constants of the rules in the module docstring."""

    oscillation_ratio: float = 2.0
    min_reversals: int = 3
    rise_fraction: float = 0.1
    rise_relative: float = 0.05
    plateau_fraction: float = 0.1


def diagnose(curve: Tensor, diverged: bool = False, thresholds: Thresholds = Thresholds()) -> str:
    """The diagnosis of one training curve (``[K+1]`` metric values); one of :data:`DIAGNOSES`."""
    c = curve.detach().double()
    if diverged or not bool(torch.isfinite(c).all()):
        return "divergence"
    if c.numel() < 2:
        return "plateau"
    t = thresholds
    first, last, low = float(c[0]), float(c[-1]), float(c.min())
    steps = c.diff()
    variation = float(steps.abs().sum())
    monotone = (first - low) + (last - low)
    signs = torch.sign(steps[steps != 0])
    reversals = int((signs[1:] != signs[:-1]).sum()) if signs.numel() > 1 else 0
    if reversals >= t.min_reversals and variation > t.oscillation_ratio * max(monotone, 1e-12):
        return "oscillation"
    rise, descent = last - low, first - low
    if rise > t.rise_fraction * descent and rise > t.rise_relative * abs(low):
        return "overfitting"
    if descent < t.plateau_fraction * abs(first):
        return "plateau"
    return "healthy"


def count_diagnoses(
    curves: Tensor, diverged: Tensor, thresholds: Thresholds = Thresholds()
) -> dict[str, int]:
    """How many runs (rows of ``curves``, ``[runs, K+1]``) fall in each diagnosis."""
    counts = Counter(
        diagnose(c, bool(d), thresholds) for c, d in zip(curves, diverged, strict=True)
    )
    return {name: counts.get(name, 0) for name in DIAGNOSES}
