"""The outer loop: resume, non-finite guard, early stopping, degeneracy, real improvement."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from metaloss.config import parse
from metaloss.evaluation import eval_set, paired_t_test, run_loss
from metaloss.losses import LearnedLoss
from metaloss.losses.collapse import check_degenerate
from metaloss.outer import Callback, MetaTrainer, NonFiniteError
from metaloss.outer.estimators import EstimatorOut
from metaloss.tasks import Split

SMALL = {
    "learner": {"hidden": [16]},
    "loss": {"hidden": [8]},
    "outer": {"meta_batch": 4, "val_every": 3, "val_tasks": 4, "checkpoint_every": 5},
}


def small_config(**outer):
    return parse({**SMALL, "outer": {**SMALL["outer"], **outer}})


class Kill(Callback):
    def __init__(self, at: int) -> None:
        self.at = at

    def on_step(self, trainer, record) -> None:
        if record.step == self.at:
            raise KeyboardInterrupt


def state(trainer: MetaTrainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in trainer.loss.state_dict().items()}


def test_resume_after_kill_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    config = small_config(steps=10)
    reference = MetaTrainer(config, tmp_path / "ref").train()
    with pytest.raises(KeyboardInterrupt):
        MetaTrainer(config, tmp_path / "run", callbacks=[Kill(7)]).train()
    resumed = MetaTrainer(config, tmp_path / "run").train(resume=True)
    for name, value in reference.loss.state_dict().items():
        torch.testing.assert_close(resumed.loss.state_dict()[name], value, rtol=0, atol=0)
    assert [r.meta_loss for r in resumed.steps] == [r.meta_loss for r in reference.steps]
    assert resumed.best_value == reference.best_value


def test_resume_refuses_a_different_config(tmp_path: Path) -> None:
    MetaTrainer(small_config(steps=5), tmp_path).train()
    other = parse({**SMALL, "inner": {"lr": 0.5}, "outer": {**SMALL["outer"], "steps": 6}})
    with pytest.raises(
        ValueError, match=r"different config \(inner.lr: 0.01 in the checkpoint, 0.5 now\)"
    ):
        MetaTrainer(other, tmp_path).train(resume=True)


class NaNEvery:
    """An estimator whose gradient is NaN on the steps listed."""

    name = "nan"

    def __init__(self, bad: set[int]) -> None:
        self.bad, self.calls = bad, 0

    def estimate(self, params, objective, generator):
        self.calls += 1
        value = float("nan") if self.calls in self.bad else 1.0
        grads = {k: torch.full_like(v, value) for k, v in params.items()}
        return EstimatorOut(torch.tensor(value), grads, torch.tensor([value]))


def test_non_finite_steps_are_skipped_counted_and_stop_the_run() -> None:
    trainer = MetaTrainer(small_config(steps=6, max_nonfinite=2))
    trainer.estimator = NaNEvery({2, 4})
    result = trainer.train()
    assert result.skipped_steps == 2
    assert [r.skipped for r in result.steps] == [False, True, False, True, False, False]
    assert all(torch.isfinite(v).all() for v in result.loss.state_dict().values())
    applied = {int(s["step"]) for s in trainer.optimizer.state.values()}
    assert applied == {4}  # Adam stepped on the four finite steps only
    trainer = MetaTrainer(small_config(steps=6, max_nonfinite=1))
    trainer.estimator = NaNEvery({1, 2})
    with pytest.raises(NonFiniteError, match="outer: 2 meta-steps had NaN/Inf meta-gradients"):
        trainer.train()


def test_early_stopping_keeps_the_best_loss() -> None:
    trainer = MetaTrainer(small_config(steps=60, patience=1, val_every=1, lr=0.5))
    result = trainer.train()
    assert result.stopped_early and len(result.steps) < 60
    assert result.best_value == min(v.value for v in result.validations)


def test_a_collapsed_loss_is_detected() -> None:
    loss = LearnedLoss(hidden=(4,))
    assert not check_degenerate(loss.per_sample).collapsed
    with torch.no_grad():
        loss.net[-1].weight.zero_()
    report = check_degenerate(loss)
    assert report.collapsed and "constant output" in report.reason
    assert check_degenerate(lambda p, t: (p - t) ** 2).descent_fraction == 1.0


def test_meta_training_improves_the_meta_objective_on_held_out_tasks() -> None:
    config = parse({"outer": {"steps": 150, "val_every": 50}})
    trainer = MetaTrainer(config)
    data = eval_set(trainer.problem.family, config, Split.META_TEST, 64)
    before = run_loss(
        "before",
        trainer.loss.per_sample,
        trainer.problem.family,
        config,
        data,
        config.inner.lr,
        record="outer_valid",
    )
    result = trainer.train()
    after = run_loss(
        "after",
        result.loss.per_sample,
        trainer.problem.family,
        config,
        data,
        config.inner.lr,
        record="outer_valid",
    )
    _, p = paired_t_test(after.final, before.final)
    assert after.final.mean() < before.final.mean() and p < 0.05, (
        before.final.mean(),
        after.final.mean(),
        p,
    )


class FixedGradient:
    """An estimator whose meta-gradient is ``value`` in every coordinate."""

    name = "fixed"

    def __init__(self, value: float) -> None:
        self.value = value

    def estimate(self, params, objective, generator):
        grads = {k: torch.full_like(v, self.value) for k, v in params.items()}
        return EstimatorOut(torch.tensor(1.0), grads, torch.tensor([1.0]))


@pytest.mark.parametrize("clip", [0.5, 0.0, 1e6])
def test_meta_gradient_is_clipped_to_the_configured_norm(clip: float) -> None:
    trainer = MetaTrainer(small_config(steps=1, grad_clip=clip))
    trainer.estimator = FixedGradient(3.0)
    trainer.optimizer = torch.optim.SGD(trainer.loss.parameters(), lr=1.0)  # update = -gradient
    before = {k: v.detach().clone() for k, v in trainer.loss.named_parameters()}
    count = sum(v.numel() for v in before.values())
    record = trainer.meta_step()
    norm = 3.0 * count**0.5
    assert record.grad_norm == pytest.approx(norm)  # reported before clipping
    factor = min(1.0, clip / norm) if clip else 1.0
    for name, value in trainer.loss.named_parameters():
        step = before[name] - value.detach()
        torch.testing.assert_close(step, torch.full_like(step, 3.0 * factor))
    if clip == 0.5:
        moved = torch.cat(
            [(before[k] - v.detach()).flatten() for k, v in trainer.loss.named_parameters()]
        )
        assert float(moved.norm()) == pytest.approx(0.5)


def test_validation_at_the_best_of_several_inner_rates() -> None:
    # outer.valid_lr_scales: each condition is scored at the lowest mean over its rate times the
    # factors (1 is left out on purpose, so that ignoring the setting changes the value).
    plain = MetaTrainer(small_config())
    scaled = MetaTrainer(small_config(valid_lr_scales=[0.25, 4.0]))
    scaled.loss.load_state_dict(plain.loss.state_dict())
    problem = scaled.problem
    condition = problem.valid_conditions[0]
    tasks, inits = problem.validation_set(0)
    params = {k: v.detach() for k, v in scaled.loss.named_parameters()}
    rate = condition.config.inner.lr
    with torch.no_grad():
        at = [
            float(problem._objective(scaled.loss, condition, tasks, inits, rate * f)(params).mean())
            for f in (0.25, 4.0)
        ]
    assert scaled.problem.validate(scaled.loss) == pytest.approx(min(at), rel=1e-6)
    assert plain.problem.validate(plain.loss) not in (pytest.approx(at[0]), pytest.approx(at[1]))


def test_valid_lr_scales_must_be_positive_and_rl_refuses_them() -> None:
    from metaloss.config import ConfigError

    with pytest.raises(ConfigError, match=r"outer\.valid_lr_scales\[1\]"):
        small_config(valid_lr_scales=[1.0, -2.0])
    with pytest.raises(ConfigError, match=r"outer\.valid_lr_scales"):
        parse({"task": {"family": "cartpole"}, "outer": {"valid_lr_scales": [0.5, 2.0]}})
