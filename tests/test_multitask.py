"""Multi-task family, weightings (equal, uncertainty, learned), Δm, and a tiny meta-training run."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import functional_call, grad

from metaloss.config import ConfigError, parse
from metaloss.evaluation.multitask import active_heads, delta_m, single_task_view
from metaloss.export import load_loss, save_loss
from metaloss.learners import LogVarianceMLP, init_params, make_learner
from metaloss.losses import BASELINES, LossModule
from metaloss.losses.multitask import MultiTaskLoss, equal_weights, uncertainty_weighting
from metaloss.outer.trainer import MetaTrainer
from metaloss.tasks import Split, make_family
from metaloss.tasks.multitask import (
    CLASSIFICATION,
    REGRESSION,
    head_losses,
    only_head,
    standardise_targets,
)

TINY = {
    "task": {
        "family": "multitask",
        "max_heads": 3,
        "heads": [2, 3],
        "n_train": 8,
        "n_outer_valid": 8,
        "n_test": 8,
    },
    "learner": {"hidden": [8], "log_variances": 3},
    "loss": {
        "features": ["log_mean_loss", "loss_trend", "relative_loss", "regression", "log_heads"],
        "hidden": [4],
    },
    "inner": {"steps": 3, "lr": 0.01, "optimizer": "adam"},
    "outer": {"steps": 2, "meta_batch": 2, "val_tasks": 2, "val_every": 1},
}


def _two_heads() -> tuple[torch.Tensor, torch.Tensor]:
    """Two samples, M=2 heads of width W=3: head 0 regression, head 1 classification.

    Predictions: [head0 block (3) | head1 block (3) | s_0, s_1]; targets: [values | kinds | norms].
    """
    s0, s1 = math.log(4.0), math.log(0.25)
    pred = torch.tensor(
        [
            [1.0, 9.0, 9.0, 0.0, 1.0, 2.0, s0, s1],
            [-2.0, 9.0, 9.0, 2.0, 0.0, 0.0, s0, s1],
        ],
        dtype=torch.float64,
    )
    target = torch.tensor(
        [
            [3.0, 2.0, REGRESSION, CLASSIFICATION, 1.0, 1.0],
            [0.0, 0.0, REGRESSION, CLASSIFICATION, 1.0, 1.0],
        ],
        dtype=torch.float64,
    )
    return pred, target


def test_head_losses_by_hand() -> None:
    pred, target = _two_heads()
    losses, kinds = head_losses(pred, target)
    ce0 = -math.log(math.exp(2) / (1 + math.e + math.exp(2)))  # logits (0, 1, 2), label 2
    ce1 = -math.log(math.exp(2) / (math.exp(2) + 2))  # logits (2, 0, 0), label 0
    expected = torch.tensor([[(1 - 3) ** 2, ce0], [(-2 - 0) ** 2, ce1]], dtype=torch.float64)
    torch.testing.assert_close(losses, expected)
    assert kinds.tolist() == [[REGRESSION, CLASSIFICATION]] * 2


def test_uncertainty_weighting_matches_kendall_formula() -> None:
    pred, target = _two_heads()
    losses, _ = head_losses(pred, target)
    sigma0, sigma1 = 2.0, 0.5  # s = log sigma^2 = log 4, log 0.25
    # Kendall et al. (2018): regression L / (2 sigma^2) + log sigma; classification L / sigma^2 + log sigma.
    expected = (
        losses[:, 0] / (2 * sigma0**2)
        + math.log(sigma0)
        + losses[:, 1] / sigma1**2
        + math.log(sigma1)
    )
    torch.testing.assert_close(uncertainty_weighting(pred, target), expected)
    torch.testing.assert_close(equal_weights(pred, target), losses.sum(-1))
    assert BASELINES["uncertainty_weighting"] is uncertainty_weighting


def test_uncertainty_optimum_is_the_head_loss() -> None:
    """d/ds of the regression term vanishes at s = log L (sigma^2 = the head's MSE)."""
    pred, target = _two_heads()
    target[:, 3] = 0.0  # head 1 absent
    mse = float(head_losses(pred, target).losses[:, 0].mean())
    pred = pred.clone()
    pred[:, 6] = math.log(mse)
    pred.requires_grad_(True)
    (g,) = torch.autograd.grad(uncertainty_weighting(pred, target).mean(), pred)
    assert abs(float(g[:, 6].sum())) < 1e-12
    assert float(g[:, 7].abs().sum()) == 0.0  # an absent head's log-variance gets no gradient


def test_learned_weights_by_hand() -> None:
    """A learned loss whose network is log w = -log(mean loss) weights each head by 1/L_t."""
    loss = MultiTaskLoss(("log_mean_loss",), hidden=(), reduction="none").double()
    layer = loss.net[0]
    assert isinstance(layer, torch.nn.Linear)
    with torch.no_grad():
        layer.weight.fill_(-1.0)
        layer.bias.zero_()
    pred, target = _two_heads()
    losses, _ = head_losses(pred, target)
    mean = losses.mean(0)
    weights = loss.weights(pred, target)
    torch.testing.assert_close(weights, (1 / (mean + 1e-8)).expand(2, 2))
    total = loss(pred, target)
    torch.testing.assert_close(total, (losses / (mean + 1e-8)).sum(-1))
    assert float(total.detach().mean()) == pytest.approx(2.0)  # sum over heads of L_t / L_t
    target[:, 3] = 0.0  # head 1 absent: zero weight, one head left
    assert float(loss.weights(pred, target)[:, 1].detach().abs().max()) == 0
    assert float(loss(pred, target).detach().mean()) == pytest.approx(1.0)


def test_delta_m_by_hand() -> None:
    multi = torch.tensor([[2.0, 1.0, 7.0], [1.0, 1.0, 1.0]])
    single = torch.tensor([[1.0, 2.0, 1.0], [1.0, 4.0, 2.0]])
    active = torch.tensor([[True, True, False], [True, True, True]])
    # problem 0: (+100% - 50%) / 2 = 25%; problem 1: (0% - 75% - 50%) / 3 = -41.67%
    torch.testing.assert_close(delta_m(multi, single, active), torch.tensor([25.0, -125.0 / 3]))


def test_delta_m_of_a_problem_with_one_head_ignores_absent_heads() -> None:
    # One present head (-50%); the absent heads' single-task errors are 0 (no such model).
    multi = torch.tensor([[1.0, 3.0, 5.0]])
    single = torch.tensor([[2.0, 0.0, 0.0]])
    active = torch.tensor([[True, False, False]])
    torch.testing.assert_close(delta_m(multi, single, active), torch.tensor([-50.0]))


def test_family_layout_and_single_task_view() -> None:
    config = parse(TINY)
    family = make_family(config.task)
    assert family.kind == "multitask"
    tasks = family.tasks(Split.META_TEST, 6)
    assert tasks.train.y.shape == (6, 8, 9)
    active = active_heads(tasks)
    assert ((active.sum(-1) >= 2) & (active.sum(-1) <= 3)).all()
    again = family.tasks(Split.META_TEST, 6)
    torch.testing.assert_close(again.test.y, tasks.test.y)
    assert not torch.equal(family.tasks(Split.META_TRAIN, 6).train.x, tasks.train.x)
    viewed = single_task_view(1)(tasks)
    kinds = viewed.train.y[..., 3:6]
    assert (kinds[..., [0, 2]] == 0).all() and torch.equal(kinds[..., 1], tasks.train.y[..., 4])
    for split in (viewed.outer_valid, viewed.test):  # selection and scores see one head too
        assert (active_heads(viewed._replace(test=split)).sum(-1) <= 1).all()
        assert (split.y[..., 3:6][..., [0, 2]] == 0).all()
    assert torch.equal(only_head(tasks.test.y, 0)[..., :3], tasks.test.y[..., :3])


def test_standardise_gives_each_problem_the_standardised_view_of_the_same_targets() -> None:
    raw_family = make_family(parse(TINY).task)
    settings = {**TINY, "task": {**TINY["task"], "standardise": True}}  # type: ignore[dict-item]
    family = make_family(parse(settings).task)
    raw, viewed = raw_family.tasks(Split.META_TEST, 6), family.tasks(Split.META_TEST, 6)
    torch.testing.assert_close(viewed.train, standardise_targets(raw).train)
    regression = viewed.train.y[..., 3:6] == REGRESSION
    values = viewed.train.y[..., :3]
    means = values.mean(-2, keepdim=True).expand_as(values)[regression]
    stds = values.std(-2, keepdim=True).expand_as(values)[regression]
    assert regression.any()
    torch.testing.assert_close(means, torch.zeros_like(means), atol=1e-5, rtol=0)
    torch.testing.assert_close(stds, torch.ones_like(stds), atol=1e-5, rtol=0)
    # the objective stays the raw-unit one: a standardised prediction scores like its raw value
    scale = viewed.test.extras["target_scale"]
    mean = raw.test.y[..., :3] - viewed.test.y[..., :3] * scale
    pred = torch.randn(*viewed.test.y.shape[:-1], 3 * 3 + 3)  # 3 heads of width 3, then 3
    raw_pred = pred.clone()
    first = [0, 3, 6]  # a regression head's prediction: the first column of its block
    raw_pred[..., first] = pred[..., first] * scale + mean
    torch.testing.assert_close(
        family.objective(pred, viewed.test.y), raw_family.objective(raw_pred, raw.test.y)
    )


def test_toy_is_two_regression_heads_with_the_given_noise() -> None:
    config = parse({"task": {"family": "multitask", "toy": True, "n_train": 4000, "n_test": 8}})
    family = make_family(config.task)
    task = family.task(Split.META_TEST, 0)
    x, y = task.train.x, task.train.y
    assert (y[:, 8:10] == REGRESSION).all() and (y[:, 10:16] == 0).all()
    for head, sigma in enumerate((10.0, 1.0)):
        w = torch.linalg.lstsq(x, y[:, head : head + 1]).solution
        residual = float((y[:, head : head + 1] - x @ w).std())
        assert residual == pytest.approx(sigma, rel=0.05)


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"task\.heads"):
        parse({"task": {"family": "multitask", "max_heads": 4, "heads": [2, 6]}})
    config = parse({**TINY, "learner": {"hidden": [8]}})  # no log-variance slots
    family = make_family(config.task)
    learner = make_learner(config.learner, family.in_features, family.out_features)
    task = family.task(Split.META_TRAIN, 0)
    with pytest.raises(ValueError, match=r"learner\.log_variances"):
        family.objective(learner(task.train.x), task.train.y)


