"""Oracles of the benchmark: losses that see what no real loss can, as upper bounds.

An oracle is a loss plus a *view* of the tasks it trains on. For regression with corrupted
training targets the oracle is MSE on the clean samples only; for classification with noisy
labels, cross-entropy on the clean labels of the same samples. Families whose tasks record
which samples are clean (``train.extras["clean"]`` / ``["clean_y"]``) name one of these in their
:class:`~metaloss.tasks.registry.FamilySpec`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from metaloss.tasks.base import Task
from metaloss.tasks.registry import Oracle

__all__ = [
    "CLEAN_LABELS_ORACLE",
    "CLEAN_SAMPLES_ORACLE",
    "clean_labels",
    "clean_only",
    "label_cross_entropy",
    "weighted_mse",
]


def clean_only(tasks: Task) -> Task:
    """The regression oracle's view of tasks: each training target carries, as a second column,
    the weight ``clean * n / n_clean``, so :func:`weighted_mse` is MSE over the clean samples."""
    train = tasks.train
    if "clean" not in train.extras:
        raise ValueError(
            "benchmark.oracle: the task family gives no train.extras['clean'] mask; set oracle: false"
        )
    mask = train.extras["clean"].to(train.y.dtype)
    weight = mask * mask.shape[-2] / mask.sum(-2, keepdim=True).clamp_min(1.0)
    return tasks._replace(train=train._replace(y=torch.cat([train.y, weight], -1)))


def weighted_mse(pred: Tensor, target: Tensor) -> Tensor:
    """Squared error of ``pred`` against ``target[..., :1]``, weighted by ``target[..., 1:]``."""
    return (pred - target[..., :1]) ** 2 * target[..., 1:]


def clean_labels(tasks: Task) -> Task:
    """The classification oracle's view of tasks: the inner-training labels are the clean ones
    (``train.extras['clean_y']``), i.e. the same samples without label noise."""
    train = tasks.train
    if "clean_y" not in train.extras:
        raise ValueError(
            "benchmark.oracle: the task family gives no train.extras['clean_y']; set oracle: false"
        )
    return tasks._replace(train=train._replace(y=train.extras["clean_y"]))


def label_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Per-sample cross-entropy of logits ``[..., C]`` and integer labels ``[...]``."""
    log_probs = torch.log_softmax(logits, dim=-1)
    return -log_probs.gather(-1, labels.long().unsqueeze(-1)).squeeze(-1)


CLEAN_SAMPLES_ORACLE = Oracle("oracle (mse on clean)", lambda: weighted_mse, clean_only)
"""MSE on the clean training samples only (regression with corrupted targets)."""

CLEAN_LABELS_ORACLE = Oracle(
    "oracle (ce on clean labels)", lambda: label_cross_entropy, clean_labels
)
"""Cross-entropy on the clean labels of the same samples (classification with label noise)."""
