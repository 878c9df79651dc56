"""The batched-matmul backend: meta-gradients and results equal to torch.func's (float64), its
automatic choice and fallback, the non-finite guard, task-batched losses, and torch.compile."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from metaloss.config import RunConfig, parse
from metaloss.inner import BmmBackend, FuncBackend, InnerResult, make_backend, task_batched
from metaloss.inner.bmm_backend import mlp_layout
from metaloss.learners import MLP, init_params, make_learner
from metaloss.losses.kinds import kind_spec
from metaloss.losses.multitask import uncertainty_weighting
from metaloss.tasks import Split, Task, make_family
from metaloss.tasks.base import cast_task

PerSample = Callable[[Tensor, Tensor], Tensor]

REGRESSION: dict[str, Any] = {
    "learner": {"hidden": (8, 8), "activation": "tanh"},
    "loss": {"hidden": (8,)},
    "task": {"family": "sine", "n_train": 6, "n_outer_valid": 5, "n_test": 4},
}
CLASSIFICATION: dict[str, Any] = {
    "task": {"family": "digits", "k_shot": 3, "n_outer_valid": 2, "n_test": 2, "n_way": 3},
    "learner": {"hidden": (8,), "activation": "relu"},
    "loss": {"features": ["label_prob", "margin", "sorted_probs"], "hidden": (4,)},
}
MULTITASK: dict[str, Any] = {
    "task": {
        "family": "multitask",
        "max_heads": 3,
        "heads": [2, 3],
        "n_train": 6,
        "n_outer_valid": 5,
        "n_test": 4,
    },
    "learner": {"hidden": (8,), "log_variances": 3},
    "loss": {"features": ["log_mean_loss", "relative_loss", "regression"], "hidden": (4,)},
}


class Setup:
    """A float64 problem of any family: learner, learned loss, stacked tasks, inits."""

    def __init__(self, data: dict[str, Any], tasks: int = 3, **inner: Any) -> None:
        sections = {**data, "dtype": "float64", "inner": {"steps": 3, "lr": 0.05, **inner}}
        self.config: RunConfig = parse(sections)
        self.family = make_family(self.config.task)
        generator = torch.Generator().manual_seed(0)
        self.learner = make_learner(
            self.config.learner, self.family.in_features, self.family.out_features
        ).double()
        loss_class = kind_spec(self.family.kind).loss_class
        self.loss = loss_class.from_config(
            self.config.loss, self.family.kind, generator, num_classes=self.family.out_features
        ).double()
        self.tasks: Task = cast_task(self.family.tasks(Split.META_TRAIN, tasks), torch.float64)
        self.inits = init_params(self.learner, tasks, generator, torch.float64)

    def backend(self, name: str, **inner: Any) -> Any:
        config = replace(self.config.inner, backend=name, **inner)
        return make_backend(self.learner, config, self.family.objective)

    def per_sample(self, pred: Tensor, target: Tensor) -> Tensor:
        return self.loss(pred, target, reduction="none")


def run(setup: Setup, backend: str, loss_fn: PerSample | None = None, **kw: Any) -> InnerResult:
    return setup.backend(backend).run(loss_fn or setup.per_sample, setup.inits, setup.tasks, **kw)


def meta_gradient(
    setup: Setup,
    backend: str,
    loss_fn: PerSample | None = None,
    extra: tuple[Tensor, ...] = (),
    **kw: Any,
) -> Tensor:
    out = run(setup, backend, loss_fn, **kw)
    wrt = [*setup.loss.parameters(), *extra]
    grads = torch.autograd.grad(out.meta_objective.mean(), wrt)
    return torch.cat([g.flatten() for g in grads])


def assert_same(a: Tensor, b: Tensor) -> None:
    assert a.norm() > 0
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


OPTIMISERS = [
    {"optimizer": "sgd"},
    {"optimizer": "sgd", "momentum": 0.9},
    {"optimizer": "adam"},
    {"optimizer": "adam", "grad_clip": 0.05},
]


@pytest.mark.parametrize("inner", OPTIMISERS, ids=["sgd", "momentum", "adam", "adam-clip"])
@pytest.mark.parametrize("backprop_steps", [None, 1], ids=["full", "truncated"])
@pytest.mark.parametrize("learner", [(8, 8), ()], ids=["mlp", "linear"])
def test_regression_meta_gradients_equal_torch_func(
    inner: dict[str, Any], backprop_steps: int | None, learner: tuple[int, ...]
) -> None:
    setup = Setup({**REGRESSION, "learner": {"hidden": learner, "activation": "tanh"}}, **inner)
    assert isinstance(setup.backend("auto"), BmmBackend)
    func = meta_gradient(setup, "func", backprop_steps=backprop_steps)
    bmm = meta_gradient(setup, "bmm", backprop_steps=backprop_steps)
    assert_same(bmm, func)


def test_truncation_changes_the_meta_gradient_the_same_way() -> None:
    setup = Setup(REGRESSION, steps=4)
    full, truncated = meta_gradient(setup, "bmm"), meta_gradient(setup, "bmm", backprop_steps=1)
    assert (full - truncated).norm() > 1e-6 * full.norm()
    assert_same(truncated, meta_gradient(setup, "func", backprop_steps=1))


@pytest.mark.parametrize("inner", OPTIMISERS[:3], ids=["sgd", "momentum", "adam"])
def test_classification_meta_gradients_equal_torch_func(inner: dict[str, Any]) -> None:
    setup = Setup(CLASSIFICATION, **inner)
    assert_same(meta_gradient(setup, "bmm"), meta_gradient(setup, "func"))


@pytest.mark.parametrize("inner", OPTIMISERS[:3], ids=["sgd", "momentum", "adam"])
def test_multitask_meta_gradients_through_the_log_variance_slots(inner: dict[str, Any]) -> None:
    setup = Setup(MULTITASK, **inner)
    assert mlp_layout(setup.learner) is not None  # a LogVarianceMLP runs batched
    scale = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)

    def loss_fn(pred: Tensor, target: Tensor) -> Tensor:
        # The learned loss plus a weighted uncertainty term, which reads the log-variance slots.
        return setup.per_sample(pred, target) + scale * uncertainty_weighting(pred, target)

    func = meta_gradient(setup, "func", loss_fn, extra=(scale,))
    bmm = meta_gradient(setup, "bmm", loss_fn, extra=(scale,))
    assert_same(bmm, func)
    out = run(setup, "bmm", loss_fn)
    moved = out.params["log_variances"].detach()
    assert moved.abs().max() > 0  # the slots were trained by the inner loop
    torch.testing.assert_close(moved, run(setup, "func", loss_fn).params["log_variances"].detach())


@pytest.mark.parametrize("data", [REGRESSION, CLASSIFICATION, MULTITASK], ids=["reg", "cls", "mt"])
def test_no_grad_results_equal_torch_func(data: dict[str, Any]) -> None:
    setup = Setup(data, optimizer="adam")
    with torch.no_grad():
        func = run(setup, "func", record="test")
        bmm = run(setup, "bmm", record="test")
    assert bmm.curve.shape == func.curve.shape == (3, 4)
    torch.testing.assert_close(bmm.curve, func.curve, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(bmm.meta_objective, func.meta_objective, rtol=1e-12, atol=1e-12)
    assert set(bmm.params) == set(func.params)
    for name, value in func.params.items():
        torch.testing.assert_close(bmm.params[name], value, rtol=1e-12, atol=1e-12)
    assert bmm.finite.tolist() == func.finite.tolist() == [True] * 3


def test_meta_gradient_matches_finite_differences() -> None:
    setup = Setup(REGRESSION, optimizer="adam")
    analytic = meta_gradient(setup, "bmm")
    flat = torch.cat([p.detach().flatten() for p in setup.loss.parameters()])
    direction = torch.randn(
        flat.shape, generator=torch.Generator().manual_seed(1), dtype=flat.dtype
    )

    def value(at: Tensor) -> float:
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(at, setup.loss.parameters())
            out = run(setup, "bmm").meta_objective.mean()
        return float(out)

    h = 1e-5
    fd = (value(flat + h * direction) - value(flat - h * direction)) / (2 * h)
    torch.nn.utils.vector_to_parameters(flat, setup.loss.parameters())
    assert float(analytic @ direction) == pytest.approx(fd, rel=1e-5, abs=1e-9)


# ------------------------------------------------------------------------------ choice, fallback


class ScaledMLP(MLP):
    """An MLP subclass with its own forward: the batched backend must not run it."""

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return 2 * super().forward(x)


@pytest.mark.parametrize(
    "learner",
    [
        MLP(1, (8,), 1, "elu"),  # an activation without a hand-written derivative
        ScaledMLP(1, (8,), 1, "tanh"),
        nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1)),  # not a metaloss learner
    ],
    ids=["elu", "subclass", "sequential"],
)
def test_unsupported_learners_fall_back_to_func_and_agree(learner: nn.Module) -> None:
    setup = Setup(REGRESSION)
    setup.learner = learner.double()
    setup.inits = init_params(setup.learner, 3, torch.Generator().manual_seed(2), torch.float64)
    assert mlp_layout(setup.learner) is None
    assert isinstance(setup.backend("auto"), FuncBackend)
    with pytest.raises(ValueError, match=r"^inner\.backend: 'bmm' runs MLP learners"):
        setup.backend("bmm")
    auto = meta_gradient(setup, "auto")
    assert_same(auto, meta_gradient(setup, "higher"))


def test_default_backend_is_auto_and_explicit_func_stays_func() -> None:
    assert parse({}).inner.backend == "auto"
    setup = Setup(REGRESSION)
    assert isinstance(setup.backend("func"), FuncBackend)
    assert type(setup.backend("higher")).__name__ == "HigherBackend"


# ------------------------------------------------------------------------------ guard


def broken(setup: Setup, task: int, step_value: float = float("nan")) -> Task:
    y = setup.tasks.train.y.clone()
    y[task, 0] = step_value
    return setup.tasks._replace(train=setup.tasks.train._replace(y=y))


@pytest.mark.parametrize("backend", ["bmm", "func", "higher"])
def test_non_finite_inner_gradients_freeze_the_task_at_its_last_finite_parameters(
    backend: str,
) -> None:
    setup = Setup(REGRESSION, steps=4, lr=0.5)
    tasks = broken(setup, 1)
    mse: PerSample = lambda pred, y: (pred - y) ** 2  # noqa: E731  (NaN target: NaN gradient)
    with torch.no_grad():
        out = setup.backend(backend).run(mse, setup.inits, tasks, record="test")
        clean = setup.backend(backend).run(mse, setup.inits, setup.tasks, record="test")
    assert out.finite.tolist() == [True, False, True]
    assert torch.isfinite(out.meta_objective).all() and torch.isfinite(out.curve).all()
    # The broken task never moved: it stays at its initialisation, its curve is flat.
    for name, init in setup.inits.items():
        torch.testing.assert_close(out.params[name][1], init[1])
    torch.testing.assert_close(out.curve[1], out.curve[1, :1].expand(5))
    # The healthy tasks are untouched by their neighbour's failure.
    keep = [0, 2]
    torch.testing.assert_close(out.curve[keep], clean.curve[keep])
    torch.testing.assert_close(out.meta_objective[keep], clean.meta_objective[keep])


def test_a_task_diverging_mid_unroll_is_frozen_at_its_last_finite_parameters() -> None:
    setup = Setup({**REGRESSION, "learner": {"hidden": (8,), "activation": "relu"}}, lr=0.002)

    def barrier(pred: Tensor, y: Tensor) -> Tensor:
        # Finite while |pred| < 20; the gradient is NaN once a prediction crosses it, which only
        # task 1 (targets shifted by +40) does, after a few steps.
        return (pred - y) ** 2 + 1e-3 * torch.sqrt(400 - pred**2)

    shift = torch.tensor([0.0, 40.0, 0.0], dtype=torch.float64).view(3, 1, 1)
    tasks = setup.tasks._replace(train=setup.tasks.train._replace(y=setup.tasks.train.y + shift))
    results = {}
    for backend in ["bmm", "func", "higher"]:
        with torch.no_grad():
            results[backend] = setup.backend(backend, steps=12).run(
                barrier, setup.inits, tasks, record="train"
            )
    out = results["bmm"]
    assert out.finite.tolist() == [True, False, True]
    curve = out.curve[1]
    applied = int((curve == curve[-1]).nonzero().min())  # steps applied before the freeze
    assert 1 < applied < 12 and torch.isfinite(curve).all()
    with torch.no_grad():
        stopped = setup.backend("bmm", steps=applied).run(barrier, setup.inits, tasks)
    assert stopped.finite.tolist() == [True] * 3  # those steps were all finite ...
    for name, value in stopped.params.items():  # ... and the frozen learner is after them
        torch.testing.assert_close(out.params[name][1], value[1], rtol=0, atol=0)
    for other in ["func", "higher"]:
        torch.testing.assert_close(results[other].curve, out.curve, rtol=1e-12, atol=0)
        assert results[other].finite.tolist() == out.finite.tolist()


# ------------------------------------------------------------------------------ task-batched losses


def test_a_task_batched_loss_is_called_on_stacked_tasks_with_the_same_results() -> None:
    setup = Setup(REGRESSION, optimizer="adam")
    shapes: list[tuple[int, ...]] = []

    def spy(pred: Tensor, target: Tensor) -> Tensor:
        shapes.append(tuple(pred.shape))
        return setup.per_sample(pred, target)

    batched = meta_gradient(setup, "bmm", task_batched(spy))
    assert shapes and all(s == (3, 6, 1) for s in shapes)  # [tasks, n_train, out]: no vmap
    assert_same(batched, meta_gradient(setup, "func"))


# ------------------------------------------------------------------------------ compile


def test_compile_is_refused_where_the_batched_backend_does_not_run() -> None:
    setup = Setup(REGRESSION)
    with pytest.raises(ValueError, match=r"^inner\.compile: .*inner\.backend=func"):
        setup.backend("func", compile=True)
    setup.learner = MLP(1, (8,), 1, "elu").double()
    with pytest.raises(ValueError, match=r"^inner\.compile: .*inner\.backend=auto"):
        setup.backend("auto", compile=True)


@pytest.mark.slow
def test_compiled_unroll_gives_the_same_results_and_reports_its_compiles() -> None:
    setup = Setup(REGRESSION, optimizer="adam")
    compiled = setup.backend("bmm", compile=True)
    out = compiled.run(setup.per_sample, setup.inits, setup.tasks)
    grads = torch.autograd.grad(out.meta_objective.mean(), list(setup.loss.parameters()))
    assert_same(torch.cat([g.flatten() for g in grads]), meta_gradient(setup, "func"))
    report = compiled.report()
    assert report["graphs"] >= 1 and report["compile_seconds"] > 0
    compiled.run(setup.per_sample, setup.inits, setup.tasks)  # same shapes and modes: reused
    assert compiled.report() == report
    with torch.no_grad():  # benchmark mode: another graph, the same curves
        curves = compiled.run(setup.per_sample, setup.inits, setup.tasks, record="test").curve
        expected = run(setup, "func", record="test").curve
    torch.testing.assert_close(curves, expected, rtol=1e-10, atol=1e-12)
    assert compiled.report()["recompiles"] == report["recompiles"] + 1


# ------------------------------------------------------------------------------ the supervised problem


@pytest.mark.parametrize(
    "features",
    [("residual", "abs_residual", "target"), ("residual", "abs_residual", "residual_scale")],
    ids=["elementwise", "batch-level"],
)
def test_supervised_objective_equals_a_loss_swapped_at_every_call(
    features: tuple[str, ...],
) -> None:
    from torch.func import functional_call

    from metaloss.outer.supervised import SupervisedProblem

    config = parse(
        {**REGRESSION, "dtype": "float64", "loss": {"features": features, "hidden": [8]}}
    )
    problem = SupervisedProblem(config)
    generator = torch.Generator().manual_seed(3)
    loss = problem.make_loss(generator)
    assert loss.elementwise == (features[-1] == "target")  # type: ignore[attr-defined]
    batch = problem.sample(generator)
    problem.close()
    leaves = [{k: v.detach().requires_grad_() for k, v in loss.named_parameters()} for _ in "ab"]
    ours = problem.objective(loss, batch)(leaves[0], None)

    def per_call(pred: Tensor, target: Tensor) -> Tensor:
        return functional_call(loss, leaves[1], (pred, target), {"reduction": "none"})

    reference = problem.backend.run(per_call, batch.inits, batch.tasks).meta_objective
    torch.testing.assert_close(ours, reference, rtol=1e-12, atol=0)
    for a, b in zip(
        torch.autograd.grad(ours.mean(), list(leaves[0].values())),
        torch.autograd.grad(reference.mean(), list(leaves[1].values())),
        strict=True,
    ):
        assert b.abs().max() > 0
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-14)


def test_only_regression_losses_of_elementwise_features_are_elementwise() -> None:
    assert Setup(REGRESSION).loss.elementwise
    assert not Setup(CLASSIFICATION).loss.elementwise


@pytest.mark.slow
def test_train_prints_the_compile_report(tmp_path: Any, capsys: Any) -> None:
    from metaloss.cli import main

    tiny = ["learner.hidden=[8]", "loss.hidden=[4]", "inner.steps=2", "outer.meta_batch=2"]
    tiny += ["outer.steps=2", "outer.val_every=2", "outer.val_tasks=2", "inner.compile=true"]
    args = ["train", "--out", str(tmp_path / "run"), "--no-eval"]
    assert main([*args, *[a for t in tiny for a in ("--set", t)]]) == 0
    printed = capsys.readouterr().out
    assert "inner.compile: 2 graphs compiled (1 recompiles)" in printed  # training, validation
