"""Has a learned loss collapsed? A verdict from its values and gradients on a fixed grid.

Meta-training can drive a learned loss to a constant, to no gradient w.r.t. the prediction, or
to NaN. Each loss kind supplies its own grid (its :class:`~metaloss.losses.kinds.KindSpec`'s
``collapse_check``); :func:`degeneracy_report` turns the values and gradients on that grid into
one verdict.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from metaloss.losses.kinds import KINDS
from metaloss.losses.module import LossModule
from metaloss.typing import PerSampleLoss

__all__ = ["DegeneracyReport", "check_degenerate", "degeneracy_report"]


@dataclass(frozen=True)
class DegeneracyReport:
    """Whether a learned loss has collapsed, and why.

    Attributes:
        collapsed: the loss gives (almost) no gradient or a constant value on the grid.
        reason: one line saying what was found (empty when healthy).
        max_abs_grad: largest ``|d loss / d pred|`` on the grid.
        value_range: ``max - min`` of the loss on the grid.
        descent_fraction: fraction of grid points where ``-grad`` moves the prediction
            towards the target (1.0 for MSE; low values mean the loss pushes away).
    """

    collapsed: bool
    reason: str
    max_abs_grad: float
    value_range: float
    descent_fraction: float


def degeneracy_report(
    values: Tensor, grads: Tensor, descent: float, tolerance: float, grid: str, wrt: str
) -> DegeneracyReport:
    """The verdict on a loss evaluated on a grid (``grid`` and ``wrt`` name it in the reason):
    non-finite, constant output, or no gradient w.r.t. ``wrt``; otherwise healthy."""
    max_abs_grad = float(grads.abs().max())
    value_range = float(values.max() - values.min())
    reason = ""
    if not (torch.isfinite(values).all() and torch.isfinite(grads).all()):
        reason = f"the loss or its gradient is NaN/Inf on the grid of {grid}"
    elif value_range < tolerance:
        reason = f"constant output (range {value_range:.2e} over {grid})"
    elif max_abs_grad < tolerance:
        reason = f"no gradient w.r.t. {wrt} (max |grad| {max_abs_grad:.2e})"
    return DegeneracyReport(bool(reason), reason, max_abs_grad, value_range, descent)


def check_degenerate(
    loss_fn: PerSampleLoss, kind: str = "regression", tolerance: float = 1e-6
) -> DegeneracyReport:
    """Detect a collapsed loss of ``kind`` (a loss module's own ``kind`` wins): gradient w.r.t.
    predictions ~0 over its kind's grid, constant output, or NaN/Inf."""
    kind = loss_fn.kind if isinstance(loss_fn, LossModule) else kind
    spec = KINDS.get(kind)
    if spec is None or spec.collapse_check is None:
        nan = float("nan")
        return DegeneracyReport(False, f"not checked for kind {kind!r}", nan, nan, nan)
    return spec.collapse_check(loss_fn, tolerance)
