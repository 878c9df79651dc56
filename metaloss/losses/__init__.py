"""Learned loss networks and hand-designed baselines behind one per-sample interface."""

from metaloss.losses import barron as _barron  # noqa: F401  (registers Barron's adaptive loss)
from metaloss.losses import classification as _classification  # noqa: F401  (registers CE/GCE/SCE and features)
from metaloss.losses import mestimators as _mestimators  # noqa: F401  (registers Tukey's biweight)
from metaloss.losses import multitask as _multitask  # noqa: F401  (registers multi-task baselines and MultiTaskLoss)
from metaloss.losses import scale as _scale  # noqa: F401  (registers batch-scale regression features)
from metaloss.losses.baselines import BASELINES, PerSampleLoss, baseline
from metaloss.losses.features import FEATURES, compute_features, register_feature
from metaloss.losses.learned import LearnedLoss, reduce

__all__ = [
    "BASELINES",
    "FEATURES",
    "LearnedLoss",
    "PerSampleLoss",
    "baseline",
    "compute_features",
    "reduce",
    "register_feature",
]
