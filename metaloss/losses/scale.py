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

Scales of the *residual* distribution that do not collapse on skewed or zero-inflated data
(where most residuals can be nearly equal, so the median absolute deviation is close to 0 and
every other sample would look like an outlier), for losses meant to transfer to real data:

- ``mad_scaled_residual``: ``(r - median(r)) / s50`` with ``s50 = 1.4826 * MAD(r)``, the
  normalised median absolute deviation of the batch's residuals (floored at ``s90 / 1000``),
  clipped to [-50, 50];
- ``log_mad_scaled_residual``: ``log(1 + |mad_scaled_residual|)`` (bounded growth);
- ``log_tail_scaled_residual``: ``log(1 + |r - median(r)| / s90)`` with ``s90`` the 90th
  percentile of ``|r - median(r)|`` divided by 1.645 (also a std under Gaussian errors, but it
  only collapses when 90% of the residuals coincide);
- ``residual_tail_ratio``: ``log(s90 / s50)``, broadcast: about 0 for Gaussian residuals,
  large for heavy tails, zero inflation or gross outliers;
- ``residual_skewness``: Kelly's quantile skewness of the residuals,
  ``(q90 + q10 - 2 median) / (q90 - q10)`` in [-1, 1], broadcast;
- ``fit_progress``: ``log(s90(residuals) / s90(targets))``, broadcast: how far the fit has come
  relative to the spread of the data (0 at a constant prediction, negative as it fits).

**The robustness scale.** Every feature above that divides by a batch scale estimate (all but
``residual_tail_ratio``, ``residual_skewness`` and ``fit_progress``, which are ratios of scales)
takes a factor ``scale`` (default 1) that multiplies that estimate, as the tuning constant of an
M-estimator multiplies its scale (Huber's k, Tukey's c): ``scale > 1`` makes every residual look
smaller (as ``scale`` grows, a weight-form loss tends to a constant weight, the squared loss),
``scale < 1`` larger. A learned loss meta-trained at ``scale = 1`` is then a family of losses
with one tuning constant (:meth:`metaloss.losses.learned.LearnedLoss.with_scale`), which a
benchmark may select on validation data like a baseline's parameter
(``benchmark.learned_scale``).

References:
    Huber, "Robust Statistics", Wiley, 1981 (M-estimators with a scale estimate).
    Kelly, "Fundamentals of Mathematical Statistics", 1947 (quantile skewness).
    Hampel, "The Influence Curve and its Role in Robust Estimation", JASA, 1974 (median
    absolute deviation as a robust scale).
"""

from __future__ import annotations

import torch
from torch import Tensor

from metaloss.losses.features import register_feature
from metaloss.losses.ops import absolute

__all__ = [
    "abs_scaled_residual",
    "abs_target_scaled_residual",
    "fit_progress",
    "log_mad_scaled_residual",
    "log_tail_scaled_residual",
    "mad_scaled_residual",
    "outlier_fraction",
    "residual_scale",
    "residual_skewness",
    "residual_tail_ratio",
    "scaled_residual",
    "spread_scales",
    "target_scale",
    "target_scaled_residual",
]

_TINY = 1e-6


def residual_scale(pred: Tensor, target: Tensor, scale: float = 1.0) -> Tensor:
    """The median absolute residual of the whole batch (detached) times ``scale``, broadcast to
    ``pred``'s shape."""
    median = (pred - target).detach().abs().flatten().median()
    return (scale * median).expand(pred.shape)


def scaled_residual(pred: Tensor, target: Tensor, scale: float = 1.0) -> Tensor:
    """The residual divided by :func:`residual_scale` (plus 1e-6)."""
    return (pred - target) / (residual_scale(pred, target, scale) + _TINY)


def abs_scaled_residual(pred: Tensor, target: Tensor, scale: float = 1.0) -> Tensor:
    """``|pred - target| / (residual_scale + 1e-6)``."""
    return absolute(scaled_residual(pred, target, scale))


def outlier_fraction(pred: Tensor, target: Tensor, scale: float = 1.0) -> Tensor:
    """The fraction of the batch with ``|pred - target| > 3 * residual_scale`` (detached)."""
    residual = (pred - target).detach().abs()
    fraction = (residual > 3 * residual_scale(pred, target, scale)).to(pred.dtype).mean()
    return fraction.expand(pred.shape)


def target_scale(pred: Tensor, target: Tensor, scale: float = 1.0) -> Tensor:
    """The median absolute deviation of the batch's targets from their median (detached) times
    ``scale``, broadcast to ``pred``'s shape (Hampel, 1974)."""
    values = target.detach().flatten()
    spread = (values - values.median()).abs().median()
    return (scale * spread).expand(pred.shape)


