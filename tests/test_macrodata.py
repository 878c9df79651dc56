"""The macrodata multi-task family (raw units), standardised targets and log-loss weights."""

from __future__ import annotations

import pytest
import torch
from torch.func import grad

from metaloss.config import ConfigError, parse
from metaloss.datasets.macrodata import MACRO_HEADS, load_macrodata
from metaloss.evaluation.benchmark import (
    contenders_from_config,
    rows_from_config,
    run_benchmark,
)
from metaloss.losses import BASELINES
from metaloss.losses.multitask import equal_weights, log_loss_weights
from metaloss.tasks import Split, make_family
from metaloss.tasks.multitask import REGRESSION, head_losses, standardise_targets


def macro(**task: object):  # type: ignore[no-untyped-def]
    return make_family(parse({"task": {"family": "macrodata", **task}}).task)


def test_macrodata_heads_are_next_quarter_quantities_in_raw_units() -> None:
    x, heads = load_macrodata()
    assert x.shape == (201, 24) and heads.shape == (201, len(MACRO_HEADS))
    from statsmodels.datasets import macrodata

    frame = macrodata.load_pandas().data
    gdp = torch.tensor(frame["realgdp"].to_numpy(), dtype=torch.float32)
    torch.testing.assert_close(heads[:, 0], gdp[2:] - gdp[1:-1])
    torch.testing.assert_close(
        heads[:, 3], torch.tensor(frame["unemp"].to_numpy()[2:], dtype=torch.float32)
    )
    scales = heads.std(0)
    assert scales.max() / scales.min() > 10  # units differ by orders of magnitude


def test_problems_draw_heads_and_meta_test_rows_stay_held_out() -> None:
    family = macro(heads=[2, 4])
    tasks = family.tasks(Split.META_TRAIN, 6)
    m = family.heads
    kinds = tasks.train.y[:, 0, m : 2 * m]
    counts = (kinds == REGRESSION).sum(-1)
    assert ((counts >= 2) & (counts <= 4)).all() and counts.unique().numel() > 1
    held = {tuple(r) for r in family.x[family.held].tolist()}
    for split in (Split.META_TRAIN, Split.META_VALID):
        for batch in family.tasks(split, 6):
            assert not {tuple(r) for r in batch.x.flatten(0, 1).tolist()} & held
    test = family.task(Split.META_TEST, 0).test
    assert {tuple(r) for r in test.x.tolist()} == held
    with pytest.raises(ConfigError, match=r"task\.n_train: macrodata has"):
        macro(n_train=140)


def test_standardised_view_keeps_the_normalised_objective_of_raw_predictions() -> None:
    family = macro()
    tasks = family.tasks(Split.META_TEST, 3)
    view = standardise_targets(tasks)
    m = family.heads
    train = view.train.y
    active = train[..., :1, m : 2 * m] == REGRESSION
    torch.testing.assert_close(
        torch.where(active, train[..., :m].mean(-2, keepdim=True), 0.0),
        torch.zeros(3, 1, m),
        atol=1e-4,
        rtol=0,
    )
    z = torch.randn(3, tasks.test.y.shape[1], 2 * m)
    y = tasks.train.y[..., :m]
    mean = torch.where(active, y.mean(-2, keepdim=True), 0.0)
    std = torch.where(active, y.std(-2, keepdim=True), 1.0)
    raw = z.clone()
    raw[..., :m] = z[..., :m] * std + mean
    torch.testing.assert_close(
        family.objective(z, view.test.y), family.objective(raw, tasks.test.y), rtol=1e-4, atol=1e-6
    )


def test_log_loss_weights_divide_each_heads_gradient_by_its_loss() -> None:
    family = macro(heads=[3, 3])
    target = family.task(Split.META_TRAIN, 0).train.y.double()
    pred = torch.zeros(target.shape[0], 2 * family.heads, dtype=torch.float64)
    losses = head_losses(pred, target).losses
    scale = losses.mean(0)

    def log_objective(p: torch.Tensor) -> torch.Tensor:
        mean = head_losses(p, target).losses.mean(0)
        return torch.log(mean[scale > 0]).sum()

    torch.testing.assert_close(
        grad(lambda p: log_loss_weights(p, target).mean())(pred), grad(log_objective)(pred)
    )
    # Multiplying one head's units by 1000 leaves its (relative) pull unchanged.
    scaled = target.clone()
    scaled[:, 0] *= 1000
    g = grad(lambda p: log_loss_weights(p, scaled).mean())(
        pred * torch.tensor([1000.0] + [1.0] * 11, dtype=torch.float64)
    )
    torch.testing.assert_close(
        g[:, 0] * 1000, grad(lambda p: log_loss_weights(p, target).mean())(pred)[:, 0]
    )
    assert BASELINES["equal_weights_standardised"] is equal_weights


