"""The quantile-regression family (the one-file example of a new family): the pinball loss has
the quantile as its minimiser, the family plugs into configs, baselines and the benchmark, and
a short meta-training learns a loss that beats MSE on the pinball objective."""

from __future__ import annotations

import torch

from metaloss.config import parse
from metaloss.evaluation.benchmark import contenders_from_config
from metaloss.evaluation.meta_test import eval_set, run_loss
from metaloss.losses import baseline
from metaloss.outer import MetaTrainer
from metaloss.tasks import Split, family_spec, make_family
from metaloss.tasks.quantile import QuantileConfig, QuantileFamily, pinball


def test_pinball_is_minimised_by_the_quantile() -> None:
    y = torch.randn(2001, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    grid = torch.linspace(-3, 3, 6001, dtype=torch.float64)
    for tau in (0.1, 0.5, 0.9):
        risk = pinball(grid[:, None], y[None, :], tau).mean(1)
        best = float(grid[int(risk.argmin())])
        assert abs(best - float(torch.quantile(y, tau))) < 2e-3


def test_the_family_is_registered_with_its_baseline_and_objective() -> None:
    spec = family_spec("quantile")
    assert spec.kind == "regression" and "pinball" in spec.baselines
    family = make_family(QuantileConfig(tau=0.75))
    assert isinstance(family, QuantileFamily)
    task = family.task(Split.META_TEST, 3)
    pred = torch.zeros_like(task.test.y)
    torch.testing.assert_close(
        family.objective(pred, task.test.y), pinball(pred, task.test.y, 0.75).squeeze(-1)
    )
    # its extras hold the true conditional quantile: on many noisy draws about tau lie below it
    below = (task.test.y <= task.test.extras["clean_y"]).double().mean()
    assert 0.6 < float(below) < 0.9
    torch.testing.assert_close(
        baseline("pinball", tau=0.75)(pred, task.test.y), pinball(pred, task.test.y, 0.75)
    )
    config = parse(
        {
            "task": {"family": "quantile"},
            "benchmark": {"baselines": [{"name": "pinball", "param": "tau", "values": [0.9]}]},
        }
    )
    assert [c.name for c in contenders_from_config(config, {})] == ["pinball"]


def test_meta_training_learns_a_loss_that_beats_mse_on_the_pinball_objective() -> None:
    config = parse(
        {
            "task": {
                "family": "quantile",
                "tau": 0.9,
                "n_train": 32,
                "n_outer_valid": 32,
                "n_test": 64,
            },
            "learner": {"hidden": [16]},
            "loss": {"features": ["residual", "abs_residual"], "hidden": [8]},
            "inner": {"steps": 10, "lr": 0.03, "optimizer": "adam"},
            "outer": {"steps": 40, "meta_batch": 8, "val_every": 20, "val_tasks": 8, "lr": 0.01},
        }
    )
    result = MetaTrainer(config).train()
    family = make_family(config.task)
    data = eval_set(family, config, Split.META_TEST, 32)
    learned = run_loss("learned", result.loss.per_sample, family, config, data, 0.03).final
    mse = run_loss("mse", baseline("mse"), family, config, data, 0.03).final
    assert float((learned - mse).mean()) < 0
    assert float((learned < mse).double().mean()) > 0.5
