"""Multi-task losses: how the heads' losses are combined into the one loss a learner minimises.

Baselines (per-sample functions ``(pred, target) -> [..., n]``, registered in
:data:`metaloss.losses.BASELINES`):

* ``equal_weights``: the sum of the heads' losses (squared error, cross-entropy).
* ``equal_weights_standardised``: equal weights after standardising every regression head with
  its training targets' mean and std (what a practitioner does first); the benchmark gives this
  baseline the view :func:`metaloss.tasks.multitask.standardise_targets` of the tasks.
* ``log_loss_weights``: the sum of the heads' *log* batch-mean losses, so each head's gradient is
  divided by its current loss and no head's units dominate: the objective of FAMO (Liu et al.,
  NeurIPS 2023) with its task weights held uniform, and the geometric-mean loss of Chennupati et
  al. (CVPR workshops 2019) up to a positive factor. Per sample it is ``sum_t L_it / mean(L_t)``
  with the mean over the batch detached (the same gradient).
* ``uncertainty_weighting`` (Kendall, Gal & Cipolla, CVPR 2018): each head t has a learned
  log-variance ``s_t = log sigma_t^2``, a learner parameter trained by the inner loop
  (:class:`metaloss.learners.LogVarianceMLP`); a regression head contributes
  ``exp(-s_t) / 2 * L_t + s_t / 2`` (= ``L_t / (2 sigma^2) + log sigma``), a classification head
  ``exp(-s_t) * L_t + s_t / 2`` (their classification analogue, eq. 10).

The learned loss :class:`MultiTaskLoss` weights each head (or each sample of each head) by
``exp(g(features))``: one small network ``g`` shared by all heads and applied to each head's
own features (its batch-mean loss, the running estimate of its log-loss kept in the learner's
log-variance slot, its kind, the number of heads), so it applies to any number of heads.

Layout of predictions and targets: :mod:`metaloss.tasks.multitask`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from metaloss.learners import MLP
from metaloss.losses.baselines import BASELINES
from metaloss.losses.features import check_feature_names
from metaloss.losses.kinds import KindSpec, register_kind
from metaloss.losses.module import LossModule, register_architecture
from metaloss.tasks.multitask import ABSENT, CLASSIFICATION, REGRESSION, head_losses, log_variances
from metaloss.typing import Reduction

__all__ = [
    "MT_FEATURES",
    "MultiTaskLoss",
    "equal_weights",
    "log_loss_weights",
    "uncertainty_terms",
    "uncertainty_weighting",
]


def equal_weights(pred: Tensor, target: Tensor) -> Tensor:
    """Per-sample sum of the heads' losses (all weights 1)."""
    return head_losses(pred, target).losses.sum(-1)


def uncertainty_terms(losses: Tensor, kinds: Tensor, s: Tensor) -> Tensor:
    """Kendall et al. (2018) per head: ``exp(-s)/2 * L + s/2`` for regression, ``exp(-s) * L + s/2``
    for classification, 0 for absent heads (``s = log sigma^2``)."""
    factor = torch.where(kinds == CLASSIFICATION, torch.ones_like(s), 0.5 * torch.ones_like(s))
    terms = factor * torch.exp(-s) * losses + 0.5 * s
    return torch.where(kinds == ABSENT, torch.zeros_like(terms), terms)


def uncertainty_weighting(pred: Tensor, target: Tensor) -> Tensor:
    """Uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018) with the learner's log-variances."""
    losses, kinds = head_losses(pred, target)
    return uncertainty_terms(losses, kinds, log_variances(pred, target)).sum(-1)


def log_loss_weights(pred: Tensor, target: Tensor) -> Tensor:
    """Per-sample ``sum_t L_it / mean_i(L_it)`` (mean over the batch, detached): the gradient of
    ``sum_t log mean_i L_it`` (FAMO's objective at uniform weights; Liu et al., NeurIPS 2023)."""
    losses, kinds = head_losses(pred, target)
    scale = losses.detach().mean(-2, keepdim=True).clamp_min(1e-12)
    return torch.where(kinds == ABSENT, torch.zeros_like(losses), losses / scale).sum(-1)


BASELINES["equal_weights"] = equal_weights
BASELINES["equal_weights_standardised"] = equal_weights
BASELINES["log_loss_weights"] = log_loss_weights
BASELINES["uncertainty_weighting"] = uncertainty_weighting


class _Context:
    """What the features of one call are computed from (all detached)."""

    def __init__(self, pred: Tensor, target: Tensor) -> None:
        losses, kinds = head_losses(pred, target)
        self.losses, self.kinds = losses, kinds
        self.active = (kinds != ABSENT).to(pred.dtype)
        self.detached = losses.detach()
        self.mean = self.detached.mean(-2, keepdim=True).expand_as(losses)
        self.log_variance = log_variances(pred, target).detach()


def _log(x: Tensor) -> Tensor:
    return torch.log(x + 1e-8)


