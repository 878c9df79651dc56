"""Selection against fixtures whose right answer is computable.

The fixture: a linear learner ``pred = w x + b`` on tasks where ``x = 1`` and every target of
task ``i`` equals ``y_i`` (train and outer_valid alike), one inner SGD step. With MSE the
residual ``e = w + b - y`` becomes ``e (1 - 4 lr)`` (both parameters move by ``2 lr e``), so the
outer_valid score is ``mean_i e_i² (1 - 4 lr)²``: best at lr = 0.25 whatever the
initialisations. With Huber(δ) and residuals beyond δ the gradient is ``δ sign(e)``, the residual
becomes ``|e| - 2 lr δ`` and the score is ``mean_i (|e_i| - 2 lr δ)²``.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from _families import ConstantTargets
from torch.func import functional_call

from metaloss.config import parse
from metaloss.evaluation import EvalSet, eval_set, select_lr, steps_to_reach
from metaloss.evaluation.benchmark import Contender, Row, _init_seed, run_row, select
from metaloss.learners import make_learner
from metaloss.losses import baseline
from metaloss.tasks import Split
from metaloss.tasks.base import TaskFamily


def _config(lr_grid: list[float], **evaluation: int):  # type: ignore[no-untyped-def]
    return parse(
        {
            "dtype": "float64",
            "learner": {"hidden": []},
            "inner": {"steps": 1, "optimizer": "sgd", "lr": 0.1},
            "evaluation": {"grid_tasks": 6, "lr_grid": lr_grid, **evaluation},
        }
    )


def _residuals(config, data: EvalSet) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """Each run's initial residual ``w + b - y``, computed apart from the inner loop."""
    learner = make_learner(config.learner, 1, 1).double()
    out = []
    for i in range(data.runs):
        params = {k: v[i] for k, v in data.inits.items()}
        pred = functional_call(learner, params, (data.tasks.train.x[i],))
        out.append(pred[0, 0] - data.tasks.train.y[i, 0, 0])
    return torch.stack(out)


GRID = [0.05, 0.1, 0.2, 0.35, 0.6]  # |1 - 4 lr| = 0.8, 0.6, 0.2, 0.4, 1.4: best 0.2, worst 0.6


@pytest.mark.parametrize("grid", [GRID, GRID[::-1], [0.6, 0.05, 0.35, 0.2, 0.1]])
def test_select_lr_scores_are_the_known_function_and_pick_its_minimum(grid: list[float]) -> None:
    config, family = _config(grid), ConstantTargets()
    data = eval_set(family, config, Split.META_TRAIN, 6)
    chosen, scores = select_lr(baseline("mse"), family, config, grid, data)
    e = _residuals(config, data)
    for lr in grid:
        assert scores[lr] == pytest.approx(float((e**2 * (1 - 4 * lr) ** 2).mean()), rel=1e-10)
    assert chosen == 0.2


def test_diverged_learning_rates_score_inf_and_are_never_chosen() -> None:
    config, family = _config([0.2, 1e200]), ConstantTargets()
    data = eval_set(family, config, Split.META_TRAIN, 6)
    chosen, scores = select_lr(baseline("mse"), family, config, [1e200, 0.2], data)
    assert scores[1e200] == float("inf") and chosen == 0.2


def _row(config, family: TaskFamily) -> Row:  # type: ignore[no-untyped-def]
    return Row("r", family, config)


HUBER = Contender(
    "huber", "baseline", lambda **p: baseline("huber", **p), "delta", (1.0, 4.0, 5.0, 8.0)
)


def test_baseline_parameter_selection_picks_the_known_best_delta() -> None:
    # Targets near 100: every |e| > 8 >= δ, so the score is mean (|e| - 2 lr δ)².
    # 2 lr δ = 10, 40, 50, 80 at lr = 5 and 20, 80, 100, 160 at lr = 10: best δ = 5, lr = 10.
    config, family = _config([5.0, 10.0]), ConstantTargets(offset=100.0)
    data = eval_set(family, config, Split.META_TRAIN, 6)
    e = _residuals(config, data).abs()
    assert bool((e > 8).all())
    chosen = select(HUBER, _row(config, family), data)
    assert (chosen.value, chosen.lr) == (5.0, 10.0)
    for delta in HUBER.values:
        for lr in (5.0, 10.0):
            expected = float(((e - 2 * lr * delta) ** 2).mean())
            assert chosen.scores[f"delta={delta:g} lr={lr:g}"] == pytest.approx(expected, rel=1e-10)


