"""Split a classifier's cross-entropy into an irreducible and a reducible part.

For a task whose true posterior ``p(y|x)`` is known (Gaussian mixtures), the expected
cross-entropy of a prediction ``q`` under labels drawn from ``p`` is

    E_{y~p}[-log q_y] = H(p) + KL(p || q),

the entropy of ``p`` (irreducible: no learner can go below it) plus the KL divergence from ``p``
to the prediction (reducible: what a better loss can remove). A loss that lowers test
cross-entropy by lowering KL improved the fit; one whose CE moves only because the sample of
test labels moved stayed within the noise floor. The per-sample identity holds exactly, so the
two parts sum to the expected cross-entropy up to float rounding.

The module also gives the metrics reported for every classification family beside test
cross-entropy: accuracy and the expected calibration error (:func:`calibration_error`).

References:
    Cover & Thomas, "Elements of Information Theory", 2nd ed., 2006, eq. 2.91 (the
    cross-entropy identity H(p, q) = H(p) + D(p || q)).
    Guo, Pleiss, Sun and Weinberger, "On Calibration of Modern Neural Networks", ICML 2017
    (expected calibration error, 15 equal-width confidence bins).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from metaloss.evaluation.meta_test import Metric
from metaloss.evaluation.stats import MeanCI, mean_ci
from metaloss.tasks import Split, TaskFamily
from metaloss.tasks.base import Batch

__all__ = [
    "ECE_BINS",
    "Decomposition",
    "DecompositionSummary",
    "accuracy",
    "calibration_contributions",
    "calibration_error",
    "classification_metrics",
    "decompose",
    "log_decomposition",
    "summarise",
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


@dataclass(frozen=True)
class DecompositionSummary:
    """Means with 95% CIs over runs (each run: the mean over its test samples)."""

    cross_entropy: MeanCI
    entropy: MeanCI
    kl: MeanCI

    def as_dict(self) -> dict[str, float]:
        """Flat numbers for JSON reports: ``{part}_mean`` and ``{part}_ci95``."""
        out: dict[str, float] = {}
        for name in ("cross_entropy", "entropy", "kl"):
            value: MeanCI = getattr(self, name)
            out[f"{name}_mean"], out[f"{name}_ci95"] = value.mean, value.half_width
        return out


def summarise(parts: Decomposition) -> DecompositionSummary:
    """Average each run's samples (last dimension), then mean ± 95% CI over runs."""
    return DecompositionSummary(
        mean_ci(parts.cross_entropy.mean(-1)),
        mean_ci(parts.entropy.mean(-1)),
        mean_ci(parts.kl.mean(-1)),
    )


class _Writer(Protocol):
    def add_scalar(self, tag: str, value: float, step: int) -> Any: ...


def log_decomposition(
    writer: _Writer, prefix: str, summary: DecompositionSummary, step: int = 0
) -> None:
    """Write the three parts as TensorBoard scalars ``{prefix}/cross_entropy``, ``/entropy``
    (irreducible) and ``/kl`` (reducible)."""
    writer.add_scalar(f"{prefix}/cross_entropy", summary.cross_entropy.mean, step)
    writer.add_scalar(f"{prefix}/entropy", summary.entropy.mean, step)
    writer.add_scalar(f"{prefix}/kl", summary.kl.mean, step)


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


def classification_metrics(family: TaskFamily) -> dict[str, Metric]:
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
