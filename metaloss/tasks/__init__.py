"""Task families: each samples tasks with separate train / outer_valid / test splits."""

from __future__ import annotations

from collections.abc import Callable

from metaloss.config import TaskConfig
from metaloss.tasks.base import Batch, Split, Task, TaskFamily, stack_tasks, task_generator, unstack_task
from metaloss.tasks.sine import SineConfig, SineFamily

__all__ = [
    "FAMILIES",
    "Batch",
    "SineConfig",
    "SineFamily",
    "Split",
    "Task",
    "TaskFamily",
    "make_family",
    "register_family",
    "stack_tasks",
    "task_generator",
    "unstack_task",
]

FAMILIES: dict[str, Callable[[TaskConfig], TaskFamily]] = {"sine": SineFamily}  # type: ignore[dict-item]


def register_family(name: str, factory: Callable[[TaskConfig], TaskFamily]) -> None:
    """Make ``task.family: name`` build ``factory(config)``."""
    FAMILIES[name] = factory


def make_family(config: TaskConfig) -> TaskFamily:
    """The task family described by ``config``."""
    return FAMILIES[config.family](config)


from metaloss.tasks import classification as _classification, learn2learn_adapter as _l2l  # noqa: E402, F401  (digits, gaussian_mixture, learn2learn)
from metaloss.tasks import outliers as _outliers  # noqa: E402, F401  (registers the family)
from metaloss.tasks import tabular as _tabular  # noqa: E402, F401  (registers diabetes)
from metaloss.rl import config as _rl_config  # noqa: E402, F401  (cartpole, acrobot task options)
from metaloss.tasks import multitask as _multitask  # noqa: E402, F401  (registers the multi-task family)
