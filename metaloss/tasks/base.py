"""The task interface: a family samples tasks; a task carries separate data splits.

Following google/learned_optimization, every task keeps its data streams apart: ``train`` is the
only split the inner loop sees, ``outer_valid`` is the only split the meta-objective sees, and
``test`` is read only by meta-testing. Tasks are identified by ``(split, index)``: each split owns
a disjoint range of generator seeds, so meta-train, meta-validation and meta-test tasks are
disjoint by construction, and the meta-test set is fixed whatever the run's seed.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, Generic, Literal, NamedTuple, TypeVar

import torch
from torch import Tensor

from metaloss.config import TaskConfig

__all__ = [
    "Batch",
    "ConfiguredFamily",
    "Split",
    "Task",
    "TaskFamily",
    "cast_task",
    "stack_tasks",
    "task_generator",
    "tree_map",
    "unstack_task",
]


class Split(enum.Enum):
    """Which set of tasks a task belongs to."""

    META_TRAIN = 0
    META_VALID = 1
    META_TEST = 2


# torch's CPU generator (mt19937) keeps only the low 32 bits of a seed, so the splits share the
# 32-bit seed space: split s owns seeds [s * 2**30, (s + 1) * 2**30).
SPLIT_SIZE = 1 << 30


def task_generator(split: Split, index: int) -> torch.Generator:
    """The generator that draws task ``index`` of ``split``; disjoint seed ranges per split."""
    if not 0 <= index < SPLIT_SIZE:
        raise ValueError(f"task index: expected 0 <= index < 2**30, got {index}")
    return torch.Generator().manual_seed(split.value * SPLIT_SIZE + index)


class Batch(NamedTuple):
    """Inputs ``x``, targets ``y`` and family-specific tensors (e.g. ``clean_y``, ``clean``)."""

    x: Tensor
    y: Tensor
    extras: dict[str, Tensor]


class Task(NamedTuple):
    """One task: three disjoint splits. Stacked tasks carry a leading task dimension."""

    train: Batch
    outer_valid: Batch
    test: Batch


def _stack(items: Sequence[Any]) -> Any:
    first = items[0]
    if isinstance(first, Tensor):
        return torch.stack(list(items))
    if isinstance(first, dict):
        return {k: _stack([it[k] for it in items]) for k in first}
    if isinstance(first, tuple):
        return type(first)(*(_stack([it[i] for it in items]) for i in range(len(first))))
    raise TypeError(f"cannot stack {type(first).__name__}")


def stack_tasks(tasks: Sequence[Task]) -> Task:
    """Stack same-shaped tasks along a new leading dimension (for ``vmap``)."""
    if not tasks:
        raise ValueError("stack_tasks: expected at least one task")
    return _stack(tasks)  # type: ignore[no-any-return]


def tree_map(fn: Callable[[Tensor], Any], tree: Any) -> Any:
    """``tree`` with ``fn`` applied to every tensor leaf; dicts, tuples and named tuples keep
    their structure, other leaves are returned unchanged."""
    if isinstance(tree, Tensor):
        return fn(tree)
    if isinstance(tree, dict):
        return {k: tree_map(fn, v) for k, v in tree.items()}
    if isinstance(tree, tuple):
        items = (tree_map(fn, v) for v in tree)
        return type(tree)(*items) if hasattr(tree, "_fields") else type(tree)(items)
    return tree


def unstack_task(tasks: Task, i: int | slice) -> Task:
    """Task ``i`` (or the tasks of a slice) of a stacked task batch."""
    return tree_map(lambda value: value[i], tasks)  # type: ignore[no-any-return]


class TaskFamily(ABC):
    """A distribution over tasks.

    Subclasses define :meth:`task` (one task from its generator), the learner's input and output
    sizes, and the per-sample ``objective`` used both as the meta-objective and as the test
    metric (clean MSE for regression, cross-entropy for classification).
    """

    kind: Literal["regression", "classification", "multitask"] = "regression"
    in_features: int = 1
    out_features: int = 1

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    @abstractmethod
    def make_task(self, generator: torch.Generator, split: Split) -> Task:
        """Draw one task from ``generator``; ``split`` lets families use disjoint ranges."""

    def task(self, split: Split, index: int) -> Task:
        """Task ``index`` of ``split`` (deterministic)."""
        return self.make_task(task_generator(split, index), split)

    def tasks(self, split: Split, count: int, start: int = 0) -> Task:
        """``count`` consecutive tasks of ``split``, stacked."""
        return stack_tasks([self.task(split, start + i) for i in range(count)])

    def sample(self, split: Split, count: int, generator: torch.Generator) -> Task:
        """``count`` random tasks of ``split`` (indices drawn from ``generator``), stacked."""
        indices = torch.randint(0, SPLIT_SIZE, (count,), generator=generator).tolist()
        return stack_tasks([self.task(split, i) for i in indices])

    @staticmethod
    def objective(pred: Tensor, target: Tensor) -> Tensor:
        """Per-sample meta-objective and test metric (default: squared error)."""
        return (pred - target).pow(2).flatten(1).mean(1) if pred.dim() > 1 else (pred - target) ** 2


C = TypeVar("C", bound=TaskConfig)


class ConfiguredFamily(TaskFamily, Generic[C]):
    """A family made from its ``task`` config section: it keeps it as ``config`` and seeds its
    fixed parameters with ``config.seed``."""

    def __init__(self, config: C) -> None:
        super().__init__(config.seed)
        self.config = config


def cast_task(tasks: Task, dtype: torch.dtype) -> Task:
    """Floating-point tensors of ``tasks`` converted to ``dtype`` (labels stay integers)."""

    def cast(value: Tensor) -> Tensor:
        return value.to(dtype) if value.is_floating_point() else value

    return tree_map(cast, tasks)  # type: ignore[no-any-return]