def test_log_variances_are_learner_parameters_trained_by_the_inner_loop() -> None:
    config = parse(TINY)
    family = make_family(config.task)
    learner = make_learner(config.learner, family.in_features, family.out_features)
    assert isinstance(learner, LogVarianceMLP)
    params = {k: v[0] for k, v in init_params(learner, 1, torch.Generator().manual_seed(0)).items()}
    assert torch.equal(params["log_variances"], torch.zeros(3))
    task = family.task(Split.META_TRAIN, 0)

    def objective(loss_fn):  # type: ignore[no-untyped-def]
        return lambda p: loss_fn(functional_call(learner, p, (task.train.x,)), task.train.y).mean()

    g_unc = grad(objective(uncertainty_weighting))(params)["log_variances"]
    g_eq = grad(objective(equal_weights))(params)["log_variances"]
    active = active_heads(family.tasks(Split.META_TRAIN, 1))[0]
    assert (g_unc[active] != 0).all() and (g_unc[~active] == 0).all()
    assert (g_eq == 0).all()


def test_tiny_meta_training_and_export(tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = parse(TINY)
    trainer = MetaTrainer(config)
    assert isinstance(trainer.loss, MultiTaskLoss) and isinstance(trainer.loss, LossModule)
    result = trainer.train()
    assert len(result.steps) == 2 and result.skipped_steps == 0
    assert math.isfinite(result.best_value)
    assert all(
        r.grad_norm > 0 and math.isfinite(r.grad_norm) for r in result.steps
    )  # meta-gradients flow
    path = save_loss(result.loss, tmp_path / "mt.safetensors")
    loaded = load_loss(path, reduction="none")
    assert isinstance(loaded, MultiTaskLoss)
    task = trainer.problem.family.task(Split.META_TEST, 0)
    pred = trainer.problem.learner(task.test.x)
    torch.testing.assert_close(
        loaded(pred, task.test.y), result.loss(pred, task.test.y, reduction="none")
    )


def test_learned_loss_applies_to_any_number_of_heads() -> None:
    """One network shared by the heads: the same loss runs on M=3 and M=8 layouts, and a head's
    weight does not depend on which slot it is in."""
    loss = MultiTaskLoss(("log_mean_loss", "regression", "classification"), hidden=(4,))
    for heads in (3, 8):
        pred = torch.randn(5, heads * 3 + heads)
        target = torch.zeros(5, 3 * heads)
        target[:, heads : 2 * heads] = REGRESSION
        assert loss(pred, target, reduction="none").shape == (5,)
    pred, target = _two_heads()
    swapped_pred = torch.cat([pred[:, 3:6], pred[:, 0:3], pred[:, [7, 6]]], -1)
    swapped_target = target[:, [1, 0, 3, 2, 5, 4]]
    weights = loss.double().weights(pred, target)
    torch.testing.assert_close(loss.weights(swapped_pred, swapped_target), weights[:, [1, 0]])
