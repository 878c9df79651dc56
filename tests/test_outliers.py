"""The outlier-regression family, the diabetes transfer family and the batch-scale features."""

from __future__ import annotations

import pytest
import torch
from torch.func import vmap

from metaloss.config import ConfigError, parse
from metaloss.losses import LearnedLoss
from metaloss.losses.scale import (
    outlier_fraction,
    residual_scale,
    scaled_residual,
    target_scale,
    target_scaled_residual,
)
from metaloss.tasks import Split, make_family


def outliers(**task: object):
    return make_family(parse({"task": {"family": "outliers", **task}}).task)


@pytest.mark.parametrize("epsilon", [0.0, 0.1, 0.25, 0.4])
def test_injection_rate_is_exactly_what_the_config_claims(epsilon: float) -> None:
    tasks = outliers(epsilon=[epsilon, epsilon], n_train=40).tasks(Split.META_TRAIN, 30)
    dirty = ~tasks.train.extras["clean"]
    assert dirty.shape == (30, 40, 1)
    assert torch.equal(dirty.sum((1, 2)), torch.full((30,), round(epsilon * 40)))
    # Clean samples keep the small Gaussian noise only; outliers are moved.
    error = (tasks.train.y - tasks.train.extras["clean_y"]).abs()
    assert float(error[~dirty].max()) < 0.6
    if epsilon:
        assert float(error[dirty].median()) > 1.0


def test_epsilon_is_drawn_per_task_from_its_range() -> None:
    tasks = outliers(epsilon=[0.0, 0.4], n_train=50).tasks(Split.META_TRAIN, 300)
    rates = (~tasks.train.extras["clean"]).double().mean((1, 2))
    assert rates.min() == 0.0 and rates.max() <= 0.4
    assert abs(float(rates.mean()) - 0.2) < 0.03


def test_clean_fraction_is_the_share_of_tasks_without_outliers() -> None:
    tasks = outliers(epsilon=[0.2, 0.4], clean_fraction=0.3, n_train=20)
    contaminated = (~tasks.tasks(Split.META_TRAIN, 400).train.extras["clean"]).sum((1, 2))
    clean_share = float((contaminated == 0).double().mean())
    assert 0.24 < clean_share < 0.36  # 0.3 +- 3 binomial standard deviations (0.023)
    assert bool(((contaminated == 0) | ((contaminated >= 4) & (contaminated <= 8))).all())


def test_meta_objective_and_test_splits_are_clean() -> None:
    tasks = outliers(epsilon=[0.4, 0.4]).tasks(Split.META_TEST, 10)
    for batch in (tasks.outer_valid, tasks.test):
        assert torch.equal(batch.y, batch.extras["clean_y"])
        assert bool(batch.extras["clean"].all())


def test_every_outlier_kind_and_function_works_in_several_dimensions() -> None:
    for kind in ("one_sided", "two_sided", "heavy_tailed"):
        for function in ("linear", "polynomial", "sine", "mlp"):
            family = outliers(
                outliers=[kind], functions=[function], in_features=3, epsilon=[0.5, 0.5]
            )
            task = family.task(Split.META_TRAIN, 1)
            assert task.train.x.shape == (32, 3) and family.in_features == 3
            assert torch.isfinite(task.train.y).all()
            assert 0.2 < float(task.test.y.std()) < 4.0
    one_sided = outliers(outliers=["one_sided"], epsilon=[0.5, 0.5]).task(Split.META_TRAIN, 0).train
    shift = (one_sided.y - one_sided.extras["clean_y"])[~one_sided.extras["clean"]]
    assert bool((shift > 0).all()) or bool((shift < 0).all())


def test_tasks_are_deterministic() -> None:
    a, b = outliers().task(Split.META_TEST, 7), outliers().task(Split.META_TEST, 7)
    assert torch.equal(a.train.y, b.train.y) and torch.equal(
        a.train.extras["clean"], b.train.extras["clean"]
    )


def test_bad_settings_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"task\.epsilon"):
        parse({"task": {"family": "outliers", "epsilon": [0.1, 1.5]}})
    with pytest.raises(ConfigError, match="epsilon: expected low <= high"):
        parse({"task": {"family": "outliers", "epsilon": [0.3, 0.1]}})
    with pytest.raises(ConfigError, match=r"task\.functions"):
        parse({"task": {"family": "outliers", "functions": ["cubic"]}})


def test_diabetes_meta_test_rows_never_appear_in_selection_tasks() -> None:
    family = make_family(parse({"task": {"family": "diabetes"}}).task)
    test = family.task(Split.META_TEST, 0)
    held = {tuple(row.tolist()) for row in test.test.x}
    assert len(held) == 142 and test.train.x.shape == (100, 10)
    for i in range(5):
        task = family.task(Split.META_TRAIN, i)
        seen = {tuple(r.tolist()) for b in (task.train, task.outer_valid, task.test) for r in b.x}
        assert not seen & held
    assert int((~test.train.extras["clean"]).sum()) == 20  # epsilon = 0.2 of 100 rows


