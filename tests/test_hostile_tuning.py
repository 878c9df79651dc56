"""Tuning storage: a worker that died before its first heartbeat does not block the study, a
retried trial never inherits a dead worker's heartbeat, several workers may create a study on a
fresh PostgreSQL database at once, and a bad storage is refused in one line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import yaml
from _hostile import REPO, assert_one_line, make_workdir, refused, snapshot
from optuna.storages import JournalStorage

from metaloss.config import parse, to_dict
from metaloss.tuning import SURPLUS_ATTR, make_storage, open_study, tune
from metaloss.tuning.storage import HEARTBEAT_ATTR

pytestmark = pytest.mark.timeout(900)  # bounds hangs only: loaded CI machines are slow
workdir = pytest.fixture(make_workdir)
POSTGRES = os.environ.get("METALOSS_TEST_POSTGRES_URL")
needs_postgres = pytest.mark.skipif(
    not POSTGRES,
    reason="METALOSS_TEST_POSTGRES_URL not set (CI sets it with scripts/ci_postgres.sh)",
)
LR = {"param": "inner.lr", "low": 0.003, "high": 0.1, "log": True}
TINY = {
    "name": "tiny",
    "task": {"family": "sine", "n_train": 5, "n_outer_valid": 8, "n_test": 8},
    "learner": {"hidden": [8]},
    "inner": {"steps": 3, "lr": 0.01},
    "outer": {"val_tasks": 4},
    "tune": {"startup_trials": 2, "space": [LR]},
}


def _dead_trial(storage: optuna.storages.BaseStorage, beat: float | None) -> int:
    """A worker took a trial and died: before its first heartbeat (``beat`` None) or after."""
    study = open_study(storage, "tiny-mse", "mse", parse(TINY).tune)
    with pytest.warns(UserWarning, match="Heartbeat"):
        trial = study.ask()
    trial.suggest_float("inner.lr", 0.003, 0.1, log=True)
    if beat is not None:
        storage.set_trial_system_attr(trial._trial_id, HEARTBEAT_ATTR, beat)
    return trial.number


def _check_retried(result_study: optuna.Study, dead: int, budget: int) -> optuna.trial.FrozenTrial:
    trials = result_study.get_trials()
    assert trials[dead].state == optuna.trial.TrialState.FAIL
    assert [t.state.name for t in trials].count("COMPLETE") == budget
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == dead]
    assert retry.params == trials[dead].params
    return retry


def test_a_trial_without_any_heartbeat_is_stale_after_the_grace_period(tmp_path: Path) -> None:
    storage = make_storage(None, tmp_path, heartbeat_interval=1, grace_period=1)
    dead = _dead_trial(storage, beat=None)
    result = tune(parse(TINY), "mse", 2, tmp_path, storage=storage)
    _check_retried(result.study, dead, 2)


def test_a_retried_trial_does_not_inherit_the_dead_workers_heartbeat(tmp_path: Path) -> None:
    storage = make_storage(None, tmp_path, heartbeat_interval=1, grace_period=2)
    old = time.time() - 3600
    dead = _dead_trial(storage, beat=old)
    result = tune(parse(TINY), "mse", 2, tmp_path, storage=storage)
    retry = _check_retried(result.study, dead, 2)
    assert retry.system_attrs.get(HEARTBEAT_ATTR, time.time()) > old + 3000


def test_a_queued_trial_carrying_an_old_heartbeat_is_not_stale_when_it_starts(
    tmp_path: Path,
) -> None:
    """Even a template written by an older metaloss (the attribute kept) starts fresh."""
    storage = make_storage(None, tmp_path, heartbeat_interval=1, grace_period=5)
    study = open_study(storage, "tiny-mse", "mse", parse(TINY).tune)
    template = optuna.trial.create_trial(
        state=optuna.trial.TrialState.WAITING, system_attrs={HEARTBEAT_ATTR: time.time() - 3600}
    )
    JournalStorage.create_new_trial(storage, study._study_id, template)  # bypasses the stripping
    with pytest.warns(UserWarning, match="Heartbeat"):
        started = study.ask()
    assert storage.get_trial(started._trial_id).state == optuna.trial.TrialState.RUNNING
    assert storage._get_stale_trial_ids(study._study_id) == []
    stripped = storage.create_new_trial(study._study_id, template)
    assert HEARTBEAT_ATTR not in storage.get_trial(stripped).system_attrs


# --------------------------------------------------------------------------------------------
# PostgreSQL: a fresh database per test, several workers at once.


@pytest.fixture
def fresh_database() -> Iterator[str]:
    """A new, empty database on the test server (dropped afterwards)."""
    import sqlalchemy

    assert POSTGRES is not None
    name = f"metaloss_edge_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(
        POSTGRES, isolation_level="AUTOCOMMIT", poolclass=sqlalchemy.pool.NullPool
    )
    try:
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    except sqlalchemy.exc.SQLAlchemyError as error:
        admin.dispose()
        pytest.skip(f"cannot create a test database: {str(error).splitlines()[0]}")
    try:
        yield (
            sqlalchemy.engine.make_url(POSTGRES)
            .set(database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _worker(
    config: Path,
    out: Path,
    trials: int,
    storage: str,
    study: str,
    target: str = "mse",
    *extra: str,
) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "metaloss", "tune", str(config), "--target", target]
    command += ["--trials", str(trials), "--out", str(out), "--storage", storage, "--study", study]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [*command, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def _finish(workers: list[subprocess.Popen[str]], timeout: float = 600) -> list[tuple[str, str]]:
    """Every worker's (stdout, stderr); the timeout only bounds a hang, and a worker left
    behind by a failure is killed."""
    try:
        return [w.communicate(timeout=timeout) for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.communicate()


def _trials(url: str, out: Path, study: str) -> list[optuna.trial.FrozenTrial]:
    storage = make_storage(url, out)
    try:
        return optuna.load_study(study_name=study, storage=storage).get_trials()
    finally:
        storage.engine.dispose()  # type: ignore[attr-defined]


@needs_postgres
def test_several_workers_create_a_study_on_a_fresh_postgres_database_at_once(
    fresh_database: str, tmp_path: Path
) -> None:
    """Three workers start together on an empty database: Optuna's tables are created once
    (under an advisory lock), nobody fails on the creation race, each trial runs exactly once."""
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(to_dict(parse(TINY))))
    count = 3
    workers = [
        _worker(config, tmp_path / "out", count, fresh_database, "tiny-race") for _ in range(count)
    ]
    outputs = _finish(workers)
    for w, (_, err) in zip(workers, outputs, strict=True):
        assert w.returncode == 0, err[-2000:]
    ran = sum(int(out.split("this worker ran ")[1].split()[0]) for out, _ in outputs)
    trials = _trials(fresh_database, tmp_path, "tiny-race")
    real = [t for t in trials if not t.user_attrs.get(SURPLUS_ATTR)]
    assert ran == count and [t.state.name for t in real] == ["COMPLETE"] * count


@needs_postgres
def test_a_killed_postgres_workers_running_trial_becomes_stale_and_is_retried(
    fresh_database: str, tmp_path: Path
) -> None:
    """A real SIGKILL in the middle of a trial on PostgreSQL: the trial stays RUNNING, its
    heartbeat stops, the next worker fails it as stale, re-runs its parameters, and the study
    ends with exactly its budget of complete trials."""
    outer_lr = {"param": "outer.lr", "low": 1e-4, "high": 1e-2, "log": True}
    data = {
        **TINY,
        "outer": {"val_tasks": 4, "steps": 150, "val_every": 50},
        "tune": {"startup_trials": 2, "space": [LR, outer_lr]},
    }
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    worker = _worker(config, out, 2, fresh_database, "tiny-kill", "learned", "--heartbeat", "1")
    storage = make_storage(fresh_database, out, heartbeat_interval=1)
    try:
        running: list[optuna.trial.FrozenTrial] = []
        for _ in range(3000):  # up to ~10 minutes: bounds a hang, not a speed
            if worker.poll() is not None:
                break
            try:
                study = optuna.load_study(study_name="tiny-kill", storage=storage)
                running = study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
            except KeyError:  # the study does not exist yet
                pass
            if running and running[0].params:  # in the middle of a trial, not just asked
                break
            time.sleep(0.2)
        worker.kill()
        _, err = worker.communicate()
        assert running and running[0].params, f"no trial was seen running: {err[-2000:]}"
        killed = running[0]
        assert storage.get_trial(killed._trial_id).state == optuna.trial.TrialState.RUNNING
        result = tune(parse(data), "learned", 2, out, name="tiny-kill", storage=storage)
        retry = _check_retried(result.study, killed.number, 2)
        assert retry.state == optuna.trial.TrialState.COMPLETE
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
        storage.engine.dispose()  # type: ignore[attr-defined]


@needs_postgres
def test_a_postgres_trial_without_any_heartbeat_is_retried(
    fresh_database: str, tmp_path: Path
) -> None:
    storage = make_storage(fresh_database, tmp_path, heartbeat_interval=1, grace_period=1)
    try:
        dead = _dead_trial(storage, beat=None)
        result = tune(parse(TINY), "mse", 2, tmp_path, storage=storage)
        _check_retried(result.study, dead, 2)
    finally:
        storage.engine.dispose()  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------
# Bad storages and journals: one line, nothing created or changed.

TUNE = ["tune", "--target", "mse", "--trials", "1"]


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


@pytest.mark.parametrize(
    ("url", "match"),
    [
        (
            "postgresql://postgres:secret@127.0.0.1:1/none",
            "--storage: cannot open 127.0.0.1:1/none",
        ),
        ("nosuchdialect://x/y", "--storage: cannot open"),
        ("sqlite:////no/such/folder/x.db", "--storage: cannot open"),
        ("not a url", "--storage: cannot open"),
    ],
)
def test_a_bad_storage_url_is_one_line_and_creates_nothing(
    url: str, match: str, tiny_config: Path, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = refused(
        [TUNE[0], str(tiny_config), *TUNE[1:], "--storage", url], capsys, workdir, match, 1
    )
    assert "secret" not in line


@pytest.mark.parametrize(
    "content",
    [b'{"garbage', b"abc\x00\xff\n", b'{"op_code": 99}\n', b"[1, 2]\n", b'{"op_code": 0}\n'],
)
def test_a_corrupt_journal_is_refused_and_left_alone(
    content: bytes, tiny_config: Path, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = workdir / "t"
    folder.mkdir()
    (folder / "study.journal").write_bytes(content)
    match = "incomplete record" if not content.endswith(b"\n") else "is corrupt"
    refused([TUNE[0], str(tiny_config), *TUNE[1:], "--out", "t"], capsys, workdir, match, 1)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this system")
def test_a_journal_that_is_a_pipe_does_not_hang(
    tiny_config: Path, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "t").mkdir()
    os.mkfifo(workdir / "t" / "study.journal")
    refused(
        [TUNE[0], str(tiny_config), *TUNE[1:], "--out", "t"],
        capsys,
        workdir,
        "is not a regular file",
        1,
    )


@pytest.mark.parametrize(
    ("args", "match", "code"),
    [
        (["--trials", "0"], "--trials: expected an integer >= 1, got 0", 1),
        (["--heartbeat", "0"], "--heartbeat: expected an integer >= 1, got 0", 1),
        (["--target", "hubber"], "--target: expected one of", 2),
    ],
)
def test_bad_tune_arguments(
    args: list[str],
    match: str,
    code: int,
    tiny_config: Path,
    workdir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    refused([*TUNE, *args, str(tiny_config)], capsys, workdir, match, code)


def test_a_study_of_another_target_is_refused_in_one_line(
    tiny_config: Path, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from _hostile import cli

    assert cli([*TUNE, str(tiny_config), "--out", "t"], capsys)[0] == 0
    before = snapshot(workdir)
    code, _, err = cli(
        [
            "tune",
            str(tiny_config),
            "--target",
            "l1",
            "--trials",
            "1",
            "--out",
            "t",
            "--study",
            "tiny-mse",
        ],
        capsys,
    )
    assert code == 1
    lines = err.splitlines()
    assert_one_line(lines[-1] + "\n", "--study: study 'tiny-mse' tunes 'mse', not 'l1'")
    assert snapshot(workdir) == before
