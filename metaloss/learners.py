"""Inner models (learners) and their parameter initialisation. No training logic lives here."""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor, nn

from metaloss.config import LearnerConfig

__all__ = ["ACTIVATIONS", "MLP", "init_params", "make_learner"]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
    "elu": nn.ELU,
}


class MLP(nn.Sequential):
    """A multi-layer perceptron ``in -> hidden... -> out`` with one activation between layers."""

    def __init__(
        self, in_features: int, hidden: tuple[int, ...], out_features: int, activation: str
    ) -> None:
        widths = (in_features, *hidden, out_features)
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(itertools.pairwise(widths)):
            layers.append(nn.Linear(a, b))
            if i < len(widths) - 2:
                layers.append(ACTIVATIONS[activation]())
        super().__init__(*layers)


def make_learner(config: LearnerConfig, in_features: int, out_features: int) -> MLP:
    """The learner network for a task family's input and output sizes."""
    return MLP(in_features, config.hidden, out_features, config.activation)


def init_params(
    model: nn.Module, count: int, generator: torch.Generator, dtype: torch.dtype = torch.float32
) -> dict[str, Tensor]:
    """``count`` independent initialisations of ``model``'s parameters, stacked on dim 0.

    Uses PyTorch's default ``nn.Linear`` scheme (uniform in ±1/sqrt(fan_in) for weights and
    biases) drawn from an explicit generator, so the same generator state gives the same learners.
    """
    params: dict[str, Tensor] = {}
    fan_in = 1
    for name, p in model.named_parameters():
        if p.dim() > 1:
            fan_in = p.shape[1]
        bound = 1.0 / math.sqrt(fan_in)
        draw = torch.rand((count, *p.shape), generator=generator, dtype=torch.float64)
        params[name] = ((2 * draw - 1) * bound).to(dtype)
    return params
