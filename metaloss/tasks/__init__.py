"""Task families: each samples tasks with separate train / outer_valid / test splits.

Each family lives in its own module and registers its :class:`~metaloss.tasks.registry.FamilySpec`
there; importing this package imports those modules (and nothing outside ``tasks/``).
"""

from metaloss.tasks import (  # noqa: F401  (imported to register their families)
    classification,
    classification_data,
    classification_mix,
    learn2learn_adapter,
    macrodata,
    multitask,
    outliers,
    quantile,
    sine,
    tabular,
)
from metaloss.tasks.base import (
    Batch,
    Split,
    Task,
    TaskFamily,
    stack_tasks,
    task_generator,
    unstack_task,
)
from metaloss.tasks.registry import (
    FAMILIES,
    FamilySpec,
    Metric,
    Oracle,
    family_spec,
    known_families,
    make_family,
    register_family,
)
from metaloss.tasks.sine import SineConfig, SineFamily

__all__ = [
    "FAMILIES",
    "Batch",
    "FamilySpec",
    "Metric",
    "Oracle",
    "SineConfig",
    "SineFamily",
    "Split",
    "Task",
    "TaskFamily",
    "family_spec",
    "known_families",
    "make_family",
    "register_family",
    "stack_tasks",
    "task_generator",
    "unstack_task",
]
