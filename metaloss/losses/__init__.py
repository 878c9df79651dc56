"""Learned loss networks and hand-designed baselines behind one per-sample interface.

Each loss kind lives in its own module and registers its :class:`~metaloss.losses.kinds.KindSpec`
there (regression, classification, multi-task; the policy kind in :mod:`metaloss.rl.objectives`);
importing this package imports those modules and the baseline groups (Barron's adaptive loss,
M-estimators).
"""

from metaloss.losses import (  # noqa: F401  (imported to register kinds, features and baselines)
    barron,
    classification,
    mestimators,
    multitask,
    regression,
    scale,
)
from metaloss.losses.baselines import BASELINES, baseline
from metaloss.losses.features import FEATURES, compute_features, register_feature
from metaloss.losses.kinds import KINDS, KindSpec, kind_spec, register_kind
from metaloss.losses.learned import LearnedLoss
from metaloss.losses.module import ARCHITECTURES, LossModule, reduce, register_architecture
from metaloss.typing import PerSampleLoss

__all__ = [
    "ARCHITECTURES",
    "BASELINES",
    "FEATURES",
    "KINDS",
    "KindSpec",
    "LearnedLoss",
    "LossModule",
    "PerSampleLoss",
    "baseline",
    "compute_features",
    "kind_spec",
    "reduce",
    "register_architecture",
    "register_feature",
    "register_kind",
]
