"""Multi-task evaluation: per-head test errors, single-task references and Δm.

Δm (Maninis et al., CVPR 2019; Vandenhende et al., TPAMI 2021) is the mean relative change of
each head's test error against a single-task model of that head, in percent (lower is better;
negative: multi-task training helps):

    Δm = 100 / T * sum_t (E_t(multi) - E_t(single)) / E_t(single)

The single-task model of head t is the same learner trained on the same problem with every
other head marked absent (:func:`metaloss.tasks.multitask.only_head`), with its own learning
rate selected on meta-train tasks like every contender's. Errors are squared error for a
regression head and 0/1 error for a classification head.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from metaloss.evaluation.benchmark import BASELINE_VIEWS, TASK_VIEWS, Contender, TaskView
from metaloss.losses.multitask import equal_weights
from metaloss.tasks.base import Batch, Task
from metaloss.tasks.multitask import ABSENT, head_metrics, only_head, standardise_targets

__all__ = ["active_heads", "delta_m", "head_metrics", "single_task_contenders", "single_task_view"]


BASELINE_VIEWS["equal_weights_standardised"] = standardise_targets
TASK_VIEWS["standardise_targets"] = TaskView(standardise_targets, frozenset({"multitask"}))


def single_task_view(head: int) -> Callable[[Task], Task]:
    """The view of (stacked) problems in which only ``head`` is present."""

    def view(tasks: Task) -> Task:
        def keep(batch: Batch) -> Batch:
            return batch._replace(y=only_head(batch.y, head))

        return Task(keep(tasks.train), keep(tasks.outer_valid), keep(tasks.test))

    return view


def single_task_contenders(heads: int) -> list[Contender]:
    """One contender per head slot: equal weights on the single-task view of that head."""
    return [
        Contender(
            f"single-task head {t}", "baseline", lambda: equal_weights, view=single_task_view(t)
        )
        for t in range(heads)
    ]


def delta_m(multi: Tensor, single: Tensor, active: Tensor) -> Tensor:
    """Δm (%) per problem from per-head errors ``[problems, M]`` and the mask of present heads.

    Example:
        >>> delta_m(torch.tensor([[2.0, 1.0]]), torch.tensor([[1.0, 2.0]]), torch.ones(1, 2))
        tensor([25.])
    """
    mask = active.to(multi.dtype)
    relative = torch.where(
        mask > 0, (multi - single) / torch.where(mask > 0, single, torch.ones_like(single)), 0.0
    )
    return 100.0 * (relative * mask).sum(-1) / mask.sum(-1).clamp_min(1.0)


def active_heads(tasks: Task) -> Tensor:
    """Which head slots each (stacked) problem has, ``[problems, M]`` (from its test targets)."""
    y = tasks.test.y
    heads = y.shape[-1] // 3
    return y[..., 0, heads : 2 * heads].round() != ABSENT
