"""Run and report folders: nothing is overwritten, a refused ``--resume`` changes nothing, new
folders are unique, and a full disk, a read-only folder or a signal ends in one line with no
half-written output."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from _hostile import (
    REPO,
    SINE,
    TINY_TRAIN,
    assert_one_line,
    cli,
    make_workdir,
    refused,
    run_subprocess,
    snapshot,
)

import metaloss.commands.common as common
from metaloss import save_loss
from metaloss.losses import LearnedLoss

pytestmark = pytest.mark.timeout(180)
workdir = pytest.fixture(make_workdir)
TRAIN = ["train", str(SINE), *TINY_TRAIN, "--no-eval"]
BENCH = [
    "--set=evaluation.test_tasks=2",
    "--set=evaluation.grid_tasks=2",
    "--set=evaluation.lr_grid=[0.01]",
    "--set=learner.hidden=[8]",
    "--set=inner.steps=2",
]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny train run (made once; tests copy it)."""
    from metaloss.cli import main

    out = tmp_path_factory.mktemp("finished") / "run"
    assert main([*TRAIN, "--out", str(out)]) == 0
    return out


@pytest.fixture
def run(finished_run: Path, workdir: Path) -> Path:
    copy = workdir / "run"
    shutil.copytree(finished_run, copy)
    return copy


