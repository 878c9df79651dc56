"""Named per-sample input features of a learned loss.

Regression features are elementwise functions of the prediction and the target. Classification
features (added by the classification family) map logits ``[N, C]`` and labels ``[N]`` to ``[N]``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["FEATURES", "Feature", "compute_features", "register_feature"]

Feature = Callable[[Tensor, Tensor], Tensor]

FEATURES: dict[str, dict[str, Feature]] = {
    "regression": {
        "prediction": lambda pred, target: pred,
        "target": lambda pred, target: target,
        "residual": lambda pred, target: pred - target,
        "abs_residual": lambda pred, target: (pred - target).abs(),
        "squared_residual": lambda pred, target: (pred - target) ** 2,
        "log_abs_residual": lambda pred, target: torch.log1p((pred - target).abs()),
    },
    "classification": {},
}


def register_feature(kind: str, name: str, feature: Feature) -> None:
    """Add a named feature for losses of ``kind`` (``"regression"`` or ``"classification"``)."""
    FEATURES.setdefault(kind, {})[name] = feature


def check_features(kind: str, names: tuple[str, ...]) -> None:
    """Raise ``ValueError`` naming the first unknown feature of ``kind``."""
    known = FEATURES.get(kind)
    if known is None:
        raise ValueError(f"loss kind: expected one of {', '.join(FEATURES)}, got {kind!r}")
    if not names:
        raise ValueError("loss.features: expected at least one feature name")
    for name in names:
        if name not in known:
            raise ValueError(
                f"loss.features: expected names from {', '.join(sorted(known))}, got {name!r}"
            )


def compute_features(kind: str, names: tuple[str, ...], pred: Tensor, target: Tensor) -> Tensor:
    """Stack the named features on a new last dimension: ``[..., len(names)]``."""
    table = FEATURES[kind]
    return torch.stack([table[n](pred, target) for n in names], dim=-1)
