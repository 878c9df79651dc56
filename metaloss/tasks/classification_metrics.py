"""The metrics reported for every classification family beside test cross-entropy: accuracy,
the expected calibration error (:func:`calibration_error`), and, for a family whose true
posterior ``p(y|x)`` is known (Gaussian mixtures), the split of the expected cross-entropy of a
prediction ``q`` under labels drawn from ``p``,

    E_{y~p}[-log q_y] = H(p) + KL(p || q),

into the entropy of ``p`` (irreducible) and the KL divergence from ``p`` to the prediction
(reducible): :func:`decompose`. The family registers :func:`classification_metrics`; summaries
and logging of the decomposition are :mod:`metaloss.evaluation.decomposition`'s.

References:
    Cover & Thomas, "Elements of Information Theory", 2nd ed., 2006, eq. 2.91 (the
    cross-entropy identity H(p, q) = H(p) + D(p || q)).
    Guo, Pleiss, Sun and Weinberger, "On Calibration of Modern Neural Networks", ICML 2017
    (expected calibration error, 15 equal-width confidence bins).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from metaloss.tasks.base import Batch, Split
from metaloss.tasks.registry import Metric

__all__ = [
    "ECE_BINS",
    "Decomposition",
    "accuracy",
    "calibration_contributions",
    "calibration_error",
    "classification_metrics",
    "decompose",
]

_TINY = 1e-30

ECE_BINS = 15
"""Equal-width bins of the top-class confidence for the expected calibration error (Guo et al.)."""


@dataclass(frozen=True)
class Decomposition:
    """Per-sample parts of the expected cross-entropy (all shaped like the batch, ``[..., n]``).

    Attributes:
        cross_entropy: ``-sum_k p_k log q_k``, the expected CE under the true labels.
        entropy: ``H(p)``, irreducible.
        kl: ``KL(p || q)``, reducible.
    """

    cross_entropy: Tensor
    entropy: Tensor
    kl: Tensor


def decompose(logits: Tensor, true_probs: Tensor) -> Decomposition:
    """Decompose the cross-entropy of ``softmax(logits)`` against the true ``p(y|x)``.

    Args:
        logits: predictions ``[..., n, C]``.
        true_probs: the true posterior ``[..., n, C]`` (rows sum to 1).

    Example:
        >>> p = torch.tensor([[0.7, 0.2, 0.1]])
        >>> parts = decompose(torch.zeros(1, 3), p)
        >>> torch.allclose(parts.entropy + parts.kl, parts.cross_entropy)
        True
    """
    if logits.shape != true_probs.shape:
        raise ValueError(
            f"true_probs: expected shape {tuple(logits.shape)} like logits, got {tuple(true_probs.shape)}"
        )
    p = true_probs.to(logits.dtype)
    log_q = torch.log_softmax(logits, dim=-1)
    log_p = torch.log(p.clamp_min(_TINY))
    present = p > 0
    entropy = -torch.where(present, p * log_p, torch.zeros_like(p)).sum(-1)
    kl = torch.where(present, p * (log_p - log_q), torch.zeros_like(p)).sum(-1)
    cross_entropy = -(p * log_q).sum(-1)
    return Decomposition(cross_entropy, entropy, kl)


def accuracy(pred: Tensor, batch: Batch) -> Tensor:
    """Per-sample 0/1 correctness of the arg-max prediction."""
    return (pred.argmax(-1) == batch.y).to(pred.dtype)


def calibration_contributions(logits: Tensor, labels: Tensor, bins: int = ECE_BINS) -> Tensor:
    """Per-sample terms ``[..., n]`` whose mean over the last dimension is the expected
    calibration error (Guo et al., ICML 2017) of ``softmax(logits)`` on ``labels``.

    ECE sorts samples into ``bins`` equal-width bins of the top-class confidence ``c_i`` (bin
    ``b`` holds ``(b-1)/B < c <= b/B``) and averages ``|acc_b - conf_b|`` weighted by each bin's
    share of samples: ``ECE = 1/n sum_b |sum_{i in b} (correct_i - c_i)|``. Sample ``i`` of bin
    ``b`` contributes ``sign(sum_{j in b} (correct_j - c_j)) * (correct_i - c_i)``, so the mean of
    the contributions is exactly the ECE and batches of runs ``[..., n]`` are scored at once.
    """
    probs = torch.softmax(logits, dim=-1)
    confidence, predicted = probs.max(-1)
    gap = (predicted == labels).to(probs.dtype) - confidence
    index = (torch.ceil(confidence * bins).long() - 1).clamp(0, bins - 1)
    member = torch.nn.functional.one_hot(index, bins).to(probs.dtype)  # [..., n, B]
    per_bin = (member * gap.unsqueeze(-1)).sum(-2, keepdim=True)  # [..., 1, B]
    sign = (member * torch.sign(per_bin)).sum(-1)
    return sign * gap


def calibration_error(logits: Tensor, labels: Tensor, bins: int = ECE_BINS) -> Tensor:
    """The expected calibration error ``[...]`` of each batch of predictions (see
    :func:`calibration_contributions`): 0 for a calibrated predictor, at most 1.

    Example:
        >>> sure = torch.tensor([[9.0, -9.0]] * 4)  # confidence ~1, half of them right
        >>> round(float(calibration_error(sure, torch.tensor([0, 0, 1, 1]))), 3)
        0.5
    """
    return calibration_contributions(logits, labels, bins).mean(-1)


def _ece(pred: Tensor, batch: Batch) -> Tensor:
    return calibration_contributions(pred, batch.y)


def _part(name: str) -> Callable[[Tensor, Batch], Tensor]:
    def metric(pred: Tensor, batch: Batch) -> Tensor:
        return getattr(decompose(pred, batch.extras["true_probs"]), name)  # type: ignore[no-any-return]

    return metric


def classification_metrics(family: Any) -> dict[str, Metric]:
    """Metrics reported besides cross-entropy for a classification family: accuracy, the
    expected calibration error (``ece``, 15 equal-width bins), and, when its test batches carry
    the true ``p(y|x)`` (``extras["true_probs"]``), the expected CE and its irreducible
    (``entropy``) and reducible (``kl``) parts."""
    metrics = {
        "accuracy": Metric(accuracy, higher_is_better=True),
        "ece": Metric(_ece),
    }
    if "true_probs" in family.task(Split.META_TEST, 0).test.extras:
        for name in ("cross_entropy", "entropy", "kl"):
            metrics[f"expected_{name}" if name == "cross_entropy" else name] = Metric(_part(name))
    return metrics
