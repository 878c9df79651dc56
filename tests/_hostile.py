"""Helpers of the hostile-input tests: run the command line, check a refusal, snapshot a tree."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from metaloss.cli import main

REPO = Path(__file__).resolve().parents[1]
SINE = REPO / "configs" / "sine.yaml"
TINY_TRAIN = [
    "--set=learner.hidden=[8]",
    "--set=loss.hidden=[4]",
    "--set=inner.steps=2",
    "--set=outer.meta_batch=2",
    "--set=outer.val_every=2",
    "--set=outer.val_tasks=2",
    "--set=outer.steps=2",
    "--set=outer.checkpoint_every=1",
]


def snapshot(root: Path) -> dict[str, tuple[str, int, int, str]]:
    """Every entry under ``root``: kind, size, mtime (ns) and a hash of the bytes of files."""
    tree: dict[str, tuple[str, int, int, str]] = {}
    for folder, dirs, files in os.walk(root):
        for name in sorted(dirs + files):
            path = Path(folder) / name
            info = path.lstat()
            if path.is_symlink() or not path.is_file():
                tree[str(path.relative_to(root))] = ("other", 0, info.st_mtime_ns, "")
                continue
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if info.st_size < 1 << 24 else ""
            tree[str(path.relative_to(root))] = ("file", info.st_size, info.st_mtime_ns, digest)
    return tree


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``metaloss ARGS`` in this process; return the exit status, stdout and stderr."""
    capsys.readouterr()
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line(err: str, match: str | None = None) -> str:
    """Exactly one line on stderr, no traceback, no terminal escapes; return it."""
    assert err.endswith("\n") and err.count("\n") == 1, f"expected one line on stderr, got {err!r}"
    assert "Traceback" not in err and "\x1b" not in err, err
    assert err.startswith("metaloss"), err
    if match is not None:
        assert match in err, f"{match!r} not in {err!r}"
    return err.strip()


def refused(
    args: list[str],
    capsys: pytest.CaptureFixture[str],
    root: Path,
    match: str,
    code: int,
) -> str:
    """``metaloss ARGS`` refuses with ``code`` and one line containing ``match``, and nothing
    under ``root`` (the current folder of the test) is created or changed."""
    before = snapshot(root)
    status, out, err = cli(args, capsys)
    line = assert_one_line(err, match)
    assert status == code, (status, line)
    assert snapshot(root) == before, "the refusal changed the disk"
    assert "\x1b" not in out
    return line


def run_subprocess(
    args: list[str], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python -m metaloss ARGS`` in a fresh process (for pipes and signals)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "metaloss", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def make_workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty current folder, so a command that wrongly writes to ``runs/`` shows up (use as
    ``workdir = pytest.fixture(make_workdir)``)."""
    folder = tmp_path / "cwd"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder
