"""The torchrun launches of the command line end to end: two processes on loopback finish with
exit status 0 and rank 0's outputs. Before ``metaloss.commands.distributed.leave``, a rank other
than 0 aborted during interpreter teardown in 5 of 45 runs here, and torchrun then stopped
rank 0 before it wrote the loss file; a few runs here cannot show that rate, so the loop that
measured it is in the closing note, and these runs check the launch itself."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TORCHRUN = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))


def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [
        TORCHRUN, "--standalone", "--nproc-per-node", "2", "-m", "metaloss", *args,
    ]  # fmt: skip
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "PYTHONFAULTHANDLER": "1"}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_rl_train_on_two_processes(tmp_path: Path) -> None:
    tiny = [
        "outer.steps=1", "outer.es_population=2", "outer.meta_batch=2", "outer.val_every=1",
        "outer.val_tasks=3", "task.meta_total_steps=512", "task.ppo.num_envs=2",
        "task.ppo.num_steps=32",
    ]  # fmt: skip
    sets = [item for s in tiny for item in ("--set", s)]
    done = _torchrun(["rl-train", "cartpole", "--out", "run", "--distributed", *sets], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "run" / "loss.safetensors").is_file()


def test_train_on_two_processes(tmp_path: Path) -> None:
    tiny = ["outer.steps=4", "outer.meta_batch=4", "outer.val_every=2", "outer.val_tasks=4"]
    sets = [item for s in tiny for item in ("--set", s)]
    done = _torchrun(["train", "sine", "--out", "run", "--distributed", *sets], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "run" / "loss.safetensors").is_file()
