"""Type aliases shared across metaloss, in one place (as ``torchopt.typing``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from torch import Tensor

__all__ = ["Objective", "Params", "PerSampleLoss", "Reduction"]

Params = dict[str, Tensor]
"""Named parameter tensors (a learner's or a loss network's), possibly with a leading task or
candidate dimension."""

PerSampleLoss = Callable[[Tensor, Tensor], Tensor]
"""``loss(pred, target) -> one value per sample`` (per element for regression)."""

Objective = Callable[[Tensor, Tensor], Tensor]
"""A task family's per-sample meta-objective and test metric, ``(pred, target) -> [..., n]``."""

Reduction = Literal["mean", "sum", "none"]
"""A torch-style reduction over samples."""
