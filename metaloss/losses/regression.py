"""The regression loss kind: per-element losses of a prediction and a target of one shape.

This file is the kind's one home: its per-sample features, the curves that show a regression
loss's shape (value and ``d loss / d pred`` against the residual, each probe evaluated inside a
fixed reference batch so losses with batch-level features are defined), the collapse check read
off those curves, and the kind's registration. Batch-level scale features live in
:mod:`metaloss.losses.scale`; the figure and text summary in :mod:`metaloss.plots.regression`.

References:
    Bechtle et al., "Meta Learning via Learned Loss" (ML3), ICPR 2020 (loss-shape plots).
    Holland & Welsch, "Robust regression using iteratively reweighted least-squares",
    Communications in Statistics, 1977 (the loss a weight-form loss descends).
"""

from __future__ import annotations

import torch
from torch import Tensor

from metaloss.losses.collapse import DegeneracyReport, degeneracy_report
from metaloss.losses.features import register_feature
from metaloss.losses.kinds import KindSpec, register_kind
from metaloss.losses.learned import LearnedLoss
from metaloss.losses.module import loss_device, loss_dtype, per_sample_fn
from metaloss.losses.ops import absolute
from metaloss.typing import PerSampleLoss

__all__ = [
    "CONTEXT_SCALE",
    "REGRESSION_TARGETS",
    "check_regression",
    "evaluate_in_batch",
    "is_weight_form",
    "regression_curves",
    "weight_form_potential",
]

Curves = dict[str, Tensor]

REGRESSION_TARGETS = (-2.0, 0.0, 2.0)
"""Targets at which the shape curves are evaluated."""

CONTEXT_SCALE = 1.0
"""Median ``|residual|`` of the reference batch in which shapes are evaluated."""

_ELEMENTWISE = {
    "prediction": lambda pred, target: pred,
    "target": lambda pred, target: target,
    "residual": lambda pred, target: pred - target,
    "abs_residual": lambda pred, target: absolute(pred - target),
    "squared_residual": lambda pred, target: (pred - target) ** 2,
    "log_abs_residual": lambda pred, target: torch.log1p(absolute(pred - target)),
}
for _name, _feature in _ELEMENTWISE.items():
    register_feature("regression", _name, _feature, elementwise=True)


def evaluate_in_batch(
    loss: PerSampleLoss, pred: Tensor, target: Tensor, scale: float = CONTEXT_SCALE
) -> tuple[Tensor, Tensor]:
    """Per-sample loss and ``d loss / d pred`` of probes ``pred [N, 1]``, each evaluated inside a
    reference batch whose median absolute residual is exactly ``scale``.

    An element-wise loss (MSE, or a learned loss over residual features) is unaffected by the
    batch. A loss with batch-level features (``residual_scale``, ``scaled_residual``: the batch's
    median ``|residual|``; ``target_scale``: the spread of its targets) is defined only relative
    to its batch; the reference batch (``2N + 1`` samples at residual ``±scale`` and target
    ``±1``, more than half of the whole) fixes that context, so the curves show how one sample is
    treated in a batch of typical residual ``scale`` and targets of median absolute deviation 1.
    """
    per_sample = per_sample_fn(loss)
    n = pred.shape[0]
    signs = torch.ones(2 * n + 1, 1, dtype=pred.dtype, device=pred.device)
    signs[1::2] = -1
    context_target = signs.roll(1, 0)
    with torch.enable_grad():
        probe = pred.detach().clone().requires_grad_()
        batch_pred = torch.cat([probe, context_target + scale * signs])
        values = per_sample(batch_pred, torch.cat([target, context_target]))[:n]
        (grad,) = torch.autograd.grad(values.sum(), probe)
    return values.detach(), grad


def is_weight_form(loss: PerSampleLoss) -> bool:
    """Whether ``loss`` is a learned weight times the squared residual (``form="weight"``)."""
    return isinstance(loss, LearnedLoss) and loss.form == "weight"


def weight_form_potential(r: Tensor, grad: Tensor) -> tuple[Tensor, Tensor]:
    """The loss a weight-form loss actually descends, scaled so that it is comparable with MSE.

    A weight-form loss ``w · r²`` with ``w`` not differentiated updates along ``2 w(r) r``; the
    function with that derivative is ``ρ(r) = ∫₀ʳ 2 w(s) s ds`` (the M-estimator whose IRLS
    weights are ``w``). Adam ignores a constant factor, so both are divided by one: the weight
    next to zero residual, averaged over the rows (targets): ``mean w(0) = 1``, and a constant
    weight gives exactly MSE's ``r²`` and ``2 r``. The factor is shared, not one per row, because
    a loss that weights the samples of some targets more than others' trains differently from
    one that does not, and the curves keep that difference.
    Returns ``(ρ, 2 w r)`` for each row of ``grad [T, R]`` on the symmetric grid ``r [R]``.
    """
    centre = int(torch.argmin(r.abs()))
    near = centre + 1
    w0 = (grad[:, near] / (2 * r[near])).mean()
    scaled = grad / w0.clamp_min(torch.finfo(grad.dtype).tiny)
    steps = (scaled[:, 1:] + scaled[:, :-1]) / 2 * (r[1:] - r[:-1])
    rising = torch.cumsum(steps[:, centre:], dim=-1)
    falling = torch.cumsum(steps[:, :centre].flip(-1), dim=-1).flip(-1)
    zero = torch.zeros_like(grad[:, :1])
    potential = torch.cat([-falling, zero, rising], dim=-1)
    return potential, scaled


def _raw_curves(loss: PerSampleLoss, scale: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Residual grid ``[R]``, targets ``[T]`` and the loss and its gradient ``[T, R]``, evaluated
    where the loss's parameters are and returned on the CPU."""
    dtype, device = loss_dtype(loss), loss_device(loss)
    r = torch.linspace(-5, 5, 201, dtype=dtype, device=device)
    t = torch.tensor(REGRESSION_TARGETS, dtype=dtype, device=device)
    target = t.repeat_interleave(len(r))[:, None]
    pred = target + r.repeat(len(t))[:, None]
    values, grads = evaluate_in_batch(loss, pred, target, scale)
    shape = (len(t), len(r))
    return r.cpu(), t.cpu(), values.reshape(shape).cpu(), grads.reshape(shape).cpu()


def regression_curves(loss: PerSampleLoss, scale: float = CONTEXT_SCALE) -> Curves:
    """Loss and ``d loss / d pred`` on residuals in [-5, 5] for targets -2, 0 and 2: the numbers
    behind every regression shape figure, summary and collapse check.

    Returns tensors ``residual [R]``, ``target [T]``, ``value [T, R]``, ``grad [T, R]``, the
    reference batch's median ``|residual|`` ``context_scale [1]`` (see :func:`evaluate_in_batch`),
    ``batch_dependent [1]`` (1.0 if the values change with that scale, else 0.0) and
    ``weight_form [1]`` (1.0 for a weight-form loss, whose value and gradient are then those of
    the loss it descends, scaled to ``mean w(0) = 1``: see :func:`weight_form_potential`).
    """
    r, t, value, grad = _raw_curves(loss, scale)
    _, _, other, _ = _raw_curves(loss, 2 * scale)
    dependent = not torch.allclose(value, other, rtol=1e-4, atol=1e-6)
    weight_form = is_weight_form(loss)
    if weight_form:
        value, grad = weight_form_potential(r, grad)
    dtype = r.dtype
    return {
        "residual": r,
        "target": t,
        "value": value,
        "grad": grad,
        "context_scale": torch.tensor([scale], dtype=dtype, device="cpu"),
        "batch_dependent": torch.tensor([float(dependent)], dtype=dtype, device="cpu"),
        "weight_form": torch.tensor([float(weight_form)], dtype=dtype, device="cpu"),
    }


def check_regression(loss: PerSampleLoss, tolerance: float = 1e-6) -> DegeneracyReport:
    """The collapse verdict of a regression loss on the grid of :func:`regression_curves`
    (its raw values and gradients): ``descent_fraction`` is the share of residuals
    (``|r| > 0.05``) where a gradient step moves the prediction towards the target."""
    r, _, values, grads = _raw_curves(loss, CONTEXT_SCALE)
    moving = r.abs() > 0.05
    towards = (grads * r.sign())[:, moving] > 0
    descent = float(towards.double().mean())
    return degeneracy_report(
        values, grads, descent, tolerance, "residuals in [-5, 5]", "the prediction"
    )


register_kind(
    KindSpec(
        "regression",
        LearnedLoss,
        reference="mse",
        collapse_check=check_regression,
        shape_view="metaloss.plots.regression:REGRESSION_VIEW",
        per_sample_histograms=True,
    )
)
