"""Benchmark reports: ``results.json``, ``results.csv``, ``results.md``, a learning-curve PNG and
TensorBoard scalars, all from one :class:`~metaloss.evaluation.benchmark.BenchmarkResult`."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from metaloss.evaluation.benchmark import BenchmarkResult, Comparison, Entry, compare
from metaloss.evaluation.diagnostics import DIAGNOSES
from metaloss.evaluation.formatting import PAIRED_COLUMNS, paired_cells
from metaloss.evaluation.stats import mean_ci, verdict_rule
from metaloss.markdown import table_head, table_row

__all__ = [
    "finite_json",
    "markdown",
    "to_json",
    "write_csv",
    "write_curves_png",
    "write_report",
    "write_tensorboard",
]


def _number(value: float) -> float | None:
    return value if math.isfinite(value) else None


def finite_json(data: Any) -> Any:
    """``data`` with every non-finite float replaced by ``None`` (strict JSON)."""
    if isinstance(data, float):
        return _number(data)
    if isinstance(data, dict):
        return {k: finite_json(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite_json(v) for v in data]
    return data


def _entry_dict(e: Entry) -> dict[str, Any]:
    score = e.score
    return {
        "row": e.row,
        "loss": e.name,
        "role": e.role,
        "lr": e.selection.lr,
        "param": {e.param: e.selection.value} if e.param else {},
        "mean": score.mean,
        "ci95": _number(score.half_width),
        "tasks": score.n,
        "diverged": e.diverged,
        "diagnoses": e.diagnoses,
        "curve": [float(v) for v in e.curve],
        "per_task": [float(v) for v in e.per_task],
        "selection_scores_outer_valid": e.selection.scores,
        **({"metrics": {k: _metric_dict(v) for k, v in e.metrics.items()}} if e.metrics else {}),
    }


def _metric_dict(per_task: Any) -> dict[str, Any]:
    score = mean_ci(per_task)
    return {
        "mean": score.mean,
        "ci95": _number(score.half_width),
        "per_task": [float(v) for v in per_task],
    }


def to_json(result: BenchmarkResult, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything in the report as plain JSON-ready data."""
    gaps: dict[str, dict[str, Any]] = {}
    for row in result.rows:
        for e in result.row_entries(row):
            if e.role == "learned" and (gap := result.gap_closed(row, e.name)) is not None:
                gaps.setdefault(row, {})[e.name] = {
                    "best_baseline": gap[0],
                    "fraction": _number(gap[1]),
                }
    return {
        "metric": result.metric,
        "higher_is_better": result.higher_is_better,
        "test_tasks": result.test_tasks,
        "split": result.split,
        "seeds": result.seeds,
        "inner_steps": result.inner_steps,
        "rows": result.rows,
        "entries": [_entry_dict(e) for e in result.entries],
        "comparisons": [_comparison_dict(c) for c in compare(result)],
        "min_pairs": result.min_pairs,
        "gap_closed": gaps,
        "gap_closed_from_each_baseline": _gaps_per_baseline(result),
        "metrics_higher_is_better": result.metrics,
        "config": config or {},
        **result.extra,
    }


def _comparison_dict(c: Comparison) -> dict[str, Any]:
    return {
        "row": c.row,
        "learned": c.learned,
        "baseline": c.baseline,
        **c.paired.to_dict(),
        "separated": c.separated,
    }


