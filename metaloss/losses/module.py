"""The interface every learned loss implements, and the registry of loss architectures.

A :class:`LossModule` is a ``torch.nn.Module`` used like a torch loss, ``loss(pred, target)``,
with a torch-style ``reduction``. What the rest of metaloss asks of a learned loss is declared
here once, instead of being probed with ``getattr``: its per-sample values (:meth:`per_sample`),
its loss kind (:attr:`kind`), its input features (:attr:`features`), the constructor arguments
that rebuild it without its trainer (:meth:`architecture`, as nanoGPT's checkpoints hold their
model arguments) and the metadata of the file it was loaded from (:attr:`metadata`).

The file format (:mod:`metaloss.export`) rebuilds only classes registered here with
:func:`register_architecture`, by name, so loading a loss file never imports or runs anything
the file names.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch import Tensor, nn

from metaloss.typing import PerSampleLoss, Reduction

if TYPE_CHECKING:
    from metaloss.config import LossConfig

__all__ = [
    "ARCHITECTURES",
    "LossModule",
    "loss_dtype",
    "per_sample_fn",
    "reduce",
    "register_architecture",
]


def reduce(values: Tensor, reduction: str) -> Tensor:
    """Apply a torch-style reduction (``"mean"``, ``"sum"`` or ``"none"``)."""
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    if reduction == "none":
        return values
    raise ValueError(f"reduction: expected 'mean', 'sum' or 'none', got {reduction!r}")


class LossModule(nn.Module, ABC):
    """A learned loss: ``loss(pred, target, reduction=None)``.

    Subclasses set :attr:`kind`, :attr:`features` and :attr:`reduction` in ``__init__`` and
    define :meth:`per_sample`, :meth:`architecture` and :meth:`from_config`.

    Attributes:
        kind: the loss kind (``regression``, ``classification``, ``multitask``, ``policy``, …;
            see :mod:`metaloss.losses.kinds`).
        features: the names of its per-sample input features.
        reduction: the default reduction of :meth:`forward`.
        metadata: the metadata of the file the loss was loaded from (empty otherwise).
    """

    kind: str
    features: tuple[str, ...]
    reduction: Reduction
    metadata: dict[str, Any]

    def __init__(self) -> None:
        super().__init__()
        self.metadata = {}

    @abstractmethod
    def per_sample(self, pred: Tensor, target: Tensor) -> Tensor:
        """The unreduced loss: one value per sample (per element for regression)."""

    @abstractmethod
    def architecture(self) -> dict[str, Any]:
        """The constructor arguments: enough to rebuild this loss without its trainer."""

    @classmethod
    @abstractmethod
    def from_config(
        cls,
        config: LossConfig,
        kind: str,
        generator: torch.Generator | None = None,
        num_classes: int | None = None,
    ) -> LossModule:
        """The loss of a run config's ``loss`` section, initialised from ``generator``."""

    def forward(self, pred: Tensor, target: Tensor, reduction: Reduction | None = None) -> Tensor:
        """The loss of ``pred`` against ``target``, reduced by ``reduction`` (default: the
        module's)."""
        return reduce(self.per_sample(pred, target), reduction or self.reduction)


ARCHITECTURES: dict[str, type[LossModule]] = {}
"""Loss classes a loss file may name, by class name."""

L = TypeVar("L", bound=type[LossModule])


def register_architecture(cls: L) -> L:
    """Class decorator: let loss files rebuild ``cls`` (by its class name)."""
    ARCHITECTURES[cls.__name__] = cls
    return cls


def per_sample_fn(loss: PerSampleLoss) -> PerSampleLoss:
    """The unreduced function of a loss: a :class:`LossModule`'s :meth:`~LossModule.per_sample`,
    or a plain per-sample function (a baseline) as it is."""
    return loss.per_sample if isinstance(loss, LossModule) else loss


def loss_dtype(loss: PerSampleLoss) -> torch.dtype:
    """The floating dtype of a loss module's parameters (float32 for plain functions)."""
    if isinstance(loss, nn.Module):
        for parameter in loss.parameters():
            if parameter.is_floating_point():
                return parameter.dtype
    return torch.float32
