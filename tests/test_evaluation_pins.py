"""Pins for the evaluation package, from the mutation run over ``metaloss/evaluation/``
(docs/mutation_testing.md): each test holds a figure or a choice that a surviving mutant
changed, against a value computed by hand or apart from the code under test."""

from __future__ import annotations

import csv
import math
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from _families import ConstantTargets

from metaloss.config import ConfigError, parse
from metaloss.evaluation.benchmark import (
    BenchmarkResult,
    Contender,
    Entry,
    Row,
    Selection,
    compare,
    describe_condition,
    mixed_loss,
    run_row,
    select,
)
from metaloss.evaluation.decomposition import (
    Decomposition,
    DecompositionSummary,
    calibration_error,
    classification_metrics,
    decompose,
    log_decomposition,
    summarise,
)
from metaloss.evaluation.diagnostics import DIAGNOSES
from metaloss.evaluation.fits import FITS, fit_scores, huber_regressor
from metaloss.evaluation.meta_test import eval_set, run_loss
from metaloss.evaluation.report import markdown, to_json, write_csv
from metaloss.evaluation.stats import MeanCI, mean_ci, paired_comparison, verdict_rule
from metaloss.losses import baseline
from metaloss.tasks import Metric, Split, Task
from metaloss.tasks.base import Batch, TaskFamily

X = torch.tensor([[1.0], [2.0], [3.0]])  # mean x² = 14/3


class LineTargets(TaskFamily):
    """``y = 2 x + 0.5 + c`` at ``x = 1, 2, 3`` on every split, ``c ~ N(0, 1)`` per task."""

    def make_task(self, generator: torch.Generator, split: Split) -> Task:
        c = float(torch.randn((), generator=generator))
        batch = Batch(X.clone(), 2 * X + 0.5 + c, {})
        return Task(batch, batch, batch)


def _linear_config(**evaluation: Any):  # type: ignore[no-untyped-def]
    return parse(
        {
            "dtype": "float64",
            "learner": {"hidden": []},
            "inner": {"steps": 2, "optimizer": "sgd", "lr": 0.1},
            "evaluation": {"grid_tasks": 4, "lr_grid": [0.1], **evaluation},
        }
    )


