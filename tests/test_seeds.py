"""Claims across meta-training seeds: the aggregation by hand, and `metaloss benchmark
--meta-seeds` end to end on a tiny budget (resumable, refuses a changed config)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from metaloss.cli import main
from metaloss.commands.meta_seeds import train_seed
from metaloss.commands.progress import ProgressCallback
from metaloss.config import parse
from metaloss.evaluation.benchmark import BenchmarkResult, Entry, Selection
from metaloss.evaluation.diagnostics import DIAGNOSES
from metaloss.evaluation.formatting import PAIRED_COLUMNS, format_p, paired_cells
from metaloss.evaluation.seeds import (
    claim_holds,
    seed_claims,
    seed_markdown,
    seed_spreads,
    seed_to_json,
    select_seed,
)
from metaloss.evaluation.stats import mean_ci

BASE = [float(v) for v in range(10, 22)]  # 12 tasks


def _entry(name: str, role: str, values: list[float]) -> Entry:
    return Entry(
        "r",
        name,
        role,  # type: ignore[arg-type]
        Selection(0.01, None, {}),
        "",
        torch.tensor(values, dtype=torch.float64),
        torch.tensor([1.0]),
        {d: 0 for d in DIAGNOSES},
        0,
    )


def _result(seeds: dict[str, list[float]]) -> BenchmarkResult:
    entries = [_entry(s, "learned", v) for s, v in seeds.items()]
    entries.append(_entry("mse", "baseline", BASE))
    return BenchmarkResult(entries, ["r"], "test MSE", len(BASE), 1, {"r": 1})


def _shift(values: list[float], by: list[float]) -> list[float]:
    return [v + d for v, d in zip(values, by, strict=True)]


BETTER = [-1.0 - 0.1 * i for i in range(12)]  # lower than the baseline on every task
NOISE = [0.5, -0.4, 0.3, -0.6, 0.2, -0.1, 0.4, -0.3, 0.1, -0.5, 0.6, -0.2]  # no clear sign


@pytest.mark.parametrize(
    ("per_seed", "mean", "expected"),
    [
        (["better", "better", "better"], "better", "every seed"),
        (["better", "no significant difference", "better"], "better", "the mean of the seeds only (2 of 3 seeds)"),
        (["better", "worse", "no significant difference"], "no significant difference", "some seeds only (1 of 3); worse for 1 of 3"),
        (["worse", "worse"], "worse", "no seed; worse for 2 of 2"),
        (["too few pairs", "too few pairs"], "too few pairs", "no seed"),
        (["better"], "better", "every seed"),
        ([], "no significant difference", "no seed"),
    ],
)  # fmt: skip
def test_claim_holds(per_seed: list[str], mean: str, expected: str) -> None:
    assert claim_holds(per_seed, mean) == expected


def test_seed_spread_and_claims_by_hand() -> None:
    seeds = {
        "seed-0": _shift(BASE, BETTER),
        "seed-1": _shift(BASE, [2 * b for b in BETTER]),
        "seed-2": _shift(BASE, NOISE),
    }
    result = _result(seeds)
    (spread,) = seed_spreads(result, list(seeds))
    assert spread.row == "r"
    means = [sum(v) / 12 for v in seeds.values()]
    assert spread.per_seed == pytest.approx(dict(zip(seeds, means, strict=True)))
    assert spread.spread.mean == pytest.approx(sum(means) / 3) and spread.spread.n == 3
    (claim,) = seed_claims(result, list(seeds))
    assert [c.verdict for c in claim.per_seed.values()] == [
        "better",
        "better",
        "no significant difference",
    ]
    # The mean of the seeds per task: BASE + (3 BETTER + NOISE) / 3.
    expected = [(3 * b + n) / 3 for b, n in zip(BETTER, NOISE, strict=True)]
    assert claim.mean_of_seeds.difference.mean == pytest.approx(sum(expected) / 12)
    assert claim.mean_of_seeds.verdict == "better"
    assert claim.holds == "the mean of the seeds only (2 of 3 seeds)"
    assert claim.seed_differences.mean == pytest.approx(sum(means) / 3 - sum(BASE) / 12)
    text = seed_markdown(result, list(seeds), {"seed-0": -1.0, "seed-1": -2.0, "seed-2": -1.5})
    assert "**seed-1**" in text and "the mean of the seeds only" in text


def test_seed_report_as_data_and_the_minimum_pairs() -> None:
    # seed-1 is worse by exactly what seed-0 gains: the mean of the seeds is the baseline.
    seeds = {"seed-0": _shift(BASE, BETTER), "seed-1": _shift(BASE, [-b for b in BETTER])}
    result = _result(seeds)
    objectives = {"seed-0": 0.3, "seed-1": 0.2}
    data = seed_to_json(result, list(seeds), objectives)
    assert data["seeds"] == ["seed-0", "seed-1"] and data["chosen_seed"] == "seed-1"
    assert data["best_valid_objective"] == objectives and data["min_pairs"] == 6
    (spread,) = data["spread"]
    means = [sum(v) / 12 for v in seeds.values()]
    assert spread["row"] == "r" and spread["per_seed"] == pytest.approx(
        dict(zip(seeds, means, strict=True))
    )
    assert spread["mean"] == pytest.approx(sum(means) / 2)
    assert spread["ci95"] == pytest.approx(12.7062 * abs(means[0] - means[1]) / 2, rel=1e-4)
    (claim,) = data["claims"]
    assert claim["row"] == "r" and claim["baseline"] == "mse"
    assert (
        claim["per_seed"]["seed-0"]["verdict"] == "better"
        and claim["per_seed"]["seed-0"]["n"] == 12
    )
    assert claim["per_seed"]["seed-1"]["verdict"] == "worse"
    assert claim["mean_of_seeds"]["verdict"] == "no significant difference"
    assert claim["holds"] == "some seeds only (1 of 2); worse for 1 of 2"
    assert claim["mean_of_seeds"]["difference"] == pytest.approx(sum(means) / 2 - sum(BASE) / 12)
    assert claim["seed_differences_mean"] == pytest.approx(sum(means) / 2 - sum(BASE) / 12)
    assert claim["seed_differences_ci95"] == pytest.approx(spread["ci95"])
    text = seed_markdown(result, list(seeds), objectives)
    assert (
        "| r | mse | seed-0: better (p " in text
        and "| some seeds only (1 of 2); worse for 1 of 2 |" in text
    )
    assert f"| r | {mean_ci(means)} | {means[0]:.4g} | {means[1]:.4g} |" in text
    assert "seed-0: 0.3, seed-1: 0.2" in text and "**seed-1**" in text
    # Verdicts are held to the benchmark's minimum number of pairs.
    result.min_pairs = 13
    (strict,) = seed_claims(result, list(seeds))
    assert strict.mean_of_seeds.verdict == "too few pairs"
    assert {c.verdict for c in strict.per_seed.values()} == {"too few pairs"}


def test_seed_markdown_line_by_line() -> None:
    seeds = {"seed-0": _shift(BASE, BETTER), "seed-1": _shift(BASE, [-b for b in BETTER])}
    result = _result(seeds)
    means = [sum(v) / 12 for v in seeds.values()]
    (claim,) = seed_claims(result, list(seeds))
    verdicts = ", ".join(
        f"{s}: {c.verdict} (p {format_p(c.p_t)} / {format_p(c.p_wilcoxon)})"
        for s, c in claim.per_seed.items()
    )
    text = seed_markdown(result, list(seeds), {"seed-0": 0.3, "seed-1": 0.2})
    assert text.endswith(".\n") and text.split("\n") == [
        "## Across 2 meta-training seeds (test MSE; lower is better)",
        "",
        "Spread: each seed's mean over 12 tasks, and the mean ± 95% CI of those 2 means over "
        "seeds (t with 1 degrees of freedom).",
        "",
        "| row | mean ± CI over seeds | seed-0 | seed-1 |",
        "|---|---|---|---|",
        f"| r | {mean_ci(means)} | {means[0]:.4g} | {means[1]:.4g} |",
        "",
        'Claims "better than <baseline>": each seed\'s loss paired with the baseline over tasks, '
        "and the mean of the seeds (each task's metric averaged over the seeds' losses) paired "
        "with it; Δ per seed = each seed's mean difference, as mean ± CI over seeds.",
        "",
        "| row | vs | per-seed verdicts | Δ per seed (mean ± CI over seeds) | mean of seeds: "
        + " | ".join(PAIRED_COLUMNS)
        + " | claim holds for |",
        "|---|---|---|---|" + "---|" * len(PAIRED_COLUMNS) + "---|",
        "| r | mse | "
        + verdicts
        + f" | {claim.seed_differences} | "
        + " | ".join(paired_cells(claim.mean_of_seeds))
        + " | some seeds only (1 of 2); worse for 1 of 2 |",
        "",
        "Per-seed p-values: paired t / Wilcoxon. Best meta-validation objective per seed: "
        "seed-0: 0.3, seed-1: 0.2. The zoo rule ships the seed with the lowest: **seed-1** "
        "(chosen on meta-validation; its claims are those of its column above).",
        "",
    ]
    assert verdicts.startswith("seed-0: better (p ") and ", seed-1: worse (p " in verdicts


def test_select_seed_is_the_lowest_finite_meta_validation_objective() -> None:
    assert select_seed({"seed-0": 0.5, "seed-1": 0.25, "seed-2": float("nan")}) == "seed-1"
    assert select_seed({"seed-0": 0.5, "seed-1": 0.5}) == "seed-0"
    with pytest.raises(ValueError, match=r"^select_seed: no seed has a finite meta-validation"):
        select_seed({"seed-0": float("inf")})


# ------------------------------------------------------------------------------------ the command

TINY = {
    "name": "tiny",
    "task": {"family": "outliers", "n_train": 12, "n_outer_valid": 16, "n_test": 16},
    "learner": {"hidden": [8]},
    "loss": {"hidden": [4]},
    "inner": {"steps": 3, "optimizer": "adam"},
    "outer": {"steps": 3, "meta_batch": 2, "val_every": 3, "val_tasks": 2, "checkpoint_every": 1},
    "evaluation": {"test_tasks": 6, "seeds": 1, "grid_tasks": 2, "lr_grid": [0.01]},
    "benchmark": {"baselines": [{"name": "mse"}], "rows": [{"name": "eps=0.25", "task": ["epsilon=[0.25, 0.25]"]}]},
}  # fmt: skip


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def test_meta_seeds_trains_benchmarks_resumes_and_refuses_a_changed_config(
    config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    out = tmp_path / "seeds"
    args = ["benchmark", str(config_file), "--meta-seeds", "2", "--out", str(out)]
    # A kill during seed 1's meta-training, after seed 0 finished.
    original = ProgressCallback.on_step

    def killing(self, trainer, record) -> None:  # type: ignore[no-untyped-def]
        original(self, trainer, record)
        if trainer.config.seed == 1 and record.step == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(ProgressCallback, "on_step", killing)
    assert main(args) == 130
    assert (out / "seed-0" / "loss.safetensors").exists()
    assert not (out / "seed-1" / "loss.safetensors").exists()
    assert (out / "seed-1" / "checkpoint.pt").exists()
    finished = (out / "seed-0" / "loss.safetensors").stat().st_mtime_ns
    monkeypatch.setattr(ProgressCallback, "on_step", original)
    capsys.readouterr()
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "seed 0 already trained" in captured.err
    assert (out / "seed-0" / "loss.safetensors").stat().st_mtime_ns == finished
    # The resumed seed equals an uninterrupted run of the same seed.
    fresh = train_seed(parse({**TINY, "seed": 1}), tmp_path / "fresh")
    for name, value in _tensors(fresh).items():
        torch.testing.assert_close(_tensors(out / "seed-1" / "loss.safetensors")[name], value)
    # The report: both seeds benchmarked on the same tasks, spread and claims per row.
    results = json.loads((out / "results.json").read_text())
    assert {e["loss"] for e in results["entries"]} == {"seed-0", "seed-1", "mse"}
    seeds = json.loads((out / "seeds.json").read_text())
    assert seeds["seeds"] == ["seed-0", "seed-1"] and seeds["chosen_seed"] in seeds["seeds"]
    (spread,) = seeds["spread"]
    per_seed = {e["loss"]: e["mean"] for e in results["entries"] if e["loss"] != "mse"}
    assert spread["per_seed"] == pytest.approx(per_seed)
    (claim,) = seeds["claims"]
    assert claim["baseline"] == "mse" and set(claim["per_seed"]) == {"seed-0", "seed-1"}
    assert claim["mean_of_seeds"]["n"] == 6 and claim["holds"]
    assert "## Across 2 meta-training seeds" in captured.out
    assert (out / "seeds.md").read_text().startswith("## Across 2 meta-training seeds")
    # A changed config is refused before anything runs, in one line.
    capsys.readouterr()
    assert main([*args, "--set", "outer.steps=4"]) == 1
    err = capsys.readouterr().err.strip()
    assert "was meta-trained with a different config" in err and "\n" not in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--meta-seeds", "1", "--out", "x"], "--meta-seeds: expected at least 2 seeds, got 1"),
        (["--meta-seeds", "2", "--out", "x", "--loss", "a.safetensors"], "--loss: not with --meta-seeds"),
        (["--meta-seeds", "2"], "--out: expected a folder"),
    ],
)  # fmt: skip
def test_meta_seeds_bad_arguments_give_one_line(
    extra: list[str], message: str, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["benchmark", str(config_file), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
