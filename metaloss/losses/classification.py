"""Classification losses: hand-designed baselines for noisy labels, and the per-sample features a
learned classification loss can read.

Every function maps logits ``[..., N, C]`` and integer labels ``[..., N]`` to ``[..., N]`` and
works under ``torch.func.vmap``. Importing this module registers the baselines in
:data:`metaloss.losses.BASELINES` and the features in :data:`metaloss.losses.FEATURES`
(kind ``"classification"``).

References:
    Szegedy et al., "Rethinking the Inception Architecture for Computer Vision", CVPR 2016
    (label smoothing).
    Zhang & Sabuncu, "Generalized Cross Entropy Loss for Training Deep Neural Networks with Noisy
    Labels", NeurIPS 2018.
    Wang et al., "Symmetric Cross Entropy for Robust Learning with Noisy Labels", ICCV 2019.
    Shu et al., "Meta-Weight-Net: Learning an Explicit Mapping for Sample Weighting", NeurIPS 2019
    (the ``ce`` feature is its weighting network's input).
    Han et al., "Co-teaching: Robust Training of Deep Neural Networks with Extremely Noisy
    Labels", NeurIPS 2018 (the small-loss signal behind the ``ce_quantile`` feature).
"""

from __future__ import annotations

import torch
from torch import Tensor

from metaloss.losses.baselines import BASELINES
from metaloss.losses.features import register_feature
from metaloss.losses.learned import cross_entropy

__all__ = [
    "CLASSIFICATION_BASELINES",
    "generalized_cross_entropy",
    "label_probability",
    "label_smoothing",
    "symmetric_cross_entropy",
]


def label_probability(logits: Tensor, labels: Tensor) -> Tensor:
    """Softmax probability of the labelled class."""
    probs = torch.softmax(logits, dim=-1)
    return probs.gather(-1, labels.long().unsqueeze(-1)).squeeze(-1)


def label_smoothing(logits: Tensor, labels: Tensor, epsilon: float = 0.1) -> Tensor:
    """Cross-entropy against ``(1 - epsilon) * one_hot + epsilon / C`` (Szegedy et al., 2016)."""
    log_probs = torch.log_softmax(logits, dim=-1)
    nll = -log_probs.gather(-1, labels.long().unsqueeze(-1)).squeeze(-1)
    return (1 - epsilon) * nll - epsilon * log_probs.mean(-1)


def generalized_cross_entropy(logits: Tensor, labels: Tensor, q: float = 0.7) -> Tensor:
    """``(1 - p_y^q) / q`` (Zhang & Sabuncu, 2018): CE as ``q -> 0``, MAE (bounded) at ``q = 1``.

    Args:
        q: robustness exponent in (0, 1]; the paper uses 0.7. Select it on meta-train tasks.
    """
    if not 0 < q <= 1:
        raise ValueError(f"q: expected 0 < q <= 1, got {q}")
    log_p = torch.log_softmax(logits, dim=-1).gather(-1, labels.long().unsqueeze(-1)).squeeze(-1)
    return (1 - torch.exp(q * log_p)) / q


def symmetric_cross_entropy(
    logits: Tensor, labels: Tensor, alpha: float = 0.1, beta: float = 1.0, log_zero: float = -4.0
) -> Tensor:
    """``alpha * CE + beta * RCE`` (Wang et al., 2019), where the reverse cross-entropy with the
    one-hot label's ``log 0`` clipped to ``log_zero`` equals ``-log_zero * (1 - p_y)``.

    Args:
        alpha, beta: weights of CE and of the reverse CE (the paper's CIFAR-10 values: 0.1, 1.0).
        log_zero: the value ``A`` that replaces ``log 0`` (the paper uses -4).
    """
    return alpha * cross_entropy(logits, labels) - beta * log_zero * (
        1 - label_probability(logits, labels)
    )


CLASSIFICATION_BASELINES = {
    "ce": cross_entropy,
    "label_smoothing": label_smoothing,
    "gce": generalized_cross_entropy,
    "sce": symmetric_cross_entropy,
}
"""Baseline names usable in configs and ``metaloss.losses.baseline(name, **params)``."""

BASELINES.update(CLASSIFICATION_BASELINES)


# --------------------------------------------------------------------------------------------
# Per-sample features of (logits, labels) for learned classification losses.


def _label_log_prob(logits: Tensor, labels: Tensor) -> Tensor:
    return torch.log_softmax(logits, dim=-1).gather(-1, labels.long().unsqueeze(-1)).squeeze(-1)


def _label_logit(logits: Tensor, labels: Tensor) -> Tensor:
    return logits.gather(-1, labels.long().unsqueeze(-1)).squeeze(-1)


def _margin(logits: Tensor, labels: Tensor) -> Tensor:
    """Labelled logit minus the largest other logit (positive: the label is the prediction)."""
    mask = labels.long().unsqueeze(-1) == torch.arange(logits.shape[-1], device=logits.device)
    others = logits.masked_fill(mask, float("-inf")).amax(-1)
    return _label_logit(logits, labels) - others


def _entropy(logits: Tensor, labels: Tensor) -> Tensor:
    log_probs = torch.log_softmax(logits, dim=-1)
    return -(log_probs.exp() * log_probs).sum(-1)


def _ce_quantile(logits: Tensor, labels: Tensor) -> Tensor:
    """Rank of the sample's cross-entropy within its batch, scaled to [0, 1] (0: smallest loss).

    The "small-loss" signal of Co-teaching (Han et al., NeurIPS 2018): which samples the learner
    fits worst *relative to the others*, whatever the scale of the loss. No gradient flows
    through a rank; the loss then depends on the whole batch, like batch normalisation.
    """
    ce = cross_entropy(logits, labels).detach()
    ranks = ce.argsort(-1).argsort(-1).to(logits.dtype)
    return ranks / max(ce.shape[-1] - 1, 1)


def _sorted_probs(logits: Tensor, labels: Tensor) -> Tensor:
    return torch.softmax(logits, dim=-1).sort(dim=-1, descending=True).values


def _register() -> None:
    scalar = {
        "label_prob": label_probability,
        "label_log_prob": _label_log_prob,
        "label_logit": _label_logit,
        "margin": _margin,
        "entropy": _entropy,
        "ce": cross_entropy,
        "ce_quantile": _ce_quantile,
    }
    for name, feature in scalar.items():
        register_feature("classification", name, feature)
    register_feature("classification", "sorted_probs", _sorted_probs, width=lambda classes: classes)


_register()
