"""The broad regression family (noisy, skewed, censored, heteroscedastic legitimate targets) and
the residual-distribution scale features meant for losses that transfer to real data."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import vmap

from metaloss.config import ConfigError, parse
from metaloss.losses.scale import (
    fit_progress,
    log_tail_scaled_residual,
    mad_scaled_residual,
    residual_skewness,
    residual_tail_ratio,
    spread_scales,
)
from metaloss.tasks import Split, make_family
from metaloss.tasks.regression_mix import (
    RegressionMixConfig,
    RegressionMixFamily,
    _TaskModel,
    tobit_mean,
)


def family(**task: object) -> RegressionMixFamily:
    return make_family(parse({"task": {"family": "regression_mix", **task}}).task)  # type: ignore[return-value]


def test_meta_batches_share_a_training_size_drawn_from_the_choices() -> None:
    f = family(n_train=[8, 24])
    g = torch.Generator().manual_seed(0)
    sizes = {f.sample(Split.META_TRAIN, 3, g).train.x.shape[1] for _ in range(20)}
    assert sizes == {8, 24}
    assert f.tasks(Split.META_VALID, 2).train.x.shape == (2, 8, 6)  # fixed sets: the first size
    again = f.sample(Split.META_TRAIN, 3, torch.Generator().manual_seed(5)).train.y
    assert torch.equal(
        again, f.sample(Split.META_TRAIN, 3, torch.Generator().manual_seed(5)).train.y
    )


@pytest.mark.parametrize("epsilon", [0.0, 0.25])
def test_outliers_are_exactly_epsilon_of_the_training_targets(epsilon: float) -> None:
    tasks = family(epsilon=[epsilon, epsilon], clean_fraction=0.0, n_train=[40]).tasks(
        Split.META_TRAIN, 20
    )
    dirty = ~tasks.train.extras["clean"]
    assert torch.equal(dirty.sum((1, 2)), torch.full((20,), round(epsilon * 40)))
    clean = tasks.train.extras["clean"]
    assert torch.equal(tasks.train.y[clean], tasks.train.extras["clean_y"][clean])
    for batch in (tasks.outer_valid, tasks.test):
        assert bool(batch.extras["clean"].all()) and bool(torch.isfinite(batch.y).all())


@pytest.mark.parametrize("kind", ["gaussian", "student_t", "skewed", "censored"])
def test_the_clean_targets_are_the_conditional_mean_of_the_noisy_ones(kind: str) -> None:
    """Averaged over many noise draws at the same inputs, the noisy targets equal the targets
    the meta-objective scores against (the noise is data, its mean is the clean function)."""
    config = RegressionMixConfig(noise_kinds=(kind,), noise=(0.5, 0.5))
    model = _TaskModel(config, torch.Generator().manual_seed(3))
    x = model.inputs(16, torch.Generator().manual_seed(4))
    g = torch.Generator().manual_seed(5)
    draws = torch.stack([model.sample(x, g)[0] for _ in range(4000)])
    _, mean = model.sample(x, g)
    standard_error = draws.std(0) / math.sqrt(draws.shape[0])
    assert bool(((draws.mean(0) - mean).abs() <= 6 * standard_error + 1e-4).all())


def test_tobit_mean_matches_simulation() -> None:
    g = torch.Generator().manual_seed(0)
    mean, std, floor = torch.tensor([-1.0, 0.0, 2.0]), torch.tensor([1.0, 0.5, 2.0]), 0.3
    z = torch.randn(200_000, 3, generator=g)
    simulated = (mean + std * z).clamp_min(floor).mean(0)
    torch.testing.assert_close(tobit_mean(mean, std, floor), simulated, atol=0.01, rtol=0.0)


def test_censored_tasks_pile_targets_on_a_floor() -> None:
    f = family(noise_kinds=["censored"], epsilon=[0, 0], n_train=[200], noise=[1.0, 1.0])
    y = f.task(Split.META_TRAIN, 0).train.y.squeeze(-1)
    floor_share = float((y == y.min()).double().mean())
    assert 0.1 < floor_share < 0.8


def test_bad_ranges_name_the_field() -> None:
    with pytest.raises(ConfigError, match="noise: expected low <= high"):
        parse({"task": {"family": "regression_mix", "noise": [2.0, 1.0]}})
    with pytest.raises(ConfigError, match="n_train"):
        parse({"task": {"family": "regression_mix", "n_train": [1]}})


# ------------------------------------------------------------------------------ features


def test_spread_scales_estimate_a_gaussian_std_and_tail_features_see_heavy_tails() -> None:
    g = torch.Generator().manual_seed(0)
    r = 2.0 * torch.randn(20_000, 1, generator=g)
    zero = torch.zeros_like(r)
    centre, s50, s90 = spread_scales(r)
    assert abs(float(centre)) < 0.05 and abs(float(s50) - 2) < 0.05 and abs(float(s90) - 2) < 0.05
    assert abs(float(residual_tail_ratio(r, zero)[0])) < 0.05
    cauchy = torch.tan(math.pi * (torch.rand(20_000, 1, generator=g) - 0.5))
    assert float(residual_tail_ratio(cauchy, zero)[0]) > 0.5
    lognormal = torch.randn(20_000, 1, generator=g).exp()
    assert float(residual_skewness(lognormal, zero)[0]) > 0.3
    assert float(residual_skewness(-lognormal, zero)[0]) < -0.3


def test_residual_scale_features_are_per_task_detached_and_bounded() -> None:
    g = torch.Generator().manual_seed(1)
    pred = torch.randn(3, 50, 1, generator=g) * torch.tensor([1.0, 10.0, 100.0]).view(3, 1, 1)
    target = torch.zeros_like(pred)
    pred.requires_grad_(True)
    per_task = vmap(log_tail_scaled_residual)(pred, target)
    alone = torch.stack([log_tail_scaled_residual(pred[i], target[i]) for i in range(3)])
    torch.testing.assert_close(per_task, alone)
    # the scale is fixed within a step (IRLS): only the residual itself carries a gradient
    (grad,) = torch.autograd.grad(mad_scaled_residual(pred[0], target[0]).sum(), pred)
    _, s50, _ = spread_scales(pred[0])
    torch.testing.assert_close(grad[0], torch.full_like(grad[0], 1 / float(s50)))
    # scale invariance: the same residuals in other units give the same features
    torch.testing.assert_close(
        mad_scaled_residual(pred[0] * 1000, target[0]), mad_scaled_residual(pred[0], target[0])
    )
    # zero-inflated residuals: the MAD is 0, the feature stays finite and clipped
    z = torch.zeros(100, 1)
    z[:5] = 3.0
    assert float(mad_scaled_residual(z, torch.zeros_like(z)).max()) == 50.0
    assert bool(torch.isfinite(log_tail_scaled_residual(z, torch.zeros_like(z))).all())


def test_fit_progress_falls_as_the_prediction_approaches_the_target() -> None:
    g = torch.Generator().manual_seed(2)
    target = torch.randn(200, 1, generator=g)
    noise = torch.randn(200, 1, generator=g)
    values = [float(fit_progress(target + a * noise, target)[0]) for a in (1.0, 0.1, 0.01)]
    assert values[0] > values[1] > values[2]
    constant = torch.zeros_like(target)
    assert abs(float(fit_progress(constant, target)[0])) < 1e-6
