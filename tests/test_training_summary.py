"""The health of meta-training: overfitting of the meta-objective, gradient-norm spikes, skipped
steps, divergence — on histories whose right answer is known, and in a real ``metaloss train``
run (printed and in TensorBoard)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tbparse import SummaryReader

from metaloss.cli import main
from metaloss.evaluation.training_summary import HealthThresholds, assess_training, find_spikes
from metaloss.outer.trainer import StepRecord, ValidationRecord

pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword")  # tbparse and pandas


def _steps(norms: list[float], skipped: tuple[int, ...] = ()) -> list[StepRecord]:
    return [StepRecord(i + 1, 1.0, n, (i + 1) in skipped, 1.0, 0.01) for i, n in enumerate(norms)]


def _validations(values: list[float], every: int = 25) -> list[ValidationRecord]:
    best = float("inf")
    records = []
    for i, v in enumerate(values):
        records.append(ValidationRecord(i * every, v, v < best))
        best = min(best, v)
    return records


def _noise(n: int, seed: int, scale: float) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, scale, n)


def test_a_rise_after_the_best_step_is_overfitting_at_that_step() -> None:
    # falls to its best at step 150 (validation 6), then rises steadily with noise
    down = [3.0 - 0.02 * i for i in range(7)]
    up = [down[-1] + 0.004 * (i + 1) + e for i, e in enumerate(_noise(34, 0, 0.002))]
    report = assess_training(_steps([0.5] * 850), _validations(down + up))
    assert report.overfitting and report.best_step == 150 and report.low_step == 150
    assert report.trend_per_100_steps > 0 and report.trend_p < 0.05
    line = report.lines()[0]
    assert line.startswith("meta-validation: best 2.88 at step 150 of 850 (the saved loss)")
    assert "the meta-objective overfits after step ~150" in line
    assert "a low validation among higher ones" not in line


def test_a_lucky_late_best_does_not_hide_the_rise() -> None:
    """The default sine run's shape: level from step ~100, drifting up, one low validation
    late (step 700) that becomes the saved best."""
    values = [3.2, 2.96, 2.94, 2.95, 2.94]  # steps 0..100
    values += [2.95 + 0.0008 * i + e for i, e in enumerate(_noise(36, 3, 0.01))]
    values[28] = 2.90  # step 700
    report = assess_training(_steps([0.5] * 1000), _validations(values))
    assert report.best_step == 700 and report.overfitting
    assert 50 <= report.low_step <= 150
    line = report.lines()[0]
    assert f"overfits after step ~{report.low_step}" in line
    assert "the best step is a low validation among higher ones" in line


def test_noise_around_a_plateau_is_not_overfitting() -> None:
    values = list(2.0 + _noise(40, 1, 0.01))
    report = assess_training(_steps([0.5] * 1000), _validations(values))
    assert not report.overfitting
    assert report.lines()[0].endswith(": no rise")


def test_still_improving_at_the_end() -> None:
    report = assess_training(_steps([0.5] * 100), _validations([3.0, 2.9, 2.8, 2.7, 2.6]))
    assert not report.overfitting and report.best_step == 100
    assert "still improving when training stopped" in report.lines()[0]


def test_spikes_are_found_exactly_where_they_are() -> None:
    norms = list(0.4 + np.abs(_noise(600, 2, 0.05)))
    for step in (120, 553, 871 - 300):
        norms[step - 1] = 4.0  # 10x the median
    spikes = find_spikes(_steps(norms))
    assert [s.step for s in spikes] == [120, 553, 571]
    for spike in spikes:
        median = float(np.median(norms[spike.step - 51 : spike.step - 1]))
        assert spike.ratio == pytest.approx(4.0 / median)
    # a slow climb is not a spike; the window must be full before anything counts
    climb = [0.1 * 1.01**i for i in range(300)]
    assert find_spikes(_steps(climb)) == []
    early = [1.0] * 10 + [50.0] + [1.0] * 100
    assert find_spikes(_steps(early), HealthThresholds(window=50)) == []


def test_gradient_and_skipped_lines() -> None:
    norms = [0.5] * 200
    norms[149] = 6.0
    report = assess_training(_steps(norms, skipped=(30, 31)), _validations([1.0] * 9), 1.0)
    text = report.lines()
    assert text[1].startswith(
        "meta-gradient norm: 1 spike(s) above 5x the median of its previous 50"
    )
    assert "first at step 150" in text[1] and "on 0% of steps" not in text[1]
    assert text[2] == "skipped (non-finite) meta-steps: 2 (steps 30, 31)"
    assert not report.healthy


def test_a_blown_up_or_non_finite_validation_is_divergence() -> None:
    blown = assess_training(_steps([0.5] * 100), _validations([1.0, 0.9, 0.8, 30.0]))
    assert blown.diverged and "DIVERGED" in blown.lines()[0]
    nan = assess_training(_steps([0.5] * 100), _validations([1.0, 0.9, float("nan")]))
    assert nan.diverged
    nothing = assess_training(_steps([0.5] * 10), _validations([float("nan")]))
    assert nothing.diverged and "no finite meta-validation objective" in nothing.lines()


def test_train_prints_the_health_and_writes_it_to_tensorboard(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = ["train", "--out", str(out), "--no-eval"]
    tiny = ["outer.steps=4", "inner.steps=2", "outer.meta_batch=2", "outer.val_tasks=2"]
    tiny += ["outer.val_every=1", "learner.hidden=[8]", "loss.hidden=[8]"]
    assert main([*argv, *(a for key in tiny for a in ("--set", key))]) == 0
    printed = capsys.readouterr().out
    assert "meta-training health:\n  meta-validation: best " in printed
    assert "  skipped (non-finite) meta-steps: none" in printed
    text = SummaryReader(str(out)).text
    summary = text[text.tag == "health/summary"].value.iloc[0]
    assert summary.startswith("- meta-validation: best ") and "meta-gradient norm" in summary


def test_too_few_validations_for_a_trend_say_so() -> None:
    report = assess_training(_steps([0.5] * 3), _validations([1.0, 1.1], every=3))
    assert "too few validations after it to judge a trend" in report.lines()[0]
    assert "nan" not in report.lines()[0]
