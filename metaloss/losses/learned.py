"""The learned per-sample loss: a small network over named features of (prediction, target).

References:
    Bechtle et al., "Meta Learning via Learned Loss" (ML3), ICPR 2020.
    Houthooft et al., "Evolved Policy Gradients", NeurIPS 2018.
    Shu et al., "Meta-Weight-Net: Learning an Explicit Mapping for Sample Weighting", NeurIPS 2019
    (the ``form="weight"`` variant for classification).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from metaloss.config import LossConfig
from metaloss.learners import MLP
from metaloss.losses.features import (
    check_features,
    class_dependent_features,
    compute_features,
    elementwise_features,
    feature_width,
    scaled_features,
)
from metaloss.losses.module import LossModule, init_uniform_, reduce, register_architecture
from metaloss.losses.ops import absolute
from metaloss.typing import Reduction

__all__ = [
    "FORMS",
    "OUTPUTS",
    "LearnedLoss",
    "cross_entropy",
    "init_uniform_",
    "reduce",
]

OUTPUTS = {
    "identity": lambda h: h,
    "softplus": F.softplus,
    "square": lambda h: h * h,
    "abs": absolute,
    "sigmoid": torch.sigmoid,
}

FORMS = ("loss", "weight")
"""``loss``: the network's output is the per-sample loss. ``weight``: the output is a per-sample
weight (of detached features) multiplying cross-entropy (classification, as in Meta-Weight-Net)
or the squared residual (regression, as in iteratively re-weighted least squares)."""


def cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Per-sample cross-entropy of logits ``[..., C]`` and integer labels ``[...]`` (vmap-safe)."""
    log_probs = torch.log_softmax(logits, dim=-1)
    return -log_probs.gather(-1, labels.long().unsqueeze(-1)).squeeze(-1)


def _base_loss(kind: str, pred: Tensor, target: Tensor) -> Tensor:
    """The per-sample loss a ``form="weight"`` network re-weights: CE or the squared residual."""
    if kind == "classification":
        return cross_entropy(pred, target)
    return (pred - target) ** 2


