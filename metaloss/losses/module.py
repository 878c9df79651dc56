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
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn

from metaloss.typing import PerSampleLoss, Reduction

if TYPE_CHECKING:
    from metaloss.config import LossConfig

__all__ = [
    "ARCHITECTURES",
    "LossModule",
    "gradient_fn",
    "init_uniform_",
    "loss_device",
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

    Subclasses set the attributes below in ``__init__`` and define :meth:`per_sample`,
    :meth:`architecture` and :meth:`config_arguments`.

    Attributes:
        kind: the loss kind (``regression``, ``classification``, ``multitask``, ``policy``, …;
            see :mod:`metaloss.losses.kinds`).
        features: the names of its per-sample input features.
        hidden, activation: the widths and activation of its feature network.
        reduction: the default reduction of :meth:`forward`.
        metadata: the metadata of the file the loss was loaded from (empty otherwise).
    """

    default_kind: ClassVar[str]
    kind: str
    features: tuple[str, ...]
    hidden: tuple[int, ...]
    activation: str
    reduction: Reduction
    metadata: dict[str, Any]

    def __init__(self) -> None:
        super().__init__()
        self.metadata = {}

    @abstractmethod
    def per_sample(self, pred: Tensor, target: Tensor) -> Tensor:
        """The unreduced loss: one value per sample (per element for regression)."""

    def per_sample_for_gradient(self, pred: Tensor, target: Tensor) -> Tensor:
        """What an inner loop differentiates: :meth:`per_sample` up to terms that do not depend
        on ``pred``. Such terms change no gradient w.r.t. the learner, first or second order
        (autograd passes a difference's gradient to its first operand unchanged), so leaving
        them out saves their evaluation at every inner step. By default :meth:`per_sample`."""
        return self.per_sample(pred, target)

    @abstractmethod
    def architecture(self) -> dict[str, Any]:
        """The constructor arguments: enough to rebuild this loss without its trainer."""

    @classmethod
    def config_arguments(
        cls, config: LossConfig, kind: str, num_classes: int | None
    ) -> dict[str, Any]:
        """The constructor arguments of the loss a run config's ``loss`` section describes;
        by default those of a feature network (``loss.features``, ``hidden``, ``activation``
        and the kind). A loss with more options extends this."""
        return {
            "features": config.features,
            "hidden": config.hidden,
            "activation": config.activation,
            "kind": kind,
        }

    @classmethod
    def from_config(
        cls: type[M],
        config: LossConfig,
        kind: str | None = None,
        generator: torch.Generator | None = None,
        num_classes: int | None = None,
    ) -> M:
        """The loss of a run config's ``loss`` section (of the class's :attr:`default_kind`
        unless ``kind`` is given), initialised from ``generator`` with weights scaled by
        ``loss.init_scale`` (``None``: PyTorch's default initialisation)."""
        kind = kind or cls.default_kind
        loss = cls(**cls.config_arguments(config, kind, num_classes))
        if generator is not None:
            init_uniform_(loss, generator, config.init_scale)
        return loss

    def keep_network_settings(
        self,
        features: tuple[str, ...],
        hidden: tuple[int, ...],
        activation: str,
        kind: str,
        reduction: Reduction,
    ) -> None:
        """Check ``reduction`` and keep the settings every feature-network loss shares (those
        :meth:`network_architecture` gives back, and the default reduction)."""
        reduce(torch.zeros((), device="cpu"), reduction)  # validates the name
        self.features = tuple(features)
        self.hidden = tuple(hidden)
        self.activation = activation
        self.kind = kind
        self.reduction = reduction

    def network_architecture(self) -> dict[str, Any]:
        """The arguments every feature-network loss shares: features, hidden widths,
        activation and kind (subclasses add their own in :meth:`architecture`)."""
        return {
            "features": list(self.features),
            "hidden": list(self.hidden),
            "activation": self.activation,
            "kind": self.kind,
        }

    def forward(self, pred: Tensor, target: Tensor, reduction: Reduction | None = None) -> Tensor:
        """The loss of ``pred`` against ``target``, reduced by ``reduction`` (default: the
        module's)."""
        return reduce(self.per_sample(pred, target), reduction or self.reduction)

    def __repr__(self) -> str:
        """The module's repr, with where it comes from (trained on, version, best objective,
        the command that made it) when it was loaded from a file."""
        from metaloss.card import origin_lines

        text = super().__repr__()
        lines = origin_lines(self.metadata)
        if not lines:
            return text
        head, newline, rest = text.partition("\n")
        block = "".join(f"  # {line}\n" for line in lines)
        return f"{head}\n{block}{rest}" if newline else f"{text}\n{block.rstrip()}"

    def model_card(self, source: str = "loss.safetensors") -> str:
        """A Markdown model card from the metadata of the file this loss was loaded from, with
        its shape summary where its kind has one (see :func:`metaloss.card.model_card`)."""
        from metaloss.card import model_card
        from metaloss.plots import has_shape_view, shape_view

        view = shape_view(self.kind) if has_shape_view(self.kind) else None
        shape = view.describe(self) if view is not None and view.describe else None
        return model_card(self.metadata, source, shape)

    def __prepare_scriptable__(self) -> LossModule:
        raise TypeError(
            f"{type(self).__name__}: torch.jit.script cannot compile a learned loss (its input "
            "features come from a Python registry); use torch.jit.trace(loss, (pred, target)) "
            "or torch.export.export(loss, (pred, target)), which record its operations and "
            "accept other batch sizes (docs/inspect_and_reuse.md)"
        )


M = TypeVar("M", bound="LossModule")


def init_uniform_(module: nn.Module, generator: torch.Generator, scale: float = 1.0) -> None:
    """Re-draw every parameter of ``module`` in place from ``U(-b, b)``, ``b = scale / sqrt(fan_in)``
    (PyTorch's ``nn.Linear`` bound, scaled), using ``generator`` so runs are reproducible."""
    with torch.no_grad():
        for p in module.parameters():
            fan_in = p.shape[-1] if p.dim() > 1 else p.numel()
            bound = scale / max(fan_in, 1) ** 0.5
            p.copy_((2 * torch.rand(p.shape, generator=generator, dtype=p.dtype) - 1) * bound)


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


def gradient_fn(loss: PerSampleLoss) -> PerSampleLoss:
    """The per-sample function an inner loop trains with: a :class:`LossModule`'s
    :meth:`~LossModule.per_sample_for_gradient` (the same gradients as the loss, see there), or
    a plain per-sample function as it is."""
    return loss.per_sample_for_gradient if isinstance(loss, LossModule) else loss


def loss_device(loss: PerSampleLoss) -> torch.device:
    """The device of a loss module's parameters (the CPU for plain functions)."""
    if isinstance(loss, nn.Module):
        for parameter in loss.parameters():
            return parameter.device
    return torch.device("cpu")


def loss_dtype(loss: PerSampleLoss) -> torch.dtype:
    """The floating dtype of a loss module's parameters (float32 for plain functions)."""
    if isinstance(loss, nn.Module):
        for parameter in loss.parameters():
            if parameter.is_floating_point():
                return parameter.dtype
    return torch.float32