@pytest.fixture
def loss_file(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return save_loss(LearnedLoss(hidden=(4,)), tmp_path / "loss.safetensors", {"name": "t"})


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# --------------------------------------------------------------------------------------------
# An existing run is never overwritten; a refused --resume changes nothing.


def test_a_second_run_into_the_same_out_is_refused(
    run: Path, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = refused([*TRAIN, "--out", "run"], capsys, workdir, "run already holds a run", 1)
    assert "pass --resume to continue it" in line and "omit --out for a new one" in line


def test_a_resume_with_other_settings_leaves_the_folder_byte_identical(
    run: Path, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [*TRAIN, "--out", "run", "--resume", "--set=inner.lr=0.02"]
    line = refused(args, capsys, workdir, "was written with a different config", 1)
    assert "inner.lr: 0.01 in the checkpoint, 0.02 now" in line


def test_a_resume_with_more_steps_continues(
    run: Path, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli([*TRAIN, "--out", "run", "--resume", "--set=outer.steps=3"], capsys)
    assert code == 0, err
    assert "outer:\n" in (run / "config.yaml").read_text()
    assert "  steps: 3\n" in (run / "config.yaml").read_text()


def test_a_corrupt_checkpoint_is_refused_before_anything_changes(
    run: Path, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (run / "checkpoint.pt").write_bytes(b"not a checkpoint")
    refused(
        [*TRAIN, "--out", "run", "--resume"],
        capsys,
        workdir,
        "not a readable metaloss checkpoint",
        1,
    )


@pytest.mark.parametrize(
    ("command", "config"),
    [("train", SINE), ("rl-train", REPO / "configs" / "cartpole.yaml"), ("benchmark", SINE)],
)
def test_a_folder_with_the_users_own_config_is_never_written_into(
    command: str, config: Path, workdir: Path, capsys: pytest.CaptureFixture[str], loss_file: Path
) -> None:
    mine = workdir / "mine"
    mine.mkdir()
    (mine / "config.yaml").write_text("my own notes: keep\n")
    extra = ["--loss", str(loss_file)] if command == "benchmark" else []
    line = refused(
        [command, str(config), "--out", "mine", *extra],
        capsys,
        workdir,
        "holds files that are not a metaloss run (config.yaml)",
        1,
    )
    assert "choose a new or empty folder" in line


@pytest.mark.parametrize("resume", [False, True])
def test_an_empty_out_is_refused(
    resume: bool, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [*TRAIN, "--out", "", *(["--resume"] if resume else [])]
    refused(args, capsys, workdir, "argument --out: expected a folder path, got ''", 2)
    for command in (
        ["benchmark", str(SINE)],
        ["tune", str(SINE), "--trials", "1"],
        ["rl-train", str(SINE)],
    ):
        refused(
            [*command, "--out", ""], capsys, workdir, "argument --out: expected a folder path", 2
        )


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--out", "file"], "--out: file is a file, expected a folder"),
        (["--out", "file/run"], "--out: file is a file, expected a folder"),
        (["--resume"], "--resume: expected --out DIR"),
        (["--out", "nothing", "--resume"], "--resume: nothing does not exist"),
        (["--out", "empty", "--resume"], "--resume: empty is empty"),
        (["--out", "report"], "holds a `metaloss benchmark` run, not a `metaloss train` one"),
        (["--out", "link"], "is a link to something that is not a folder"),
    ],
)
def test_unusable_out_folders(
    args: list[str], match: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "file").write_text("a file")
    (workdir / "empty").mkdir()
    (workdir / "report").mkdir()
    (workdir / "report" / common.MARKER_NAME).write_text(json.dumps({"command": "benchmark"}))
    os.symlink("file", workdir / "link")
    refused([*TRAIN, *args], capsys, workdir, match, 1)


def test_tune_refuses_a_train_run_and_a_users_folder(
    run: Path, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    space = "--set=tune.space=[{param: inner.lr, low: 0.003, high: 0.1}]"
    args = ["tune", str(SINE), space, "--target", "mse", "--trials", "1"]
    refused(
        [*args, "--out", "run"],
        capsys,
        workdir,
        "holds a `metaloss train` run, not a `metaloss tune` one",
        1,
    )
    (workdir / "notes").mkdir()
    (workdir / "notes" / "todo.txt").write_text("x")
    refused(
        [*args, "--out", "notes"],
        capsys,
        workdir,
        "holds files that are not a metaloss run (todo.txt)",
        1,
    )
    refused(
        ["tune", str(SINE), space, "--target", "hubber", "--trials", "1"],
        capsys,
        workdir,
        "--target: expected one of",
        2,
    )


# --------------------------------------------------------------------------------------------
# Benchmark: --out and the loss's kind are checked before any work.


def test_benchmark_checks_the_kind_of_the_loss_before_any_work(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    loss = LearnedLoss(("ce", "label_prob"), hidden=(4,), kind="classification")
    path = save_loss(loss, workdir / "cls.safetensors")
    line = refused(
        ["benchmark", str(SINE), "--loss", str(path), *BENCH],
        capsys,
        workdir,
        "is a classification loss, but benchmark row",
        1,
    )
    assert "regression tasks" in line


def test_benchmark_never_overwrites_a_report_and_writes_it_whole(
    workdir: Path, capsys: pytest.CaptureFixture[str], loss_file: Path
) -> None:
    args = ["benchmark", str(SINE), "--loss", str(loss_file), *BENCH]
    code, out, err = cli([*args, "--out", "report"], capsys)
    assert code == 0, err
    assert (
        "results.md" in _files(workdir / "report") and f"  {Path('report') / 'results.md'}" in out
    )
    refused(
        [*args, "--out", "report"],
        capsys,
        workdir,
        "already holds a `metaloss benchmark` report",
        1,
    )
    assert [p.name for p in workdir.iterdir()] == ["report"]  # no staging folder left


def test_a_full_disk_while_the_report_is_written_leaves_no_report(
    workdir: Path,
    capsys: pytest.CaptureFixture[str],
    loss_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import metaloss.commands.benchmarking as bench

    def full(result: object, out: Path, config: object) -> list[Path]:
        (out / "results.json").write_text('{"half": ')
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(out / "results.csv"))

    monkeypatch.setattr(bench, "write_report", full)
    code, _, err = cli(
        ["benchmark", str(SINE), "--loss", str(loss_file), *BENCH, "--out", "r"], capsys
    )
    assert code == 1
    line = [x for x in err.replace("\r", "\n").splitlines() if x.startswith("metaloss: error")]
    assert len(line) == 1 and "results.csv: no space left on the device" in line[0]
    # neither r nor its staging folder; the finished rows are kept for the same command
    assert [p.name for p in workdir.iterdir()] == [".r.rows"]
    assert "finished row(s) of 1 kept in .r.rows; the same command continues" in err


# --------------------------------------------------------------------------------------------
# New folders: unique, under runs/, printed.


def test_without_out_each_run_gets_a_new_folder_and_says_where(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    made = []
    for _ in range(2):
        code, out, err = cli(TRAIN, capsys)
        assert code == 0, err
        (folder,) = [
            line.split("writing to ")[1] for line in err.splitlines() if "writing to" in line
        ]
        assert f"  {folder}/loss.safetensors" in out
        made.append(folder)
    assert made[0] != made[1]
    names = sorted(p.name for p in (workdir / "runs").iterdir())
    assert len(names) == 2 and all(n.startswith("sine__train__0__") for n in names)
    marker = json.loads((workdir / made[0] / common.MARKER_NAME).read_text())
    assert marker["command"] == "train" and marker["name"] == "sine"


def test_folder_names_are_collision_safe_and_safe_names(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from metaloss.config import parse

    monkeypatch.setattr(common.time, "strftime", lambda *_: "20260101-000000")
    plan = common.plan_folder(None, parse({"name": "../../etc/x y"}), "train")
    first, second = common.create_folder(plan), common.create_folder(plan)
    assert first.parent == second.parent == Path("runs")
    assert first.name == "etc_x_y__train__0__20260101-000000"
    assert second.name == first.name + "-2"


def test_readme_command_1_runs_twice(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """README command 1 is `python -m metaloss train` (a new folder each time); with an explicit
    folder, the second run is refused in one line that says what to do."""
    for _ in range(2):
        assert cli(TRAIN, capsys)[0] == 0
    assert cli([*TRAIN, "--out", "runs/sine"], capsys)[0] == 0
    refused(
        [*TRAIN, "--out", "runs/sine"], capsys, workdir, "already holds a run; pass --resume", 1
    )


def test_tune_without_out_makes_a_new_tuning_folder(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["tune", str(SINE), "--target", "mse", "--trials", "1", *BENCH]
    args += ["--set=tune.space=[{param: inner.lr, low: 0.003, high: 0.1, log: true}]"]
    args += ["--set=task.n_outer_valid=4", "--set=outer.val_tasks=2"]
    code, _, err = cli(args, capsys)
    assert code == 0, err
    (folder,) = (workdir / "runs").iterdir()
    assert (
        folder.name.startswith("sine__tune__0__") and f"--out {Path('runs') / folder.name}" in err
    )
    code, _, err = cli([*args, "--out", str(folder)], capsys)  # a tuning folder is shared
    assert code == 0, err


# --------------------------------------------------------------------------------------------
# Figures of inspect.


def test_inspect_out_prints_the_path_it_wrote_and_refuses_folders_and_non_images(
    workdir: Path, capsys: pytest.CaptureFixture[str], loss_file: Path
) -> None:
    code, out, _ = cli(["inspect", str(loss_file), "--out", "fig"], capsys)
    assert code == 0 and "figure: fig.png" in out and (workdir / "fig.png").is_file()
    (workdir / "figs").mkdir()
    refused(
        ["inspect", str(loss_file), "--out", "figs"], capsys, workdir, "--out: figs is a folder", 1
    )
    copy = workdir / "loss.safetensors"
    shutil.copy(loss_file, copy)
    refused(
        ["inspect", str(copy), "--out", str(copy)],
        capsys,
        workdir,
        "expected a figure file ending in .png",
        1,
    )
    refused(["inspect", str(copy), "--out", "config.yaml"], capsys, workdir, "got .yaml", 1)


# --------------------------------------------------------------------------------------------
# Read-only folders and full disks (simulated by patching: os.access for permissions, the
# writers for ENOSPC; tests/test_hostile_run_folders.py::test_a_real_full_disk uses a tmpfs).


def test_a_read_only_parent_is_refused_before_anything(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (workdir / "ro").mkdir()
    monkeypatch.setattr(common.os, "access", lambda path, mode: Path(path).name != "ro")
    refused(
        [*TRAIN, "--out", "ro/run"],
        capsys,
        workdir,
        "cannot write in ro (read-only or no permission)",
        1,
    )


def test_a_read_only_file_system_at_write_time_is_one_line(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def read_only(self: Path, *args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    line = refused(
        [*TRAIN, "--out", "run"],
        capsys,
        workdir,
        "run: cannot write here (Read-only file system)",
        1,
    )
    assert line.endswith("choose another folder with --out")


@pytest.mark.parametrize("where", ["checkpoint", "loss", "results"])
def test_a_full_disk_leaves_no_half_written_file(
    where: str, workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer writes half its bytes and fails with ENOSPC: one line, and the output is the
    previous complete file or absent, never a partial one (no temporary file is left)."""
    real_write = Path.write_bytes if where != "results" else Path.write_text
    target = {"checkpoint": "checkpoint.pt", "loss": "loss.safetensors", "results": "results.md"}[
        where
    ]
    calls = []

    def half_then_full(self: Path, data: object, *args: object, **kwargs: object) -> int:
        if target in self.name:
            calls.append(self)
            if where != "checkpoint" or len(calls) > 1:  # the second checkpoint fails
                real_write(self, data[: len(data) // 2], *args, **kwargs)  # type: ignore[index]
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(self, data, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "write_text" if where == "results" else "write_bytes", half_then_full)
    args = ["train", str(SINE), *TINY_TRAIN, "--out", "run", "--set=evaluation.test_tasks=2"]
    args += ["--set=evaluation.grid_tasks=2", "--set=evaluation.lr_grid=[0.01]"]
    code, _, err = cli(args, capsys)
    lines = [x for x in err.replace("\r", "\n").splitlines() if x.startswith("metaloss: ")]
    assert code == 1 and lines[-1].startswith("metaloss: error: ") and "Traceback" not in err
    assert f"run/{target}: no space left on the device" in lines[-1]
    names = _files(workdir / "run")
    assert not [n for n in names if ".tmp" in n], names
    if where == "checkpoint":
        torch.load(workdir / "run" / "checkpoint.pt", weights_only=True)  # the first, whole
    else:
        assert target not in names


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.geteuid() != 0 or not shutil.which("mount"),
    reason="needs root to mount a tiny tmpfs (the patched tests above cover the same code)",
)
def test_a_real_full_disk(tmp_path: Path) -> None:
    """A 200 KiB tmpfs fills up during meta-training: one line, exit 1, no temporary files."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=120k", "tmpfs", str(disk)], capture_output=True
    ).returncode:
        pytest.skip("mount not permitted here")
    try:
        args = ["train", str(SINE), "--out", "run", "--set=outer.steps=400", "--no-eval"]
        args += ["--set=outer.checkpoint_every=1", "--set=outer.meta_batch=4"]
        result = run_subprocess(args, disk, timeout=170)
        errors = [
            x
            for x in result.stderr.replace("\r", "\n").splitlines()
            if x.startswith("metaloss: error")
        ]
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert len(errors) == 1 and "no space left on the device" in errors[0]
        assert not [n for n in _files(disk / "run") if ".tmp" in n]
    finally:
        subprocess.run(["umount", str(disk)], check=False)


# --------------------------------------------------------------------------------------------
# Signals, debug, broken pipes.


@pytest.mark.parametrize("prefetch", [False, True])
@pytest.mark.parametrize(
    ("sig", "code", "word"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
)
def test_a_signal_ends_in_one_line_and_the_run_resumes(
    sig: int, code: int, word: str, prefetch: bool, workdir: Path
) -> None:
    """With the prefetch worker alive too: the stop waits for the meta-step's end (a signal
    raised inside a thread join used to hang the process or abort it at exit)."""
    args = [sys.executable, "-m", "metaloss", "train", str(SINE), *TINY_TRAIN, "--out", "run"]
    args += [
        "--set=outer.steps=100000",
        "--no-eval",
        f"--set=outer.prefetch={str(prefetch).lower()}",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(args, cwd=workdir, stderr=subprocess.PIPE, text=True, env=env)
    try:  # the timeouts bound a hang on a loaded machine, not a speed
        deadline = time.time() + 300
        while not (workdir / "run" / "checkpoint.pt").exists() and time.time() < deadline:
            time.sleep(0.05)
        process.send_signal(sig)
        _, err = process.communicate(timeout=300)
    finally:  # never leave the run behind for a later test to trip over
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == code, err[-2000:]
    lines = [x for x in err.replace("\r", "\n").splitlines() if x.startswith("metaloss: ")]
    assert lines[-1].startswith(f"metaloss: {word}") and "Traceback" not in err
    assert not [n for n in _files(workdir / "run") if ".tmp" in n]
    torch.load(workdir / "run" / "checkpoint.pt", weights_only=True)


def test_an_internal_error_is_one_line_and_debug_shows_the_traceback(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import metaloss.commands.train as train

    def bug(*args: object, **kwargs: object) -> None:
        raise KeyError("oops")

    monkeypatch.setattr(train, "load_config", bug)
    code, _, err = cli(["train"], capsys)
    assert code == 1
    assert assert_one_line(err).startswith("metaloss: internal error: KeyError: 'oops'")
    code, _, err = cli(["--debug", "train"], capsys)
    assert (
        code == 1
        and "Traceback" in err
        and err.rstrip().splitlines()[-1].startswith("metaloss: internal error")
    )
    monkeypatch.setenv("METALOSS_DEBUG", "1")
    assert "Traceback" in cli(["train"], capsys)[2]


def test_a_broken_pipe_is_quiet(workdir: Path) -> None:
    """``metaloss inspect ... | head``: the rest of a long output is dropped without a word, and
    the exit status is the shell's for a program ended by SIGPIPE (141)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    code = (
        "import sys, metaloss.commands.inspect as i; i.summary_lines = lambda m, d: ['x' * 99] * 30000; "
        "from metaloss.cli import main; sys.exit(main(['inspect', 'robust-regression']))"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert process.stdout is not None and process.stderr is not None
    head = process.stdout.read(10)
    process.stdout.close()  # the reader goes away with ~3 MB still to come
    with process.stderr:
        err = process.stderr.read()
    assert process.wait(timeout=120) == 141
    assert head == b"robust-reg" and err == b""
    assert snapshot(workdir) == {}


@pytest.mark.parametrize("command", ["config outliers", "config", "--help", "train --help"])
def test_piping_a_command_into_head_prints_no_traceback(command: str, workdir: Path) -> None:
    """``metaloss config outliers | head -1``: whether the pipe breaks depends on timing, so the
    status is 0 (all written before ``head`` left) or 141 (it broke), never an error."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    shell = f"{sys.executable} -m metaloss {command} | head -1; exit ${{PIPESTATUS[0]}}"
    result = subprocess.run(
        ["bash", "-c", shell], cwd=workdir, capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode in (0, 141) and result.stderr == ""
    assert len(result.stdout.splitlines()) == 1


def test_two_runs_started_at_once_on_one_new_folder_cannot_both_take_it(workdir: Path) -> None:
    from metaloss.config import parse

    config = parse({})
    first = common.plan_folder(Path("run"), config, "train")
    second = common.plan_folder(Path("run"), config, "train")  # planned before the first wrote
    common.create_folder(first, config)
    with pytest.raises(common.RunFolderError, match="started in run at the same moment"):
        common.create_folder(second, config)
    assert sorted(p.name for p in (workdir / "run").iterdir()) == [
        "config.yaml",
        common.MARKER_NAME,
    ]
    # tune shares its folder: a worker that finds another one's files half-written goes on
    (workdir / "t").mkdir()
    (workdir / "t" / f".{common.MARKER_NAME}.tmp-99999").write_text("{")
    shared = [common.plan_folder(Path("t"), config, "tune", shared=True) for _ in range(2)]
    assert [common.create_folder(plan) for plan in shared] == [Path("t"), Path("t")]
