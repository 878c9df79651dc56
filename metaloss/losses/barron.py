"""Barron's general and adaptive robust loss, with its shape and scale learned jointly with the
model (the adaptive variant of Barron, "A General and Adaptive Robust Loss Function", CVPR 2019).

The general loss of a residual ``x`` with shape ``alpha`` and scale ``c`` is

    rho(x, alpha, c) = |alpha - 2| / alpha * (((x / c)**2 / |alpha - 2| + 1)**(alpha / 2) - 1),

which is the squared error at ``alpha = 2``, Charbonnier / pseudo-Huber at 1, Cauchy at 0 (as a
limit). Minimising it over ``alpha`` would simply make every residual cheap, so the adaptive
variant minimises the negative log-likelihood of the distribution ``p(x) ∝ exp(-rho(x, alpha,
c))`` instead: ``rho(x, alpha, c) + log c + log Z(alpha)``, with
``Z(alpha) = ∫ exp(-rho(x, alpha, 1)) dx`` over the real line. ``log Z`` has no closed form; it
is computed here by numerical integration (``scipy.integrate.quad``) at 257 shapes in [0, 2]
(packed towards both ends, where it bends most), once, and interpolated linearly between them
(differentiable; error below 2e-5). As in the paper, ``alpha`` is kept in [0.001, 1.999]
(``alpha < 0`` is not normalisable) through a sigmoid of a free parameter, and the scale is
``scale_init * exp(free parameter)``.

Both free parameters are trained by the inner optimiser with the model: the benchmark gives the
learner two extra outputs that do not depend on the input (the ``log_variances`` columns of
:class:`metaloss.learners.LogVarianceMLP`, zero at initialisation: ``alpha = 1`` and
``c = scale_init`` at the start). The loss reads them from ``pred[..., 1]`` and ``pred[..., 2]``
and the residual from ``pred[..., :1]``. Importing this module registers ``barron`` in
:data:`metaloss.losses.BASELINES` with :data:`metaloss.losses.baselines.FREE_OUTPUTS` = 2.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from metaloss.losses.baselines import BASELINES, FREE_OUTPUTS

__all__ = ["ALPHA_RANGE", "barron", "barron_nll", "general_loss", "log_partition"]

ALPHA_RANGE = (0.001, 1.999)
"""Shapes the adaptive loss can take (the paper's bounds for its adaptive variant)."""

_GRID = 257
_SCALE_FLOOR = 1e-5


def general_loss(x: Tensor, alpha: Tensor, scale: Tensor | float = 1.0) -> Tensor:
    """``rho(x, alpha, c)`` for ``0 < alpha < 2`` (the module docstring's formula), written with
    ``expm1``/``log1p`` so that it stays accurate as ``alpha`` approaches 0."""
    b = (alpha - 2).abs()
    z = (x / scale) ** 2 / b
    return b / alpha * torch.expm1(alpha / 2 * torch.log1p(z))


def _rho_numpy(x: float, alpha: float) -> float:
    if alpha == 0.0:
        return math.log1p(0.5 * x * x)
    if alpha == 2.0:
        return 0.5 * x * x
    b = abs(alpha - 2)
    return b / alpha * math.expm1(alpha / 2 * math.log1p(x * x / b))


def log_partition_exact(alpha: float) -> float:
    """``log Z(alpha)`` by adaptive quadrature over the real line (``0 <= alpha <= 2``)."""
    from scipy.integrate import quad

    half, _ = quad(lambda x: math.exp(-_rho_numpy(x, alpha)), 0.0, math.inf, limit=200)
    return math.log(2.0 * half)


@functools.cache
def _table() -> Tensor:
    """``log Z`` at the shapes ``alpha_i = 1 - cos(pi * i / (N - 1))``: nodes packed towards 0
    and 2, where ``log Z`` bends most."""
    nodes = [1.0 - math.cos(math.pi * i / (_GRID - 1)) for i in range(_GRID)]
    return torch.tensor(
        [log_partition_exact(min(max(a, 0.0), 2.0)) for a in nodes],
        dtype=torch.float64,
        device="cpu",  # cached once; moved to each input's device
    )


def log_partition(alpha: Tensor) -> Tensor:
    """``log Z(alpha)`` for ``0 <= alpha <= 2``, interpolated linearly between the quadrature
    nodes (uniform in ``t = arccos(1 - alpha) / pi``); NaN where ``alpha`` is NaN."""
    values = _table().to(device=alpha.device, dtype=alpha.dtype)
    t = torch.arccos((1 - alpha).clamp(-1, 1)) / math.pi
    position = (t * (_GRID - 1)).clamp(0, _GRID - 1 - 1e-6)
    # a NaN shape (a diverged learner's output) reads node 0 and stays NaN through ``weight``
    index = position.detach().nan_to_num(0.0).floor().long()
    weight = position - index.to(alpha.dtype)
    return values[index] * (1 - weight) + values[index + 1] * weight


def barron_nll(x: Tensor, alpha: Tensor, scale: Tensor) -> Tensor:
    """The adaptive loss: ``rho(x, alpha, c) + log c + log Z(alpha)`` (a negative log-likelihood)."""
    return general_loss(x, alpha, scale) + torch.log(scale) + log_partition(alpha)


def barron(pred: Tensor, target: Tensor, scale_init: float = 1.0) -> Tensor:
    """Barron's adaptive loss of ``pred[..., :1] - target``, with the shape and the scale read
    from the learner's free outputs ``pred[..., 1]`` and ``pred[..., 2]`` (see module docs)."""
    if not (math.isfinite(scale_init) and scale_init > 0):
        raise ValueError(f"scale_init: expected a positive finite number, got {scale_init}")
    if pred.shape[-1] != target.shape[-1] + 2:
        raise ValueError(
            f"barron: expected pred with 2 free outputs after the {target.shape[-1]} prediction(s) "
            f"(learner log_variances=2), got pred {tuple(pred.shape)} for target {tuple(target.shape)}"
        )
    low, high = ALPHA_RANGE
    alpha = low + (high - low) * torch.sigmoid(pred[..., -2:-1])
    scale = scale_init * torch.exp(pred[..., -1:]) + _SCALE_FLOOR
    return barron_nll(pred[..., :-2] - target, alpha, scale)


BASELINES["barron"] = barron
FREE_OUTPUTS["barron"] = 2