def test_residual_scale_is_per_batch_under_vmap_and_detached() -> None:
    pred = torch.tensor([[[0.0], [1.0], [3.0]], [[0.0], [10.0], [30.0]]], requires_grad=True)
    target = torch.zeros(2, 3, 1)
    scale = vmap(residual_scale)(pred, target)
    assert torch.equal(scale[:, 0, 0], torch.tensor([1.0, 10.0]))
    assert not scale.requires_grad
    torch.testing.assert_close(vmap(scaled_residual)(pred, target)[1, 2, 0], torch.tensor(3.0))


def test_a_loss_with_scale_features_is_zero_at_the_target() -> None:
    loss = LearnedLoss(
        ("residual", "abs_residual", "residual_scale", "scaled_residual"), output="square"
    )
    target = torch.randn(16, 1)
    with torch.no_grad():
        assert float(loss(target, target, reduction="none").abs().max()) == 0.0
        assert torch.isfinite(loss(target + torch.randn(16, 1), target))


def test_target_scale_is_the_targets_median_absolute_deviation_and_ignores_pred() -> None:
    target = torch.tensor(
        [[[1.0], [2.0], [4.0], [8.0], [100.0]], [[0.0], [0.0], [1.0], [3.0], [3.0]]]
    )
    pred = torch.randn(2, 5, 1, requires_grad=True)
    scale = vmap(target_scale)(pred, target)
    # medians 4 and 1; absolute deviations [3, 2, 0, 4, 96] and [1, 1, 0, 2, 2] -> MADs 3 and 1
    assert torch.equal(scale[:, 0, 0], torch.tensor([3.0, 1.0]))
    assert not scale.requires_grad
    torch.testing.assert_close(vmap(target_scale)(pred.detach() * 10, target), scale)
    scaled = vmap(target_scaled_residual)(pred, target)
    torch.testing.assert_close(scaled, (pred - target) / (scale + 1e-6))


def test_regression_weight_form_is_weighted_least_squares() -> None:
    loss = LearnedLoss(
        ("abs_scaled_residual", "abs_target_scaled_residual"),
        hidden=(8,),
        output="sigmoid",
        form="weight",
        reduction="none",
    )
    target = torch.randn(12, 1)
    pred = (target + torch.randn(12, 1)).requires_grad_()
    features = torch.cat(
        [
            (pred - target).abs() / (residual_scale(pred, target) + 1e-6),
            target_scaled_residual(pred, target).abs(),
        ],
        dim=-1,
    ).detach()
    weights = torch.sigmoid(loss.net(features))
    torch.testing.assert_close(loss(pred, target), weights * (pred - target) ** 2)
    (grad,) = torch.autograd.grad(loss(pred, target).sum(), pred)
    # the weight is not differentiated: the gradient is IRLS's 2 w r
    torch.testing.assert_close(grad, 2 * weights.detach() * (pred - target).detach())
    with torch.no_grad():
        assert float(loss(target, target).abs().max()) == 0.0
    with pytest.raises(ValueError, match=r"form: 'weight'.*'policy'"):
        LearnedLoss(("ratio_m1",), form="weight", kind="policy")


def test_outlier_fraction_counts_residuals_beyond_three_scales() -> None:
    residuals = torch.tensor([0.1, -0.2, 0.3, -0.1, 0.2, 5.0, -7.0, 0.15]).unsqueeze(-1)
    fraction = outlier_fraction(residuals, torch.zeros_like(residuals))
    assert fraction.shape == residuals.shape
    assert float(fraction[0]) == 2 / 8


def test_log_meta_objective_is_the_log_of_each_tasks_objective() -> None:
    from metaloss.outer.trainer import MetaTrainer

    data = {
        "task": {"family": "outliers", "n_train": 8, "n_outer_valid": 8, "n_test": 8},
        "learner": {"hidden": [4]},
        "inner": {"steps": 2},
        "loss": {"hidden": [4]},
    }
    plain, logged = (
        MetaTrainer(parse({**data, "outer": {"objective_transform": t}})) for t in ("none", "log")
    )
    batch = plain.problem.sample(plain.generator)
    params = {k: v.detach() for k, v in plain.loss.named_parameters()}
    with torch.no_grad():
        value = plain.problem.objective(plain.loss, batch)(params, None)
        got = logged.problem.objective(logged.loss, batch)(params, None)
        torch.testing.assert_close(got, value.log())