@register_architecture
class LearnedLoss(LossModule):
    """A per-sample loss network, used like a torch loss: ``loss(pred, target)``.

    For regression the loss is applied elementwise (like ``nn.MSELoss``): each element of
    ``pred`` and ``target`` is one sample, and ``reduction="none"`` returns a tensor of
    ``pred``'s shape. The network sees the features named in ``features``; its output goes
    through ``output`` (e.g. softplus) and, with ``zero_at_target``, the loss of a perfect
    prediction is subtracted, so ``loss(t, t) == 0`` for every target ``t``.

    For classification ``pred`` holds logits ``[..., N, C]`` and ``target`` integer labels
    ``[..., N]``; ``reduction="none"`` returns ``[..., N]``. A loss whose features are all scalar
    accepts logits of any number of classes; features may also be vectors (e.g. the sorted
    probability vector) whose width depends on ``num_classes``, and only such a loss refuses
    logits of another class count. ``zero_at_target`` is
    ignored (a "perfect" logit vector does not exist). With ``form="weight"`` the loss is
    ``w(features) * CE`` where the features are detached, so the network acts as a per-sample
    weight, as in Meta-Weight-Net (Shu et al., 2019); pair it with ``output="sigmoid"``. For
    regression ``form="weight"`` gives ``w(features) * (pred - target)**2``: the gradient is the
    weighted least-squares one, as in iteratively re-weighted least squares (Holland & Welsch,
    1977), and a constant weight is exactly MSE (up to scale).

    Args:
        features: feature names from :data:`metaloss.losses.features.FEATURES` for ``kind``.
        hidden: hidden layer widths.
        activation: hidden activation (``relu``, ``tanh``, ``softplus``, ``elu``).
        output: output transform (``identity``, ``softplus``, ``square``, ``abs``).
        zero_at_target: subtract the loss at a perfect prediction.
        kind: ``"regression"`` or ``"classification"``.
        reduction: default reduction, ``"mean"``, ``"sum"`` or ``"none"``.
        num_classes: number of classes; needed (and enforced) only by vector features whose
            width depends on it.
        form: ``"loss"`` (the output is the loss) or ``"weight"`` (the output weights CE, or
            the squared residual for regression).
        scale: the scale the loss reads its input on; 1 is the loss as meta-trained
            (:meth:`with_scale`). Regression: the robustness scale, a factor on every batch
            scale estimate the features divide by (see :mod:`metaloss.losses.scale`); larger
            values treat residuals as smaller (towards the squared loss for a weight-form
            loss), smaller values as larger; only a loss with such a feature takes a scale
            other than 1. Classification: a temperature, the loss (its features and the CE a
            weight-form loss weights) reads ``logits / scale``; values below 1 stop training
            earlier on confident samples, so the learner's own predictions stay softer, as
            label smoothing's do (training at a temperature: Agarwala et al., 2020).

    References:
        Bechtle et al., "Meta Learning via Learned Loss", ICPR 2020.
        Holland & Welsch, "Robust regression using iteratively reweighted least-squares",
        Communications in Statistics, 1977.
        Agarwala, Pennington, Dauphin & Schoenholz, "Temperature check: theory and practice
        for training models with softmax-cross-entropy losses", arXiv:2010.07344, 2020.

    Example:
        >>> loss = LearnedLoss(("residual", "abs_residual"))
        >>> loss(torch.zeros(4, 1), torch.ones(4, 1)).shape
        torch.Size([])
    """

    default_kind = "regression"

    def __init__(
        self,
        features: tuple[str, ...] = ("residual", "abs_residual", "target"),
        hidden: tuple[int, ...] = (32, 32),
        activation: str = "elu",
        output: str = "softplus",
        zero_at_target: bool = True,
        kind: str = "regression",
        reduction: Reduction = "mean",
        num_classes: int | None = None,
        form: str = "loss",
        scale: float = 1.0,
    ) -> None:
        super().__init__()
        check_features(kind, tuple(features))
        if output not in OUTPUTS:
            raise ValueError(f"output: expected one of {', '.join(OUTPUTS)}, got {output!r}")
        if form not in FORMS:
            raise ValueError(f"form: expected one of {', '.join(FORMS)}, got {form!r}")
        if form == "weight" and kind not in ("regression", "classification"):
            raise ValueError(
                f"form: 'weight' re-weights the squared residual or cross-entropy, so it needs "
                f"kind 'regression' or 'classification', got {kind!r}"
            )
        self.keep_network_settings(features, hidden, activation, kind, reduction)
        self.scale = self._checked_scale(scale)
        self.output = output
        self.zero_at_target = zero_at_target
        self.num_classes = num_classes
        self.form = form
        self.class_dependent = class_dependent_features(kind, self.features)
        self.net = MLP(feature_width(kind, self.features, num_classes), self.hidden, 1, activation)

    @classmethod
    def config_arguments(
        cls, config: LossConfig, kind: str, num_classes: int | None
    ) -> dict[str, Any]:
        """The constructor arguments of a run config's ``loss`` section; ``num_classes`` is kept
        only by classification losses with a feature whose width depends on it (a loss of scalar
        features accepts any number of classes)."""
        needs_classes = kind == "classification" and class_dependent_features(kind, config.features)
        return {
            "features": config.features,
            "hidden": config.hidden,
            "activation": config.activation,
            "output": config.output,
            "zero_at_target": config.zero_at_target,
            "kind": kind,
            "num_classes": num_classes if needs_classes else None,
            "form": config.form,
        }

    def architecture(self) -> dict[str, Any]:
        """The constructor arguments: enough to rebuild this loss without its trainer."""
        return {
            **self.network_architecture(),
            "output": self.output,
            "zero_at_target": self.zero_at_target,
            **({"num_classes": self.num_classes} if self.num_classes is not None else {}),
            **({"form": self.form} if self.form != "loss" else {}),
            **({"scale": self.scale} if self.scale != 1.0 else {}),
        }

    def with_scale(self, scale: float) -> LearnedLoss:
        """This loss at scale ``scale`` (regression: the robustness scale; classification: the
        temperature; an absolute value, not relative to this loss's own): a shallow copy sharing
        the network, so training either trains both."""
        checked = self._checked_scale(scale)
        other = copy.copy(self)
        other.scale = checked
        return other

    @property
    def reads_scale(self) -> bool:
        """Whether a scale other than 1 changes this loss: every classification loss (the
        temperature) and a regression loss with a feature that reads a batch scale estimate."""
        return self.kind == "classification" or bool(scaled_features(self.kind, self.features))

    def _checked_scale(self, scale: float) -> float:
        """``scale`` as a float, if it is a positive finite number this loss reads."""
        if isinstance(scale, bool) or not isinstance(scale, int | float):
            raise ValueError(f"scale: expected a positive number, got {type(scale).__name__}")
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale: expected a positive finite number, got {scale!r}")
        if scale != 1.0 and not self.reads_scale:
            raise ValueError(
                f"scale: none of the features ({', '.join(self.features)}) reads a batch scale "
                f"estimate, so only scale 1 is meaningful; got {scale:g}"
            )
        return float(scale)

    def _raw(self, pred: Tensor, target: Tensor) -> Tensor:
        feature_scale = self.scale if self.kind == "regression" else 1.0
        features = compute_features(self.kind, self.features, pred, target, feature_scale)
        if self.form == "weight":
            features = features.detach()
        return OUTPUTS[self.output](self.net(features).squeeze(-1))

    @property
    def elementwise(self) -> bool:
        """Whether each element's loss depends on that element only: a regression loss whose
        features are all elementwise (not the batch-level scale features). Such a loss may be
        evaluated on stacked tasks at once (see :func:`metaloss.inner.task_batched`)."""
        if self.kind != "regression":
            return False
        return set(self.features) <= elementwise_features(self.kind)

    def per_sample(self, pred: Tensor, target: Tensor) -> Tensor:
        """The unreduced loss: one value per sample (per element for regression)."""
        return self._values(pred, target, at_target=self.zero_at_target)

    def per_sample_for_gradient(self, pred: Tensor, target: Tensor) -> Tensor:
        """:meth:`per_sample` without the loss at a perfect prediction that ``zero_at_target``
        subtracts (a term constant in ``pred``: the same gradients, one network evaluation less
        per call)."""
        return self._values(pred, target, at_target=False)

    def _values(self, pred: Tensor, target: Tensor, at_target: bool) -> Tensor:
        """The per-sample values, minus the loss at ``pred == target`` if ``at_target``
        (regression in the loss form)."""
        if self.kind == "regression" and pred.shape != target.shape:
            raise ValueError(
                f"target: expected shape {tuple(pred.shape)} like pred, got {tuple(target.shape)}"
            )
        if self.kind == "classification":
            if pred.shape[:-1] != target.shape:
                raise ValueError(
                    f"target: expected integer labels of shape {tuple(pred.shape[:-1])} for logits "
                    f"{tuple(pred.shape)}, got {tuple(target.shape)}"
                )
            if self.class_dependent and pred.shape[-1] != self.num_classes:
                raise ValueError(
                    f"pred: expected {self.num_classes} classes (logits [..., {self.num_classes}]): "
                    f"feature {self.class_dependent[0]!r} has one value per class, got {pred.shape[-1]}"
                )
            if self.scale != 1.0:
                pred = pred / self.scale  # the temperature: every part reads the scaled logits
        values = self._raw(pred, target)
        if self.form == "weight":
            return values * _base_loss(self.kind, pred, target)
        if at_target and self.kind == "regression":
            values = values - self._raw(target, target)
        return values

    def extra_repr(self) -> str:
        form = f", form={self.form}" if self.form != "loss" else ""
        form += f", scale={self.scale:g}" if self.scale != 1.0 else ""
        return f"kind={self.kind}, features={self.features}, output={self.output}{form}, reduction={self.reduction}"