class SlopeFit:
    """A classical fit that ignores its data: ``y = slope x + 0.5``; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(
        self, x: np.ndarray, y: np.ndarray, slope: float = 1.0
    ) -> tuple[np.ndarray, float]:
        self.calls += 1
        return np.array([slope]), 0.5


class CentredFit:
    """Slope 2 through the means of the training data."""

    def __call__(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
        return np.array([2.0]), float(y.mean() - 2.0 * x[:, 0].mean())


class TagFit:
    """A fit whose parameter changes nothing: every value scores the same."""

    def __call__(self, x: np.ndarray, y: np.ndarray, tag: float = 0.0) -> tuple[np.ndarray, float]:
        return np.array([2.0]), 0.5


def _squared_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (pred - target) ** 2


# ------------------------------------------------------------------------------ classical fits


def test_fit_scores_score_each_task_on_the_recorded_split_and_fit_identical_tasks_once() -> None:
    x = torch.tensor([[[1.0], [2.0]], [[1.0], [3.0]], [[1.0], [2.0]]])  # tasks 0 and 2 equal
    y = torch.tensor([[[2.0], [4.0]], [[1.0], [1.0]], [[2.0], [4.0]]])
    train = Batch(x, y, {})
    scored = Batch(x + 1.0, y, {})  # only outer_valid is shifted
    tasks = Task(train, scored, train)
    fit = SlopeFit()
    out = fit_scores(fit, {"slope": 2.0}, tasks, "outer_valid", _squared_error)
    # a fit that reads its data: intercept mean(y) - 2 mean(x), i.e. 0 for task 0, -3 for task 1
    centred = fit_scores(CentredFit(), {}, tasks, "outer_valid", _squared_error)
    assert centred.tolist() == [4.0, 8.0, 4.0]  # task 0: 2², 2²; task 1: 0², 4²
    centred_test = fit_scores(CentredFit(), {}, tasks, "test", _squared_error)
    assert centred_test.tolist() == [0.0, 4.0, 0.0]
    # pred = 2 (x + 1) + 0.5 on the shifted split: task 0: (4.5 - 2)², (6.5 - 4)² -> 6.25;
    # task 1: (4.5 - 1)², (8.5 - 1)² -> (12.25 + 56.25) / 2 = 34.25.
    assert out.dtype == torch.float64 and out.tolist() == [6.25, 34.25, 6.25]
    assert fit.calls == 2
    test = fit_scores(SlopeFit(), {"slope": 2.0}, tasks, "test", _squared_error)
    # unshifted: task 0: (2.5 - 2)², (4.5 - 4)² -> 0.25; task 1: 1.5², 5.5² -> 16.25
    assert test.tolist() == [0.25, 16.25, 0.25]


def _fit_contender(fit: SlopeFit, values: tuple[float, ...]) -> Contender:
    return Contender("slope fit", "baseline", lambda **p: None, "slope", values, fit=fit)  # type: ignore[arg-type, return-value]


def test_a_classical_fit_selects_the_value_with_the_lowest_outer_valid_score() -> None:
    # Score of slope s: mean (s x + 0.5 - y)² over each task's x = 1, 2, 3, then over tasks;
    # y = 2 x + 0.5 + c, so slope 1.75 (closest to 2) is best.
    config, family = _linear_config(), LineTargets()
    data = eval_set(family, config, Split.META_TRAIN, 4)
    y = data.tasks.outer_valid.y[..., 0]

    def expected(s: float) -> float:
        return float(((s * X[:, 0].double() + 0.5 - y) ** 2).mean())

    steps: list[str] = []
    chosen = select(
        _fit_contender(SlopeFit(), (0.0, 1.75, 4.0)), Row("r", family, config), data, steps.append
    )
    assert chosen.value == 1.75 and math.isnan(chosen.lr)
    assert chosen.scores == {
        f"slope={s:g}": pytest.approx(expected(s), rel=1e-12) for s in (0.0, 1.75, 4.0)
    }
    assert steps == ["r: select slope fit"] * 3


def test_a_classical_fit_keeps_the_first_of_tied_values_and_scores_no_parameter_as_empty() -> None:
    config, family = _linear_config(), LineTargets()
    data = eval_set(family, config, Split.META_TRAIN, 4)
    tied = Contender("tag", "baseline", lambda **p: None, "tag", (1.0, 2.0, 3.0), fit=TagFit())  # type: ignore[arg-type, return-value]
    assert select(tied, Row("r", family, config), data).value == 1.0
    plain = Contender("centred", "baseline", lambda: None, fit=CentredFit())  # type: ignore[arg-type, return-value]
    chosen = select(plain, Row("r", family, config), data)
    assert chosen.value is None and list(chosen.scores) == [""]


def test_a_fit_that_does_not_stay_finite_scores_inf_and_is_not_chosen() -> None:
    config, family = _linear_config(), LineTargets()
    data = eval_set(family, config, Split.META_TRAIN, 4)
    chosen = select(_fit_contender(SlopeFit(), (float("nan"), 2.0)), Row("r", family, config), data)
    assert chosen.value == 2.0 and chosen.scores["slope=nan"] == float("inf")


def test_a_classical_fit_is_tested_once_per_run_with_a_flat_curve_and_no_diagnosis() -> None:
    config = _linear_config(test_tasks=3, seeds=2)
    family = LineTargets()
    contender = _fit_contender(SlopeFit(), (1.0, 2.0))  # slope 2 is the right one: error c²
    (entry,) = run_row(Row("r", family, config), [contender])
    assert entry.selection.value == 2.0 and entry.name == "slope fit" and entry.role == "baseline"
    assert entry.row == "r" and entry.per_task.dtype == torch.float32
    test = eval_set(family, config, Split.META_TEST, 3, 2)
    c = test.tasks.test.y[:3, 0, 0].double() - 2.5
    torch.testing.assert_close(entry.per_task.double(), c**2, rtol=1e-6, atol=1e-7)
    assert entry.curve.shape == (3,) and entry.curve.device.type == "cpu"
    torch.testing.assert_close(
        entry.curve.double(),
        torch.full((3,), float((c**2).mean()), dtype=torch.float64),
        rtol=1e-6,
        atol=1e-7,
    )
    assert entry.diagnoses == {}  # not diagnosed, rather than five zero counts
    assert entry.diverged == 0 and entry.param == "slope"


def test_a_classical_fit_counts_its_non_finite_test_runs_as_diverged() -> None:
    config = _linear_config(test_tasks=3, seeds=2)
    contender = _fit_contender(SlopeFit(), (float("inf"),))
    (entry,) = run_row(Row("r", LineTargets(), config), [contender])
    assert entry.diverged == 6  # 3 tasks x 2 seeds


def test_contender_params_set_the_named_parameter() -> None:
    contender = _fit_contender(SlopeFit(), (1.0,))
    assert contender.params(2.5) == {"slope": 2.5}
    assert contender.params(None) == {}


def test_huber_regressor_is_huber_s_estimator_at_the_given_epsilon_with_a_tiny_ridge() -> None:
    # With a huge epsilon every residual is in the quadratic zone: the fit is least squares
    # (the 1e-4 ridge moves it by less than 1e-4). At 1.35 the outlier is down-weighted.
    x = np.linspace(-1.0, 1.0, 21)[:, None]
    y = 2.0 * x[:, 0] + 1.0 + 0.05 * np.sin(7.0 * x[:, 0])
    y[3] += 30.0
    design = np.hstack([x, np.ones_like(x)])
    (slope, intercept), *_ = np.linalg.lstsq(design, y, rcond=None)
    coef, b = huber_regressor(x, y, epsilon=1e3)
    assert coef.dtype == np.float64 and coef.shape == (1,)
    assert abs(coef[0] - slope) < 1e-3 and abs(b - intercept) < 1e-3
    robust, b_robust = huber_regressor(x, y, epsilon=1.35)
    assert abs(robust[0] - 2.0) < 0.1 and abs(b_robust - 1.0) < 0.1
    assert abs(slope - 2.0) > 0.5  # least squares is pulled away by the outlier


def test_huber_regressor_is_registered_as_a_classical_fit() -> None:
    assert FITS["huber_regressor"] is huber_regressor


# ------------------------------------------------------------------------------ contenders


def test_the_learned_mix_is_the_stated_convex_combination() -> None:
    pred, target = torch.tensor([[1.0], [3.0]]), torch.tensor([[0.0], [1.0]])

    def learned(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (p - t).abs() * 10.0  # 10, 20

    make = mixed_loss(learned, "mse")  # mse: 1, 4
    torch.testing.assert_close(
        make(mix=0.25)(pred, target), torch.tensor([[0.75 + 2.5], [3.0 + 5.0]])
    )
    torch.testing.assert_close(make(mix=0.0)(pred, target), torch.tensor([[1.0], [4.0]]))
    assert make(mix=1.0) is learned

    def refused(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        raise AssertionError("m = 0 must not evaluate the learned loss")

    mixed_loss(refused, "mse")(mix=0.0)(pred, target)


def test_describe_condition_by_hand() -> None:
    def row(hidden: tuple[int, ...], dataset: str | None, family: object) -> Row:
        task = SimpleNamespace(
            family="noisy", n_train=7, **({"dataset": dataset} if dataset else {})
        )
        config = SimpleNamespace(
            task=task,
            learner=SimpleNamespace(hidden=hidden, activation="tanh"),
            inner=SimpleNamespace(optimizer="adam", steps=12),
            evaluation=SimpleNamespace(lr_grid=(0.01, 0.1)),
        )
        return Row("r", family, config)  # type: ignore[arg-type]

    assert describe_condition(row((16, 8), "digits", SimpleNamespace(n_train=40))) == {
        "task": "noisy (digits)",
        "learner": "MLP 16-8 tanh",
        "optimizer": "adam",
        "steps": 12,
        "train_samples": 40,
        "lr_grid": [0.01, 0.1],
    }
    plain = describe_condition(row((), None, SimpleNamespace()))
    assert (plain["task"], plain["learner"], plain["train_samples"]) == ("noisy", "linear", 7)
    bare = row((), None, SimpleNamespace())
    del bare.config.task.n_train
    assert describe_condition(bare)["train_samples"] is None


# ------------------------------------------------------------------------------ meta-test metrics


def test_run_loss_metrics_are_read_off_the_final_learners_on_the_recorded_split() -> None:
    config = parse(
        {
            "dtype": "float64",
            "learner": {"hidden": []},
            "inner": {"steps": 1, "optimizer": "sgd", "lr": 0.1},
        }
    )
    family = ConstantTargets()
    data = eval_set(family, config, Split.META_TRAIN, 5)
    w, b = data.inits["0.weight"][:, 0, 0], data.inits["0.bias"][:, 0]
    e = w + b - data.tasks.train.y[:, 0, 0]
    residual = Metric(lambda pred, batch: pred - batch.y)
    run = run_loss(
        "mse",
        baseline("mse"),
        family,
        config,
        data,
        0.2,
        record="outer_valid",
        chunk=2,
        metrics={"residual": residual},
    )
    torch.testing.assert_close(run.metrics["residual"], e * (1 - 4 * 0.2))
    torch.testing.assert_close(run.final, (e * (1 - 4 * 0.2)) ** 2)
    assert run.curves.shape == (5, 2) and run.metrics["residual"].shape == (5,)


# ------------------------------------------------------------------------------ classification


def test_summarise_averages_each_run_then_gives_the_t_interval_over_runs() -> None:
    # [batch of 1, 2 runs, 3 samples]: run means 2 and 6, then mean ± CI over the 2 runs
    ce = torch.tensor([[[1.0, 2.0, 3.0], [4.0, 5.0, 9.0]]])
    summary = summarise(Decomposition(ce, ce / 2, ce / 4))
    half = 12.706204736174707 * math.sqrt(8.0) / math.sqrt(2.0)  # t_{1, 0.975} · s / √2
    for part, scale in ((summary.cross_entropy, 1.0), (summary.entropy, 0.5), (summary.kl, 0.25)):
        assert part.n == 2 and part.mean == pytest.approx(4.0 * scale, rel=1e-12)
        assert part.half_width == pytest.approx(half * scale, rel=1e-9)


def test_decompose_in_the_logits_precision_and_refuses_mismatched_shapes() -> None:
    logits = torch.tensor([[0.3, -1.1, 2.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    probs = torch.tensor([[0.1, 0.2, 0.7], [1 / 3, 1 / 3, 1 / 3]], dtype=torch.float32)
    p = probs.double()  # the same numbers, in float64
    parts = decompose(logits, probs)
    entropy = -(p * torch.log(p)).sum(-1)
    cross_entropy = -(p * torch.log_softmax(logits, -1)).sum(-1)
    torch.testing.assert_close(parts.entropy, entropy, rtol=1e-14, atol=0)
    torch.testing.assert_close(parts.kl, cross_entropy - entropy, rtol=1e-12, atol=1e-15)
    with pytest.raises(
        ValueError, match=r"^true_probs: expected shape \(2, 3\) like logits, got \(2, 2\)$"
    ):
        decompose(logits, probs[:, :2])


def test_decomposition_summary_as_flat_numbers_and_tensorboard_scalars() -> None:
    summary = DecompositionSummary(MeanCI(3.0, 0.5, 4), MeanCI(1.0, 0.25, 4), MeanCI(2.0, 0.125, 4))
    assert summary.as_dict() == {
        "cross_entropy_mean": 3.0,
        "cross_entropy_ci95": 0.5,
        "entropy_mean": 1.0,
        "entropy_ci95": 0.25,
        "kl_mean": 2.0,
        "kl_ci95": 0.125,
    }
    logged: list[tuple[str, float, int]] = []

    class Writer:
        def add_scalar(self, tag: str, value: float, step: int) -> None:
            logged.append((tag, value, step))

    log_decomposition(Writer(), "test/ce", summary, step=7)
    log_decomposition(Writer(), "d", summary)
    assert logged[-1] == ("d/kl", 2.0, 0)
    del logged[3:]
    assert logged == [
        ("test/ce/cross_entropy", 3.0, 7),
        ("test/ce/entropy", 1.0, 7),
        ("test/ce/kl", 2.0, 7),
    ]


class _OneTask:
    """Just enough of a classification family for :func:`classification_metrics`."""

    def __init__(self, extras: dict[str, torch.Tensor]) -> None:
        self.extras = extras

    def task(self, split: Split, index: int) -> Task:
        batch = Batch(torch.zeros(1, 1), torch.zeros(1, dtype=torch.long), self.extras)
        return Task(batch, batch, batch)


def test_classification_metrics_compute_ece_and_the_decomposition_per_sample() -> None:
    logits = torch.tensor([[[2.0, 0.0, -1.0], [0.0, 3.0, 0.0], [1.0, 1.0, 4.0], [0.5, 0.0, 0.0]]])
    labels = torch.tensor([[0, 2, 2, 1]])
    probs = torch.tensor([[[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.0, 0.0, 1.0], [0.3, 0.4, 0.3]]])
    batch = Batch(torch.zeros(1, 4, 1), labels, {"true_probs": probs})
    metrics = classification_metrics(_OneTask({"true_probs": probs}))  # type: ignore[arg-type]
    assert list(metrics) == ["accuracy", "ece", "expected_cross_entropy", "entropy", "kl"]
    assert metrics["accuracy"].higher_is_better and not metrics["ece"].higher_is_better
    torch.testing.assert_close(
        metrics["accuracy"].fn(logits, batch), torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    )
    torch.testing.assert_close(
        metrics["ece"].fn(logits, batch).mean(-1), calibration_error(logits, labels)
    )
    q = torch.softmax(logits, -1)
    entropy = -(probs * torch.log(probs.clamp_min(1e-30))).sum(-1)
    cross_entropy = -(probs * torch.log(q)).sum(-1)
    torch.testing.assert_close(metrics["entropy"].fn(logits, batch), entropy)
    torch.testing.assert_close(metrics["expected_cross_entropy"].fn(logits, batch), cross_entropy)
    torch.testing.assert_close(metrics["kl"].fn(logits, batch), cross_entropy - entropy)
    assert not any(m.higher_is_better for k, m in metrics.items() if k != "accuracy")
    assert list(classification_metrics(_OneTask({}))) == ["accuracy", "ece"]  # type: ignore[arg-type]
    parts = decompose(logits, probs)
    torch.testing.assert_close(parts.kl, cross_entropy - entropy)
    assert float(mean_ci(parts.kl.mean(-1)).mean) == pytest.approx(
        float((cross_entropy - entropy).mean())
    )


# ------------------------------------------------------------------------------ metaloss train


def test_the_train_comparison_names_its_rows_reference_metric_and_horizon() -> None:
    # A classification family: the reference is cross-entropy, named CE in the report, and the
    # metric is the family spec's; the learned loss is CE itself here.
    from metaloss.evaluation.compare import compare_with_mse
    from metaloss.tasks import make_family

    config = parse(
        {
            "task": {"family": "gaussian_mixture"},
            "learner": {"hidden": []},
            "inner": {"steps": 1, "optimizer": "sgd", "lr": 0.1},
            "evaluation": {"test_tasks": 2, "seeds": 1, "grid_tasks": 2, "lr_grid": [0.1, 0.3]},
        }
    )
    comparison = compare_with_mse(baseline("ce"), make_family(config.task), config)
    assert [(r.name, r.lr_source) for r in comparison.rows] == [
        ("learned", "meta-training"),
        ("ce", "meta-training"),
        ("learned (tuned lr)", "grid on meta-train tasks"),
        ("ce (tuned lr)", "grid on meta-train tasks"),
    ]
    assert (comparison.reference, comparison.metric, comparison.steps) == (
        "CE",
        "test cross-entropy",
        1,
    )
    assert list(comparison.lr_scores) == ["ce", "learned"]
    assert list(comparison.lr_scores["learned"]) == [0.1, 0.3]
    assert comparison.markdown().splitlines()[0] == (
        "Test cross-entropy after 1 inner steps on 2 held-out tasks × 1 seed(s) (mean ± 95% CI "
        "over runs); steps = first inner step whose mean error reaches the target. Paired "
        "columns: this loss − tuned CE, task by task (each task's error averaged over its seeds; "
        "negative is better)."
    )


def test_the_train_comparison_table_writes_never_and_step_counts_in_their_columns() -> None:
    from metaloss.evaluation.compare import Comparison, ComparisonRow
    from metaloss.evaluation.stats import paired_comparison, verdict_rule

    paired = paired_comparison([1.0, 2.0], [1.5, 2.5])
    rows = [
        ComparisonRow("learned (tuned lr)", 0.1, "grid", mean_ci([1.0, 3.0]), None, 4, 1, paired),
        ComparisonRow("mse (tuned lr)", 0.2, "grid", mean_ci([1.0, 3.0]), 2, None, 0, None),
    ]
    table = Comparison(rows, 4, 3, {}, "MSE", tasks=2).markdown().splitlines()
    assert table[1:4] == ["", verdict_rule(6, "tasks"), ""]
    assert table[6].startswith("| learned (tuned lr) | 0.1 | grid | 2 ± 13 | never | 4 | 1 | 2 ⚠ |")
    assert table[7].startswith("| mse (tuned lr) | 0.2 | grid | 2 ± 13 | 2 | never | 0 | ")


# ------------------------------------------------------------------------------ benchmark report


def _entry(row: str, name: str, role: str, values: list[float], **kwargs: Any) -> Entry:
    fields: dict[str, Any] = {
        "selection": Selection(0.01, None, {"lr=0.01": 1.5}),
        "param": "",
        "curve": torch.tensor([2.0, 1.0]),
        "diagnoses": {d: len(values) if d == "healthy" else 0 for d in DIAGNOSES},
        "diverged": 0,
        **kwargs,
    }
    return Entry(
        row,
        name,
        role,  # type: ignore[arg-type]
        fields["selection"],
        fields["param"],
        torch.tensor(values, dtype=torch.float64),
        fields["curve"],
        fields["diagnoses"],
        fields["diverged"],
    )


LEARNED = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]  # mean 3.5
HUBER = [2.0, 3.5, 4.0, 5.5, 6.0, 7.5]  # mean 4.75
MSE = [1.5, 2.5, 3.5, 4.5, 5.5, 6.5]  # mean 4.0
ORACLE = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]  # mean 2.5


def _two_rows(higher_is_better: bool = False) -> BenchmarkResult:
    """Row "a": learned, huber (delta = 0.3), mse, oracle; row "b": learned, mse, oracle."""
    huber = Selection(0.1, 0.3, {"delta=0.3 lr=0.1": 4.0})
    entries = [
        _entry("a", "learned", "learned", LEARNED),
        _entry("a", "huber", "baseline", HUBER, selection=huber, param="delta"),
        _entry("a", "mse", "baseline", MSE),
        _entry("a", "oracle", "oracle", ORACLE),
        _entry("b", "learned", "learned", [v + 10.0 for v in MSE]),  # mean 14: CIs separate
        _entry("b", "mse", "baseline", LEARNED, diverged=2),
        _entry("b", "oracle", "oracle", HUBER),  # worse than mse: no gap to close
    ]
    conditions = {
        "a": {"task": "sine", "learner": "linear", "optimizer": "sgd", "steps": 1,
              "train_samples": 10, "lr_grid": [0.01, 0.1]},
        "b": {"task": "diabetes", "learner": "MLP 8 tanh", "optimizer": "adam", "steps": 5,
              "train_samples": 40, "lr_grid": [0.001]},
    }  # fmt: skip
    tuned = {"folder": "t", "huber": "tuned (lr=0.1, delta=0.3)", "mse": "default"}
    return BenchmarkResult(
        entries, ["a", "b"], "test MSE", 6, 1, {"a": 1, "b": 5},
        extra={"conditions": conditions, "tuned": tuned}, higher_is_better=higher_is_better,
    )  # fmt: skip


def test_the_results_json_by_hand() -> None:
    result = _two_rows()
    data = to_json(result, {"name": "x"})
    assert list(data) == [
        "metric", "higher_is_better", "test_tasks", "split", "seeds", "inner_steps", "rows",
        "entries", "comparisons", "min_pairs", "gap_closed", "gap_closed_from_each_baseline",
        "metrics_higher_is_better", "config", "conditions", "tuned",
    ]  # fmt: skip
    assert (data["metric"], data["higher_is_better"], data["test_tasks"], data["split"]) == (
        "test MSE",
        False,
        6,
        "meta_test",
    )
    assert (data["seeds"], data["inner_steps"], data["rows"], data["min_pairs"]) == (
        1,
        {"a": 1, "b": 5},
        ["a", "b"],
        6,
    )
    assert data["metrics_higher_is_better"] == {} and data["config"] == {"name": "x"}
    assert data["conditions"]["b"]["optimizer"] == "adam"
    huber = data["entries"][1]
    ci = huber.pop("ci95")
    assert huber == {
        "row": "a",
        "loss": "huber",
        "role": "baseline",
        "lr": 0.1,
        "param": {"delta": 0.3},
        "mean": 4.75,
        "tasks": 6,
        "diverged": 0,
        "diagnoses": {d: 6 if d == "healthy" else 0 for d in DIAGNOSES},
        "curve": [2.0, 1.0],
        "per_task": HUBER,
        "selection_scores_outer_valid": {"delta=0.3 lr=0.1": 4.0},
    }
    assert ci == pytest.approx(mean_ci(HUBER).half_width, rel=1e-12)
    assert data["entries"][0]["param"] == {} and "metrics" not in data["entries"][0]
    assert data["entries"][5]["diverged"] == 2
    first = data["comparisons"][0]
    paired = compare(result)[0].paired.to_dict()
    assert first == {
        "row": "a",
        "learned": "learned",
        "baseline": "huber",
        **paired,
        "separated": False,
    }
    # (4.75 - 3.5) / (4.75 - 2.5) from huber, (4 - 3.5) / (4 - 2.5) from mse (the best baseline)
    assert data["gap_closed"] == {
        "a": {"learned": {"best_baseline": "mse", "fraction": pytest.approx(1 / 3)}},
        "b": {"learned": {"best_baseline": "mse", "fraction": None}},  # oracle not better
    }
    assert data["gap_closed_from_each_baseline"] == {
        "a": {"learned": {"huber": pytest.approx(5 / 9), "mse": pytest.approx(1 / 3)}},
        "b": {"learned": {"mse": None}},
    }


def test_paired_comparison_as_json_names_every_figure() -> None:
    c = paired_comparison(LEARNED, HUBER)
    assert c.to_dict() == {
        "n": 6,
        "difference": -1.25,
        "difference_ci95": c.difference.half_width,
        "t": c.t,
        "p_t": c.p_t,
        "signed_rank": -21.0,
        "p_wilcoxon": pytest.approx(2 / 64),
        "tests_disagree": False,
        "win_rate": 1.0,
        "verdict": "better",
        "min_pairs": 6,
        "few_pairs": True,
    }


def test_the_results_markdown_line_by_line() -> None:
    # Means and CIs as in the JSON test; comparisons: learned − huber = -1, -1.5, ... (t = -11.2,
    # p_t 1e-4, exact signed-rank p 2/64); learned − mse = -0.5 on every task (p_t 0); row b:
    # +10.5 on every task, CIs 14 ± 2 and 3.5 ± 2 separate. Gaps: 5/9 and 1/3 in row a; row b's
    # oracle is worse than its baseline. Row b has no huber (a dash). The tuned note lists only
    # values that came from metaloss tune.
    rule = verdict_rule(6, "tasks")
    expected = [
        "## Conditions (none of them seen in meta-training)",
        "",
        "| row | task | learner | inner optimiser | steps | train samples per task | lr grid |",
        "|---|---|---|---|---|---|---|",
        "| a | sine | linear | sgd | 1 | 10 | 0.01, 0.1 |",
        "| b | diabetes | MLP 8 tanh | adam | 5 | 40 | 0.001 |",
        "",
        "## test MSE after training (mean ± 95% CI over 6 held-out tasks × 1 seed(s), averaged per task)",
        "",
        "| loss | a | b |",
        "|---|---|---|",
        "| learned | **3.5 ± 2** | 14 ± 2 |",
        "| huber | 4.75 ± 2.1 | — |",
        "| mse | 4 ± 2 | **3.5 ± 2** |",
        "| oracle | 2.5 ± 2 | 4.75 ± 2.1 |",
        "",
        "Bold: lowest mean among non-oracle losses in the column.",
        "",
        "## Learned vs baselines (paired over tasks; difference = learned − baseline)",
        "",
        rule,
        "",
        "| row | learned | vs | n | mean difference (95% CI) | win rate | p (paired t) | p (Wilcoxon) | verdict | 95% CIs separate |",
        "|---|---|---|---|---|---|---|---|---|---|",
        "| a | learned | huber | 6 ⚠ | -1.25 [-1.54, -0.963] | 100% | 1.0e-04 | 0.031 | better | no |",
        "| a | learned | mse | 6 ⚠ | -0.5 [-0.5, -0.5] | 100% | 0.0e+00 | 0.031 | better | no |",
        "| b | learned | mse | 6 ⚠ | +10.5 [+10.5, +10.5] | 0% | 0.0e+00 | 0.031 | worse | yes |",
        "",
        "Gap closed = (best baseline − learned) / (best baseline − oracle).",
        "",
        "| row | learned | best baseline | gap closed |",
        "|---|---|---|---|",
        "| a | learned | mse | 33% |",
        "| b | learned | mse | n/a (oracle not better) |",
        "",
        "Gap closed from each baseline = (baseline − learned) / (baseline − oracle).",
        "",
        "| row | learned | huber | mse |",
        "|---|---|---|---|",
        "| a | learned | 56% | 33% |",
        "| b | learned | n/a | n/a |",
        "",
        "## Selected on meta-train tasks (outer_valid split; never a test split)",
        "",
        "| loss | a | b |",
        "|---|---|---|",
        "| learned | lr=0.01 | lr=0.01 |",
        "| huber | delta=0.3, lr=0.1 | — |",
        "| mse | lr=0.01 | lr=0.01 |",
        "| oracle | lr=0.01 | lr=0.01 |",
        "",
        "Tuned with `metaloss tune` on meta-validation tasks instead (no selection here): huber: tuned (lr=0.1, delta=0.3).",
        "",
        "## Training-curve diagnoses (runs, all rows; judged on the test MSE)",
        "",
        "| loss | healthy | overfitting | oscillation | plateau | divergence |",
        "|---|---|---|---|---|---|",
        "| learned | 12 | 0 | 0 | 0 | 0 |",
        "| huber | 6 | 0 | 0 | 0 | 0 |",
        "| mse | 12 | 0 | 0 | 0 | 0 |",
        "| oracle | 12 | 0 | 0 | 0 | 0 |",
        "",
        "",
    ]
    assert markdown(_two_rows()).split("\n") == expected


def test_the_results_markdown_bolds_the_highest_mean_when_higher_is_better() -> None:
    lines = markdown(_two_rows(higher_is_better=True)).splitlines()
    assert "Bold: highest mean among non-oracle losses in the column." in lines
    assert "| huber | **4.75 ± 2.1** | — |" in lines  # the highest non-oracle mean of row a
    assert "| learned | 3.5 ± 2 | **14 ± 2** |" in lines


def test_the_results_csv_leaves_an_unset_parameter_value_empty(tmp_path: Path) -> None:
    write_csv(_two_rows(), tmp_path / "r.csv")
    raw = (tmp_path / "r.csv").read_bytes()
    assert raw.count(b"\r\n") == 8 and b"\r\r\n" not in raw  # header + 7 entries
    rows = list(csv.reader(raw.decode().splitlines()))
    assert rows[1][:6] == ["a", "learned", "learned", "0.01", "", ""]
    assert rows[2][:6] == ["a", "huber", "baseline", "0.1", "delta", "0.3"]


def _undiagnosed(result: BenchmarkResult, names: set[str]) -> BenchmarkResult:
    entries = [replace(e, diagnoses={}) if e.name in names else e for e in result.entries]
    return replace(result, entries=entries)


def test_a_loss_whose_curves_were_not_diagnosed_shows_a_dash_not_zero_counts(
    tmp_path: Path,
) -> None:
    result = _undiagnosed(_two_rows(), {"huber"})  # as a classical fit's entry is
    lines = markdown(result).splitlines()
    assert "| huber | — | — | — | — | — |" in lines
    assert "| mse | 12 | 0 | 0 | 0 | 0 |" in lines
    write_csv(result, tmp_path / "r.csv")
    rows = list(csv.reader((tmp_path / "r.csv").read_text().splitlines()))
    start = rows[0].index(DIAGNOSES[0])
    assert rows[2][start : start + len(DIAGNOSES)] == [""] * len(DIAGNOSES)  # huber
    assert rows[1][start : start + len(DIAGNOSES)] == ["6", "0", "0", "0", "0"]  # learned


def test_a_result_with_no_diagnosed_curve_has_no_diagnosis_table() -> None:
    result = _undiagnosed(_two_rows(), {"learned", "huber", "mse", "oracle"})  # as RL's is
    text = markdown(result)
    assert "Training-curve diagnoses" not in text
    assert "## Selected on meta-train tasks" in text


# ------------------------------------------------------------------------------ calibration


def _binned_ece(logits: torch.Tensor, labels: torch.Tensor, bins: int) -> float:
    """The expected calibration error by its definition (Guo et al. 2017), one bin at a time."""
    probs = torch.softmax(logits.double(), -1)
    confidence, predicted = probs.max(-1)
    correct = (predicted == labels).double()
    total = 0.0
    for b in range(1, bins + 1):
        member = (confidence > (b - 1) / bins) & (confidence <= b / bins)
        total += abs(float((correct[member] - confidence[member]).sum()))
    return total / len(labels)


@pytest.mark.parametrize(("classes", "bins"), [(3, 15), (3, 10), (20, 4)])
def test_calibration_error_equals_the_binned_definition_over_many_bins(
    classes: int, bins: int
) -> None:
    generator = torch.Generator().manual_seed(3)
    logits = 2.0 * torch.randn(400, classes, generator=generator, dtype=torch.float64)
    confidence, predicted = torch.softmax(logits, -1).max(-1)
    # right in even bins, wrong in odd ones: neighbouring bins' gaps have opposite signs, so
    # merging or shifting bins changes the error (with random labels every bin is overconfident
    # and any binning gives the same ECE)
    right = torch.ceil(confidence * bins).long() % 2 == 0
    labels = torch.where(right, predicted, (predicted + 1) % classes)
    occupied = torch.unique(torch.ceil(confidence * bins))
    assert len(occupied) >= 3 and (classes < bins or float(occupied[0]) == 1.0)  # lowest bin used
    ece = float(calibration_error(logits, labels, bins))
    assert ece == pytest.approx(_binned_ece(logits, labels, bins), rel=1e-12, abs=1e-15)
    stacked = calibration_error(
        torch.stack([logits, logits.flip(0)]), torch.stack([labels, labels.flip(0)]), bins
    )
    torch.testing.assert_close(stacked, torch.tensor([ece, ece], dtype=torch.float64))


# ------------------------------------------------------------------------------ progress, RL, multi-task


def test_the_progress_plan_leaves_out_a_classical_fit_on_a_row_whose_learner_is_not_linear() -> (
    None
):
    from metaloss.evaluation.benchmark import plan_size

    linear = Row("linear", LineTargets(), _linear_config())
    mlp_config = parse({"learner": {"hidden": [4]}, "evaluation": {"lr_grid": [0.1]}})
    mlp = Row("mlp", LineTargets(), mlp_config)
    fit = _fit_contender(SlopeFit(), (1.0, 2.0))  # 2 selection values + 1 test on linear rows
    assert plan_size([linear], [fit]) == 3 and plan_size([mlp], [fit]) == 0
    assert plan_size([linear, mlp], [fit]) == 3


def test_a_meta_gradient_norm_exactly_the_spike_ratio_times_its_median_is_a_spike() -> None:
    from metaloss.evaluation.training_health import SPIKE_RATIO, find_spikes

    records = [SimpleNamespace(step=i + 1, grad_norm=2.0, skipped=False) for i in range(12)]
    records.append(SimpleNamespace(step=13, grad_norm=2.0 * SPIKE_RATIO, skipped=False))
    (spike,) = find_spikes(records)  # type: ignore[arg-type]
    assert (spike.step, spike.ratio) == (13, SPIKE_RATIO)


def test_a_free_output_learner_is_scored_on_its_prediction_outputs_only() -> None:
    from metaloss.evaluation.benchmark import _LeadingOutputs
    from metaloss.tasks import make_family

    config = parse({})
    base = make_family(config.task)
    family = _LeadingOutputs(base)
    assert (family.kind, family.in_features, family.out_features) == ("regression", 1, 1)
    pred = torch.tensor([[[1.0, 5.0, -3.0], [2.0, 0.0, 9.0]]])
    target = torch.tensor([[[0.0], [4.0]]])
    torch.testing.assert_close(
        family.objective(pred, target), base.objective(pred[..., :1], target)
    )
    for split in (Split.META_TRAIN, Split.META_TEST):
        torch.testing.assert_close(family.task(split, 3), base.task(split, 3))
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    torch.testing.assert_close(
        family.make_task(g1, Split.META_VALID), base.make_task(g2, Split.META_VALID)
    )


def test_single_task_references_train_equal_weights_on_one_head_each() -> None:
    from metaloss.evaluation.multitask import single_task_contenders
    from metaloss.losses.multitask import equal_weights
    from metaloss.tasks.multitask import only_head

    contenders = single_task_contenders(3)
    assert [c.name for c in contenders] == [f"single-task head {t}" for t in range(3)]
    assert {c.role for c in contenders} == {"baseline"} and all(
        c.make() is equal_weights for c in contenders
    )
    y = torch.tensor([[[1.0, 2.0, 3.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0]]])  # 3 heads, all present
    batch = Batch(torch.zeros(1, 1, 1), y, {})
    for t, c in enumerate(contenders):
        assert c.view is not None
        seen = c.view(Task(batch, batch, batch))
        for part in seen:
            torch.testing.assert_close(part.y, only_head(y, t))


# ------------------------------------------------------------------------------ contenders and rows


def _squared(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return (p - t) ** 2


def test_contenders_from_config_carry_their_roles_parameters_fits_and_views() -> None:
    from metaloss.evaluation.benchmark import contenders_from_config
    from metaloss.evaluation.fits import huber_regressor
    from metaloss.tasks import family_spec

    config = parse(
        {
            "task": {"family": "outliers"},
            "benchmark": {
                "oracle": True,
                "learned_mix": [0.0, 0.5],
                "baselines": [
                    {"name": "huber", "param": "delta", "values": [0.5, 1.0]},
                    {"name": "barron", "param": "scale_init", "values": [1.0]},
                    {"name": "huber_regressor", "param": "epsilon", "values": [1.35]},
                ],
            },
        }
    )
    learned, mwn = _squared, lambda p, t: (p - t).abs()
    got = contenders_from_config(config, {"l": learned}, None, {"mwn": mwn})
    rows = [(c.name, c.role, c.param, c.values, c.free_outputs) for c in got]
    assert rows == [
        ("l", "learned", "", (), 0),
        ("l + mse mix", "learned", "mix", (0.0, 0.5), 0),
        ("mwn", "baseline", "", (), 0),
        ("huber", "baseline", "delta", (0.5, 1.0), 0),
        ("barron", "baseline", "scale_init", (1.0,), 2),
        ("huber_regressor", "baseline", "epsilon", (1.35,), 0),
        ("oracle (mse on clean)", "oracle", "", (), 0),
    ]
    by_name = {c.name: c for c in got}
    assert by_name["l"].make() is learned and by_name["mwn"].make() is mwn
    assert by_name["huber_regressor"].fit is huber_regressor
    assert all(c.fit is None for c in got if c.name != "huber_regressor")
    oracle = family_spec("outliers").oracle
    assert oracle is not None and by_name["oracle (mse on clean)"].view is oracle.view
    assert by_name["oracle (mse on clean)"].make is oracle.loss
    pred, target = torch.tensor([[3.0]]), torch.tensor([[1.0]])
    torch.testing.assert_close(
        by_name["l + mse mix"].make(mix=0.5)(pred, target), torch.tensor([[4.0]])
    )
    torch.testing.assert_close(
        by_name["huber"].loss(0.5)(pred, target), baseline("huber", delta=0.5)(pred, target)
    )
    with pytest.raises(
        ConfigError,
        match=r"^benchmark.baselines\[0\].name: expected one of .*huber, huber_regressor.*, got 'nope'$",
    ):
        contenders_from_config(
            parse({"benchmark": {"baselines": [{"name": "nope"}]}}), {"l": learned}
        )


def test_the_standardised_equal_weights_baseline_sees_standardised_targets() -> None:
    import metaloss.evaluation.multitask  # noqa: F401  (registers the view)
    from metaloss.evaluation.benchmark import contenders_from_config
    from metaloss.tasks.multitask import standardise_targets

    config = parse(
        {
            "task": {"family": "multitask"},
            "benchmark": {"oracle": False, "baselines": [{"name": "equal_weights_standardised"}]},
        }
    )
    (contender,) = contenders_from_config(config, {})
    assert contender.view is standardise_targets


def _row_config(seed: int, lr_grid: list[float], **evaluation: Any):  # type: ignore[no-untyped-def]
    return parse(
        {
            "seed": seed,
            "dtype": "float64",
            "learner": {"hidden": []},
            "inner": {"steps": 1, "optimizer": "sgd", "lr": 0.1},
            "evaluation": {"grid_tasks": 6, "lr_grid": lr_grid, **evaluation},
        }
    )


def _initial_residuals(data: Any) -> torch.Tensor:
    """``w + b - y`` of each run of a ConstantTargets eval set, from its initial parameters."""
    w, b = data.inits["0.weight"][:, 0, 0], data.inits["0.bias"][:, 0]
    return w + b - data.tasks.train.y[:, 0, 0]


def test_run_row_tests_at_the_selected_value_on_the_seeded_runs_and_records_everything() -> None:
    # Huber on targets near 100 (|e| > δ always): score (|e| - 2 lr δ)²; best δ = 5 at lr = 10
    # (test_selection.py). Run seed 3: the grid and test initialisations are offset by
    # 3 × INIT_SEED_STRIDE from the base seeds; the entry is tested at δ = 5, not the default.
    from metaloss.evaluation.benchmark import Contender
    from metaloss.seeds import GRID_INIT_SEED, INIT_SEED_STRIDE, TEST_INIT_SEED

    config = _row_config(3, [5.0, 10.0], test_tasks=3, seeds=2)
    family = ConstantTargets(offset=100.0)
    huber = Contender(
        "huber", "baseline", lambda **p: baseline("huber", **p), "delta", (1.0, 5.0, 8.0)
    )
    mse = Contender("mse", "baseline", lambda: baseline("mse"), lr_grid=(0.01,))
    steps: list[str] = []
    entries = run_row(Row("r", family, config), [huber, mse], steps.append)
    assert steps == ["r: select huber"] * 3 + ["r: test huber", "r: test mse"]
    entry = entries[0]
    assert (entry.name, entry.role, entry.param, entry.diverged) == (
        "huber",
        "baseline",
        "delta",
        0,
    )
    assert (entry.selection.value, entry.selection.lr) == (5.0, 10.0)
    grid = eval_set(family, config, Split.META_TRAIN, 6, 1, GRID_INIT_SEED + 3 * INIT_SEED_STRIDE)
    g = _initial_residuals(grid).abs()
    assert entry.selection.scores["delta=8 lr=5"] == pytest.approx(
        float(((g - 80.0) ** 2).mean()), rel=1e-10
    )
    test = eval_set(family, config, Split.META_TEST, 3, 2, TEST_INIT_SEED + 3 * INIT_SEED_STRIDE)
    e = _initial_residuals(test).abs()
    after = (e - 2 * 10.0 * 5.0) ** 2  # [seeds * tasks], seed-major
    torch.testing.assert_close(entry.per_task, after.reshape(2, 3).mean(0))
    torch.testing.assert_close(entry.curve, torch.stack([(e**2).mean(), after.mean()]))
    assert (
        entry.diagnoses["healthy"]
        + entry.diagnoses["plateau"]
        + entry.diagnoses["overfitting"]
        + entry.diagnoses["oscillation"]
        == 6
    )
    assert entries[1].name == "mse" and entries[1].selection.lr == 0.01


def test_a_classical_fit_entry_does_not_stop_the_row() -> None:
    config = _linear_config(test_tasks=3, seeds=2)
    mse = Contender("mse", "baseline", lambda: baseline("mse"))
    steps: list[str] = []
    entries = run_row(
        Row("r", LineTargets(), config), [_fit_contender(SlopeFit(), (2.0,)), mse], steps.append
    )
    assert [e.name for e in entries] == ["slope fit", "mse"]
    assert steps == ["r: select slope fit", "r: test slope fit", "r: test mse"]


def test_a_single_value_at_a_single_rate_is_kept_without_selection() -> None:
    config = _row_config(0, [0.1])
    tuned = Contender(
        "huber", "baseline", lambda **p: baseline("huber", **p), "delta", (0.3,), lr_grid=(0.2,)
    )
    data = eval_set(ConstantTargets(), config, Split.META_TRAIN, 2)
    chosen = select(tuned, Row("r", ConstantTargets(), config), data)
    assert (chosen.lr, chosen.value, chosen.scores) == (0.2, 0.3, {})


def test_comparisons_follow_the_result_direction_and_name_missing_entries() -> None:
    result = _two_rows(higher_is_better=True)
    first = compare(result)[0]  # learned (3.5) vs huber (4.75), now higher is better
    assert (first.baseline, first.paired.verdict, first.win_rate) == ("huber", "worse", 0.0)
    with pytest.raises(KeyError, match="no entry 'huber' in row 'b'"):
        result.entry("b", "huber")


def test_intervals_that_touch_overlap() -> None:
    assert MeanCI(0.0, 1.0, 3).overlaps(MeanCI(2.0, 1.0, 3))
    assert MeanCI(2.0, 1.0, 3).overlaps(MeanCI(0.0, 1.0, 3))
    assert not MeanCI(0.0, 1.0, 3).overlaps(MeanCI(2.5, 1.0, 3))


def test_the_verdict_rule_sentence() -> None:
    assert verdict_rule(8, "tasks") == (
        'Verdicts: "better"/"worse" only when the paired t test and the Wilcoxon signed-rank test '
        'both give p < 0.05 in the same direction, on at least 8 tasks (fewer: "too few pairs"); '
        'otherwise "no significant difference". † marks a no-difference verdict where the tests '
        "disagree (one rejects, or both reject in opposite directions: mean and ranks point "
        "different ways). Comparisons on fewer than 10 tasks are marked ⚠. Wilcoxon zero "
        "differences split their rank between both signs; the win rate counts a tie as half."
    )


# ------------------------------------------------------------------------------ statistics edges


def test_mean_ci_edge_cases_keep_their_counts_and_confidence() -> None:
    assert mean_ci([5.0]) == MeanCI(5.0, math.inf, 1)
    empty = mean_ci([])
    assert empty.n == 0 and math.isnan(empty.mean) and math.isnan(empty.half_width)
    broken = mean_ci([1.0, math.inf])
    assert broken.n == 2 and math.isnan(broken.half_width)
    # t_{2, 0.95} = 2.919986 (two-sided 90%): s = 1 over three values
    assert mean_ci([1.0, 2.0, 3.0], confidence=0.9).half_width == pytest.approx(
        2.919985580355516 / math.sqrt(3), rel=1e-12
    )
    from metaloss.evaluation.stats import t_quantile

    assert math.isnan(t_quantile(0.5))


def test_two_pairs_already_give_a_t_test_and_all_zero_differences_a_zero_rank_sum() -> None:
    import scipy.stats

    from metaloss.evaluation.stats import paired_t_test, wilcoxon_test

    t, p = paired_t_test([1.0, 2.0], [0.0, 0.5])
    expected = scipy.stats.ttest_rel([1.0, 2.0], [0.0, 0.5])
    assert (t, p) == (pytest.approx(expected.statistic), pytest.approx(expected.pvalue))
    assert wilcoxon_test([1.0, 2.0], [1.0, 2.0]) == (0.0, 1.0)
    assert not math.isnan(wilcoxon_test([1.0, 2.0], [0.0, 0.5])[1])


def test_wilcoxon_above_the_exhaustive_size_splits_zero_differences() -> None:
    import scipy.stats

    from metaloss.evaluation.stats import wilcoxon_test

    d = np.array(
        [0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, -0.5, 12.0]
    )
    _, p = wilcoxon_test(d, np.zeros_like(d))
    assert p == pytest.approx(
        float(scipy.stats.wilcoxon(d, zero_method="zsplit").pvalue), rel=1e-12
    )
    assert p != pytest.approx(float(scipy.stats.wilcoxon(d).pvalue), rel=1e-6)


def test_paired_cells_format_edges() -> None:
    from metaloss.evaluation.formatting import format_p, paired_cells

    assert format_p(1e-3) == "0.001" and format_p(9.99e-4) == "1.0e-03"
    one = paired_comparison([1.0], [2.0], min_pairs=1)  # one pair: no interval, no p-value
    assert paired_cells(one)[:3] == ["1 ⚠", "-1", "100%"]
    none = paired_comparison([], [])
    assert paired_cells(none)[2] == "n/a"
    # both tests reject in the same direction: a verdict, no dagger even though few pairs
    better = paired_comparison(LEARNED, HUBER)
    assert paired_cells(better)[-1] == "better" and better.tests_disagree is False
    disagree = paired_comparison(
        [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], [1.1, 2.1, 3.1, 4.1, 5.1, 6.1, 0.0]
    )
    assert disagree.verdict == "no significant difference"
    assert paired_cells(disagree)[-1] == "no significant difference" + (
        "†" if disagree.tests_disagree else ""
    )
    worse_but_disagree = replace(better, verdict="better", p_wilcoxon=0.5)
    assert worse_but_disagree.tests_disagree and paired_cells(worse_but_disagree)[-1] == "better"
