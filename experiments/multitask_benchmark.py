"""Δm (%) of multi-task weightings against single-task training, on held-out problems.

Runs the benchmark harness (:mod:`metaloss.evaluation.benchmark`: learning rates selected on
meta-train problems only, fixed meta-test problems) on every row of a multi-task config, with
the config's contenders (the learned loss, equal weights, uncertainty weighting) plus one
single-task contender per head slot, then prints per row and loss: Δm (%) mean ± 95% CI over
problems, the normalised test objective, and each learned loss's Δm paired with each baseline's
over problems (paired t and Wilcoxon signed-rank tests, win rate, verdict; the rule of
:func:`metaloss.evaluation.stats.verdict_rule`).

    python experiments/multitask_benchmark.py configs/multitask.yaml --out reports/multitask_dm
    python experiments/multitask_benchmark.py configs/multitask.yaml --loss runs/multitask/loss.safetensors
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from metaloss.commands.benchmarking import load_learned
from metaloss.config import load_config, to_dict
from metaloss.evaluation.benchmark import (
    BenchmarkResult,
    Entry,
    contenders_from_config,
    rows_from_config,
    run_row,
)
from metaloss.evaluation.formatting import PAIRED_COLUMNS, paired_cells
from metaloss.evaluation.multitask import active_heads, delta_m, single_task_contenders
from metaloss.evaluation.report import write_report
from metaloss.evaluation.stats import mean_ci, paired_comparison, verdict_rule
from metaloss.markdown import table_head, table_row
from metaloss.tasks import Split


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("config", nargs="?", default="configs/multitask.yaml")
    parser.add_argument(
        "--loss",
        nargs="+",
        default=None,
        help="learned losses (default: benchmark.losses or the zoo's multitask)",
    )
    parser.add_argument("--out", type=Path, default=Path("reports/multitask_delta_m"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = load_config(args.config, args.overrides)
    rows = rows_from_config(config)
    sources = args.loss or list(config.benchmark.losses) or ["multitask"]
    contenders = contenders_from_config(config, load_learned(sources), rows[0].family)
    names = [c.name for c in contenders]
    report: dict[str, dict[str, dict[str, object]]] = {}
    all_entries: list[Entry] = []
    lines = [
        "| row | loss | Δm (%) vs single-task | normalised test objective | lr |",
        "|---|---|---|---|---|",
    ]
    paired_columns = ["row", "learned", "vs", *PAIRED_COLUMNS, "95% CIs separate"]
    paired_lines = [
        *table_head(paired_columns),
    ]
    for row in rows:
        ev = row.config.evaluation
        active = active_heads(row.family.tasks(Split.META_TEST, ev.test_tasks))
        slots = [int(t) for t in active.any(0).nonzero().flatten()]
        singles = [single_task_contenders(row.family.heads)[t] for t in slots]  # type: ignore[attr-defined]
        entries = run_row(
            row, contenders + singles, lambda message: print(f"  {message}", flush=True)
        )
        all_entries += [e for e in entries if e.name in names]
        single = torch.zeros(active.shape, dtype=torch.float64)
        for t, entry in zip(slots, entries[len(contenders) :], strict=True):
            single[:, t] = entry.metrics[f"head{t}"].double()
        report[row.name] = {}
        per_loss = {}
        for entry in entries[: len(contenders)]:
            multi = torch.stack(
                [entry.metrics[f"head{t}"].double() for t in range(active.shape[1])], -1
            )
            dm = delta_m(multi, single, active)
            per_loss[entry.name] = dm
            ci, obj = mean_ci(dm), entry.score
            lines.append(f"| {row.name} | {entry.name} | {ci} | {obj} | {entry.selection.lr:g} |")
            report[row.name][entry.name] = {
                "delta_m_mean": ci.mean,
                "delta_m_ci95": ci.half_width,
                "delta_m_per_problem": dm.tolist(),
                "objective_mean": obj.mean,
                "objective_ci95": obj.half_width,
                "lr": entry.selection.lr,
            }
        for entry in entries[: len(contenders)]:
            if entry.role != "learned":
                continue
            for other in entries[: len(contenders)]:
                if other.role == "baseline":
                    paired = paired_comparison(
                        per_loss[entry.name], per_loss[other.name], min_pairs=ev.min_pairs
                    )
                    separated = not mean_ci(per_loss[entry.name]).overlaps(
                        mean_ci(per_loss[other.name])
                    )
                    cells = [row.name, entry.name, other.name, *paired_cells(paired)]
                    paired_lines.append(table_row([*cells, "yes" if separated else "no"]))
                    report[row.name][entry.name][f"vs {other.name}"] = paired.to_dict()
    table = "\n".join(
        [
            *lines,
            "",
            "Δm (%) paired over problems: learned − baseline (negative: the learned loss helps more).",
            verdict_rule(config.evaluation.min_pairs, "problems"),
            "",
            *paired_lines,
        ]
    )
    print(
        f"\nΔm over {config.evaluation.test_tasks} held-out problems per row (mean ± 95% CI; lower is better)\n"
    )
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "delta_m.md").write_text(table + "\n")
    (args.out / "delta_m.json").write_text(json.dumps(report, indent=2))
    result = BenchmarkResult(
        all_entries,
        [r.name for r in rows],
        "normalised test objective",
        config.evaluation.test_tasks,
        config.evaluation.seeds,
        {r.name: r.config.inner.steps for r in rows},
        metrics={f"head{t}": False for t in range(rows[0].family.heads)},  # type: ignore[attr-defined]
        min_pairs=config.evaluation.min_pairs,
    )
    paths = write_report(result, args.out, to_dict(config))
    print(
        "outputs:\n"
        + "\n".join(f"  {p}" for p in [args.out / "delta_m.md", args.out / "delta_m.json", *paths])
    )


if __name__ == "__main__":
    main()
