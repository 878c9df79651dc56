"""`metaloss train` end to end on a tiny budget, including a real kill and --resume."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from metaloss import load_loss
from metaloss.cli import main

TINY = [
    "--set",
    "learner.hidden=[16]",
    "--set",
    "loss.hidden=[8]",
    "--set",
    "outer.meta_batch=4",
    "--set",
    "outer.val_every=10",
    "--set",
    "outer.val_tasks=4",
]


def test_train_writes_config_checkpoint_loss_results_and_events(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    args = [
        "train",
        "configs/sine.yaml",
        "--out",
        str(out),
        "--set",
        "outer.steps=6",
        *TINY,
        "--set",
        "evaluation.test_tasks=8",
        "--set",
        "evaluation.grid_tasks=4",
        "--set",
        "evaluation.lr_grid=[0.01,0.1]",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert str(out / "loss.safetensors") in printed and "| mse (tuned lr) |" in printed
    for name in ["config.yaml", "checkpoint.pt", "loss.safetensors", "results.md", "results.json"]:
        assert (out / name).is_file(), name
    assert list(out.glob("events.out.tfevents.*"))
    results = json.loads((out / "results.json").read_text())
    assert results["runs"] == 8 and len(results["rows"]) == 4
    criterion = load_loss(out / "loss.safetensors")
    pred = torch.zeros(5, 1, requires_grad=True)
    criterion(pred, torch.ones(5, 1)).backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all()
    # A second run into the same folder without --resume is refused in one line.
    assert main(args) == 1
    assert "already holds a run; pass --resume" in capsys.readouterr().err


def test_a_killed_run_resumes_to_the_same_numbers(tmp_path: Path) -> None:
    common = [
        "configs/sine.yaml",
        *TINY,
        "--set",
        "outer.steps=100",
        "--set",
        "outer.checkpoint_every=5",
        "--no-eval",
    ]
    reference = tmp_path / "reference"
    assert main(["train", *common, "--out", str(reference)]) == 0
    run = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "metaloss", "train", *common, "--out", str(run)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while (
        not (run / "checkpoint.pt").exists() and time.time() < deadline and process.poll() is None
    ):
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (run / "loss.safetensors").exists(), "the run finished before it could be killed"
    assert main(["train", *common, "--out", str(run), "--resume"]) == 0
    a, b = load_file(str(reference / "loss.safetensors")), load_file(str(run / "loss.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
