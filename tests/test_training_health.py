"""Training health: diverging or exploding meta-validation and meta-gradient spikes are found in
a run's history, printed as warnings at the end of ``metaloss train``, and a diverged run exits
with status 3 instead of 0."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from _hostile import SINE, TINY_TRAIN, cli, make_workdir

from metaloss.evaluation.training_health import (
    EXPLODE_RATIO,
    RISE_RATIO,
    SPIKE_RATIO,
    diagnose_training,
)
from metaloss.outer.trainer import MetaTrainer

pytestmark = pytest.mark.timeout(300)
workdir = pytest.fixture(make_workdir)


@dataclass(frozen=True)
class V:
    step: int
    value: float


@dataclass(frozen=True)
class S:
    step: int
    grad_norm: float
    skipped: bool = False


def _codes(
    values: list[float], log_scale: bool = False, norms: list[float] | None = None
) -> list[str]:
    validations = [V(10 * i, v) for i, v in enumerate(values)]
    steps = [S(i + 1, n) for i, n in enumerate(norms or [])]
    return [f.code for f in diagnose_training(steps, validations, log_scale).findings]


def test_a_healthy_run_has_no_findings() -> None:
    assert _codes([3.0, 2.0, 1.5, 1.4, 1.45], norms=[1.0] * 100) == []


def test_exploding_and_diverging_validation() -> None:
    assert _codes([3.2, 2.0, 2e16, 1e16]) == ["exploded"]
    assert _codes([3.2, 2.0, 2.0 * EXPLODE_RATIO * 0.999, 3.0]) == []  # just below: not exploded
    assert _codes([3.2, 2.0, 2.0 * EXPLODE_RATIO]) == ["exploded"]
    assert _codes([3.2, 2.0, 2.0 * RISE_RATIO]) == ["diverging"]
    assert _codes([3.2, 2.0, 2.0 * RISE_RATIO * 0.99]) == []
    assert _codes([3.2, 2.0, float("inf")]) == ["nonfinite"]
    assert _codes([3.2, float("nan")]) == ["nonfinite"]


def test_log_scale_objectives_compare_errors_not_logs() -> None:
    # mean log errors: -2.5 -> -1.7 is a 2.2x larger error (diverging); -2.5 -> 12 explodes
    assert _codes([-1.0, -2.5, -1.7], log_scale=True) == ["diverging"]
    assert _codes([-1.0, -2.5, 12.0], log_scale=True) == ["exploded"]
    assert _codes([-1.0, -2.5, -2.0], log_scale=True) == []
    assert _codes([-1.0, -2.5, -1.7], log_scale=False) == []  # a raw best <= 0: no ratio


def test_meta_gradient_spikes_and_skipped_steps() -> None:
    norms = [1.0] * 60 + [SPIKE_RATIO * 1.01] + [1.0] * 10
    health = diagnose_training([S(i + 1, n) for i, n in enumerate(norms)], [V(0, 1.0)])
    (finding,) = health.findings
    assert finding.code == "grad_spikes" and "at step 61" in finding.message
    assert not health.diverged
    assert _codes([1.0], norms=[1.0] * 60 + [SPIKE_RATIO * 0.99]) == []
    steps = [S(1, 1.0), S(2, float("nan"), True), S(3, 1.0)]
    assert [f.code for f in diagnose_training(steps, [V(0, 1.0)]).findings] == ["skipped"]


def test_a_run_whose_validation_reaches_2e16_warns_and_exits_3(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command-level check: the scripted meta-validation objective of a real (tiny) run."""
    values = iter([3.2, 2.5, 2e16, 7e15])
    monkeypatch.setattr(MetaTrainer, "validate", lambda self: next(values))
    args = ["train", str(SINE), "--out", "run", *TINY_TRAIN, "--set=outer.steps=6", "--no-eval"]
    code, out, err = cli(args, capsys)
    assert code == 3
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "exploded: 2e+16 at step 4" in warnings[0], err
    assert err.rstrip().endswith("meta-training diverged (exit status 3)")
    assert "best meta-validation objective 2.5 at step 2" in out
    assert (workdir / "run" / "loss.safetensors").is_file()  # the best loss is still saved


@pytest.mark.slow
def test_a_really_diverging_run_exits_3(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Unbounded learned loss with large learning rates: the meta-validation objective reaches
    1e9 and then Inf within 40 meta-steps (about 40 s on 2 cores)."""
    args = ["train", str(SINE), "--out", "run", "--no-eval", "--set=outer.steps=40"]
    args += ["--set=outer.val_every=10", "--set=outer.max_nonfinite=1000"]
    args += ["--set=loss.output=identity", "--set=outer.lr=0.1", "--set=inner.lr=0.1"]
    code, _, err = cli(args, capsys)
    assert code == 3 and "meta-training diverged" in err
