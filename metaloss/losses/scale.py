"""Batch-level regression features: the residual and target scales of the batch, as robust
M-estimators use them.

A robust loss must tell an outlier from an ordinary error, and "large" only means something
relative to the typical residual of the data at hand. These features give a learned loss that
scale: the median absolute residual of the batch (all elements of the ``pred`` tensor it is
called with; one task under ``vmap``), detached, so that the loss is an M-estimator with a fixed
scale at each step, as in iteratively re-weighted least squares.

Importing this module registers these regression features (see
:data:`metaloss.losses.features.FEATURES`):

- ``residual_scale``: the median of ``|pred - target|`` over the batch, broadcast to every sample;
- ``scaled_residual``: ``(pred - target) / (residual_scale + 1e-6)``;
- ``abs_scaled_residual``: its absolute value (for losses symmetric in the residual);
- ``outlier_fraction``: the fraction of the batch whose residual exceeds 3 ``residual_scale``
  (detached, broadcast): a contamination estimate, near 0 on clean Gaussian errors;
- ``target_scale``: the median absolute deviation of the batch's *targets* from their median
  (detached, broadcast). Unlike ``residual_scale`` it does not shrink as the learner fits, so a
  residual that is large relative to the spread of the data stays recognisable late in training,
  and an ordinary misfit early in training is not mistaken for an outlier;
- ``target_scaled_residual``: ``(pred - target) / (target_scale + 1e-6)``, and
  ``abs_target_scaled_residual`` its absolute value.

References:
    Huber, "Robust Statistics", Wiley, 1981 (M-estimators with a scale estimate).
    Hampel, "The Influence Curve and its Role in Robust Estimation", JASA, 1974 (median
    absolute deviation as a robust scale).
"""

from __future__ import annotations

from torch import Tensor

from metaloss.losses.features import register_feature

__all__ = [
    "abs_scaled_residual",
    "abs_target_scaled_residual",
    "outlier_fraction",
    "residual_scale",
    "scaled_residual",
    "target_scale",
    "target_scaled_residual",
]

_TINY = 1e-6


def residual_scale(pred: Tensor, target: Tensor) -> Tensor:
    """The median absolute residual of the whole batch (detached), broadcast to ``pred``'s shape."""
    scale = (pred - target).detach().abs().flatten().median()
    return scale.expand(pred.shape)


def scaled_residual(pred: Tensor, target: Tensor) -> Tensor:
    """The residual divided by the batch's median absolute residual (plus 1e-6)."""
    return (pred - target) / (residual_scale(pred, target) + _TINY)


def abs_scaled_residual(pred: Tensor, target: Tensor) -> Tensor:
    """``|pred - target| / (residual_scale + 1e-6)``."""
    return scaled_residual(pred, target).abs()


def outlier_fraction(pred: Tensor, target: Tensor) -> Tensor:
    """The fraction of the batch with ``|pred - target| > 3 * residual_scale`` (detached)."""
    residual = (pred - target).detach().abs()
    fraction = (residual > 3 * residual_scale(pred, target)).to(pred.dtype).mean()
    return fraction.expand(pred.shape)


def target_scale(pred: Tensor, target: Tensor) -> Tensor:
    """The median absolute deviation of the batch's targets from their median (detached),
    broadcast to ``pred``'s shape (Hampel, 1974)."""
    values = target.detach().flatten()
    scale = (values - values.median()).abs().median()
    return scale.expand(pred.shape)


def target_scaled_residual(pred: Tensor, target: Tensor) -> Tensor:
    """The residual divided by the batch's target spread :func:`target_scale` (plus 1e-6)."""
    return (pred - target) / (target_scale(pred, target) + _TINY)


def abs_target_scaled_residual(pred: Tensor, target: Tensor) -> Tensor:
    """``|pred - target| / (target_scale + 1e-6)``."""
    return target_scaled_residual(pred, target).abs()


register_feature("regression", "residual_scale", residual_scale)
register_feature("regression", "scaled_residual", scaled_residual)
register_feature("regression", "abs_scaled_residual", abs_scaled_residual)
register_feature("regression", "outlier_fraction", outlier_fraction)
register_feature("regression", "target_scale", target_scale)
register_feature("regression", "target_scaled_residual", target_scaled_residual)
register_feature("regression", "abs_target_scaled_residual", abs_target_scaled_residual)
