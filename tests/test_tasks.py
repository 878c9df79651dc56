"""Task families: deterministic, with disjoint splits and separate data streams."""

from __future__ import annotations

import math

import torch

from metaloss.config import parse
from metaloss.tasks import Split, make_family, task_generator


def test_tasks_are_deterministic_and_splits_draw_from_disjoint_seeds() -> None:
    family = make_family(parse({}).task)
    a, b = family.task(Split.META_TEST, 3), family.task(Split.META_TEST, 3)
    torch.testing.assert_close(a.test.x, b.test.x)
    seeds = {
        split: {task_generator(split, i).initial_seed() for i in (0, 1, 2**30 - 1)}
        for split in Split
    }
    assert not (seeds[Split.META_TRAIN] & seeds[Split.META_TEST])
    assert not (seeds[Split.META_VALID] & seeds[Split.META_TEST])
    train, test = family.task(Split.META_TRAIN, 3), family.task(Split.META_TEST, 3)
    assert not torch.equal(train.train.x, test.train.x)


def test_sine_tasks_follow_the_ml3_distribution() -> None:
    family = make_family(parse({}).task)
    tasks = family.tasks(Split.META_TRAIN, 200)
    x = torch.cat([tasks.train.x, tasks.outer_valid.x, tasks.test.x], 1)
    assert x.min() >= -5 and x.max() <= 5
    amplitude = tasks.test.y.abs().amax((1, 2))
    assert amplitude.max() <= 5 and amplitude.min() >= 0
    assert tasks.train.x.shape == (200, 10, 1) and tasks.test.x.shape == (200, 100, 1)
    # The three splits of a task are separate draws.
    assert not torch.equal(tasks.train.x[:, :10], tasks.outer_valid.x[:, :10])
    assert math.isclose(
        float(tasks.test.y.pow(2).mean()), (5**3 - 0.1**3) / (3 * 4.9) / 2, rel_tol=0.1
    )  # E[A²]/2
