"""Inner models (learners) and their parameter initialisation. No training logic lives here."""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor, nn

from metaloss.config import LearnerConfig

__all__ = ["ACTIVATIONS", "MLP", "LogVarianceMLP", "init_params", "make_learner"]

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


class LogVarianceMLP(MLP):
    """An :class:`MLP` with ``count`` extra free parameters appended to every output row.

    The extra parameters are per-task log-variances ``s_t = log sigma_t^2`` of uncertainty
    weighting (Kendall, Gal & Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses",
    CVPR 2018): they do not depend on the input, start at zero (:func:`init_params` reads
    :attr:`zero_init`) and are trained by the inner loop like any other learner parameter. A
    loss that does not use them gives them no gradient, so they stay at zero.
    """

    zero_init = ("log_variances",)

    def __init__(
        self,
        in_features: int,
        hidden: tuple[int, ...],
        out_features: int,
        activation: str,
        count: int,
    ) -> None:
        super().__init__(in_features, hidden, out_features, activation)
        device = next(self.parameters()).device  # where the layers are (meta when loading)
        self.log_variances = nn.Parameter(torch.zeros(count, device=device))

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        out = super().forward(x)
        return torch.cat([out, self.log_variances.expand(*out.shape[:-1], -1)], dim=-1)


def make_learner(config: LearnerConfig, in_features: int, out_features: int) -> MLP:
    """The learner network for a task family's input and output sizes (plus
    ``config.log_variances`` free output columns, see :class:`LogVarianceMLP`)."""
    count = getattr(config, "log_variances", 0)
    if count:
        return LogVarianceMLP(in_features, config.hidden, out_features, config.activation, count)
    return MLP(in_features, config.hidden, out_features, config.activation)


def init_params(
    model: nn.Module,
    count: int,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> dict[str, Tensor]:
    """``count`` independent initialisations of ``model``'s parameters, stacked on dim 0.

    Uses PyTorch's default ``nn.Linear`` scheme (uniform in ±1/sqrt(fan_in) for weights and
    biases) drawn from an explicit generator, so the same generator state gives the same learners.
    Parameters named in the model's ``zero_init`` attribute start at zero and draw nothing. The
    draws are made on the (CPU) generator and moved to ``device``: the same values on every device.
    """
    params: dict[str, Tensor] = {}
    fan_in = 1
    zeros = getattr(model, "zero_init", ())
    for name, p in model.named_parameters():
        if name in zeros:
            params[name] = torch.zeros((count, *p.shape), dtype=dtype, device=device)
            continue
        if p.dim() > 1:
            fan_in = p.shape[1]
        bound = 1.0 / math.sqrt(fan_in)
        draw = torch.rand((count, *p.shape), generator=generator, dtype=torch.float64)
        params[name] = ((2 * draw - 1) * bound).to(device=device, dtype=dtype)
    return params
