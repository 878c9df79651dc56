"""The shape of a regression loss: its value and its gradient w.r.t. the prediction against the
residual, for several targets; and a check for losses that have collapsed.

These curves are what TensorBoard and ``metaloss inspect`` draw beside MSE, L1 and Huber.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "DEGENERACY_CHECKS",
    "DegeneracyReport",
    "ShapeCurves",
    "check_degenerate",
    "degeneracy_report",
    "register_degeneracy_check",
    "regression_shape",
]

PerSampleLoss = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class ShapeCurves:
    """``values[i, j]`` and ``grads[i, j]`` of the loss at ``pred = targets[i] + residuals[j]``."""

    residuals: Tensor
    targets: Tensor
    values: Tensor
    grads: Tensor


def regression_shape(
    loss_fn: PerSampleLoss,
    residuals: Tensor | None = None,
    targets: Sequence[float] = (-2.0, 0.0, 2.0),
    dtype: torch.dtype = torch.float32,
) -> ShapeCurves:
    """Evaluate a per-sample regression loss and ``d loss / d pred`` on a residual grid.

    ``loss_fn`` must return one value per element; a module with a ``per_sample`` method (such
    as :class:`~metaloss.losses.LearnedLoss`) is called through it.
    """
    loss_fn = getattr(loss_fn, "per_sample", loss_fn)
    r = torch.linspace(-5, 5, 201, dtype=dtype) if residuals is None else residuals.to(dtype)
    t = torch.tensor(list(targets), dtype=dtype)
    target = t[:, None].expand(len(t), len(r)).reshape(-1, 1).contiguous()
    with torch.enable_grad():
        pred = (target + r.repeat(len(t))[:, None]).requires_grad_()
        values = loss_fn(pred, target)
        (grads,) = torch.autograd.grad(values.sum(), pred)
    shape = (len(t), len(r))
    return ShapeCurves(r, t, values.detach().reshape(shape), grads.detach().reshape(shape))


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


DegeneracyCheck = Callable[[PerSampleLoss, float], DegeneracyReport]
DEGENERACY_CHECKS: dict[str, DegeneracyCheck] = {}
"""Collapse checks by loss kind; other kinds register theirs with :func:`register_degeneracy_check`."""


def register_degeneracy_check(kind: str, check: DegeneracyCheck) -> None:
    """Make :func:`check_degenerate` use ``check(loss_fn, tolerance)`` for losses of ``kind``."""
    DEGENERACY_CHECKS[kind] = check


def check_degenerate(
    loss_fn: PerSampleLoss, kind: str = "regression", tolerance: float = 1e-6
) -> DegeneracyReport:
    """Detect a collapsed loss: gradient w.r.t. predictions ~0 over the grid, or constant output."""
    kind = getattr(loss_fn, "kind", kind)
    check = DEGENERACY_CHECKS.get(kind)
    if check is None:
        nan = float("nan")
        return DegeneracyReport(False, f"not checked for kind {kind!r}", nan, nan, nan)
    return check(loss_fn, tolerance)


def _check_regression(loss_fn: PerSampleLoss, tolerance: float) -> DegeneracyReport:
    params = list(getattr(loss_fn, "parameters", lambda: [])())
    dtype = params[0].dtype if params else torch.float32
    curves = regression_shape(loss_fn, dtype=dtype)
    moving = curves.residuals.abs() > 0.05
    towards = (curves.grads * curves.residuals.sign())[:, moving] > 0
    descent = float(towards.double().mean())
    return degeneracy_report(
        curves.values, curves.grads, descent, tolerance, "residuals in [-5, 5]", "the prediction"
    )


register_degeneracy_check("regression", _check_regression)