def test_a_single_value_and_rate_skips_selection() -> None:
    config, family = _config([0.35]), ConstantTargets()
    data = eval_set(family, config, Split.META_TRAIN, 6)
    fixed = Contender("mse", "baseline", lambda: baseline("mse"))
    chosen = select(fixed, _row(config, family), data)
    assert (chosen.lr, chosen.value, chosen.scores) == (0.35, None, {})


def test_the_benchmark_tests_each_loss_at_its_selection() -> None:
    # Selection on meta-train tasks picks lr = 0.2 and δ = 5; the meta-test entries use them.
    config = _config([0.2, 0.6], test_tasks=4)
    family = ConstantTargets()
    mse = Contender("mse", "baseline", lambda: baseline("mse"))
    entries = run_row(_row(config, family), [mse])
    assert entries[0].selection.lr == 0.2
    test = eval_set(family, config, Split.META_TEST, 4, 1, _init_seed(Split.META_TEST, 0))
    e = _residuals(config, test)
    expected = e**2 * (1 - 4 * 0.2) ** 2
    torch.testing.assert_close(entries[0].per_task, expected)
    config = _config([5.0, 10.0], test_tasks=4)
    huber = run_row(_row(config, ConstantTargets(offset=100.0)), [HUBER])[0]
    assert (huber.selection.value, huber.selection.lr) == (5.0, 10.0)


def test_selection_refuses_meta_test_tasks() -> None:
    config, family = _config(GRID), ConstantTargets()
    data = eval_set(family, config, Split.META_TEST, 2)
    with pytest.raises(ValueError, match="meta-test"):
        select_lr(baseline("mse"), family, config, GRID, data)


def test_steps_to_reach_reads_the_mean_curve() -> None:
    # Mean curve 4, 2, 1: the first step at or below the threshold, or never.
    curves = torch.tensor([[4.0, 3.0, 0.0], [4.0, 1.0, 2.0]])
    assert steps_to_reach(curves, 2.0) == 1
    assert steps_to_reach(curves, 1.0) == 2
    assert steps_to_reach(curves, 4.0) == 0
    assert steps_to_reach(curves, 0.5) is None


def test_rl_selection_picks_the_setting_with_the_highest_mean_return() -> None:
    # RL scores are mean final returns (higher is better); non-finite ones lose, and with none
    # finite the first setting of the grid is kept.
    from metaloss.rl.benchmark import select_setting

    nan, inf = float("nan"), float("inf")
    scores = {(0.1, 1e-3): 20.0, (0.2, 1e-3): 50.0, (0.2, 3e-3): 42.0, (0.3, 1e-3): nan}
    assert select_setting(scores) == (0.2, 1e-3)
    assert select_setting({(None, 1e-3): -inf, (None, 3e-3): 6.0, (None, 1e-2): inf}) == (
        None,
        3e-3,
    )
    assert select_setting({(None, 1e-3): nan, (None, 3e-3): -inf}) == (None, 1e-3)


def test_the_progress_plan_counts_each_selection_value_and_each_test() -> None:
    # mse over a 2-rate grid: 1 selection + 1 test; Huber, 4 values: 4 + 1; one value at one
    # rate: no selection, 1 test; 2 values at one rate: 2 + 1. Two rows: 2 × 11 progress steps,
    # and run_benchmark reports exactly that many.
    from metaloss.evaluation.benchmark import plan_size, run_benchmark

    config = _config([5.0, 10.0], test_tasks=2)
    mse = Contender("mse", "baseline", lambda: baseline("mse"))
    fixed = Contender("l1", "baseline", lambda: baseline("l1"), lr_grid=(0.1,))
    two = replace(HUBER, name="huber2", values=(1.0, 4.0), lr_grid=(5.0,))
    family = ConstantTargets(offset=100.0)
    rows = [_row(config, family), Row("again", family, config)]
    assert plan_size(rows, [mse, HUBER, fixed, two]) == 22
    steps: list[str] = []
    run_benchmark(rows, [mse, HUBER, fixed, two], progress=steps.append)
    assert len(steps) == 22