def target_scaled_residual(pred: Tensor, target: Tensor, scale: float = 1.0) -> Tensor:
    """The residual divided by the batch's target spread :func:`target_scale` (plus 1e-6)."""
    return (pred - target) / (target_scale(pred, target, scale) + _TINY)


def abs_target_scaled_residual(pred: Tensor, target: Tensor, scale: float = 1.0) -> Tensor:
    """``|pred - target| / (target_scale + 1e-6)``."""
    return absolute(target_scaled_residual(pred, target, scale))


def _sorted(values: Tensor) -> Tensor:
    return values.detach().flatten().sort().values


def _at(sorted_values: Tensor, q: float) -> Tensor:
    """The ``q`` quantile of already sorted values, interpolated linearly between ranks as
    ``torch.quantile`` does (written with fixed indices so that it works under ``vmap``)."""
    position = q * (sorted_values.shape[0] - 1)
    low = int(position)
    high = min(low + 1, sorted_values.shape[0] - 1)
    weight = position - low
    return sorted_values[low] * (1 - weight) + sorted_values[high] * weight


def spread_scales(values: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(median, s50, s90)`` of all elements of ``values`` (detached): the median, the
    normalised median absolute deviation and the 90th percentile of the absolute deviations
    over 1.645 (both estimate the std of Gaussian data). ``s90`` is at least 1e-6 and ``s50`` at
    least ``s90 / 1000``."""
    ordered = _sorted(values)
    centre = _at(ordered, 0.5)
    deviations = (ordered - centre).abs().sort().values
    s90 = (_at(deviations, 0.9) / 1.645).clamp_min(_TINY)
    s50 = torch.maximum(1.4826 * _at(deviations, 0.5), s90 / 1000)
    return centre, s50, s90


def mad_scaled_residual(pred: Tensor, target: Tensor, scale: float = 1.0) -> Tensor:
    """``(r - median(r)) / (scale * s50)`` of the batch's residuals ``r`` (see
    :func:`spread_scales`), clipped to [-50, 50]."""
    residual = pred - target
    centre, s50, _ = spread_scales(residual)
    return ((residual - centre) / (scale * s50)).clamp(-50.0, 50.0)


def log_mad_scaled_residual(pred: Tensor, target: Tensor, scale: float = 1.0) -> Tensor:
    """``log(1 + |mad_scaled_residual|)``."""
    return torch.log1p(absolute(mad_scaled_residual(pred, target, scale)))


def log_tail_scaled_residual(pred: Tensor, target: Tensor, scale: float = 1.0) -> Tensor:
    """``log(1 + |r - median(r)| / (scale * s90))`` of the batch's residuals."""
    residual = pred - target
    centre, _, s90 = spread_scales(residual)
    return torch.log1p(absolute(residual - centre) / (scale * s90))


def residual_tail_ratio(pred: Tensor, target: Tensor) -> Tensor:
    """``log(s90 / s50)`` of the batch's residuals, broadcast (0 for Gaussian residuals)."""
    _, s50, s90 = spread_scales(pred - target)
    return torch.log(s90 / s50).expand(pred.shape)


def residual_skewness(pred: Tensor, target: Tensor) -> Tensor:
    """Kelly's skewness ``(q90 + q10 - 2 q50) / (q90 - q10)`` of the residuals, broadcast."""
    ordered = _sorted(pred - target)
    low, mid, high = _at(ordered, 0.1), _at(ordered, 0.5), _at(ordered, 0.9)
    skew = (high + low - 2 * mid) / (high - low).clamp_min(_TINY)
    return skew.expand(pred.shape)


def fit_progress(pred: Tensor, target: Tensor) -> Tensor:
    """``log(s90(residuals) / s90(targets))``, broadcast (see :func:`spread_scales`)."""
    _, _, residual_spread = spread_scales(pred - target)
    _, _, target_spread = spread_scales(target)
    return torch.log(residual_spread / target_spread).expand(pred.shape)


_SCALED_FEATURES = (
    residual_scale,
    scaled_residual,
    abs_scaled_residual,
    outlier_fraction,
    target_scale,
    target_scaled_residual,
    abs_target_scaled_residual,
    mad_scaled_residual,
    log_mad_scaled_residual,
    log_tail_scaled_residual,
)
"""Features that read a batch scale estimate (each takes ``scale``, see the module docstring)."""
_SHAPE_FEATURES = (residual_tail_ratio, residual_skewness, fit_progress)
"""Ratios of scales: unchanged when every scale estimate is multiplied by the same factor."""
for _feature in _SCALED_FEATURES:
    register_feature("regression", _feature.__name__, _feature, scaled=True)
for _shape in _SHAPE_FEATURES:
    register_feature("regression", _shape.__name__, _shape)
