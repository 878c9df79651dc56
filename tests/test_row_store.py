"""A benchmark that stops keeps its finished rows, and the same command continues from them to
the report an uninterrupted run writes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from _configs import TINY_OUTLIERS

import metaloss.evaluation.benchmark as harness
from metaloss.cli import main
from metaloss.evaluation.benchmark import Entry, Selection
from metaloss.evaluation.row_store import RowStore
from metaloss.export import save_loss
from metaloss.losses.learned import LearnedLoss

CONFIG = {
    **TINY_OUTLIERS,
    "evaluation": {"test_tasks": 4, "seeds": 1, "grid_tasks": 3, "lr_grid": [0.01, 0.05]},
    "benchmark": {
        "baselines": [{"name": "mse"}, {"name": "huber", "param": "delta", "values": [0.3, 1.0]}],
        "oracle": False,
        "rows": [
            {"name": "eps=0", "task": ["epsilon=[0, 0]"]},
            {"name": "eps=0.3", "task": ["epsilon=[0.3, 0.3]"]},
        ],
    },
}


def tiny_loss() -> LearnedLoss:
    generator = torch.Generator().manual_seed(0)
    loss = LearnedLoss(("residual", "abs_residual"), hidden=(8,), output="square")
    with torch.no_grad():
        for p in loss.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=generator))
    return loss


def _entry(row: str, name: str) -> Entry:
    selection = Selection(0.01, None, {"lr=0.01": 1.5, "lr=0.05": math.inf})
    metrics = {"accuracy": torch.tensor([0.5, 1.0])}
    per_task, curve = torch.tensor([1.0, float("nan")]), torch.arange(3.0)
    return Entry(row, name, "learned", selection, "", per_task, curve, {"healthy": 2}, 1, metrics)


def test_a_row_comes_back_as_it_was_saved(tmp_path: Path) -> None:
    store = RowStore(tmp_path / "rows", "abc")
    store.save(0, [_entry("r", "a"), _entry("r", "b")])
    again = RowStore(tmp_path / "rows", "abc")
    kept = again.load(0, "r")
    assert kept is not None and [e.name for e in kept] == ["a", "b"]
    first = kept[0]
    assert first.selection == Selection(0.01, None, {"lr=0.01": 1.5, "lr=0.05": math.inf})
    torch.testing.assert_close(first.per_task, torch.tensor([1.0, float("nan")]), equal_nan=True)
    torch.testing.assert_close(first.metrics["accuracy"], torch.tensor([0.5, 1.0]))
    assert (first.diagnoses, first.diverged, again.kept) == ({"healthy": 2}, 1, 1)
    assert again.load(0, "another row") is None and again.load(1, "r") is None


def test_another_runs_rows_are_dropped_and_foreign_files_kept(tmp_path: Path) -> None:
    store = RowStore(tmp_path / "rows", "abc")
    store.save(0, [_entry("r", "a")])
    (tmp_path / "rows" / "notes.txt").write_text("mine")
    other = RowStore(tmp_path / "rows", "another fingerprint")
    assert other.rows() == 0 and other.load(0, "r") is None
    assert (tmp_path / "rows" / "notes.txt").read_text() == "mine"
    other.remove()  # the folder stays while it holds a file the store did not write
    assert sorted(p.name for p in (tmp_path / "rows").iterdir()) == ["notes.txt"]


def test_an_unreadable_row_file_is_run_again(tmp_path: Path) -> None:
    store = RowStore(tmp_path / "rows", "abc")
    store.save(0, [_entry("r", "a")])
    path = tmp_path / "rows" / "row-0.safetensors"
    path.write_bytes(path.read_bytes()[:40])  # truncated
    assert RowStore(tmp_path / "rows", "abc").load(0, "r") is None
    path.write_bytes(b"\xff" * 8 + b"{}")  # not a safetensors file
    assert RowStore(tmp_path / "rows", "abc").load(0, "r") is None


def test_a_stopped_benchmark_continues_to_the_uninterrupted_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    loss = str(save_loss(tiny_loss(), tmp_path / "learned.safetensors"))
    args = ["benchmark", str(config), "--loss", loss, "--out"]
    assert main([*args, str(tmp_path / "whole")]) == 0
    whole = json.loads((tmp_path / "whole" / "results.json").read_text())
    assert not (tmp_path / ".whole.rows").exists()  # dropped once the report is written
    capsys.readouterr()

    real_run_row = harness.run_row
    ran: list[str] = []

    def stopped_on_the_second_row(row, contenders, progress=None):  # type: ignore[no-untyped-def]
        ran.append(row.name)
        if row.name == "eps=0.3":
            raise KeyboardInterrupt  # Ctrl-C, SIGTERM or a crash on the second row
        return real_run_row(row, contenders, progress)

    monkeypatch.setattr(harness, "run_row", stopped_on_the_second_row)
    out = tmp_path / "report"
    assert main([*args, str(out)]) != 0
    assert not out.exists()  # no half-written report
    assert "1 finished row(s) of 2 kept" in capsys.readouterr().err
    kept = sorted(p.name for p in (tmp_path / ".report.rows").iterdir())
    assert kept == ["fingerprint.txt", "row-0.safetensors"]

    ran.clear()

    def counted(row, contenders, progress=None):  # type: ignore[no-untyped-def]
        ran.append(row.name)
        return real_run_row(row, contenders, progress)

    monkeypatch.setattr(harness, "run_row", counted)
    assert main([*args, str(out)]) == 0
    assert ran == ["eps=0.3"]  # the finished row was not run again
    assert (
        "continuing an earlier run of this benchmark: 1 finished row(s)" in capsys.readouterr().err
    )
    resumed = json.loads((out / "results.json").read_text())
    assert resumed["entries"] == whole["entries"] and resumed["comparisons"] == whole["comparisons"]
    assert not (tmp_path / ".report.rows").exists()


def test_a_file_where_the_rows_go_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    loss = str(save_loss(tiny_loss(), tmp_path / "learned.safetensors"))
    (tmp_path / ".report.rows").write_text("not a folder")
    assert main(["benchmark", str(config), "--loss", loss, "--out", str(tmp_path / "report")]) == 1
    err = capsys.readouterr().err
    assert "is a file where this benchmark keeps its finished rows" in err
    assert not (tmp_path / "report").exists()
    assert (tmp_path / ".report.rows").read_text() == "not a folder"
