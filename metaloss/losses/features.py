"""Named per-sample input features of a learned loss.

Regression features are elementwise functions of the prediction and the target. Classification
features (registered by :mod:`metaloss.losses.classification`) map logits ``[N, C]`` and labels
``[N]`` to ``[N]`` (a scalar per sample) or to ``[N, width]`` (a vector per sample, e.g. the
sorted probability vector, whose width may depend on the number of classes).
"""

from __future__ import annotations

from collections.abc import Callable, Collection

import torch
from torch import Tensor

__all__ = [
    "FEATURES",
    "WIDTHS",
    "Feature",
    "check_feature_names",
    "check_features",
    "class_dependent_features",
    "compute_features",
    "elementwise_features",
    "feature_width",
    "register_feature",
    "scaled_features",
]

Feature = Callable[[Tensor, Tensor], Tensor]
Width = int | Callable[[int], int]

FEATURES: dict[str, dict[str, Feature]] = {}
"""Features by loss kind; each kind's file registers its own (:func:`register_feature`)."""

SCALED: dict[str, set[str]] = {}
"""Names of the features of each kind that read a batch scale estimate and accept a keyword
``scale`` multiplying it (see :mod:`metaloss.losses.scale`)."""

ELEMENTWISE: dict[str, set[str]] = {}
"""Names of the features of each kind that read one element only (not a batch statistic): a
learned loss made of them treats every element, and every stacked task, independently."""

WIDTHS: dict[str, dict[str, Width]] = {}
"""Per-sample widths of vector features (absent: a scalar feature, width 1); a callable gets
the number of classes."""


def register_feature(
    kind: str,
    name: str,
    feature: Feature,
    width: Width = 1,
    scaled: bool = False,
    elementwise: bool = False,
) -> None:
    """Add a named feature for losses of ``kind`` (``"regression"`` or ``"classification"``).

    ``width``: values per sample; an ``int`` or a function of the number of classes for vector
    features such as a sorted probability vector (``lambda classes: classes``). ``scaled``: the
    feature divides by a batch scale estimate and takes a keyword ``scale`` multiplying it.
    ``elementwise``: the feature of an element reads that element only.
    """
    FEATURES.setdefault(kind, {})[name] = feature
    if elementwise:
        ELEMENTWISE.setdefault(kind, set()).add(name)
    else:
        ELEMENTWISE.get(kind, set()).discard(name)
    if scaled:
        SCALED.setdefault(kind, set()).add(name)
    else:
        SCALED.get(kind, set()).discard(name)
    if width != 1:
        WIDTHS.setdefault(kind, {})[name] = width
    else:
        WIDTHS.get(kind, {}).pop(name, None)


def feature_width(kind: str, names: tuple[str, ...], num_classes: int | None = None) -> int:
    """Total input width of the named features (vector features count their width)."""
    total = 0
    for name in names:
        width = WIDTHS.get(kind, {}).get(name, 1)
        if callable(width):
            if num_classes is None:
                raise ValueError(
                    f"loss.features: {name!r} needs the number of classes (num_classes)"
                )
            width = width(num_classes)
        total += width
    return total


def class_dependent_features(kind: str, names: tuple[str, ...]) -> tuple[str, ...]:
    """The named features whose width depends on the number of classes (empty: the features
    are scalar or of fixed width, so the loss accepts logits of any class count)."""
    return tuple(n for n in names if callable(WIDTHS.get(kind, {}).get(n, 1)))


def scaled_features(kind: str, names: tuple[str, ...]) -> tuple[str, ...]:
    """The named features that read a batch scale estimate (see :data:`SCALED`)."""
    return tuple(n for n in names if n in SCALED.get(kind, set()))


def check_features(kind: str, names: tuple[str, ...]) -> None:
    """Raise ``ValueError`` naming the first unknown feature of ``kind``."""
    known = FEATURES.get(kind)
    if known is None:
        raise ValueError(f"loss kind: expected one of {', '.join(FEATURES)}, got {kind!r}")
    check_feature_names(names, known)


def check_feature_names(names: tuple[str, ...], known: Collection[str]) -> None:
    """Raise ``ValueError`` if ``names`` is empty or names a feature not in ``known``."""
    if not names:
        raise ValueError("loss.features: expected at least one feature name")
    for name in names:
        if name not in known:
            raise ValueError(
                f"loss.features: expected names from {', '.join(sorted(known))}, got {name!r}"
            )


def compute_features(
    kind: str, names: tuple[str, ...], pred: Tensor, target: Tensor, scale: float = 1.0
) -> Tensor:
    """Stack the named features on a new last dimension: ``[..., len(names)]``.

    When some features are vectors (see :data:`WIDTHS`), scalar features get a last dimension of
    size 1 and all are concatenated: ``[..., feature_width(kind, names, classes)]``. ``scale``
    multiplies the batch scale estimate of every :data:`SCALED` feature (1: as registered).
    """
    table = FEATURES[kind]
    scaled = SCALED.get(kind, set()) if scale != 1.0 else set()
    values = [
        table[n](pred, target, scale=scale) if n in scaled else table[n](pred, target)  # type: ignore[call-arg]
        for n in names
    ]
    if not any(n in WIDTHS.get(kind, {}) for n in names):
        return torch.stack(values, dim=-1)
    vectors = WIDTHS.get(kind, {})
    return torch.cat(
        [v if n in vectors else v.unsqueeze(-1) for n, v in zip(names, values, strict=True)], dim=-1
    )


def elementwise_features(kind: str) -> frozenset[str]:
    """The features of ``kind`` registered as reading one element only."""
    return frozenset(ELEMENTWISE.get(kind, ()))
