"""The benchmark harness: end to end on a tiny budget, selection never touches test data,
clear errors for bad losses, determinism, curve diagnoses, the oracle's clean-only loss."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _configs import TINY_OUTLIERS

from metaloss.cli import main
from metaloss.config import ConfigError, parse
from metaloss.evaluation.benchmark import (
    Row,
    contenders_from_config,
    rows_from_config,
    run_benchmark,
    select,
)
from metaloss.evaluation.diagnostics import count_diagnoses, diagnose
from metaloss.evaluation.meta_test import eval_set
from metaloss.evaluation.report import markdown
from metaloss.export import save_loss
from metaloss.losses import LearnedLoss
from metaloss.tasks import Split, Task
from metaloss.tasks.oracles import clean_only, weighted_mse
from metaloss.tasks.outliers import OutliersFamily

TINY = {
    **TINY_OUTLIERS,
    "evaluation": {"test_tasks": 5, "seeds": 2, "grid_tasks": 4, "lr_grid": [0.01, 0.05]},
    "benchmark": {
        "baselines": [{"name": "mse"}, {"name": "huber", "param": "delta", "values": [0.3, 1.0]}],
        "oracle": True,
        "rows": [
            {"name": "eps=0", "task": ["epsilon=[0, 0]"]},
            {"name": "eps=0.25", "task": ["epsilon=[0.25, 0.25]"]},
        ],
    },
}


def tiny_loss() -> LearnedLoss:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return LearnedLoss(
            ("residual", "abs_residual", "residual_scale"), hidden=(8,), output="square"
        )


@pytest.fixture
def loss_file(tmp_path: Path) -> Path:
    return save_loss(tiny_loss(), tmp_path / "learned.safetensors")


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    import yaml

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def test_cli_end_to_end_writes_every_report(
    config_file: Path, loss_file: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "report"
    assert main(["benchmark", str(config_file), "--loss", str(loss_file), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| learned |" in printed and "eps=0.25" in printed
    data = json.loads((out / "results.json").read_text())
    assert data["rows"] == ["eps=0", "eps=0.25"]
    names = {e["loss"] for e in data["entries"]}
    assert names == {"learned", "mse", "huber", "oracle (mse on clean)"}
    for entry in data["entries"]:
        assert entry["tasks"] == 5 and len(entry["curve"]) == 5
        assert sum(entry["diagnoses"].values()) == 10  # 5 tasks x 2 seeds
    assert {c["baseline"] for c in data["comparisons"]} == {"mse", "huber"}
    assert "eps=0.25" in data["gap_closed"]
    assert len((out / "results.csv").read_text().splitlines()) == 1 + 2 * 4
    assert (out / "learning_curves.png").stat().st_size > 1000
    assert list(out.glob("events.out.tfevents.*"))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out))
    events.Reload()
    assert "benchmark/eps=0.25/mse" in events.Tags()["scalars"]


class PoisonedFamily(OutliersFamily):
    """Meta-train and meta-validation tasks whose test split is NaN: any selection that reads a
    test split gets NaN scores. Meta-test tasks are left intact (they are what gets reported)."""

    def make_task(self, generator: torch.Generator, split: Split) -> Task:
        task = super().make_task(generator, split)
        if split is Split.META_TEST:
            return task
        nan = task.test._replace(
            x=torch.full_like(task.test.x, float("nan")),
            y=torch.full_like(task.test.y, float("nan")),
        )
        return task._replace(test=nan)


def _rows(family_cls: type = OutliersFamily) -> tuple[list[Row], list]:
    config = parse(TINY)
    rows = [Row(r.name, family_cls(r.config.task), r.config) for r in rows_from_config(config)]  # type: ignore[arg-type]
    return rows, contenders_from_config(config, {"learned": tiny_loss().per_sample})


def test_selection_never_reads_a_test_split() -> None:
    rows, contenders = _rows(PoisonedFamily)
    clean_rows, clean_contenders = _rows()
    poisoned = run_benchmark(rows, contenders)
    clean = run_benchmark(clean_rows, clean_contenders)
    for a, b in zip(poisoned.entries, clean.entries, strict=True):
        assert a.selection == b.selection
        assert all(torch.isfinite(torch.tensor(list(a.selection.scores.values()))))
        torch.testing.assert_close(a.per_task, b.per_task)


def test_selection_refuses_meta_test_tasks() -> None:
    rows, contenders = _rows()
    test_set = eval_set(rows[0].family, rows[0].config, Split.META_TEST, 2)
    with pytest.raises(ValueError, match="meta-test"):
        select(contenders[0], rows[0], test_set)


class MetaTestPoisonedFamily(OutliersFamily):
    """Every split of every meta-test task is NaN: reading any meta-test task poisons a result."""

    def make_task(self, generator: torch.Generator, split: Split) -> Task:
        task = super().make_task(generator, split)
        if split is not Split.META_TEST:
            return task
        return Task(*(b._replace(y=torch.full_like(b.y, float("nan"))) for b in task))


def _screening_rows(split: str) -> tuple[list[Row], list]:
    config = parse({**TINY, "benchmark": {**TINY["benchmark"], "split": split}})
    family = MetaTestPoisonedFamily
    rows = [Row(r.name, family(r.config.task), r.config) for r in rows_from_config(config)]  # type: ignore[arg-type]
    return rows, contenders_from_config(config, {"learned": tiny_loss().per_sample})


def test_screening_on_meta_validation_never_reads_a_meta_test_task() -> None:
    screened = run_benchmark(*_screening_rows("meta_valid"))
    assert screened.split == "meta_valid"
    assert all(bool(torch.isfinite(e.per_task).all()) for e in screened.entries)
    assert "meta-validation tasks (screening" in markdown(screened)
    tested = run_benchmark(*_screening_rows("meta_test"))  # the poison is real
    assert not any(bool(torch.isfinite(e.per_task).all()) for e in tested.entries)


def test_benchmark_is_deterministic() -> None:
    first = run_benchmark(*_rows())
    second = run_benchmark(*_rows())
    for a, b in zip(first.entries, second.entries, strict=True):
        assert torch.equal(a.per_task, b.per_task) and a.selection == b.selection


def test_a_later_test_start_tests_fresh_tasks_with_the_same_selection() -> None:
    # evaluation.test_start: a confirmation run on meta-test tasks a decision never saw; the
    # meta-train tasks that select every learning rate and parameter stay the same.
    rows, contenders = _rows()
    shifted_config = parse({**TINY, "evaluation": {**TINY["evaluation"], "test_start": 3}})
    shifted_rows = [
        Row(r.name, OutliersFamily(r.config.task), r.config)  # type: ignore[arg-type]
        for r in rows_from_config(shifted_config)
    ]
    data = eval_set(shifted_rows[0].family, shifted_rows[0].config, Split.META_TEST, 2, start=3)
    torch.testing.assert_close(
        data.tasks, rows[0].family.tasks(Split.META_TEST, 2, 3), rtol=0, atol=0
    )
    first, shifted = run_benchmark(rows, contenders), run_benchmark(shifted_rows, contenders)
    for a, b in zip(first.entries, shifted.entries, strict=True):
        assert a.selection == b.selection
        assert not torch.equal(a.per_task, b.per_task)
    with pytest.raises(ConfigError, match="same tasks and seeds"):
        rows_from_config(
            parse(
                {
                    **TINY,
                    "benchmark": {
                        **TINY["benchmark"],
                        "rows": [{"name": "r", "set": ["evaluation.test_start=5"]}],
                    },
                }
            )
        )


@pytest.mark.parametrize("bad", ["no-such-zoo-loss", "garbage"])
def test_bad_loss_gives_one_clear_line(bad: str, config_file: Path, tmp_path: Path, capsys) -> None:
    source = bad
    if bad == "garbage":
        source = str(tmp_path / "garbage.safetensors")
        Path(source).write_bytes(b"not a loss file at all")
    assert (
        main(["benchmark", str(config_file), "--loss", source, "--out", str(tmp_path / "r")]) == 1
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("metaloss: error: ") and "\n" not in err
    assert (
        ("neither a file nor a zoo name" in err)
        if bad != "garbage"
        else ("not a safetensors file" in err)
    )


def test_bad_baseline_or_row_names_the_field(config_file: Path, loss_file: Path, capsys) -> None:
    args = ["benchmark", str(config_file), "--loss", str(loss_file), "--set"]
    assert main([*args, "benchmark.baselines=[{name: hubr}]"]) == 2
    assert "benchmark.baselines[0].name: expected one of" in capsys.readouterr().err
    assert main([*args, "benchmark.rows=[{name: r, task: [epsilon=2]}]"]) == 2
    assert "benchmark.rows[0] (r)" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="param and values"):
        contenders_from_config(
            parse({"benchmark": {"baselines": [{"name": "huber", "param": "delta"}]}}), {}
        )


def test_oracle_loss_is_mse_over_clean_samples_only() -> None:
    family = OutliersFamily(parse({"task": {"family": "outliers", "epsilon": [0.25, 0.25]}}).task)  # type: ignore[arg-type]
    tasks = family.tasks(Split.META_TRAIN, 3)
    pred = torch.randn_like(tasks.train.y)
    weighted = weighted_mse(pred, clean_only(tasks).train.y).mean((1, 2))
    mask = tasks.train.extras["clean"]
    expected = torch.stack([((pred[i] - tasks.train.y[i])[mask[i]] ** 2).mean() for i in range(3)])
    torch.testing.assert_close(weighted, expected)


@pytest.mark.parametrize(
    ("curve", "expected"),
    [
        ([4.0, 2.0, 1.0, 0.6, 0.5, 0.5], "healthy"),
        ([4.0, 2.0, 1.0, 1.5, 2.0, 2.5], "overfitting"),
        ([4.0, 1.0, 3.0, 1.0, 3.0, 1.0], "oscillation"),
        ([4.0, 3.9, 3.9, 3.8, 3.85, 3.8], "plateau"),
        ([4.0, 2.0, float("nan"), 1.0, 1.0, 1.0], "divergence"),
    ],
)
def test_curve_diagnoses(curve: list[float], expected: str) -> None:
    assert diagnose(torch.tensor(curve)) == expected


def test_diagnoses_count_every_run_and_flag_frozen_runs_as_divergence() -> None:
    curves = torch.tensor([[4.0, 2.0, 1.0], [4.0, 2.0, 1.0]])
    counts = count_diagnoses(curves, torch.tensor([False, True]))
    assert counts["healthy"] == 1 and counts["divergence"] == 1 and sum(counts.values()) == 2