MT_FEATURES: dict[str, Callable[[_Context], Tensor]] = {
    "log_mean_loss": lambda c: _log(c.mean),
    "log_variance": lambda c: c.log_variance,
    "loss_trend": lambda c: _log(c.mean) - c.log_variance,
    "regression": lambda c: (c.kinds == REGRESSION).to(c.mean.dtype),
    "classification": lambda c: (c.kinds == CLASSIFICATION).to(c.mean.dtype),
    "log_heads": lambda c: torch.log(c.active.sum(-1, keepdim=True).clamp_min(1.0)).expand_as(
        c.mean
    ),
    "relative_loss": lambda c: _log(c.detached / (c.mean + 1e-8)).clamp(-10, 10),
}
"""Per-sample, per-head features ``[..., n, M]`` of :class:`MultiTaskLoss`: the head's batch-mean
loss (log), the learner's running estimate of its log-loss (the log-variance slot, kept by the
tracking term), their difference (is the head's loss falling or rising), its kind, the number
of heads (log), and the sample's loss relative to the head's mean (per-sample weights)."""

_TASK_LEVEL = (
    "log_mean_loss",
    "log_variance",
    "loss_trend",
    "regression",
    "classification",
    "log_heads",
)


@register_architecture
class MultiTaskLoss(LossModule):
    """A learned task-and-sample weighting of multi-task losses.

    The total loss of sample i is ``sum_t w_it * L_it + track_t`` over the active heads t, where
    ``L_it`` is head t's loss on sample i (squared error or cross-entropy),
    ``w_it = exp(g(f_it))`` with ``f_it`` the named detached features of head t (per-task
    features give per-task weights; ``relative_loss`` makes them per-sample), and ``g`` one MLP
    shared by all heads, so the loss applies to any number of heads. With ``log_variance`` or
    ``loss_trend`` among the features, ``track_t = (exp(-s_t) * L_it.detach() + s_t) / 2``
    trains the learner's log-variance slot ``s_t`` towards the head's log-loss (the minimiser of
    Kendall et al.'s term), a running statistic the weights can read; it gives the model's own
    parameters no gradient.

    Args:
        features: names from :data:`MT_FEATURES`.
        hidden: hidden layer widths of ``g``.
        activation: hidden activation of ``g``.
        kind: ``"multitask"``.
        reduction: default reduction over samples.
        max_log_weight: ``g``'s output is clamped to ±this (weights stay finite).

    References:
        Kendall, Gal & Cipolla, CVPR 2018 (uncertainty weighting, which this generalises);
        Shu et al., "Meta-Weight-Net", NeurIPS 2019 (learned weights of per-sample losses);
        Bechtle et al., "Meta Learning via Learned Loss", ICPR 2020 (the meta-training).

    Example:
        >>> loss = MultiTaskLoss(("log_mean_loss", "regression", "classification"))
        >>> pred, target = torch.zeros(5, 2 * 3 + 2), torch.zeros(5, 6)
        >>> target[:, 2:4] = torch.tensor([1.0, 2.0])  # head 0 regression, head 1 classification
        >>> loss(pred, target, reduction="none").shape
        torch.Size([5])
    """

    default_kind = "multitask"

    def __init__(
        self,
        features: tuple[str, ...] = (
            "log_mean_loss",
            "loss_trend",
            "regression",
            "classification",
            "log_heads",
        ),
        hidden: tuple[int, ...] = (16, 16),
        activation: str = "elu",
        kind: str = "multitask",
        reduction: Reduction = "mean",
        max_log_weight: float = 20.0,
    ) -> None:
        super().__init__()
        if kind != "multitask":
            raise ValueError(f"kind: expected 'multitask', got {kind!r}")
        check_feature_names(tuple(features), MT_FEATURES)
        self.keep_network_settings(features, hidden, activation, kind, reduction)
        self.max_log_weight = max_log_weight
        self.tracks = any(n in ("log_variance", "loss_trend") for n in self.features)
        self.per_sample_weights = any(n not in _TASK_LEVEL for n in self.features)
        self.net = MLP(len(self.features), self.hidden, 1, activation)

    def architecture(self) -> dict[str, Any]:
        """The constructor arguments: enough to rebuild this loss without its trainer."""
        return {**self.network_architecture(), "max_log_weight": self.max_log_weight}

    def _weights(self, context: _Context) -> Tensor:
        inputs = torch.stack([MT_FEATURES[n](context) for n in self.features], dim=-1)
        log_w = self.net(inputs).squeeze(-1).clamp(-self.max_log_weight, self.max_log_weight)
        return torch.exp(log_w) * context.active

    def weights(self, pred: Tensor, target: Tensor) -> Tensor:
        """The weights ``w_it`` of each sample and head ``[..., n, M]`` (0 for absent heads)."""
        return self._weights(_Context(pred, target))

    def per_sample(self, pred: Tensor, target: Tensor) -> Tensor:
        """The total loss of each sample ``[..., n]``."""
        context = _Context(pred, target)
        total = (self._weights(context) * context.losses).sum(-1)
        if self.tracks:
            s = log_variances(pred, target)
            track = 0.5 * (torch.exp(-s) * context.detached + s) * context.active
            total = total + track.sum(-1)
        return total

    def extra_repr(self) -> str:
        return f"kind={self.kind}, features={self.features}, reduction={self.reduction}"


register_kind(KindSpec("multitask", MultiTaskLoss, reference="equal_weights"))
