"""Inner loops train through a loss's gradient form: the same gradients (first and second order,
to the bit), and the loss network evaluated once per inner step instead of twice."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor

from metaloss import MetaTrainer, parse
from metaloss.evaluation.meta_test import eval_set, run_loss
from metaloss.losses import LearnedLoss
from metaloss.losses.module import gradient_fn
from metaloss.tasks import Split

SINE: dict[str, Any] = {
    "inner": {"steps": 3},
    "learner": {"hidden": (8,)},
    "loss": {"hidden": (6,)},
    "outer": {"meta_batch": 2, "val_tasks": 2, "prefetch": False},
    "task": {"family": "sine", "n_train": 5, "n_outer_valid": 4, "n_test": 3},
}


def _regression_loss(**settings: Any) -> LearnedLoss:
    torch.manual_seed(0)
    return LearnedLoss(hidden=(6,), kind="regression", **settings)


def _gradients(fn: Any, pred: Tensor, target: Tensor, loss: LearnedLoss) -> list[Tensor]:
    """The gradient w.r.t. ``pred`` and, through it, a second-order gradient w.r.t. the loss's
    parameters (as a meta-gradient flows through an inner step)."""
    leaf = pred.detach().requires_grad_()
    (grad_pred,) = torch.autograd.grad(fn(leaf, target).mean(), leaf, create_graph=True)
    second = torch.autograd.grad(
        (grad_pred * torch.linspace(-1, 1, pred.numel()).view_as(pred)).sum(),
        list(loss.parameters()),
    )
    return [grad_pred.detach(), *second]


def test_the_gradient_form_drops_only_the_constant_zero_at_target_term() -> None:
    loss = _regression_loss()
    assert loss.zero_at_target
    target = torch.randn(7, 1, generator=torch.Generator().manual_seed(1))
    one, other = torch.randn(2, 7, 1, generator=torch.Generator().manual_seed(2))
    shift_one = loss.per_sample(one, target) - loss.per_sample_for_gradient(one, target)
    shift_other = loss.per_sample(other, target) - loss.per_sample_for_gradient(other, target)
    torch.testing.assert_close(shift_one, shift_other)  # a term that does not depend on pred
    assert float(shift_one.detach().abs().max()) > 0  # the loss at a perfect prediction
    torch.testing.assert_close(loss.per_sample(target, target), torch.zeros_like(shift_one))


@pytest.mark.parametrize("settings", [{}, {"form": "weight"}, {"zero_at_target": False}])
def test_the_gradient_form_gives_the_same_gradients_to_the_bit(settings: dict[str, Any]) -> None:
    loss = _regression_loss(**settings)
    pred, target = torch.randn(2, 9, 1, generator=torch.Generator().manual_seed(3))
    full = _gradients(loss.per_sample, pred, target, loss)
    form = _gradients(loss.per_sample_for_gradient, pred, target, loss)
    assert all(torch.equal(a, b) for a, b in zip(full, form, strict=True))


def test_classification_and_plain_functions_are_their_own_gradient_form() -> None:
    torch.manual_seed(0)
    loss = LearnedLoss(features=("label_prob", "margin"), hidden=(4,), kind="classification")
    logits, labels = torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    assert torch.equal(
        loss.per_sample_for_gradient(logits, labels), loss.per_sample(logits, labels)
    )

    def mse(pred: Tensor, target: Tensor) -> Tensor:
        return (pred - target) ** 2

    assert gradient_fn(mse) is mse
    assert gradient_fn(loss) == loss.per_sample_for_gradient


def _count_network_calls(loss: LearnedLoss) -> list[int]:
    calls = [0]

    def count(*_: Any) -> None:
        calls[0] += 1

    loss.net.register_forward_hook(count)
    return calls


@pytest.mark.parametrize("backend", ["bmm", "func", "higher"])
def test_meta_training_evaluates_the_loss_network_once_per_inner_step(backend: str) -> None:
    config = parse({**SINE, "inner": {**SINE["inner"], "backend": backend}})
    trainer = MetaTrainer(config)
    calls = _count_network_calls(trainer.loss)
    trainer.meta_step()
    per_call = 1 if backend != "higher" else config.outer.meta_batch  # higher loops over tasks
    assert calls[0] == config.inner.steps * per_call


def test_evaluation_trains_each_learner_with_one_loss_evaluation_per_step() -> None:
    config = parse(SINE)
    trainer = MetaTrainer(config)
    calls = _count_network_calls(trainer.loss)
    data = eval_set(trainer.problem.family, config, Split.META_TEST, tasks=3)
    run_loss("learned", trainer.loss, trainer.problem.family, config, data, config.inner.lr)
    assert calls[0] == config.inner.steps
