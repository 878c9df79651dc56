"""The registry of loss kinds: one :class:`KindSpec` per kind, registered once by the file
that defines the kind.

A kind is what a learned loss takes as ``(pred, target)``: regression (predictions and targets
of one shape), classification (logits and labels), multi-task (stacked heads), policy (log-ratios
and advantages). A spec carries everything the rest of the system asks about a kind: the learned
loss class built from a run's ``loss`` section, the hand-designed loss ``metaloss train`` compares
with, the check that a learned loss has collapsed, where its shape view lives (drawn by
TensorBoard and ``metaloss inspect``; named as ``"module:attribute"`` and imported on first use,
since figures need matplotlib), and whether per-sample histograms make sense for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from metaloss.typing import PerSampleLoss

if TYPE_CHECKING:
    from metaloss.losses.collapse import DegeneracyReport
    from metaloss.losses.module import LossModule

__all__ = ["KINDS", "KindSpec", "kind_spec", "known_kinds", "register_kind"]

CollapseCheck = Callable[[PerSampleLoss, float], "DegeneracyReport"]


@dataclass(frozen=True)
class KindSpec:
    """Everything the system asks about a loss kind.

    Attributes:
        name: the kind (a family spec's ``kind``, a loss's ``.kind``).
        loss_class: the learned-loss class meta-training builds for this kind.
        reference: name of the hand-designed loss ``metaloss train`` compares with (``None``:
            no comparison).
        collapse_check: ``check(loss, tolerance) -> DegeneracyReport`` (``None``: not checked).
        shape_view: ``"module:attribute"`` of the kind's
            :class:`~metaloss.plots.base.ShapeView` (``None``: no figure).
        per_sample_histograms: whether TensorBoard histograms of per-sample values and weights
            make sense for losses of this kind.
    """

    name: str
    loss_class: type[LossModule]
    reference: str | None = None
    collapse_check: CollapseCheck | None = None
    shape_view: str | None = None
    per_sample_histograms: bool = False


KINDS: dict[str, KindSpec] = {}


def register_kind(spec: KindSpec) -> KindSpec:
    """Register ``spec`` (registering a name again replaces it)."""
    KINDS[spec.name] = spec
    return spec


def known_kinds() -> list[str]:
    """The registered kinds, sorted."""
    return sorted(KINDS)


def kind_spec(name: str) -> KindSpec:
    """The spec of loss kind ``name``; ``ValueError`` naming the known kinds if none."""
    if name not in KINDS:
        raise ValueError(f"loss kind: expected one of {', '.join(known_kinds())}, got {name!r}")
    return KINDS[name]
