"""Hand-designed per-sample losses: the baselines every learned loss is compared with.

Each baseline is a function ``(pred, target) -> per-sample loss`` with the same shape convention
as :class:`metaloss.losses.LearnedLoss` with ``reduction="none"``. Baselines of general use are
registered in :data:`BASELINES` (by this module and the loss modules beside it); a task family
can bring its own (e.g. the pinball loss of quantile regression) in its
:class:`~metaloss.tasks.registry.FamilySpec`'s ``baselines``; :func:`baseline_table` is both.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from metaloss.tasks.registry import FAMILIES
from metaloss.typing import PerSampleLoss

__all__ = [
    "BASELINES",
    "FREE_OUTPUTS",
    "PerSampleLoss",
    "baseline",
    "baseline_parameters",
    "baseline_table",
    "refused_value",
]


def mse(pred: Tensor, target: Tensor) -> Tensor:
    """Squared error."""
    return (pred - target) ** 2


def l1(pred: Tensor, target: Tensor) -> Tensor:
    """Absolute error."""
    return (pred - target).abs()


def huber(pred: Tensor, target: Tensor, delta: float = 1.0) -> Tensor:
    """Huber loss (Huber, 1964): quadratic within ``delta``, linear outside, as ``nn.HuberLoss``."""
    return F.huber_loss(pred, target, reduction="none", delta=delta)


BASELINES: dict[str, Callable[..., Tensor]] = {"mse": mse, "l1": l1, "huber": huber}

FREE_OUTPUTS: dict[str, int] = {}
"""Baselines with their own parameters trained jointly with the model (e.g. Barron's adaptive
shape and scale): how many input-independent outputs the learner appends for them (the
benchmark gives such a baseline a learner with ``log_variances`` set to this count)."""


def baseline_table() -> dict[str, Callable[..., Tensor]]:
    """Every baseline by name: :data:`BASELINES` and those the registered task families bring."""
    table = dict(BASELINES)
    for spec in FAMILIES.values():
        table.update(spec.baselines)
    return table


def baseline(name: str, **params: Any) -> PerSampleLoss:
    """The baseline called ``name`` with its parameters bound (e.g. ``baseline("huber", delta=2)``)."""
    table = baseline_table()
    if name not in table:
        raise ValueError(f"baseline: expected one of {', '.join(sorted(table))}, got {name!r}")
    fn = table[name]
    if not params:
        return fn
    return lambda pred, target: fn(pred, target, **params)


def baseline_parameters(name: str) -> tuple[str, ...]:
    """The keyword parameters of baseline ``name`` (after ``pred`` and ``target``)."""
    return tuple(list(inspect.signature(baseline_table()[name]).parameters)[2:])


_PROBES: dict[str, Callable[[int], tuple[Tensor, Tensor]]] = {
    "regression": lambda free: (
        torch.zeros(2, 1 + free, device="cpu"),
        torch.ones(2, 1, device="cpu"),
    ),
    "classification": lambda free: (
        torch.zeros(2, 3, device="cpu"),
        torch.tensor([0, 1], device="cpu"),
    ),
}


def refused_value(name: str, param: str, value: float, kind: str) -> str | None:
    """Why baseline ``name`` refuses ``param=value``, or ``None`` if it accepts it: the baseline is
    called once on a tiny valid input of loss kind ``kind`` (with its free outputs, on the CPU), so
    that a config can be checked before any run starts. Kinds without a probe input accept all."""
    probe = _PROBES.get(kind)
    if probe is None:
        return None
    try:
        baseline_table()[name](*probe(FREE_OUTPUTS.get(name, 0)), **{param: value})
    except (ValueError, RuntimeError) as error:
        return str(error)
    return None
