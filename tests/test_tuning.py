"""Tuning: search-space errors, diverged and pruned trials, resume, dead workers, several workers
on one study (journal file; PostgreSQL when METALOSS_TEST_POSTGRES_URL is set)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
import yaml
from _configs import TINY_SINE, merged

from metaloss.config import ConfigError, load_config, parse, to_dict
from metaloss.tasks import Split
from metaloss.tasks.sine import SineFamily
from metaloss.tuning import (
    DIVERGED_ATTR,
    SURPLUS_ATTR,
    make_storage,
    open_study,
    resolve_space,
    tune,
)
from metaloss.tuning.storage import HEARTBEAT_ATTR

LR = {"param": "inner.lr", "low": 0.003, "high": 0.1, "log": True}


def tiny(space: list[dict[str, Any]], **sections: dict[str, Any]) -> dict[str, Any]:
    tune = {"startup_trials": 2, "space": space}
    return merged(merged(TINY_SINE, outer={"checkpoint_every": 100}, tune=tune), **sections)


def states(study: optuna.Study) -> list[str]:
    return [t.state.name for t in study.get_trials(deepcopy=False)]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"param": "inner.lrr", "low": 0.1, "high": 1},
            "tune.space[0].param: expected a setting of inner (",
        ),
        (
            {"param": "inner.lr", "low": 0.1},
            "tune.space[0]: expected low and high (a range) or choices",
        ),
        (
            {"param": "inner.lr", "low": 1.0, "high": 0.1},
            "tune.space[0].high: expected a value > low=1",
        ),
        (
            {"param": "inner.lr", "low": 0.0, "high": 1.0, "log": True},
            "tune.space[0].low: expected a value > 0",
        ),
        (
            {"param": "huber.width", "low": 1, "high": 2},
            "tune.space[0].param: expected a parameter of baseline huber (huber.delta)",
        ),
        (
            {"param": "loss.depth", "low": 1, "high": 2.5},
            "tune.space[0]: expected integer low/high for 'loss.depth'",
        ),
        (
            {"param": "loss.activation", "low": 1, "high": 2},
            "tune.space[0].choices: expected a list of values",
        ),
        (
            {"param": "inner.lr", "low": 0.1, "high": 1, "choices": [0.1]},
            "expected either low/high or choices",
        ),
        (
            {"param": "inner.lr", "low": 0.1, "high": 1, "targets": ["hubber"]},
            "tune.space[0].targets: expected some of learned",
        ),
        (
            {"param": "task.amplitude", "choices": [1]},
            "tune.space[0].param: 'task.amplitude' cannot be tuned",
        ),
        ({"param": "loss.hidden", "low": 1, "high": 2}, "'loss.hidden' is a list setting"),
    ],
)
def test_bad_search_spaces_fail_with_one_line_naming_the_entry(entry: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_space(parse(tiny([entry])), "learned")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_types_in_the_space_fail_at_load_time() -> None:
    with pytest.raises(
        ConfigError, match=r"tune.space\[0\].low: expected a number or null, got 'small'"
    ):
        parse(tiny([{"param": "inner.lr", "low": "small", "high": 1}]))


def test_each_target_gets_its_part_of_the_space() -> None:
    space = [
        LR,
        {"param": "outer.lr", "low": 1e-4, "high": 1e-2, "log": True},
        {"param": "loss.width", "low": 4, "high": 16},
        {"param": "huber.delta", "low": 0.1, "high": 3},
    ]
    config = parse(tiny(space))
    assert [d.param for d in resolve_space(config, "learned")] == [
        "inner.lr",
        "outer.lr",
        "loss.width",
    ]
    assert [d.param for d in resolve_space(config, "huber")] == ["inner.lr", "huber.delta"]
    assert [d.param for d in resolve_space(config, "mse")] == ["inner.lr"]
    with pytest.raises(ConfigError, match="--target: expected one of learned"):
        resolve_space(config, "msee")


def test_diverged_trials_are_pruned_with_a_finite_penalty_and_the_study_goes_on(
    tmp_path: Path,
) -> None:
    config = parse(
        tiny([{"param": "inner.lr", "choices": [0.01, 1.0e6]}], tune={"startup_trials": 10})
    )
    result = tune(config, "mse", 6, tmp_path)
    trials = result.study.get_trials()
    diverged = [t for t in trials if DIVERGED_ATTR in t.user_attrs]
    assert len(trials) == 6 and diverged, (
        "the huge learning rate should have been drawn and diverged"
    )
    for t in diverged:
        assert t.state == optuna.trial.TrialState.PRUNED
        assert t.params["inner.lr"] == 1.0e6
        assert "validation runs diverged" in t.user_attrs[DIVERGED_ATTR]
        assert t.intermediate_values == {0: config.tune.penalty}
    assert result.study.best_trial.params["inner.lr"] == 0.01
    assert "diverged:" in result.trials_md.read_text()


def test_an_invalid_combination_is_pruned_not_fatal(tmp_path: Path) -> None:
    space = [
        {"param": "outer.estimator", "choices": ["truncated_grad"]},
        {"param": "outer.truncation", "choices": [2, 5]},
    ]
    config = parse(tiny(space, tune={"startup_trials": 10}, outer={"steps": 2}))
    result = tune(config, "learned", 4, tmp_path)
    notes = [t.user_attrs.get(DIVERGED_ATTR, "") for t in result.study.get_trials()]
    assert len(notes) == 4
    assert all(
        ("invalid settings: outer.truncation" in n) == (t.params["outer.truncation"] == 5)
        for n, t in zip(notes, result.study.get_trials(), strict=True)
    )


def test_learned_trials_report_validations_and_best_yaml_is_a_run_config(tmp_path: Path) -> None:
    space = [
        LR,
        {"param": "outer.lr", "low": 1e-4, "high": 1e-2, "log": True},
        {"param": "loss.width", "low": 4, "high": 8},
    ]
    result = tune(parse(tiny(space)), "learned", 2, tmp_path)
    first = result.study.trials[0]
    assert sorted(first.intermediate_values) == [0, 2, 4]
    assert result.best_config is not None
    best = load_config(result.best_config)
    params = result.study.best_trial.params
    assert best.inner.lr == pytest.approx(params["inner.lr"])
    assert best.outer.lr == pytest.approx(params["outer.lr"])
    assert best.loss.hidden == (params["loss.width"],)
    assert sorted(p.name for p in (tmp_path / "learned" / "tensorboard").iterdir()) == [
        "trial_0000",
        "trial_0001",
    ]


def test_a_resumed_run_continues_the_trial_count(tmp_path: Path) -> None:
    config = parse(tiny([LR]))
    first = tune(config, "l1", 3, tmp_path)
    again = tune(config, "l1", 3, tmp_path)
    more = tune(config, "l1", 5, tmp_path)
    assert (first.ran, again.ran, more.ran) == (3, 0, 2)
    assert states(more.study) == ["COMPLETE"] * 5
    assert [t.number for t in more.study.trials] == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="--study: study 'tiny-l1' tunes 'l1', not 'mse'"):
        tune(config, "mse", 3, tmp_path, name="tiny-l1")


def test_a_dead_workers_trial_is_detected_by_heartbeat_and_retried(tmp_path: Path) -> None:
    config = parse(tiny([LR]))
    storage = make_storage(None, tmp_path, heartbeat_interval=1, grace_period=1)
    study = open_study(storage, "tiny-mse", "mse", config.tune)
    with pytest.warns(UserWarning, match="Heartbeat"):
        dead = study.ask()  # a worker took a trial and died: its heartbeat stops
    dead.suggest_float("inner.lr", 0.003, 0.1, log=True)
    storage.set_trial_system_attr(dead._trial_id, HEARTBEAT_ATTR, time.time() - 60)
    result = tune(config, "mse", 3, tmp_path, storage=storage)
    trials = result.study.get_trials()
    assert states(result.study).count("COMPLETE") == 3
    assert trials[0].state == optuna.trial.TrialState.FAIL
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == 0]
    assert len(retries) == 1 and retries[0].params == trials[0].params


def _worker(
    out: Path, config: Path, trials: int, storage: str | None = None, study: str | None = None
) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "metaloss",
        "tune",
        str(config),
        "--target",
        "mse",
        "--trials",
        str(trials),
        "--out",
        str(out),
    ]
    if storage:
        command += ["--storage", storage, "--study", str(study)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _two_workers(
    tmp_path: Path, trials: int, storage: str | None = None, study: str | None = None
) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(to_dict(parse(tiny([LR])))))
    workers = [_worker(tmp_path / "out", config, trials, storage, study) for _ in range(2)]
    outputs = [w.communicate(timeout=240) for w in workers]
    for w, (_, err) in zip(workers, outputs, strict=True):
        assert w.returncode == 0, err
    ran = sum(int(out.split("this worker ran ")[1].split()[0]) for out, _ in outputs)
    backend = make_storage(storage, tmp_path / "out")
    trials_ = optuna.load_study(study_name=study or "tiny-mse", storage=backend).get_trials()
    if hasattr(backend, "engine"):
        backend.engine.dispose()  # close the pooled PostgreSQL connections
    real = [t for t in trials_ if not t.user_attrs.get(SURPLUS_ATTR)]
    assert ran == trials, "each trial is run by exactly one worker"
    assert [t.state.name for t in real] == ["COMPLETE"] * trials
    assert len({t.number for t in trials_}) == len(trials_)
    assert all(
        t.state == optuna.trial.TrialState.FAIL for t in trials_ if t.user_attrs.get(SURPLUS_ATTR)
    )


def test_two_workers_share_one_journal_study_exactly(tmp_path: Path) -> None:
    _two_workers(tmp_path, 6)


POSTGRES = os.environ.get("METALOSS_TEST_POSTGRES_URL")


@pytest.mark.skipif(
    not POSTGRES,
    reason="METALOSS_TEST_POSTGRES_URL not set (CI sets it with scripts/ci_postgres.sh)",
)
def test_two_workers_share_one_postgres_study_exactly(tmp_path: Path) -> None:
    _two_workers(tmp_path, 6, POSTGRES, f"tiny-{uuid.uuid4().hex[:8]}")


def test_tuned_baselines_enter_the_benchmark_with_their_tuned_settings(tmp_path: Path) -> None:
    from metaloss.evaluation.benchmark import contenders_from_config
    from metaloss.tuning.tuned import apply_tuned, read_tuned

    space = [LR, {"param": "huber.delta", "low": 0.1, "high": 3.0, "log": True}]
    config = parse(
        tiny(
            space,
            benchmark={
                "baselines": [
                    {"name": "mse"},
                    {"name": "huber", "param": "delta", "values": [0.1, 1.0]},
                    {"name": "l1"},
                ]
            },
        )
    )
    huber = tune(config, "huber", 2, tmp_path).study.best_trial.params
    mse = tune(config, "mse", 2, tmp_path).study.best_trial.params
    contenders, notes = apply_tuned(contenders_from_config(config, {}), read_tuned(tmp_path))
    by_name = {c.name: c for c in contenders}
    assert by_name["huber"].lr_grid == (huber["inner.lr"],)
    assert by_name["huber"].values == (huber["huber.delta"],)
    assert by_name["mse"].lr_grid == (mse["inner.lr"],)
    assert by_name["l1"].lr_grid == () and notes["l1"] == "selected on meta-train tasks"
    with pytest.raises(ValueError, match="--tuned: expected a folder"):
        read_tuned(tmp_path / "nothing")


class _NoTestFamily(SineFamily):
    """Sine tasks whose test split is NaN and whose meta-test tasks cannot be drawn."""

    def make_task(self, generator, split):  # type: ignore[no-untyped-def]
        if split is Split.META_TEST:
            raise AssertionError("tuning drew a meta-test task")
        task = super().make_task(generator, split)
        return task._replace(test=task.test._replace(y=task.test.y * float("nan")))


@pytest.mark.parametrize("target", ["mse", "learned"])
def test_tuning_never_reads_test_tasks_or_test_splits(tmp_path: Path, target: str) -> None:
    config = parse(tiny([LR]))
    result = tune(config, target, 2, tmp_path, family=_NoTestFamily(config.task))
    assert states(result.study) == ["COMPLETE", "COMPLETE"]


def test_a_trial_beyond_the_budget_is_marked_surplus_and_not_run(tmp_path: Path) -> None:
    from metaloss.tuning.study import BudgetReached, _guarded

    config = parse(tiny([LR]))
    study = open_study(make_storage(None, tmp_path), "tiny-mse", "mse", config.tune)
    with pytest.warns(UserWarning, match="Heartbeat"):  # asked by hand, not by optimize
        first, second, late = study.ask(), study.ask(), study.ask()
    ran: list[int] = []
    guarded = _guarded(lambda trial: ran.append(trial.number) or 1.0, budget=2)
    assert guarded(first) == 1.0
    with pytest.raises(BudgetReached):
        guarded(late)
    assert ran == [first.number] and late.number == 2 and second.number == 1
    assert study.trials[2].user_attrs == {SURPLUS_ATTR: True}


def test_baselines_are_scored_on_the_tasks_meta_training_validates_on() -> None:
    from metaloss.outer import MetaTrainer
    from metaloss.tasks import make_family
    from metaloss.tuning.objective import validation_set

    config = parse(tiny([LR]))
    family = make_family(config.task)
    ours = validation_set(config, family)
    tasks, inits = MetaTrainer(config, family=family).problem.validation_set()  # type: ignore[attr-defined]
    assert ours.split is Split.META_VALID
    for key, value in inits.items():
        assert torch.equal(ours.inits[key], value)
    assert torch.equal(ours.tasks.outer_valid.y, tasks.outer_valid.y)
    assert torch.equal(ours.tasks.train.x, tasks.train.x)


@pytest.mark.slow
def test_a_killed_worker_is_resumed_and_its_trial_retried(tmp_path: Path) -> None:
    """A real SIGKILL in the middle of a trial: the next run fails it by heartbeat, re-runs its
    parameters, and the study ends with exactly the budget of complete trials."""
    data = tiny(
        [LR, {"param": "outer.lr", "low": 1e-4, "high": 1e-2, "log": True}],
        outer={"steps": 400, "val_every": 200},
    )
    config_path = tmp_path / "tiny.yaml"
    config_path.write_text(yaml.safe_dump(data))
    command = [
        sys.executable,
        "-m",
        "metaloss",
        "tune",
        str(config_path),
        "--target",
        "learned",
        "--trials",
        "2",
        "--out",
        str(tmp_path / "out"),
        "--heartbeat",
        "1",
    ]
    worker = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    storage = make_storage(None, tmp_path / "out", heartbeat_interval=1)
    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(0.2)
        try:
            running = optuna.load_study(study_name="tiny-learned", storage=storage).get_trials(
                deepcopy=False
            )
        except KeyError:
            continue
        if any(HEARTBEAT_ATTR in t.system_attrs for t in running):
            break
    worker.kill()
    worker.wait()
    result = tune(parse(data), "learned", 2, tmp_path / "out", storage=storage)
    trials = result.study.get_trials()
    assert trials[0].state == optuna.trial.TrialState.FAIL
    assert states(result.study).count("COMPLETE") == 2
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == 0]
    assert len(retried) == 1 and retried[0].params == trials[0].params
