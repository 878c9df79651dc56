"""The transfer benchmark (``benchmark.split=transfer``): end to end on a tiny budget, row
overrides of any setting, selection that never reads a transfer test row, the bundled real data
sets and the regression baselines practitioners pick instead (Tukey, Barron, HuberRegressor)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from _configs import TINY_OUTLIERS

from metaloss.cli import main
from metaloss.config import ConfigError, parse
from metaloss.datasets import load_regression, regression_names
from metaloss.evaluation.benchmark import (
    Row,
    contenders_from_config,
    rows_from_config,
    run_benchmark,
)
from metaloss.evaluation.fits import huber_regressor
from metaloss.evaluation.report import markdown
from metaloss.export import save_loss
from metaloss.losses import LearnedLoss, baseline
from metaloss.losses.barron import barron, general_loss, log_partition, log_partition_exact
from metaloss.losses.mestimators import mad_scale, tukey
from metaloss.tasks import Split, Task, make_family
from metaloss.tasks.tabular import TabularConfig, TabularFamily

BASELINES = [
    {"name": "mse"},
    {"name": "huber", "param": "delta", "values": [0.3, 1.0]},
    {"name": "tukey", "param": "c", "values": [3.0, 4.685]},
    {"name": "barron", "param": "scale_init", "values": [0.3, 1.0]},
    {"name": "huber_regressor", "param": "epsilon", "values": [1.35, 2.0]},
]

TINY = {
    **TINY_OUTLIERS,
    "evaluation": {"test_tasks": 4, "seeds": 2, "grid_tasks": 3, "lr_grid": [0.01, 0.05]},
    "benchmark": {
        "baselines": BASELINES,
        "oracle": True,
        "rows": [{"name": "eps=0", "task": ["epsilon=[0, 0]"]}],
        "transfer": [
            {
                "name": "stackloss linear",
                "task": ["family=tabular", "dataset=stackloss", "epsilon=[0.2, 0.2]"],
                "set": ["learner.hidden=[]", "inner.steps=6"],
            },
            {
                "name": "diabetes sgd",
                "task": ["family=tabular", "dataset=diabetes", "n_train=40", "n_outer_valid=30"],
                "set": ["inner.optimizer=sgd", "evaluation.lr_grid=[0.01, 0.1]"],
            },
        ],
    },
}


def tiny_loss() -> LearnedLoss:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return LearnedLoss(
            ("residual", "abs_residual", "residual_scale"), hidden=(8,), output="square"
        )


def _config(**benchmark: object):  # type: ignore[no-untyped-def]
    return parse({**TINY, "benchmark": {**TINY["benchmark"], **benchmark}})


# ------------------------------------------------------------------------------ the harness


def test_transfer_cli_end_to_end(tmp_path: Path, capsys) -> None:
    import yaml

    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(yaml.safe_dump(TINY))
    loss_file = save_loss(tiny_loss(), tmp_path / "learned.safetensors")
    out = tmp_path / "report"
    args = ["benchmark", str(config_file), "--loss", str(loss_file), "--out", str(out)]
    scaled = ["--set", "benchmark.learned_scale=[1, 4]"]
    assert main([*args, "--set", "benchmark.split=transfer", *scaled]) == 0
    printed = capsys.readouterr().out
    assert "held-out tasks of each transfer condition" in printed
    assert "| stackloss linear | tabular (stackloss) | linear | adam | 6 |" in printed
    data = json.loads((out / "results.json").read_text())
    assert data["split"] == "transfer"
    assert data["rows"] == ["stackloss linear", "diabetes sgd"]
    assert data["inner_steps"] == {"stackloss linear": 6, "diabetes sgd": 4}
    assert data["conditions"]["diabetes sgd"]["optimizer"] == "sgd"
    by_row: dict[str, set[str]] = {}
    for entry in data["entries"]:
        by_row.setdefault(entry["row"], set()).add(entry["loss"])
        assert entry["tasks"] == 4 and entry["mean"] is not None and math.isfinite(entry["mean"])
    common = {"learned", "learned (scale)", "mse", "huber", "tukey", "barron"}
    common |= {"oracle (mse on clean)"}
    assert by_row == {"stackloss linear": common | {"huber_regressor"}, "diabetes sgd": common}
    learned_rows = {(c["row"], c["baseline"]) for c in data["comparisons"]}
    assert ("stackloss linear", "huber_regressor") in learned_rows
    assert ("diabetes sgd", "huber_regressor") not in learned_rows
    fit = next(e for e in data["entries"] if e["loss"] == "huber_regressor")
    assert fit["lr"] is None and set(fit["selection_scores_outer_valid"]) == {
        "epsilon=1.35",
        "epsilon=2",
    }
    for entry in (e for e in data["entries"] if e["loss"] == "learned (scale)"):
        assert entry["param"]["scale"] in (1, 4)
        assert {k.split()[0] for k in entry["selection_scores_outer_valid"]} == {
            "scale=1",
            "scale=4",
        }
    # the in-family benchmark of the same config still runs its own rows
    again = tmp_path / "report-meta-test"  # a report folder is never overwritten
    assert main([*args[:-1], str(again), "--set", "benchmark.split=meta_test"]) == 0
    assert json.loads((again / "results.json").read_text())["rows"] == ["eps=0"]


def test_row_overrides_reach_every_setting_and_are_validated() -> None:
    rows = rows_from_config(_config(split="transfer"))
    linear, sgd = rows
    assert linear.config.learner.hidden == () and linear.config.inner.steps == 6
    assert linear.config.task.dataset == "stackloss"  # type: ignore[attr-defined]
    assert sgd.config.inner.optimizer == "sgd" and sgd.config.evaluation.lr_grid == (0.01, 0.1)
    assert sgd.config.learner.hidden == (8,)  # what a row does not set stays as configured
    bad = {"name": "r", "task": ["family=tabular"], "set": ["learner.hiden=[4]"]}
    with pytest.raises(ConfigError, match=r"benchmark.transfer\[0\] \(r\): learner.hiden"):
        rows_from_config(_config(split="transfer", transfer=[bad]))
    for item in ["benchmark.split=meta_test", "evaluation.test_tasks=3"]:
        with pytest.raises(ConfigError, match=r"benchmark.transfer\[0\] \(r\): set:"):
            rows_from_config(_config(split="transfer", transfer=[{"name": "r", "set": [item]}]))
    with pytest.raises(ConfigError, match=r"benchmark\.transfer: expected at least one"):
        rows_from_config(_config(split="transfer", transfer=[]))
    valid = [{"name": "engel", "task": ["family=tabular", "dataset=engel"]}]
    screened = rows_from_config(_config(split="transfer_valid", transfer_valid=valid))
    assert [r.name for r in screened] == ["engel"]
    assert screened[0].config.task.dataset == "engel"  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match=r"benchmark\.transfer_valid: expected at least one"):
        rows_from_config(_config(split="transfer_valid"))
    with pytest.raises(ConfigError, match=r"dataset: expected one of .*stackloss"):
        rows_from_config(
            _config(
                split="transfer", transfer=[{"name": "r", "task": ["family=tabular", "dataset=x"]}]
            )
        )


class PoisonedTabular(TabularFamily):
    """Every transfer test split is NaN: the held-out rows of the data set (the test split of
    meta-test tasks) and the test split of every selection task. Selection must not notice."""

    def __init__(self, config: TabularConfig) -> None:
        super().__init__(config)
        self.x = self.x.clone()
        self.y = self.y.clone()
        self.x[self.held] = float("nan")
        self.y[self.held] = float("nan")

    def make_task(self, generator: torch.Generator, split: Split) -> Task:
        task = super().make_task(generator, split)
        if split is Split.META_TEST:
            return task
        test = task.test
        nan = test._replace(
            x=torch.full_like(test.x, math.nan), y=torch.full_like(test.y, math.nan)
        )
        return task._replace(test=nan)


def _transfer_rows(poisoned: bool) -> tuple[list[Row], list]:
    config = _config(split="transfer")
    rows = rows_from_config(config)
    if poisoned:
        rows = [Row(r.name, PoisonedTabular(r.config.task), r.config) for r in rows]  # type: ignore[arg-type]
    return rows, contenders_from_config(config, {"learned": tiny_loss().per_sample}, rows[0].family)


def test_transfer_selection_never_reads_transfer_test_data() -> None:
    poisoned = run_benchmark(*_transfer_rows(poisoned=True))
    clean = run_benchmark(*_transfer_rows(poisoned=False))
    assert len(poisoned.entries) == len(clean.entries) == 2 * 6 + 1
    for a, b in zip(poisoned.entries, clean.entries, strict=True):
        assert (a.row, a.name) == (b.row, b.name)
        assert a.selection.value == b.selection.value
        assert a.selection.lr == b.selection.lr or (
            math.isnan(a.selection.lr) and math.isnan(b.selection.lr)
        )
        assert a.selection.scores == b.selection.scores
        assert all(math.isfinite(v) for v in a.selection.scores.values())
        assert bool(torch.isfinite(b.per_task).all())
        assert not bool(torch.isfinite(a.per_task).any())  # the poison is real: tests read it
    assert "—" in markdown(clean)  # huber_regressor has no cell on the MLP row


def test_held_out_rows_never_enter_a_selection_task() -> None:
    family = make_family(parse({"task": {"family": "tabular", "dataset": "ccard"}}).task)
    held = {tuple(row.tolist()) for row in family.x[family.held]}  # type: ignore[attr-defined]
    test = family.task(Split.META_TEST, 0)
    assert {tuple(r.tolist()) for r in test.test.x} == held
    for split in (Split.META_TRAIN, Split.META_VALID):
        for index in range(5):
            task = family.task(split, index)
            for batch in task:
                assert not held & {tuple(r.tolist()) for r in batch.x}
    assert not held & {tuple(r.tolist()) for r in test.train.x}


# ------------------------------------------------------------------------------ the data


@pytest.mark.parametrize(
    "name", ["diabetes", "fair", "macrodata", "statecrime", "ccard", "stackloss"]
)
def test_every_bundled_data_set_makes_tasks(name: str) -> None:
    data = load_regression(name)
    assert bool(torch.isfinite(data.x).all()) and bool(torch.isfinite(data.y).all())
    family = TabularFamily(TabularConfig(dataset=name, epsilon=(0.2, 0.2)))
    task = family.task(Split.META_TEST, 3)
    assert task.train.x.shape[1] == family.in_features == data.x.shape[1]
    clean = task.train.extras["clean"]
    assert int((~clean).sum()) == round(0.2 * task.train.x.shape[0])
    torch.testing.assert_close(task.train.y[clean], task.train.extras["clean_y"][clean])
    assert torch.equal(family.task(Split.META_TEST, 3).train.y, task.train.y)  # deterministic
    pool = family.y[family.pool]
    assert abs(float(pool.mean())) < 1e-4 and abs(float(pool.std()) - 1) < 1e-4


def test_unknown_data_set_and_oversized_splits_name_the_setting() -> None:
    assert "stackloss" in regression_names()
    with pytest.raises(ConfigError, match="task: dataset: expected one of"):
        parse({"task": {"family": "tabular", "dataset": "nope"}})
    with pytest.raises(ValueError, match=r"n_train \+ n_outer_valid: expected .* stackloss pool"):
        TabularFamily(TabularConfig(dataset="stackloss", n_train=20))


def test_diabetes_family_name_keeps_its_sizes() -> None:
    family = make_family(parse({"task": {"family": "diabetes"}}).task)
    task = family.task(Split.META_TEST, 0)
    assert (task.train.x.shape[0], task.outer_valid.x.shape[0], task.test.x.shape[0]) == (
        100,
        100,
        142,
    )


# ------------------------------------------------------------------------------ baselines


def test_barron_log_partition_matches_closed_forms() -> None:
    from scipy.special import k1

    assert log_partition_exact(2.0) == pytest.approx(0.5 * math.log(2 * math.pi), abs=1e-10)
    assert log_partition_exact(0.0) == pytest.approx(math.log(math.pi * math.sqrt(2)), abs=1e-10)
    assert log_partition_exact(1.0) == pytest.approx(math.log(2 * math.e * k1(1.0)), abs=1e-10)
    alphas = np.linspace(0.001, 1.999, 97)
    table = log_partition(torch.tensor(alphas, dtype=torch.float64))
    exact = torch.tensor([log_partition_exact(a) for a in alphas], dtype=torch.float64)
    assert float((table - exact).abs().max()) < 2e-5


def test_barron_general_loss_special_cases_and_gradients() -> None:
    x = torch.linspace(-4, 4, 9, dtype=torch.float64)
    near_two = torch.tensor(1.9999, dtype=torch.float64)
    torch.testing.assert_close(general_loss(x, near_two), x**2 / 2, atol=1e-3, rtol=1e-3)
    near_zero = torch.tensor(1e-6, dtype=torch.float64)
    torch.testing.assert_close(
        general_loss(x, near_zero), torch.log1p(x**2 / 2), atol=1e-5, rtol=1e-5
    )
    one = torch.tensor(1.0, dtype=torch.float64)
    torch.testing.assert_close(general_loss(x, one), torch.sqrt(x**2 + 1) - 1)
    pred = torch.randn(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    pred.requires_grad_(True)
    target = torch.randn(6, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert torch.autograd.gradcheck(lambda p: barron(p, target, 0.5).sum(), (pred,))


def test_barron_negative_log_likelihood_integrates_to_one() -> None:
    """exp(-loss) is a density in the residual for every shape and scale."""
    x = torch.linspace(-2000, 2000, 2_000_001, dtype=torch.float64).unsqueeze(-1)
    for raw_alpha, raw_scale in [(0.0, 0.0), (2.0, -1.0), (-1.5, 0.7)]:
        pred = torch.cat([x, torch.full_like(x, raw_alpha), torch.full_like(x, raw_scale)], -1)
        density = torch.exp(-barron(pred, torch.zeros_like(x), 1.0)).squeeze(-1)
        mass = float(torch.trapezoid(density, x.squeeze(-1)))
        assert mass == pytest.approx(1.0, abs=2e-3)


def test_barron_of_a_diverged_learner_is_nan_where_it_diverged() -> None:
    """A learner whose outputs went NaN (SGD at a high rate) gets a NaN loss on those samples,
    which the benchmark records as a diverged run, not an IndexError from the log Z table."""
    pred = torch.zeros(3, 3, dtype=torch.float64)
    pred[1] = float("nan")  # the prediction and both free outputs
    pred[2, 1] = float("nan")  # the shape output only
    loss = barron(pred, torch.zeros(3, 1, dtype=torch.float64), 1.0).squeeze(-1)
    assert bool(torch.isfinite(loss[0])) and bool(loss[1:].isnan().all())
    assert bool(log_partition(torch.tensor([float("nan"), 1.0])).isnan()[0])


def test_barron_refuses_a_learner_without_free_outputs() -> None:
    with pytest.raises(ValueError, match="2 free outputs"):
        barron(torch.zeros(4, 1), torch.zeros(4, 1))


def test_tukey_rejects_gross_outliers_and_is_least_squares_near_zero() -> None:
    g = torch.Generator().manual_seed(0)
    assert float(mad_scale(torch.randn(100_000, generator=g))) == pytest.approx(1.0, abs=0.02)
    residual = torch.randn(200, 1, generator=g)
    residual[:20] += 50.0
    pred = residual.clone().requires_grad_(True)
    tukey(pred, torch.zeros_like(pred)).sum().backward()
    assert pred.grad is not None
    assert bool((pred.grad[:20] == 0).all())  # beyond c robust scales: no influence at all
    small = residual[20:].abs() < 0.3
    torch.testing.assert_close(
        pred.grad[20:][small], residual[20:][small], rtol=0.05, atol=1e-3
    )  # d/dr of r^2 / 2 near zero
    assert baseline("tukey", c=3.0)(pred, torch.zeros_like(pred)).shape == pred.shape


def test_huber_regressor_recovers_a_line_despite_outliers() -> None:
    g = np.random.default_rng(0)
    x = g.normal(size=(200, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + 0.3 + 0.05 * g.normal(size=200)
    y[:30] += 40.0
    coef, intercept = huber_regressor(x, y)
    assert np.allclose(coef, [1.0, -2.0, 0.5], atol=0.1) and abs(intercept - 0.3) < 0.15
    ols = np.linalg.lstsq(np.column_stack([x, np.ones(200)]), y, rcond=None)[0]
    assert abs(ols[-1] - 0.3) > 3.0  # least squares is dragged by the outliers


def test_shipped_config_keeps_validation_data_sets_out_of_the_transfer_table() -> None:
    from metaloss.config import load_config
    from metaloss.datasets.statsmodels_regression import VALIDATION

    root = Path(__file__).resolve().parents[1]
    config = load_config(root / "configs" / "outliers.yaml")
    tested = {getattr(r.config.task, "dataset", None) for r in _rows_of(config, "transfer")}
    screened = {getattr(r.config.task, "dataset", None) for r in _rows_of(config, "transfer_valid")}
    assert tested >= {"diabetes", "fair", "macrodata", "statecrime", "ccard", "stackloss"}
    assert not tested & set(VALIDATION)
    assert screened == set(VALIDATION)
    # the loss meant for transfer chooses its checkpoint on validation data sets only
    trained = load_config(root / "configs" / "outliers_transfer.yaml")
    chosen_on = {
        item.partition("=")[2]
        for variant in trained.outer.valid_variants
        for item in variant.set
        if item.startswith("task.dataset=")
    }
    assert chosen_on == set(VALIDATION)
    # ... and its own transfer table (docs/transfer.md) uses none of them
    table = {getattr(r.config.task, "dataset", None) for r in _rows_of(trained, "transfer")}
    assert table >= {"diabetes", "fair", "macrodata", "statecrime", "ccard", "stackloss"}
    assert not table & set(VALIDATION)


def _rows_of(config, split: str) -> list[Row]:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    return rows_from_config(replace(config, benchmark=replace(config.benchmark, split=split)))


# ------------------------------------------------------------------------------ the goal table


def _entry(row: str, loss: str, role: str, mean: float) -> dict[str, object]:
    return {"row": row, "loss": loss, "role": role, "mean": mean, "param": {}}


def _pair(row: str, baseline: str, verdict: str) -> dict[str, object]:
    return {"row": row, "learned": "new", "baseline": baseline, "verdict": verdict,
            "difference": 0.0, "p_t": 0.5, "p_wilcoxon": 0.5}  # fmt: skip


def test_goal_table_compares_with_each_rows_best_baseline_and_mse_on_clean_rows() -> None:
    import sys

    experiments = Path(__file__).resolve().parents[1] / "experiments"
    sys.path.insert(0, str(experiments))
    try:
        from transfer_table import contamination_of, summarise
    finally:
        sys.path.remove(str(experiments))
    rows = ["a eps=0", "a eps=0.2", "b eps=0.4"]
    means = {"a eps=0": (1.0, 0.9), "a eps=0.2": (3.0, 2.0), "b eps=0.4": (5.0, 6.0)}
    entries = [_entry(r, "new", "learned", 1.0) for r in rows]
    entries += [_entry(r, "oracle (mse on clean)", "oracle", 0.1) for r in rows]  # never best
    for row, (mse, huber) in means.items():
        entries += [_entry(row, "mse", "baseline", mse), _entry(row, "huber", "baseline", huber)]
    # the verdicts against the row's best baseline (huber, huber, mse) are the ones counted
    comparisons = [
        _pair("a eps=0", "huber", "no significant difference"),
        _pair("a eps=0", "mse", "worse"),
        _pair("a eps=0.2", "huber", "better"),
        _pair("a eps=0.2", "mse", "worse"),  # not the best baseline: ignored
        _pair("b eps=0.4", "mse", "worse"),
        _pair("b eps=0.4", "huber", "better"),  # not the best baseline: ignored
    ]
    data = {"rows": rows, "entries": entries, "comparisons": comparisons}
    lines, counts = summarise(data, ["new"])
    assert counts["new"] == {
        "better": 1, "tie": 1, "worse": 1, "other": 0, "noisy_rows": 2, "noisy_better": 1,
        "clean_rows": 1, "clean_worse_than_reference": 1,
    }  # fmt: skip
    assert lines[2].startswith("| a eps=0 | huber 0.9 | 1 |") and "vs mse worse" in lines[2]
    names = ["fair linear eps=0", "x eps=0.4", "sgd", "anes96 clean adam", "digits10 sym 0.4"]
    assert [contamination_of(n) for n in [*names, "make_cls pair 0.3", "K=400 clean"]] == [
        0.0, 0.4, None, 0.0, 0.4, 0.3, 0.0,
    ]  # fmt: skip
    assert contamination_of("digits10 sym 0.4 n=50") == 0.4
    # rows that name no contamination (sine's "10x horizon") count as clean only when asked
    unnamed = {**data, "rows": ["sgd"], "entries": [
        _entry("sgd", "new", "learned", 1.0), _entry("sgd", "mse", "baseline", 0.5),
    ], "comparisons": [_pair("sgd", "mse", "worse")]}  # fmt: skip
    assert summarise(unnamed, ["new"])[1]["new"]["clean_rows"] == 0
    counted = summarise(unnamed, ["new"], unnamed_clean=True)[1]["new"]
    assert (counted["clean_rows"], counted["clean_worse_than_reference"]) == (1, 1)
    # a learned loss that diverged on some test tasks (no finite mean) counts as worse, not as
    # a missing row
    diverged = {**data, "rows": ["a eps=0"], "entries": [
        {**_entry("a eps=0", "new", "learned", 1.0), "mean": None, "diverged": 2},
        _entry("a eps=0", "mse", "baseline", 0.5),
    ], "comparisons": [{**_pair("a eps=0", "mse", "not finite"), "n": 30}]}  # fmt: skip
    lines, counted = summarise(diverged, ["new"])
    assert (counted["new"]["worse"], counted["new"]["clean_worse_than_reference"]) == (1, 1)
    assert "not finite (2 of 30 test runs diverged) worse" in lines[2]
    # --pick validation: each row's baseline is the one whose selected setting scored best on
    # the meta-train tasks' outer_valid split, whatever its test mean
    picked = {**data, "rows": ["a eps=0.2"], "entries": [
        _entry("a eps=0.2", "new", "learned", 1.0),
        {**_entry("a eps=0.2", "mse", "baseline", 3.0),
         "selection_scores_outer_valid": {"lr=0.1": 0.5, "lr=1": float("nan")}},
        {**_entry("a eps=0.2", "huber", "baseline", 2.0),
         "selection_scores_outer_valid": {"delta=1 lr=0.1": 0.7}},
        _entry("a eps=0.2", "l1", "baseline", 1.5),  # no selection: not ranked on validation
    ], "comparisons": [
        _pair("a eps=0.2", "l1", "worse"), _pair("a eps=0.2", "mse", "better"),
    ]}  # fmt: skip
    on_test, on_valid = (
        summarise(picked, ["new"])[0][2],
        summarise(picked, ["new"], pick="validation")[0][2],
    )
    assert on_test.startswith("| a eps=0.2 | l1 1.5 |") and on_test.endswith(" worse |")
    assert on_valid.startswith("| a eps=0.2 | mse 3 |") and "**better**" in on_valid
    # ... and so does a reference loss that diverged (no finite mean to print)
    diverged["entries"].append({**_entry("a eps=0", "huber", "baseline", 0.4)})
    diverged["entries"][1]["mean"] = None
    assert "| a eps=0 | huber 0.4 | not finite |" in summarise(diverged, ["new"])[0][2]
