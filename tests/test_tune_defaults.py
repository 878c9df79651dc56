"""Default search spaces for every ``metaloss tune`` target, the trial progress bar, and the
optuna-dashboard hint."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import yaml
from _configs import TINY_SINE, merged

from metaloss.cli import main
from metaloss.commands.tune import dashboard_hint
from metaloss.config import parse
from metaloss.tuning import known_targets, resolve_space
from metaloss.tuning.space import DEFAULT_PARAM_RANGES, default_space

TINY = merged(
    TINY_SINE,
    outer={"steps": 2, "lr": 0.002},
    evaluation={"lr_grid": [0.003, 0.01, 0.1]},
    tune={"startup_trials": 2},
)


def _space(config: dict[str, Any], target: str) -> dict[str, tuple[Any, ...]]:
    return {
        d.param: (d.kind, d.low, d.high, d.log, d.choices)
        for d in resolve_space(parse(config), target)
    }


def test_every_target_gets_a_space_without_tune_space() -> None:
    config = parse(TINY)
    for target in known_targets():
        dims = resolve_space(config, target)
        assert dims[0].param == "inner.lr" and dims[0].log
        assert (dims[0].low, dims[0].high) == (0.003, 0.1)  # the range of evaluation.lr_grid
        assert all(target in d.targets for d in dims)


def test_learned_also_tunes_the_meta_learning_rate() -> None:
    space = _space(TINY, "learned")
    assert space["outer.lr"] == ("float", pytest.approx(0.0002), pytest.approx(0.02), True, ())


def test_baselines_get_their_own_parameters() -> None:
    assert set(_space(TINY, "mse")) == {"inner.lr"}
    assert _space(TINY, "huber")["huber.delta"] == (
        "float",
        *DEFAULT_PARAM_RANGES["huber.delta"],
        (),
    )
    assert _space(TINY, "gce")["gce.q"] == ("float", 0.1, 1.0, False, ())
    assert {"sce.alpha", "sce.beta"} <= set(_space(TINY, "sce"))
    assert "sce.log_zero" not in _space(TINY, "sce")  # negative default: no range is guessed


def test_benchmark_baseline_values_give_the_range() -> None:
    listed = {
        **TINY,
        "benchmark": {
            "baselines": [
                {"name": "huber", "param": "delta", "values": [3.0, 0.1, 1.0]},
                {"name": "gce", "param": "q", "values": [0.5]},
            ]
        },
    }
    assert _space(listed, "huber")["huber.delta"] == ("float", 0.1, 3.0, True, ())
    assert _space(listed, "gce")["gce.q"] == ("categorical", None, None, False, (0.5,))


def test_an_explicit_entry_replaces_the_default_of_its_setting() -> None:
    explicit = {
        **TINY,
        "tune": {
            "space": [
                {"param": "huber.delta", "choices": [1.0]},
                {"param": "inner.lr", "low": 0.001, "high": 0.002},
            ]
        },
    }
    huber = resolve_space(parse(explicit), "huber")
    assert [d.param for d in huber] == ["huber.delta", "inner.lr"]
    assert huber[0].choices == (1.0,) and (huber[1].low, huber[1].high, huber[1].log) == (
        0.001,
        0.002,
        False,
    )
    assert [d.origin for d in huber] == ["tune.space", "tune.space"]
    learned = resolve_space(parse(explicit), "learned")
    assert [d.param for d in learned] == ["inner.lr", "outer.lr"]
    assert learned[1].origin.startswith("default")


def test_a_single_learning_rate_in_the_grid_gives_a_decade_either_side() -> None:
    config = parse({**TINY, "evaluation": {"lr_grid": [0.05]}, "inner": {"lr": 0.02}})
    (lr,) = [d for d in default_space(config, "mse") if d.param == "inner.lr"]
    assert (lr.low, lr.high) == (pytest.approx(0.002), pytest.approx(0.2))


def test_tune_cli_with_default_space_and_progress(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "tuning"
    args = ["tune", str(config), "--target", "huber", "--trials", "3", "--out", str(out)]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "search space:" in captured.err
    assert "huber.delta in [0.05, 5] (log); default range" in captured.err
    assert "inner.lr in [0.003, 0.1] (log); default, from evaluation.lr_grid" in captured.err
    assert "tune huber" in captured.err and "3/3" in captured.err  # the bar reached the budget
    best = yaml.safe_load((out / "huber" / "best.yaml").read_text())
    assert 0.003 <= best["inner"]["lr"] <= 0.1
    assert (out / "huber" / "best.json").exists()


def test_dashboard_hint_depends_on_whether_it_is_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec

    def missing(name: str, *args: Any) -> Any:
        return None if name == "optuna_dashboard" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", missing)
    assert dashboard_hint("x/study.journal") == (
        "(to browse it: pip install 'metaloss[dashboard]', then optuna-dashboard x/study.journal)"
    )
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())
    assert dashboard_hint("x/study.journal") == "(view: optuna-dashboard x/study.journal)"
