"""Reports against hand-computed figures: comparisons (difference, CI, win rate, p-values,
verdict, minimum pairs), gap closed, the JSON/Markdown they are written into, the comparison
that `metaloss train` prints, and the tuning table."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
import scipy.stats
import torch

from metaloss.config import parse
from metaloss.evaluation.benchmark import BenchmarkResult, Entry, Selection, compare
from metaloss.evaluation.compare import compare_with_mse
from metaloss.evaluation.diagnostics import DIAGNOSES
from metaloss.evaluation.report import markdown, to_json, write_csv
from metaloss.evaluation.stats import mean_ci
from metaloss.losses import baseline
from metaloss.tuning.objective import PER_TASK_ATTR
from metaloss.tuning.report import best_vs_runner_up, trial_rows, write_trials

LEARNED = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]  # mean 3.5
WORSE = [2.0, 3.5, 4.0, 5.5, 6.0, 7.5]  # learned - this: -1, -1.5, ... (mean -1.25)
TIED = [1.0, 2.0, 2.0, 5.0, 5.0, 7.0]  # learned - this: 0, 0, 1, -1, 0, -1 (mean -1/6)
ORACLE = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]  # mean 2.5


def _entry(row: str, name: str, role: str, values: list[float]) -> Entry:
    return Entry(
        row,
        name,
        role,  # type: ignore[arg-type]
        Selection(0.01, None, {}),
        "",
        torch.tensor(values, dtype=torch.float64),
        torch.tensor([1.0, 0.5]),
        {d: len(values) if d == "healthy" else 0 for d in DIAGNOSES},
        0,
    )


def _result(rows: dict[str, int], min_pairs: int = 6) -> BenchmarkResult:
    """Rows named by their number of tasks, each with the four losses above (repeated)."""
    entries = []
    for row, n in rows.items():
        for name, role, values in [
            ("learned", "learned", LEARNED),
            ("worse", "baseline", WORSE),
            ("tied", "baseline", TIED),
            ("oracle", "oracle", ORACLE),
        ]:
            entries.append(_entry(row, name, role, (values * 4)[:n]))
    return BenchmarkResult(
        entries, list(rows), "test MSE", max(rows.values()), 1, {r: 2 for r in rows},
        min_pairs=min_pairs,
    )  # fmt: skip


def test_comparisons_by_hand() -> None:
    result = _result({"six": 6})
    by_baseline = {c.baseline: c for c in compare(result)}
    worse, tied = by_baseline["worse"], by_baseline["tied"]
    assert worse.difference == pytest.approx(-1.25) and worse.win_rate == 1.0
    t = -1.25 / (math.sqrt(0.075) / math.sqrt(6))
    assert worse.paired.t == pytest.approx(t, rel=1e-12)
    assert worse.p_value == pytest.approx(2 * scipy.stats.t.sf(abs(t), 5), rel=1e-9)
    assert worse.paired.p_wilcoxon == pytest.approx(2 / 64)
    assert worse.paired.verdict == "better"
    # two wins, three ties, one loss: (2 + 3/2) / 6
    assert tied.win_rate == pytest.approx(3.5 / 6)
    assert tied.difference == pytest.approx(-1 / 6)
    assert tied.paired.verdict == "no significant difference"
    assert not worse.separated  # the two 95% CIs (3.5 ± 1.96, 4.75 ± 2.1) overlap


def test_gap_closed_by_hand() -> None:
    result = _result({"six": 6})
    # The best baseline is "tied" (mean 11/3): (11/3 - 3.5) / (11/3 - 2.5) = 1/7.
    best, fraction = result.gap_closed("six", "learned")  # type: ignore[misc]
    assert best == "tied" and fraction == pytest.approx(1 / 7)
    # From "worse" (mean 4.75): (4.75 - 3.5) / (4.75 - 2.5) = 5/9.
    assert result.gap_closed("six", "learned", "worse") == ("worse", pytest.approx(5 / 9))
    gaps = to_json(result)["gap_closed"]["six"]["learned"]
    assert gaps == {"best_baseline": "tied", "fraction": pytest.approx(1 / 7)}


def test_gap_closed_is_negative_when_the_learned_loss_is_worse_than_the_baseline() -> None:
    result = _result({"six": 6})
    swapped = [
        _entry("six", e.name, e.role, WORSE if e.name == "learned" else LEARNED)
        if e.name in ("learned", "worse")
        else e
        for e in result.entries
    ]
    result.entries = swapped
    # best baseline now "worse"'s slot holds LEARNED (3.5); learned 4.75: (3.5 - 4.75) / 1.
    assert result.gap_closed("six", "learned") == ("worse", pytest.approx(-1.25))


def test_no_gap_without_an_oracle_that_is_better() -> None:
    result = _result({"six": 6})
    result.entries = [e for e in result.entries if e.role != "oracle"]
    assert result.gap_closed("six", "learned") is None


def test_minimum_pairs_and_few_pairs_flags_in_every_output(tmp_path: Path) -> None:
    result = _result({"five": 5, "six": 6, "twelve": 12})
    verdicts = {(c.row, c.baseline): c.paired.verdict for c in compare(result)}
    assert verdicts[("five", "worse")] == "too few pairs"
    assert verdicts[("six", "worse")] == "better"
    assert verdicts[("twelve", "worse")] == "better"
    table = markdown(result)
    assert "on at least 6 tasks" in table  # the rule is stated
    assert "| five | learned | worse | 5 ⚠ |" in table
    assert "| six | learned | worse | 6 ⚠ |" in table
    assert "| twelve | learned | worse | 12 |" in table
    assert "too few pairs" in table
    data = json.loads(json.dumps(to_json(result)))
    first = data["comparisons"][0]
    assert first["row"] == "five" and first["n"] == 5 and first["verdict"] == "too few pairs"
    assert first["few_pairs"] is True and data["min_pairs"] == 6
    strict = _result({"twelve": 12}, min_pairs=13)
    assert all(c.paired.verdict == "too few pairs" for c in compare(strict))
    assert "on at least 13 tasks" in markdown(strict)
    write_csv(result, tmp_path / "r.csv")


def test_scores_carry_the_t_interval() -> None:
    result = _result({"six": 6})
    learned = next(e for e in to_json(result)["entries"] if e["loss"] == "learned")
    # s = sqrt(3.5), t_5 = 2.570582: 2.570582 * sqrt(3.5 / 6)
    assert learned["mean"] == 3.5 and learned["ci95"] == pytest.approx(
        2.570582 * math.sqrt(3.5 / 6)
    )
    assert "| learned | **3.5 ± 2** |" in markdown(result)


def test_extra_metrics_are_reported_with_their_interval(tmp_path: Path) -> None:
    result = _result({"six": 6})
    accuracy = torch.tensor([0.5, 0.6, 0.7, 0.8, 0.9, 1.0], dtype=torch.float64)
    result.entries[0] = replace(result.entries[0], metrics={"accuracy": accuracy})
    result.metrics = {"accuracy": True}
    learned = to_json(result)["entries"][0]
    assert learned["metrics"]["accuracy"]["mean"] == pytest.approx(0.75)
    # s = sqrt(0.035): t_5 * s / sqrt(6)
    assert learned["metrics"]["accuracy"]["ci95"] == pytest.approx(
        2.570582 * math.sqrt(0.035 / 6), rel=1e-6
    )
    assert learned["metrics"]["accuracy"]["per_task"] == pytest.approx(accuracy.tolist())
    write_csv(result, tmp_path / "r.csv")
    line = (tmp_path / "r.csv").read_text().splitlines()[1].split(",")
    assert float(line[-2]) == pytest.approx(0.75) and float(line[-1]) == pytest.approx(
        2.570582 * math.sqrt(0.035 / 6), rel=1e-6
    )
    assert "## test accuracy (mean ± 95% CI over tasks; higher is better)" in markdown(result)


def test_every_report_file_by_hand(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from metaloss.evaluation.report import write_report

    result = _result({"six": 6})
    huber = replace(result.entries[1], param="delta", selection=Selection(0.1, 0.3, {}))
    result.entries[1] = huber
    accuracy = torch.tensor([0.5, 0.6, 0.7, 0.8, 0.9, 1.0], dtype=torch.float64)
    result.entries[0] = replace(result.entries[0], metrics={"accuracy": accuracy})
    result.metrics = {"accuracy": True}
    paths = write_report(result, tmp_path / "out", {"name": "x"})
    assert [p.name for p in paths] == [
        "results.json",
        "results.csv",
        "results.md",
        "learning_curves.png",
    ]
    data = json.loads(paths[0].read_text())  # strict JSON: no NaN or Infinity
    assert data["config"] == {"name": "x"} and data["entries"][1]["param"] == {"delta": 0.3}
    assert paths[2].read_text() == markdown(result)
    assert paths[3].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.reader(paths[1].read_text().splitlines()))
    assert rows[0] == [
        "row", "loss", "role", "lr", "param", "value", "mean", "ci95", "tasks", "diverged",
        *DIAGNOSES, "accuracy_mean", "accuracy_ci95",
    ]  # fmt: skip
    ci = 2.570582 * math.sqrt(3.5 / 6)
    first, second = rows[1], rows[2]
    assert first[:6] == ["six", "learned", "learned", "0.01", "", ""]
    assert float(first[6]) == 3.5 and float(first[7]) == pytest.approx(ci, rel=1e-6)
    assert first[8:10] == ["6", "0"] and first[10 : 10 + len(DIAGNOSES)] == [
        "6" if d == "healthy" else "0" for d in DIAGNOSES
    ]
    assert float(first[-2]) == pytest.approx(0.75)
    assert second[:6] == ["six", "worse", "baseline", "0.1", "delta", "0.3"] and second[-2:] == [
        "",
        "",
    ]
    assert float(second[6]) == pytest.approx(4.75)
    events = EventAccumulator(str(tmp_path / "out"))
    events.Reload()
    curve = [(e.step, e.value) for e in events.Scalars("benchmark/six/learned")]
    assert curve == [(0, 1.0), (1, 0.5)]
    (final,) = events.Scalars("final/six/accuracy/learned")
    assert final.value == pytest.approx(0.75)
    assert "benchmark/results/text_summary" in events.Tags()["tensors"]


# ------------------------------------------------------------------------ metaloss train's report


def test_train_comparison_pairs_by_task_over_seeds() -> None:
    from _families import ConstantTargets

    config = parse(
        {
            "dtype": "float64",
            "learner": {"hidden": []},
            "inner": {"steps": 1, "optimizer": "sgd", "lr": 0.05},
            "evaluation": {"grid_tasks": 4, "test_tasks": 7, "seeds": 2, "lr_grid": [0.05, 0.2]},
        }
    )
    # The "learned" loss is MSE itself: at the same lr every pair is a tie.
    comparison = compare_with_mse(baseline("mse"), ConstantTargets(), config)
    rows = {r.name: r for r in comparison.rows}
    assert comparison.runs == 14 and comparison.tasks == 7
    tuned = rows["learned (tuned lr)"]
    assert tuned.lr == 0.2 and rows["mse (tuned lr)"].vs_tuned is None
    assert tuned.vs_tuned is not None and tuned.vs_tuned.n == 7
    assert (tuned.vs_tuned.p_t, tuned.vs_tuned.p_wilcoxon, tuned.vs_tuned.win_rate) == (
        1.0,
        1.0,
        0.5,
    )
    assert comparison.verdict().startswith("tuned learned ties tuned MSE")
    # At the meta-training lr (0.05 vs tuned 0.2) the residual factor is 0.8 against 0.2:
    # worse on all 7 tasks (exact signed-rank p = 2 / 2^7); the differences 0.6 e² vary too much
    # for the t test, so the verdict is no difference.
    slow = rows["learned"].vs_tuned
    assert slow is not None and slow.win_rate == 0.0 and slow.difference.mean > 0
    assert slow.p_wilcoxon == pytest.approx(2 / 128) and slow.p_t > 0.05
    assert slow.verdict == "no significant difference"
    # Each run's final error is e² (1 - 4 lr)²: the same-lr row is 16 times the tuned one, run by
    # run, and the tuned learned row (MSE at 0.2) equals tuned MSE's.
    assert rows["learned"].test.n == tuned.test.n == 14
    assert rows["learned"].test.mean == pytest.approx(16 * tuned.test.mean, rel=1e-9)
    assert rows["learned"].test.half_width == pytest.approx(16 * tuned.test.half_width, rel=1e-9)
    assert tuned.test.mean == pytest.approx(rows["mse (tuned lr)"].test.mean, rel=1e-12)
    text = comparison.markdown()
    assert "on at least 6 tasks" in text and "| 7 ⚠ |" in text
    assert "7 held-out tasks × 2 seed(s)" in text
    data = json.loads(json.dumps(comparison.to_dict()))
    assert data["rows"][0]["vs_tuned"]["n"] == 7 and data["tasks"] == 7
    # Steps to reach MSE's final error at the same lr (0.64 e²) and tuned MSE's (0.04 e²).
    assert (rows["learned"].steps_to_mse, rows["learned"].steps_to_tuned_mse) == (1, None)
    assert (tuned.steps_to_mse, tuned.steps_to_tuned_mse) == (1, 1)
    assert "| learned | 0.05 | meta-training |" in text and "| 1 | never | 0 |" in text
    assert data["lr_selection_scores_outer_valid"]["mse"].keys() == {"0.05", "0.2"}
    strict = compare_with_mse(
        baseline("mse"),
        ConstantTargets(),
        replace(config, evaluation=replace(config.evaluation, min_pairs=8)),
    )
    assert {r.vs_tuned.verdict for r in strict.rows if r.vs_tuned} == {"too few pairs"}
    assert strict.verdict().startswith("tuned learned vs tuned MSE: too few tasks to tell")
    assert "on at least 8 tasks" in strict.markdown()


def _comparison(paired, min_pairs: int = 6):  # type: ignore[no-untyped-def]
    from metaloss.evaluation.compare import Comparison, ComparisonRow

    def row(name: str, source: str, vs):  # type: ignore[no-untyped-def]
        return ComparisonRow(name, 0.01, source, mean_ci([1.0, 2.0]), 3, None, 0, vs)

    rows = [
        row("learned (tuned lr)", "grid on meta-train tasks", paired),
        row("mse (tuned lr)", "grid on meta-train tasks", None),
    ]
    return Comparison(rows, 12, 5, {"mse": {0.01: 1.5}}, "MSE", tasks=6, min_pairs=min_pairs)


def test_train_comparison_verdicts_table_and_json_by_hand() -> None:
    from metaloss.evaluation.formatting import format_p, paired_cells
    from metaloss.evaluation.stats import paired_comparison

    better = paired_comparison(LEARNED, WORSE)
    text = _comparison(better).verdict()
    assert text == (
        f"tuned learned beats tuned MSE: paired Δ {better.difference} over 6 tasks "
        f"(p t {format_p(better.p_t)}, p Wilcoxon 0.031)"
    )
    assert (
        _comparison(paired_comparison(WORSE, LEARNED))
        .verdict()
        .startswith("tuned learned loses to tuned MSE: paired Δ 1.25 ± ")
    )
    tie = paired_comparison(LEARNED, TIED)
    assert _comparison(tie).verdict().startswith("tuned learned ties tuned MSE")
    broken = paired_comparison([*LEARNED[:5], math.inf], WORSE)
    assert _comparison(broken).verdict().startswith("tuned learned vs tuned MSE: a run did not")
    table = _comparison(better).markdown().splitlines()
    assert table[0].startswith("Test MSE after 5 inner steps on 6 held-out tasks × 2 seed(s)")
    assert table[4] == (
        "| loss | lr | lr from | test MSE | steps to MSE@same-lr final | steps to tuned-MSE final "
        "| diverged | n | mean difference (95% CI) | win rate | p (paired t) | p (Wilcoxon) | verdict |"
    )
    assert table[5] == "|" + "---|" * 13
    assert table[6] == (
        "| learned (tuned lr) | 0.01 | grid on meta-train tasks | 1.5 ± 6.4 | 3 | never | 0 | "
        + " | ".join(paired_cells(better))
        + " |"
    )
    assert table[7] == (
        "| mse (tuned lr) | 0.01 | grid on meta-train tasks | 1.5 ± 6.4 | 3 | never | 0 "
        "| (reference) |  |  |  |  |  |"
    )
    assert table[8] == "" and table[9] == _comparison(better).verdict()
    data = _comparison(better).to_dict()
    assert {k: v for k, v in data.items() if k != "rows"} == {
        "runs": 12,
        "tasks": 6,
        "inner_steps": 5,
        "min_pairs": 6,
        "lr_selection_scores_outer_valid": {"mse": {"0.01": 1.5}},
    }
    first, second = data["rows"]
    assert (
        first["name"] == "learned (tuned lr)" and first["lr_source"] == "grid on meta-train tasks"
    )
    assert (first["lr"], first["steps_to_mse"], first["steps_to_tuned_mse"]) == (0.01, 3, None)
    assert first["diverged"] == 0 and first["test_mean"] == 1.5
    assert first["test_ci95"] == pytest.approx(12.7062 * 0.5, rel=1e-4)
    assert first["vs_tuned"]["verdict"] == "better" and first["vs_tuned"]["n"] == 6
    assert "test" not in first and second["vs_tuned"] is None
    one = _comparison(better)
    one.rows[0] = replace(one.rows[0], test=mean_ci([1.0]))
    assert one.to_dict()["rows"][0]["test_ci95"] is None  # one run: no interval, strict JSON


# ------------------------------------------------------------------------------ tuning reports


def _study(values: dict[int, list[float]]) -> optuna.Study:
    study = optuna.create_study()
    distribution = optuna.distributions.FloatDistribution(0.001, 1.0)
    for number, per_task in values.items():
        study.add_trial(
            optuna.trial.create_trial(
                value=sum(per_task) / len(per_task),
                params={"inner.lr": 0.001 * (number + 1)},
                distributions={"inner.lr": distribution},
                user_attrs={PER_TASK_ATTR: per_task},
            )
        )
    return study


def test_tuning_table_has_cis_and_pairs_the_best_trial_with_the_runner_up(tmp_path: Path) -> None:
    study = _study({0: WORSE, 1: LEARNED, 2: [v + 10 for v in LEARNED]})
    rows = trial_rows(study)
    assert rows[1]["ci95"] == pytest.approx(2.570582 * math.sqrt(3.5 / 6))
    found = best_vs_runner_up(study)
    assert found is not None
    best, second, paired = found
    assert (best.number, second.number) == (1, 0)
    assert paired.difference.mean == pytest.approx(-1.25) and paired.verdict == "better"
    md, _ = write_trials(study, tmp_path, min_pairs=7)
    text = md.read_text()
    assert "| trial 1 | trial 0 | 6 ⚠ |" in text and "too few pairs" in text
    assert "on at least 7 tasks" in text
    assert best_vs_runner_up(_study({0: LEARNED})) is None


@pytest.mark.parametrize("target", ["learned", "mse"])
def test_tuning_trials_record_their_objective_per_meta_validation_task(
    target: str, tmp_path: Path
) -> None:
    from test_tuning import LR, tiny

    from metaloss.tuning import tune

    transform = {"objective_transform": "log"} if target == "learned" else {}
    result = tune(parse(tiny([LR], outer=transform)), target, 2, tmp_path)
    for trial in result.study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        per_task = trial.user_attrs[PER_TASK_ATTR]
        assert len(per_task) == 4  # outer.val_tasks
        assert sum(per_task) / 4 == pytest.approx(trial.value, rel=1e-5)
    assert "| value | ci95 |" in result.trials_md.read_text().splitlines()[2]


def test_accuracy_is_the_share_of_arg_max_predictions_equal_to_the_label() -> None:
    from metaloss.evaluation.decomposition import accuracy
    from metaloss.tasks.base import Batch

    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.5, 0.0, 4.0], [1.0, 2.0, 0.0]])
    labels = torch.tensor([0, 2, 2, 0])
    got = accuracy(logits, Batch(torch.zeros(4, 1), labels, {}))
    torch.testing.assert_close(got, torch.tensor([1.0, 0.0, 1.0, 0.0]))
