"""Redescending M-estimator losses on a robust scale of the residuals: Tukey's biweight.

The scale is the normalised median absolute deviation of the batch's residuals (all elements of
the ``pred`` tensor the loss is called with; one task under ``vmap``), detached, as in
iteratively re-weighted least squares: ``s = 1.4826 * median(|r - median(r)|)``. The loss of a
residual ``r`` is ``s**2 * rho(r / s)`` with Tukey's

    rho(u) = c**2 / 6 * (1 - (1 - (u / c)**2)**3)   for |u| <= c,   c**2 / 6 otherwise,

so residuals beyond ``c`` robust scales get no gradient at all (bounded influence, zero for gross
outliers) and small residuals get the least-squares gradient. ``c = 4.685`` gives 95% efficiency
under Gaussian noise. Importing this module registers ``tukey`` in
:data:`metaloss.losses.BASELINES` (``benchmark.baselines: [{name: tukey, param: c, ...}]``).

References:
    Beaton & Tukey, "The Fitting of Power Series, Meaning Polynomials, Illustrated on
    Band-Spectroscopic Data", Technometrics, 1974.
    Hampel, "The Influence Curve and its Role in Robust Estimation", JASA, 1974 (the MAD scale).
"""

from __future__ import annotations

import math

from torch import Tensor

from metaloss.losses.baselines import BASELINES

__all__ = ["mad_scale", "tukey"]

_MAD_TO_STD = 1.4826
_TINY = 1e-6


def mad_scale(residual: Tensor) -> Tensor:
    """``1.4826 * median(|r - median(r)|)`` over all elements of ``residual`` (detached, at
    least 1e-6): a consistent estimate of the residuals' std under Gaussian noise."""
    r = residual.detach().flatten()
    return (_MAD_TO_STD * (r - r.median()).abs().median()).clamp_min(_TINY)


def tukey(pred: Tensor, target: Tensor, c: float = 4.685) -> Tensor:
    """Tukey's biweight loss of ``pred - target`` on the batch's MAD scale (see module docs)."""
    if not (math.isfinite(c) and c > 0):
        raise ValueError(f"c: expected a positive finite number, got {c}")
    residual = pred - target
    scale = mad_scale(residual)
    u = (residual / scale).clamp(-c, c)
    rho = c * c / 6 * (1 - (1 - (u / c) ** 2) ** 3)
    return scale * scale * rho


BASELINES["tukey"] = tukey