def tiny_macro_benchmark(**benchmark: object):  # type: ignore[no-untyped-def]
    """A macrodata benchmark config small enough for the default suite."""
    return parse(
        {
            "task": {"family": "macrodata", "heads": [2, 3]},
            "learner": {"hidden": [8], "log_variances": 6},
            "inner": {"steps": 3, "optimizer": "adam", "lr": 0.01},
            "evaluation": {"test_tasks": 4, "grid_tasks": 2, "lr_grid": [0.01, 0.1]},
            "benchmark": {"oracle": False, **benchmark},
        }
    )


def test_macrodata_benchmark_runs_every_multitask_baseline_end_to_end() -> None:
    names = ("equal_weights", "equal_weights_standardised", "log_loss_weights")
    config = tiny_macro_benchmark(baselines=[{"name": n} for n in names])
    rows = rows_from_config(config)
    contenders = contenders_from_config(config, {}, rows[0].family)
    assert contenders[1].view is standardise_targets and contenders[0].view is None
    result = run_benchmark(rows, contenders)
    scores = {e.name: float(e.score.mean) for e in result.entries}
    assert all(torch.isfinite(torch.tensor(list(scores.values()))))
    # In raw units, 3 Adam steps cannot reach the targets' means; standardised targets can.
    assert scores["equal_weights_standardised"] < scores["equal_weights"]


def test_head_errors_of_standardised_training_are_reported_in_raw_units() -> None:
    from metaloss.evaluation.multitask import head_metrics

    family = macro(heads=[6, 6])
    tasks = family.tasks(Split.META_TEST, 2)
    view = standardise_targets(tasks)
    m = family.heads
    std = tasks.train.y[..., :m].std(-2, keepdim=True)
    mean = tasks.train.y[..., :m].mean(-2, keepdim=True)
    z = torch.randn(2, tasks.test.y.shape[1], 2 * m)
    raw = z.clone()
    raw[..., :m] = z[..., :m] * std + mean
    metrics = head_metrics(family)
    for t in range(m):
        torch.testing.assert_close(
            metrics[f"head{t}"].fn(z, view.test),
            metrics[f"head{t}"].fn(raw, tasks.test),
            rtol=1e-3,
            atol=1e-3,
        )


def test_the_view_of_a_view_still_reports_head_errors_in_raw_units() -> None:
    # task.standardise with the view applied again (benchmark.learned_views or the
    # equal_weights_standardised baseline): the second view's scales are about 1, and the
    # report must still be in the original targets' units, not the first view's.
    from metaloss.evaluation.multitask import head_metrics

    family = macro(heads=[6, 6])
    tasks = family.tasks(Split.META_TEST, 2)
    once, twice = standardise_targets(tasks), standardise_targets(standardise_targets(tasks))
    z = torch.randn(2, tasks.test.y.shape[1], 2 * family.heads)
    metrics = head_metrics(family)
    for t in range(family.heads):
        torch.testing.assert_close(
            metrics[f"head{t}"].fn(z, twice.test),
            metrics[f"head{t}"].fn(z, once.test),
            rtol=1e-4,
            atol=1e-6,
        )


def test_a_learned_loss_under_the_standardised_view_is_scored_like_that_baseline() -> None:
    """``benchmark.learned_views``: a learned loss also enters through the view. Entered as the
    learned loss, equal weights under the view must score exactly as the baseline that has it."""
    config = tiny_macro_benchmark(
        baselines=[{"name": "equal_weights_standardised"}], learned_views=["standardise_targets"]
    )
    rows = rows_from_config(config)
    contenders = contenders_from_config(config, {"mine": equal_weights}, rows[0].family)
    viewed = {c.name: c for c in contenders}["mine (standardise_targets)"]
    assert viewed.role == "learned" and viewed.view is standardise_targets
    result = run_benchmark(rows, contenders)
    scores = {e.name: e.per_task for e in result.entries}
    torch.testing.assert_close(
        scores["mine (standardise_targets)"], scores["equal_weights_standardised"], rtol=0, atol=0
    )
    assert not torch.equal(scores["mine"], scores["mine (standardise_targets)"])


@pytest.mark.parametrize(
    ("family", "view", "message"),
    [
        (
            "macrodata",
            "zscore",
            r"learned_views\[0\]: expected one of standardise_targets, got 'zscore'",
        ),
        (
            "sine",
            "standardise_targets",
            r"learned_views\[0\]: standardise_targets applies to multitask tasks, not to the sine",
        ),
    ],
)
def test_a_learned_view_the_family_cannot_use_is_refused(
    family: str, view: str, message: str
) -> None:
    config = parse(
        {"task": {"family": family}, "benchmark": {"learned_views": [view], "oracle": False}}
    )
    with pytest.raises(ConfigError, match=message):
        contenders_from_config(config, {"mine": equal_weights})