def write_csv(result: BenchmarkResult, path: Path) -> None:
    """One line per row and loss: selection, mean, CI, diagnoses."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        extra = [f"{m}_{part}" for m in result.metrics for part in ("mean", "ci95")]
        writer.writerow(
            [
                "row",
                "loss",
                "role",
                "lr",
                "param",
                "value",
                "mean",
                "ci95",
                "tasks",
                "diverged",
                *DIAGNOSES,
                *extra,
            ]
        )
        for e in result.entries:
            s = e.score
            value = "" if e.selection.value is None else e.selection.value
            scores = [mean_ci(e.metrics[m]) if m in e.metrics else None for m in result.metrics]
            writer.writerow(
                [
                    e.row,
                    e.name,
                    e.role,
                    e.selection.lr,
                    e.param,
                    value,
                    s.mean,
                    s.half_width,
                    s.n,
                    e.diverged,
                    *(e.diagnoses.get(d, "") for d in DIAGNOSES),
                    *(x for c in scores for x in ((c.mean, c.half_width) if c else ("", ""))),
                ]
            )


def _percent(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.0%}"


_TESTED = {
    "meta_test": "held-out tasks",
    "meta_valid": "meta-validation tasks (screening: no meta-test task was read)",
    "transfer": "held-out tasks of each transfer condition",
    "transfer_valid": "held-out tasks of out-of-distribution validation conditions (screening: "
    "no transfer row was read)",
}


def _cell(result: BenchmarkResult, row: str, name: str, text: Callable[[Entry], str]) -> str:
    """``text(entry)``, or a dash where the loss did not run on the row (a classical fit on a
    row whose learner is not linear)."""
    entry = _find(result, row, name)
    return "—" if entry is None else text(entry)


def _find(result: BenchmarkResult, row: str, name: str) -> Entry | None:
    return next((e for e in result.row_entries(row) if e.name == name), None)


def _conditions_table(result: BenchmarkResult) -> list[str]:
    conditions = result.extra.get("conditions")
    if not conditions:
        return []
    lines = [
        "## Conditions (none of them seen in meta-training)",
        "",
        "| row | task | learner | inner optimiser | steps | train samples per task | lr grid |",
        "|---|---|---|---|---|---|---|",
    ]
    for row, c in conditions.items():
        grid = ", ".join(f"{v:g}" for v in c["lr_grid"])
        lines.append(
            f"| {row} | {c['task']} | {c['learner']} | {c['optimizer']} | {c['steps']} | "
            f"{c['train_samples']} | {grid} |"
        )
    return [*lines, ""]


def markdown(result: BenchmarkResult) -> str:
    """The report as Markdown tables (scores, comparisons, selections, curve diagnoses)."""
    names = list(dict.fromkeys(e.name for e in result.entries))

    def score(row: str, name: str) -> str:
        contenders = (x for x in result.row_entries(row) if x.role != "oracle")
        best = (max if result.higher_is_better else min)(contenders, key=lambda x: x.score.mean)
        return _cell(result, row, name, lambda e: _bold_if(str(e.score), e is best))

    title = (
        f"## {result.metric} after training (mean ± 95% CI over {result.test_tasks} "
        f"{_TESTED[result.split]} × {result.seeds} seed(s), averaged per task)"
    )
    lines = _conditions_table(result)
    lines += _loss_by_row_table(title, result.rows, names, score)
    extreme = "highest" if result.higher_is_better else "lowest"
    lines += ["", f"Bold: {extreme} mean among non-oracle losses in the column.", ""]
    lines += _metric_tables(result, names)
    lines += _comparison_table(result, compare(result))
    lines += _selection_table(result, names)
    lines += _diagnosis_table(result, names)
    return "\n".join(lines) + "\n"


def _comparison_table(result: BenchmarkResult, comparisons: list[Comparison]) -> list[str]:
    if not comparisons:
        return []
    columns = ["row", "learned", "vs", *PAIRED_COLUMNS, "95% CIs separate"]
    lines = [
        "## Learned vs baselines (paired over tasks; difference = learned − baseline)",
        "",
        verdict_rule(result.min_pairs, "tasks"),
        "",
        *table_head(columns),
    ]
    for c in comparisons:
        cells = [c.row, c.learned, c.baseline, *paired_cells(c.paired)]
        lines.append(table_row([*cells, "yes" if c.separated else "no"]))
    gaps = []
    for row in result.rows:
        for e in result.row_entries(row):
            if e.role == "learned" and (gap := result.gap_closed(row, e.name)) is not None:
                fraction = f"{gap[1]:.0%}" if math.isfinite(gap[1]) else "n/a (oracle not better)"
                gaps.append(f"| {row} | {e.name} | {gap[0]} | {fraction} |")
    if gaps:
        lines += [
            "",
            "Gap closed = (best baseline − learned) / (best baseline − oracle).",
            "",
            "| row | learned | best baseline | gap closed |",
            "|---|---|---|---|",
            *gaps,
        ]
        per_baseline = _gaps_per_baseline(result)
        bases = list(dict.fromkeys(b for r in per_baseline.values() for d in r.values() for b in d))
        if len(bases) > 1:
            lines += [
                "",
                "Gap closed from each baseline = (baseline − learned) / (baseline − oracle).",
                "",
                "| row | learned | " + " | ".join(bases) + " |",
                "|---|---|" + "---|" * len(bases),
            ]
            for row, learned in per_baseline.items():
                for name, fractions in learned.items():
                    cells = [_percent(fractions.get(b)) for b in bases]
                    lines.append(f"| {row} | {name} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _metric_tables(result: BenchmarkResult, names: list[str]) -> list[str]:
    """One table per extra metric of the final learners (e.g. accuracy), like the main table."""
    lines: list[str] = []
    for metric, higher in result.metrics.items():

        def cell(row: str, name: str, metric: str = metric, higher: bool = higher) -> str:
            entry = _find(result, row, name)
            if entry is None or metric not in entry.metrics:
                return "—"  # the row's family does not give this metric, or the loss did not run
            entries = [
                x for x in result.row_entries(row) if x.role != "oracle" and metric in x.metrics
            ]
            means = {x.name: mean_ci(x.metrics[metric]).mean for x in entries}
            tied = len(set(means.values())) <= 1  # e.g. the entropy of p(y|x): same for every loss
            best = None if tied else (max if higher else min)(means, key=lambda n: means[n])
            return _bold_if(str(mean_ci(result.entry(row, name).metrics[metric])), name == best)

        title = (
            f"## test {metric} (mean ± 95% CI over tasks; {'higher' if higher else 'lower'} "
            "is better)"
        )
        lines += [*_loss_by_row_table(title, result.rows, names, cell), ""]
    return lines


def _loss_by_row_table(
    title: str, columns: list[str], names: list[str], cell: Callable[[str, str], str]
) -> list[str]:
    """A titled Markdown table: one line per loss, one column per benchmark row (or other
    heading); the text of each cell is ``cell(column, name)``."""
    lines = [title, "", *table_head(["loss", *columns])]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(cell(column, name) for column in columns) + " |")
    return lines


def _bold_if(text: str, bold: bool) -> str:
    return f"**{text}**" if bold else text


def _gaps_per_baseline(result: BenchmarkResult) -> dict[str, dict[str, dict[str, float | None]]]:
    """``{row: {learned: {baseline: fraction of that baseline's gap to the oracle closed}}}``."""
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for row in result.rows:
        entries = result.row_entries(row)
        for e in (x for x in entries if x.role == "learned"):
            for b in (x for x in entries if x.role == "baseline"):
                gap = result.gap_closed(row, e.name, b.name)
                if gap is not None:
                    out.setdefault(row, {}).setdefault(e.name, {})[b.name] = _number(gap[1])
    return out


def _selection_table(result: BenchmarkResult, names: list[str]) -> list[str]:

    def selected(row: str, name: str) -> str:
        return _cell(result, row, name, _selected)

    title = "## Selected on meta-train tasks (outer_valid split; never a test split)"
    lines = _loss_by_row_table(title, result.rows, names, selected)
    tuned = {
        k: v
        for k, v in result.extra.get("tuned", {}).items()
        if k != "folder" and v.startswith("tuned")
    }
    if tuned:  # metaloss benchmark --tuned: these came from metaloss tune (meta-validation tasks)
        lines += [
            "",
            "Tuned with `metaloss tune` on meta-validation tasks instead (no selection here): "
            + "; ".join(f"{k}: {v}" for k, v in tuned.items())
            + ".",
        ]
    return [*lines, ""]


def _selected(e: Entry) -> str:
    param = f"{e.param}={e.selection.value:g}" if e.param and e.selection.value is not None else ""
    lr = f"lr={e.selection.lr:g}" if math.isfinite(e.selection.lr) else ""  # a classical fit: none
    return ", ".join(part for part in (param, lr) if part) or "—"


def _diagnosis_table(result: BenchmarkResult, names: list[str]) -> list[str]:
    """Run counts per diagnosis; "—" for a loss none of whose curves were diagnosed, and no
    table when no curve was."""
    diagnosed = {e.name for e in result.entries if e.diagnoses}
    if not diagnosed:
        return []

    def count(diagnosis: str, name: str) -> str:
        if name not in diagnosed:
            return "—"
        return str(sum(e.diagnoses.get(diagnosis, 0) for e in result.entries if e.name == name))

    title = f"## Training-curve diagnoses (runs, all rows; judged on the {result.metric})"
    return [*_loss_by_row_table(title, list(DIAGNOSES), names, count), ""]


def write_curves_png(result: BenchmarkResult, path: Path) -> None:
    """Mean test metric against the inner step, one panel per row, one line per loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = len(result.rows)
    fig, axes = plt.subplots(1, count, figsize=(4 * count, 3.4), squeeze=False)
    for ax, row in zip(axes[0], result.rows, strict=True):
        for e in result.row_entries(row):
            style = "--" if e.role == "oracle" else "-"
            ax.plot(range(len(e.curve)), e.curve.numpy(), style, label=e.name, linewidth=1.5)
        ax.set_yscale("log")
        ax.set_title(row)
        ax.set_xlabel("inner step")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"mean {result.metric}")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_tensorboard(result: BenchmarkResult, log_dir: Path, table: str) -> None:
    """Mean curves as ``benchmark/<row>/<loss>`` scalars over inner steps, and the table as text."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(log_dir))
    try:
        for e in result.entries:
            for step, value in enumerate(e.curve.tolist()):
                writer.add_scalar(f"benchmark/{e.row}/{e.name}", value, step)
        for e in result.entries:
            for metric, values in e.metrics.items():
                writer.add_scalar(f"final/{e.row}/{metric}/{e.name}", mean_ci(values).mean, 0)
        writer.add_text("benchmark/results", table)
    finally:
        writer.close()


def write_report(
    result: BenchmarkResult, out: Path, config: dict[str, Any] | None = None
) -> list[Path]:
    """Write every report file into ``out``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    table = markdown(result)
    paths = [
        out / "results.json",
        out / "results.csv",
        out / "results.md",
        out / "learning_curves.png",
    ]
    paths[0].write_text(json.dumps(finite_json(to_json(result, config)), indent=2, allow_nan=False))
    write_csv(result, paths[1])
    paths[2].write_text(table)
    write_curves_png(result, paths[3])
    write_tensorboard(result, out, table)
    return paths
