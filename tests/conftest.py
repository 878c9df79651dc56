"""Shared fixtures: small float64 meta-learning problems on the sine family."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from _configs import merged

from metaloss.config import RunConfig, parse
from metaloss.learners import init_params, make_learner
from metaloss.losses import LearnedLoss
from metaloss.tasks import Split, Task, make_family
from metaloss.tasks.base import cast_task

torch.set_num_threads(1)  # small ops; avoids oversubscribing CI's two cores


@dataclass
class Problem:
    config: RunConfig
    learner: torch.nn.Module
    loss: LearnedLoss
    tasks: Task
    inits: dict[str, torch.Tensor]


def make_problem(tasks: int = 3, **sections: dict) -> Problem:
    """A float64 sine problem with a tanh learner (smooth, for finite differences)."""
    data = {
        "dtype": "float64",
        "learner": {"hidden": (8, 8), "activation": "tanh"},
        "loss": {"hidden": (8,)},
    }
    config = parse(merged(data, **sections))
    family = make_family(config.task)
    generator = torch.Generator().manual_seed(0)
    learner = make_learner(config.learner, 1, 1).double()
    loss = LearnedLoss.from_config(config.loss, generator=generator).double()
    stacked = cast_task(family.tasks(Split.META_TRAIN, tasks), torch.float64)
    return Problem(
        config, learner, loss, stacked, init_params(learner, tasks, generator, torch.float64)
    )


@pytest.fixture
def problem() -> Problem:
    return make_problem()
