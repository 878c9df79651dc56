"""The registry of task families: one :class:`FamilySpec` per family, registered once by the
file that defines the family (as ``higher``'s ``register_optim`` keeps its registry in the
module that owns it).

A spec carries everything the rest of the system asks about a family: its config class and
factory, the loss kind its learned losses have, how reports name its metric and which way is
better, its zoo loss, its oracle and extra metrics, and, for families that are not trained
through a differentiable unroll, the meta-problem that trains them. Nothing else keeps a table
of families.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from torch import Tensor

from metaloss.config import ConfigError, TaskConfig, register_task_config
from metaloss.tasks.base import Batch, Task
from metaloss.typing import PerSampleLoss

if TYPE_CHECKING:
    from metaloss.config import RunConfig
    from metaloss.outer.problem import MetaProblem

__all__ = [
    "FAMILIES",
    "FamilySpec",
    "Metric",
    "Oracle",
    "family_spec",
    "known_families",
    "make_family",
    "register_family",
]


class Metric(NamedTuple):
    """A metric reported besides the family objective, on the final learner.

    ``fn(pred, batch)`` maps predictions ``[..., n, out]`` and the (stacked) batch they were made
    on to per-sample values ``[..., n]`` (e.g. 0/1 accuracy); runs are scored by their mean.
    """

    fn: Callable[[Tensor, Batch], Tensor]
    higher_is_better: bool = False


@dataclass(frozen=True)
class Oracle:
    """The benchmark's oracle: a loss that sees what no real loss can (e.g. which samples are
    clean), as an upper bound. ``view`` turns tasks into what the oracle trains on."""

    name: str
    loss: Callable[[], PerSampleLoss]
    view: Callable[[Task], Task]


@dataclass(frozen=True)
class FamilySpec:
    """Everything the system asks about a task family.

    Attributes:
        name: the ``task.family`` value.
        config: the family's option class (a :class:`~metaloss.config.TaskConfig` subclass).
        factory: ``factory(config) -> family`` (a :class:`~metaloss.tasks.base.TaskFamily` for
            supervised families).
        kind: the kind of loss its learned losses are (``regression``, ``classification``, …).
        metric: how reports name the family objective (e.g. ``"test MSE"``).
        higher_is_better: direction of the metric (``False``: an error).
        zoo_loss: the zoo loss ``metaloss benchmark`` uses when none is given.
        oracle: the benchmark's oracle, if the family can give one.
        metrics: ``metrics(family) -> {name: Metric}`` reported besides the objective.
        problem: ``problem(config) -> MetaProblem`` for families not trained through a
            differentiable unroll (``None``: the supervised problem).
        baselines: hand-designed losses the family brings, by name (``(pred, target, **params)
            -> per-sample loss``; e.g. quantile regression's pinball loss), usable in
            ``benchmark.baselines`` and ``metaloss tune`` like the general ones.
    """

    name: str
    config: type[TaskConfig]
    factory: Callable[[Any], Any]
    kind: str
    metric: str = "test objective"
    higher_is_better: bool = False
    zoo_loss: str | None = None
    oracle: Oracle | None = None
    metrics: Callable[[Any], dict[str, Metric]] | None = None
    problem: Callable[[RunConfig], MetaProblem] | None = None
    baselines: Mapping[str, Callable[..., Tensor]] = field(default_factory=dict)


FAMILIES: dict[str, FamilySpec] = {}


def register_family(spec: FamilySpec) -> FamilySpec:
    """Register ``spec``: ``task.family: spec.name`` parses into ``spec.config`` and builds
    ``spec.factory(config)``. Registering a name again replaces it."""
    default = getattr(spec.config, "__dataclass_fields__", {}).get("family")
    if default is None or default.default != spec.name:
        raise TypeError(  # a bug in the family's file, not a user error
            f"register_family: {spec.config.__name__} must declare "
            f'family: str = setting("{spec.name}", ...)'
        )
    register_task_config(spec.name)(spec.config)
    FAMILIES[spec.name] = spec
    return spec


def known_families() -> list[str]:
    """The registered family names, sorted."""
    return sorted(FAMILIES)


def family_spec(name: str) -> FamilySpec:
    """The spec of family ``name``; a :class:`ConfigError` naming ``task.family`` if unknown."""
    if name not in FAMILIES:
        raise ConfigError(
            f"task.family: expected one of {', '.join(known_families())}, got {name!r}"
        )
    return FAMILIES[name]


def make_family(config: TaskConfig) -> Any:
    """The task family described by ``config``."""
    return family_spec(config.family).factory(config)
