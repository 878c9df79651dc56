"""Task families: each samples tasks with separate train / outer_valid / test splits."""

from __future__ import annotations

from collections.abc import Callable

from metaloss.config import TaskConfig
from metaloss.tasks.base import (
    Batch,
    Split,
    Task,
    TaskFamily,
    stack_tasks,
    task_generator,
    unstack_task,
)
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


# Importing a family's module registers its option class and its factory (the registries above).
# (E402/F401 are ignored for this file in pyproject.toml: these imports are for their effect.)
from metaloss.rl import config as _rl_config  # cartpole, acrobot
from metaloss.tasks import classification as _classification  # digits, gaussian_mixture
from metaloss.tasks import learn2learn_adapter as _learn2learn_adapter  # learn2learn-style sources
from metaloss.tasks import multitask as _multitask
from metaloss.tasks import outliers as _outliers
from metaloss.tasks import regression_mix as _regression_mix  # noisy, skewed, censored targets
from metaloss.tasks import tabular as _tabular  # diabetes
