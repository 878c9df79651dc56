"""The differentiable inner loop: backends, finite differences, vmap, truncation, optimisers."""

from __future__ import annotations

import pytest
import torch
from conftest import Problem, make_problem
from torch.func import functional_call

from metaloss.inner import SGD, Adam, make_backend
from metaloss.inner.optim import clip_by_global_norm
from metaloss.tasks.base import stack_tasks, unstack_task


def meta_gradient(p: Problem, backend: str, backprop_steps: int | None = None) -> torch.Tensor:
    config = p.config.inner.__class__(**{**vars(p.config.inner), "backend": backend})
    engine = make_backend(p.learner, config, lambda pred, y: (pred - y) ** 2)
    out = engine.run(p.loss.per_sample, p.inits, p.tasks, backprop_steps=backprop_steps)
    grads = torch.autograd.grad(out.meta_objective.mean(), list(p.loss.parameters()))
    return torch.cat([g.flatten() for g in grads])


def meta_objective(p: Problem, flat: torch.Tensor) -> torch.Tensor:
    names = [n for n, _ in p.loss.named_parameters()]
    shapes = [q.shape for q in p.loss.parameters()]
    params, start = {}, 0
    for n, s in zip(names, shapes, strict=True):
        params[n] = flat[start : start + s.numel()].view(s)
        start += s.numel()
    engine = make_backend(p.learner, p.config.inner, lambda pred, y: (pred - y) ** 2)

    def loss_fn(pred, target):
        return functional_call(p.loss, params, (pred, target), {"reduction": "none"})

    return engine.run(loss_fn, p.inits, p.tasks).meta_objective.mean()


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_func_and_higher_meta_gradients_agree(optimizer: str) -> None:
    p = make_problem(inner={"optimizer": optimizer, "steps": 4, "lr": 0.05})
    a, b = meta_gradient(p, "func"), meta_gradient(p, "higher")
    assert a.norm() > 0
    assert (a - b).norm() / a.norm() <= 1e-6


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_meta_gradient_matches_finite_differences(optimizer: str) -> None:
    p = make_problem(inner={"optimizer": optimizer, "steps": 3, "lr": 0.05})
    grad = meta_gradient(p, "func")
    flat = torch.cat([q.detach().flatten() for q in p.loss.parameters()])
    generator = torch.Generator().manual_seed(1)
    for _ in range(3):
        direction = torch.randn(flat.shape, generator=generator, dtype=flat.dtype)
        h = 1e-5
        with torch.no_grad():
            fd = (
                meta_objective(p, flat + h * direction) - meta_objective(p, flat - h * direction)
            ) / (2 * h)
        analytic = grad @ direction
        assert torch.isclose(analytic, fd, rtol=1e-5, atol=1e-9), (analytic, fd)


def test_vmap_over_tasks_equals_a_loop_over_tasks() -> None:
    p = make_problem(tasks=4, inner={"optimizer": "adam", "steps": 3})
    engine = make_backend(p.learner, p.config.inner, lambda pred, y: (pred - y) ** 2)
    batched = engine.run(p.loss.per_sample, p.inits, p.tasks, record="test")
    for i in range(4):
        one = engine.run(
            p.loss.per_sample,
            {k: v[i : i + 1] for k, v in p.inits.items()},
            stack_tasks([unstack_task(p.tasks, i)]),
            record="test",
        )
        torch.testing.assert_close(
            batched.meta_objective[i], one.meta_objective[0], rtol=1e-12, atol=1e-12
        )
        torch.testing.assert_close(batched.curve[i], one.curve[0], rtol=1e-12, atol=1e-12)


def test_truncation_drops_early_steps_from_the_meta_gradient() -> None:
    p = make_problem(inner={"steps": 4, "lr": 0.05})
    full = meta_gradient(p, "func")
    truncated = meta_gradient(p, "func", backprop_steps=1)
    truncated_higher = meta_gradient(p, "higher", backprop_steps=1)
    assert (full - truncated).norm() > 1e-6 * full.norm()
    assert (truncated - truncated_higher).norm() <= 1e-6 * truncated.norm()


def test_adam_meta_gradient_is_finite_with_dead_units() -> None:
    p = make_problem(inner={"optimizer": "adam", "steps": 3}, learner={"activation": "relu"})
    # Kill the first hidden layer's units for every input: their parameters get exactly zero
    # gradient, so Adam's second moment stays at zero there.
    p.inits["0.weight"] = torch.zeros_like(p.inits["0.weight"])
    p.inits["0.bias"] = -torch.ones_like(p.inits["0.bias"])
    grad = meta_gradient(p, "func")
    assert torch.isfinite(grad).all()


def test_functional_optimisers_match_torch_optim() -> None:
    generator = torch.Generator().manual_seed(0)
    w0 = torch.randn(5, generator=generator, dtype=torch.float64)
    grads = [torch.randn(5, generator=generator, dtype=torch.float64) for _ in range(4)]
    for ours, theirs in [
        (SGD(0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
        (SGD(0.1, momentum=0.9), lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)),
        (Adam(0.01, eps=1e-12), lambda p: torch.optim.Adam(p, lr=0.01, eps=1e-12)),
    ]:
        weight = torch.nn.Parameter(w0.clone())
        opt = theirs([weight])
        params, state = {"w": w0.clone()}, ours.init({"w": w0})
        for g in grads:
            weight.grad = g.clone()
            opt.step()
            params, state = ours.update({"w": g}, state, params)
        torch.testing.assert_close(params["w"], weight.detach(), rtol=1e-9, atol=1e-9)


def test_non_finite_inner_gradients_freeze_the_task_and_are_reported() -> None:
    p = make_problem(tasks=2, inner={"steps": 3})
    engine = make_backend(p.learner, p.config.inner, lambda pred, y: (pred - y) ** 2)
    broken = p.tasks._replace(train=p.tasks.train._replace(y=p.tasks.train.y.clone()))
    broken.train.y[1, 0] = float("nan")
    out = engine.run(lambda pred, y: (pred - y) ** 2, p.inits, broken)
    assert out.finite.tolist() == [True, False]
    assert torch.isfinite(out.meta_objective).all()


def test_clip_by_global_norm() -> None:
    clipped = clip_by_global_norm({"a": torch.tensor([3.0]), "b": torch.tensor([4.0])}, 1.0)
    assert torch.isclose(torch.sqrt(clipped["a"] ** 2 + clipped["b"] ** 2), torch.tensor(1.0)).all()
