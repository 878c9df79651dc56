"""The classification transfer benchmark (``configs/noisy_labels.yaml``'s ``benchmark.transfer``
rows), the learned-loss + reference mix contender (``benchmark.learned_mix``) and the
out-of-distribution validation data sets."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from torch import Tensor

from metaloss.cli import main
from metaloss.config import ConfigError, load_config, parse
from metaloss.evaluation.benchmark import (
    Row,
    contenders_from_config,
    mixed_loss,
    rows_from_config,
    run_benchmark,
)
from metaloss.losses import LearnedLoss, baseline
from metaloss.losses.learned import cross_entropy
from metaloss.named_configs import resolve_config
from metaloss.tasks import Split, Task
from metaloss.tasks.classification_data import ClassificationDataConfig, ClassificationDataFamily


def test_every_noisy_labels_transfer_row_builds_with_the_condition_it_names() -> None:
    config = load_config("noisy_labels", ["benchmark.split=transfer"])
    rows = {r.name: r for r in rows_from_config(config)}
    assert len(rows) == len(config.benchmark.transfer) >= 20
    assert all(r.family.kind == "classification" for r in rows.values())
    assert rows["anes96 clean"].family.out_features == 7
    assert rows["digits10 sym 0.4"].family.out_features == 10
    assert rows["fair clean"].family.out_features == 2
    assert rows["linear sym 0.4"].config.learner.hidden == ()
    assert rows["mlp 32x3 sym 0.4"].config.learner.hidden == (32, 32, 32)
    assert rows["anes96 clean adam"].config.inner.optimizer == "adam"
    assert rows["K=400 clean"].config.inner.steps == 10 * config.inner.steps
    assert rows["batch 25 sym 0.4"].config.task.k_shot == 5  # type: ignore[attr-defined]
    assert rows["digits10 sym 0.4 n=600"].config.task.n_train == 600  # type: ignore[attr-defined]
    # the in-family rows are unchanged
    assert rows_from_config(load_config("noisy_labels"))[0].name == "sym 0.2"


def _tiny_transfer_config(tmp_path: Path) -> Path:
    """The shipped noisy_labels config with four of its transfer rows, on a tiny budget."""
    data = yaml.safe_load(Path(resolve_config("noisy_labels")).read_text())
    keep = ["digits10 sym 0.4", "anes96 clean adam", "linear sym 0.4", "batch 25 sym 0.4"]
    rows = [r for r in data["benchmark"]["transfer"] if r["name"] in keep]
    for r in rows:  # smaller selection grids, same conditions
        r["set"] = [s for s in r.get("set", []) if not s.startswith("evaluation.")]
        r["task"] = r["task"] + (["n_train=40", "n_outer_valid=20"] if "dataset" in str(r) else [])
    data["benchmark"]["transfer"] = rows
    data["benchmark"]["baselines"] = [
        {"name": "ce"},
        {"name": "gce", "param": "q", "values": [0.7]},
    ]
    data["benchmark"]["learned_baselines"] = []
    data["benchmark"]["learned_mix"] = [0.0, 1.0]
    data["inner"]["steps"] = 3
    data["evaluation"] = {"test_tasks": 3, "seeds": 1, "grid_tasks": 2, "lr_grid": [0.01, 0.1]}
    path = tmp_path / "nl.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_noisy_labels_transfer_rows_end_to_end_on_a_tiny_budget(tmp_path: Path, capsys) -> None:
    out = tmp_path / "report"
    args = ["benchmark", str(_tiny_transfer_config(tmp_path)), "--loss", "noisy-labels"]
    assert main([*args, "--set", "benchmark.split=transfer", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert (
        "| anes96 clean adam | classification_data (anes96) | MLP 64 relu | adam | 3 |" in printed
    )
    data = json.loads((out / "results.json").read_text())
    assert data["split"] == "transfer" and len(data["rows"]) == 4
    assert set(data["metrics_higher_is_better"]) >= {"accuracy", "ece"}
    names = {e["loss"] for e in data["entries"]}
    assert names == {
        "noisy-labels",
        "noisy-labels + ce mix",
        "ce",
        "gce",
        "oracle (ce on clean labels)",
    }
    for entry in data["entries"]:
        assert entry["tasks"] == 3 and math.isfinite(entry["mean"])
        assert {"accuracy", "ece"} <= set(entry["metrics"])
    mixed = [e for e in data["entries"] if e["loss"] == "noisy-labels + ce mix"]
    assert len(mixed) == 4 and all(e["param"]["mix"] in (0.0, 1.0) for e in mixed)
    compared = {(c["row"], c["learned"]) for c in data["comparisons"]}
    assert ("linear sym 0.4", "noisy-labels + ce mix") in compared


# ------------------------------------------------------------------------------ the mix contender


class PoisonedData(ClassificationDataFamily):
    """Every test split a selection could read is NaN: the held-out rows (the test split of
    meta-test tasks) and the test split of every selection task."""

    def __init__(self, config: ClassificationDataConfig) -> None:
        super().__init__(config)
        self.x = self.x.clone()
        self.x[self.held] = float("nan")

    def make_task(self, generator: torch.Generator, split: Split) -> Task:
        task = super().make_task(generator, split)
        if split is Split.META_TEST:
            return task
        return task._replace(test=task.test._replace(x=torch.full_like(task.test.x, math.nan)))


TINY = {
    "task": {
        "family": "classification_data",
        "dataset": "anes96",
        "n_train": 40,
        "n_outer_valid": 20,
    },
    "learner": {"hidden": [8]},
    "inner": {"steps": 5, "optimizer": "sgd", "lr": 0.3},
    "evaluation": {"test_tasks": 6, "seeds": 1, "grid_tasks": 3, "lr_grid": [0.1, 0.5]},
    "benchmark": {
        "baselines": [{"name": "ce"}],
        "oracle": False,
        "learned_mix": [0.0, 0.5, 1.0],
        "split": "transfer",
        "transfer": [
            {"name": "anes96 sym 0.3", "task": ["noise_type=symmetric", "noise_rate=[0.3, 0.3]"]}
        ],
    },
}


def _learned() -> LearnedLoss:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return LearnedLoss(("label_prob", "margin", "ce"), hidden=(8,), kind="classification")


def _mix_benchmark(poisoned: bool, learned: object) -> list:
    config = parse(TINY)
    rows = rows_from_config(config)
    if poisoned:
        rows = [Row(r.name, PoisonedData(r.config.task), r.config) for r in rows]  # type: ignore[arg-type]
    contenders = contenders_from_config(config, {"learned": learned}, rows[0].family)  # type: ignore[dict-item]
    return run_benchmark(rows, contenders).entries


def test_mix_selection_never_reads_test_data() -> None:
    learned = _learned().per_sample
    poisoned, clean = _mix_benchmark(True, learned), _mix_benchmark(False, learned)
    assert [e.name for e in clean] == ["learned", "learned + ce mix", "ce"]
    for a, b in zip(poisoned, clean, strict=True):
        assert (a.selection.lr, a.selection.value) == (b.selection.lr, b.selection.value)
        assert a.selection.scores == b.selection.scores
        assert all(math.isfinite(v) for v in a.selection.scores.values())
        assert bool(torch.isfinite(b.per_task).all())
        assert not bool(torch.isfinite(a.per_task).any())  # the poison is real: tests read it
    mixed = clean[1]
    assert set(mixed.selection.scores) == {
        f"mix={m:g} lr={r:g}" for m in (0, 0.5, 1) for r in (0.1, 0.5)
    }


def test_mix_selects_the_reference_when_the_learned_loss_ascends_and_then_is_the_reference() -> (
    None
):
    def ascent(pred: Tensor, target: Tensor) -> Tensor:  # m = 0.5: zero loss, m = 1: ascent
        return -cross_entropy(pred, target)

    learned, mixed, ce = _mix_benchmark(False, ascent)
    assert mixed.selection.value == 0.0
    assert mixed.selection.lr == ce.selection.lr
    assert torch.equal(mixed.per_task, ce.per_task)  # m = 0 is CE itself, to the bit
    assert float(learned.per_task.mean()) > float(ce.per_task.mean())


def test_mixed_loss_is_the_convex_combination() -> None:
    pred, target = torch.randn(7, 4), torch.randint(0, 4, (7,))
    learned = _learned().per_sample
    make = mixed_loss(learned, "ce")
    ce = baseline("ce")
    assert torch.equal(make(mix=0.0)(pred, target), ce(pred, target))
    assert torch.equal(make(mix=1.0)(pred, target), learned(pred, target))
    expected = 0.75 * ce(pred, target) + 0.25 * learned(pred, target)
    assert torch.allclose(make(mix=0.25)(pred, target), expected)


def test_mix_weights_outside_the_unit_interval_name_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"benchmark\.learned_mix"):
        parse({**TINY, "benchmark": {**TINY["benchmark"], "learned_mix": [0.5, 1.5]}})
