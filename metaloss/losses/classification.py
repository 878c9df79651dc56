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
    Reed et al., "Training Deep Neural Networks on Noisy Labels with Bootstrapping", ICLR
    workshop 2015 (soft and hard bootstrapping).
    Shu et al., "Meta-Weight-Net: Learning an Explicit Mapping for Sample Weighting", NeurIPS 2019
    (the ``ce`` feature is its weighting network's input).
    Han et al., "Co-teaching: Robust Training of Deep Neural Networks with Extremely Noisy
    Labels", NeurIPS 2018 (the small-loss signal behind the ``ce_quantile`` feature).
    Patrini et al., "Making Deep Neural Networks Robust to Label Noise: a Loss Correction
    Approach", CVPR 2017 (why a loss should know the noise level: ``batch_label_prob``).
    Agarwala et al., "Temperature check: theory and practice for training models with
    softmax-cross-entropy losses", arXiv:2010.07344, 2020 (training at a temperature).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from metaloss.losses.baselines import BASELINES
from metaloss.losses.collapse import DegeneracyReport, degeneracy_report
from metaloss.losses.features import register_feature
from metaloss.losses.kinds import KindSpec, register_kind
from metaloss.losses.learned import LearnedLoss, cross_entropy
from metaloss.losses.module import loss_device

__all__ = [
    "CLASSIFICATION_BASELINES",
    "SHAPE_CONTEXTS",
    "bootstrap_hard",
    "bootstrap_soft",
    "check_classification",
    "classification_shape",
    "generalized_cross_entropy",
    "label_probability",
    "label_smoothing",
    "symmetric_cross_entropy",
    "tempered_cross_entropy",
]


def label_probability(logits: Tensor, labels: Tensor) -> Tensor:
    """Softmax probability of the labelled class."""
    probs = torch.softmax(logits, dim=-1)
    return probs.gather(-1, labels.long().unsqueeze(-1)).squeeze(-1)


def label_smoothing(logits: Tensor, labels: Tensor, epsilon: float = 0.1) -> Tensor:
    """Cross-entropy against ``(1 - epsilon) * one_hot + epsilon / C`` (Szegedy et al., 2016)."""
    if not 0 <= epsilon <= 1:
        raise ValueError(f"epsilon: expected 0 <= epsilon <= 1, got {epsilon}")
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
    if not (math.isfinite(alpha) and math.isfinite(beta) and alpha >= 0 and beta >= 0):
        raise ValueError(f"alpha, beta: expected finite numbers >= 0, got {alpha}, {beta}")
    if not (math.isfinite(log_zero) and log_zero < 0):
        raise ValueError(f"log_zero: expected a finite negative number, got {log_zero}")
    return alpha * cross_entropy(logits, labels) - beta * log_zero * (
        1 - label_probability(logits, labels)
    )


def bootstrap_soft(logits: Tensor, labels: Tensor, beta: float = 0.95) -> Tensor:
    """Soft bootstrapping (Reed et al., 2015): cross-entropy against ``beta * one_hot + (1 - beta)
    * q``, with ``q`` the prediction itself, not detached, so that it is CE plus ``(1 - beta)``
    times the prediction's entropy (the paper's minimum-entropy view). ``beta = 1`` is CE.

    Args:
        beta: weight of the given label, in [0, 1]; the paper uses 0.95.
    """
    if not 0 <= beta <= 1:
        raise ValueError(f"beta: expected 0 <= beta <= 1, got {beta}")
    log_probs = torch.log_softmax(logits, dim=-1)
    entropy = -(log_probs.exp() * log_probs).sum(-1)
    return beta * cross_entropy(logits, labels) + (1 - beta) * entropy


def bootstrap_hard(logits: Tensor, labels: Tensor, beta: float = 0.8) -> Tensor:
    """Hard bootstrapping (Reed et al., 2015): cross-entropy against ``beta * one_hot(label) +
    (1 - beta) * one_hot(argmax q)``, the learner's own predicted class. ``beta = 1`` is CE.

    Args:
        beta: weight of the given label, in [0, 1]; the paper uses 0.8.
    """
    if not 0 <= beta <= 1:
        raise ValueError(f"beta: expected 0 <= beta <= 1, got {beta}")
    predicted = logits.detach().argmax(-1)
    return beta * cross_entropy(logits, labels) + (1 - beta) * cross_entropy(logits, predicted)


def tempered_cross_entropy(logits: Tensor, labels: Tensor, temperature: float = 1.0) -> Tensor:
    """Cross-entropy of ``logits / temperature``: training at a temperature (Agarwala et al.,
    2020); below 1 the learner's own predictions stay softer, like label smoothing's. The
    baseline a learned loss's temperature (``benchmark.learned_scale``) is checked against.

    Args:
        temperature: a positive number; 1 is CE.
    """
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature: expected a positive finite number, got {temperature}")
    return cross_entropy(logits / temperature, labels)


CLASSIFICATION_BASELINES = {
    "ce": cross_entropy,
    "ce_temperature": tempered_cross_entropy,
    "label_smoothing": label_smoothing,
    "gce": generalized_cross_entropy,
    "sce": symmetric_cross_entropy,
    "bootstrap_soft": bootstrap_soft,
    "bootstrap_hard": bootstrap_hard,
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


def _normalized_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Entropy of the prediction over its maximum ``log C``: in [0, 1] whatever the class count."""
    return _entropy(logits, labels) / math.log(max(logits.shape[-1], 2))


def _ce_quantile(logits: Tensor, labels: Tensor) -> Tensor:
    """Rank of the sample's cross-entropy within its batch, scaled to [0, 1] (0: smallest loss).

    The "small-loss" signal of Co-teaching (Han et al., NeurIPS 2018): which samples the learner
    fits worst *relative to the others*, whatever the scale of the loss. No gradient flows
    through a rank; the loss then depends on the whole batch, like batch normalisation.
    """
    ce = cross_entropy(logits, labels).detach()
    ranks = ce.argsort(-1).argsort(-1).to(logits.dtype)
    return ranks / max(ce.shape[-1] - 1, 1)


def _batch_label_prob(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean labelled-class probability over the batch, the same for every sample (no gradient).

    A task-level context: while a learner fits the clean samples but not yet the flipped ones,
    it is roughly ``1 - noise rate``, so a loss can adapt its robustness to the noise level
    (as forward correction needs the rate: Patrini et al., CVPR 2017). The loss then depends on
    the whole batch, like batch normalisation.
    """
    p = label_probability(logits, labels).detach()
    return p.mean(-1, keepdim=True).expand_as(p)


def _sorted_probs(logits: Tensor, labels: Tensor) -> Tensor:
    return torch.softmax(logits, dim=-1).sort(dim=-1, descending=True).values


def _register() -> None:
    scalar = {
        "label_prob": label_probability,
        "label_log_prob": _label_log_prob,
        "label_logit": _label_logit,
        "margin": _margin,
        "entropy": _entropy,
        "normalized_entropy": _normalized_entropy,
        "ce": cross_entropy,
        "ce_quantile": _ce_quantile,
        "batch_label_prob": _batch_label_prob,
    }
    for name, feature in scalar.items():
        register_feature("classification", name, feature)
    register_feature("classification", "sorted_probs", _sorted_probs, width=lambda classes: classes)


_register()


# --------------------------------------------------------------------------------------------
# The shape of a classification loss: value and gradient against the labelled-class probability.

SHAPE_CONTEXTS = (0.4, 0.6, 0.8)
"""Mean labelled-class probability of the reference batches in which shapes are evaluated."""


def classification_shape(
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    num_classes: int = 5,
    contexts: tuple[float, ...] = SHAPE_CONTEXTS,
    points: int = 99,
    dtype: torch.dtype = torch.float32,
) -> dict[str, Tensor]:
    """Loss and ``d loss / d z_y`` (the labelled logit) against the labelled-class probability.

    Each probe has probability ``p`` on its label, spread evenly over the other classes, and is
    evaluated inside a reference batch of 31 samples whose labelled-class probability is a
    context value, so losses with batch-level features (``batch_label_prob``, ``ce_quantile``)
    get a defined context. Returns ``prob [P]``, ``context [K]``, ``value [K, P]``,
    ``grad [K, P]`` and ``batch_dependent [1]`` (1.0 if the values change with the context).
    """
    per_sample = getattr(loss_fn, "per_sample", loss_fn)
    classes = getattr(loss_fn, "num_classes", None) or num_classes
    # Evaluated where the loss's parameters are; the curves come back on the CPU.
    device = loss_device(loss_fn)
    p = torch.linspace(0.01, 0.99, points, dtype=torch.float64, device="cpu")
    c = torch.tensor(contexts, dtype=torch.float64, device="cpu")

    def logits(prob: Tensor) -> Tensor:
        rest = ((1 - prob) / (classes - 1)).unsqueeze(-1).expand(*prob.shape, classes - 1)
        return torch.log(torch.cat([prob.unsqueeze(-1), rest], -1))

    probe = logits(p).to(dtype)  # [P, C], label 0
    context = logits(c).to(dtype)  # [K, C]
    batch = torch.cat(
        [
            probe[None, :, None].expand(len(c), points, 1, classes),
            context[:, None, None].expand(len(c), points, 31, classes),
        ],
        dim=2,
    )  # [K, P, 32, C]: the probe first, then the reference batch
    labels = torch.zeros(batch.shape[:-1], dtype=torch.long, device=device)
    with torch.enable_grad():
        batch = batch.to(device).clone().requires_grad_()
        values = per_sample(batch, labels)[..., 0]
        (grads,) = torch.autograd.grad(values.sum(), batch)
    values, grads = values.detach().cpu(), grads.cpu()
    dependent = len(c) > 1 and not torch.allclose(
        values, values[:1].expand_as(values), rtol=1e-4, atol=1e-6
    )
    return {
        "prob": p.to(dtype),
        "context": c.to(dtype),
        "value": values,
        "grad": grads[..., 0, 0].detach(),
        "batch_dependent": torch.tensor([float(dependent)], dtype=dtype, device="cpu"),
    }


def check_classification(
    loss_fn: Callable[[Tensor, Tensor], Tensor], tolerance: float = 1e-6
) -> DegeneracyReport:
    """:func:`metaloss.losses.collapse.check_degenerate` for classification: on the grid of
    :func:`classification_shape`, is the loss constant, without gradient w.r.t. the logits, or
    non-finite? ``descent_fraction``: share of the grid where a gradient step raises the
    labelled logit (``d loss / d z_y < 0``; 1.0 for cross-entropy)."""
    curves = classification_shape(loss_fn)
    values, grads = curves["value"], curves["grad"]
    descent = float((grads < 0).double().mean())
    return degeneracy_report(
        values,
        grads,
        descent,
        tolerance,
        "labelled-class probabilities in [0.01, 0.99]",
        "the logits",
    )


register_kind(
    KindSpec(
        "classification",
        LearnedLoss,
        reference="ce",
        collapse_check=check_classification,
        shape_view="metaloss.plots.classification:CLASSIFICATION_VIEW",
        per_sample_histograms=True,
    )
)
