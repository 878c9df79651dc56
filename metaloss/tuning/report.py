"""What a tuning run leaves behind: the best configuration as a YAML file that ``metaloss
train`` and ``metaloss benchmark`` read as is, a table of all trials (Markdown and CSV; each
complete trial's objective with its 95% CI over the meta-validation tasks, and the best trial
paired with the runner-up on those tasks), and each finished trial's hyper-parameters and result
in TensorBoard's HParams view.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from metaloss.atomic import write_text_atomic
from metaloss.config import RunConfig, to_dict
from metaloss.evaluation.formatting import PAIRED_COLUMNS, paired_cells
from metaloss.evaluation.stats import (
    DEFAULT_MIN_PAIRS,
    PairedComparison,
    mean_ci,
    paired_comparison,
    verdict_rule,
)
from metaloss.markdown import table_head, table_row
from metaloss.tuning.objective import DIVERGED_ATTR, PER_TASK_ATTR, PRUNED_ATTR
from metaloss.tuning.space import apply_values
from metaloss.tuning.study import SURPLUS_ATTR

__all__ = [
    "HParamsCallback",
    "best_settings",
    "best_vs_runner_up",
    "trial_rows",
    "write_best",
    "write_trials",
]


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, text)


def _note(trial: FrozenTrial) -> str:
    attrs = trial.user_attrs
    for key in (DIVERGED_ATTR, PRUNED_ATTR):
        if key in attrs:
            return f"{key}: {attrs[key]}"
    if attrs.get(SURPLUS_ATTR):
        return "surplus: beyond the budget, not run"
    retried = trial.system_attrs.get("failed_trial")
    return f"retry of trial {retried}" if retried is not None else ""


def _ci95(trial: FrozenTrial) -> float | None:
    per_task = trial.user_attrs.get(PER_TASK_ATTR)
    if trial.state != TrialState.COMPLETE or not per_task:
        return None
    return mean_ci(per_task).half_width


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """One row per trial: number, state, value and its 95% CI half-width over the
    meta-validation tasks, last reported value, parameters, seconds, note."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        seconds = (
            (t.datetime_complete - t.datetime_start).total_seconds()
            if t.datetime_complete and t.datetime_start
            else None
        )
        last = max(t.intermediate_values.items())[1] if t.intermediate_values else None
        rows.append(
            {
                "number": t.number,
                "state": t.state.name.lower(),
                "value": t.value if t.state == TrialState.COMPLETE else None,
                "ci95": _ci95(t),
                "last_reported": last,
                **{f"param:{k}": v for k, v in sorted(t.params.items())},
                "seconds": None if seconds is None else round(seconds, 2),
                "note": _note(t),
            }
        )
    return rows


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _ranked(study: optuna.Study) -> list[FrozenTrial]:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return sorted(complete, key=lambda t: (t.value, t.number))


def best_vs_runner_up(
    study: optuna.Study, min_pairs: int = DEFAULT_MIN_PAIRS
) -> tuple[FrozenTrial, FrozenTrial, PairedComparison] | None:
    """The best complete trial paired with the second best on the same meta-validation tasks
    (best minus runner-up; lower is better), or ``None`` without two complete trials that both
    recorded as many per-task values."""
    ranked = _ranked(study)
    if len(ranked) < 2:
        return None
    best, second = ranked[0], ranked[1]
    a, b = best.user_attrs.get(PER_TASK_ATTR), second.user_attrs.get(PER_TASK_ATTR)
    if not a or not b or len(a) != len(b):
        return None
    return best, second, paired_comparison(a, b, min_pairs=min_pairs)


def _runner_up_lines(study: optuna.Study, min_pairs: int) -> list[str]:
    found = best_vs_runner_up(study, min_pairs)
    if found is None:
        return []
    best, second, paired = found
    columns = ["best", "runner-up", *PAIRED_COLUMNS]
    cells = [f"trial {best.number}", f"trial {second.number}", *paired_cells(paired)]
    return [
        "",
        "Best trial against the runner-up, paired over the same meta-validation tasks "
        "(difference = best − runner-up; a 'no significant difference' means the tuned choice "
        "is not distinguishable from the second one on these tasks).",
        verdict_rule(min_pairs, "tasks"),
        "",
        *table_head(columns),
        table_row(cells),
    ]


def write_trials(
    study: optuna.Study, out_dir: Path, min_pairs: int = DEFAULT_MIN_PAIRS
) -> tuple[Path, Path]:
    """Write ``trials.md`` and ``trials.csv`` into ``out_dir`` (``min_pairs``: the verdict's
    ``evaluation.min_pairs``)."""
    rows = trial_rows(study)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    states = [row["state"] for row in rows]
    summary = ", ".join(f"{states.count(s)} {s}" for s in dict.fromkeys(states))
    lines = [
        f"Study `{study.study_name}` (minimising the meta-validation objective): "
        f"{len(rows)} trials, {summary}.",
        "",
    ]
    lines += table_head([c.removeprefix("param:") for c in columns])
    lines += [table_row(_fmt(row.get(c)) for c in columns) for row in rows]
    lines += _runner_up_lines(study, min_pairs)
    md, csv_path = out_dir / "trials.md", out_dir / "trials.csv"
    _atomic_write(md, "\n".join(lines) + "\n")
    _atomic_write(csv_path, buffer.getvalue())
    return md, csv_path


def best_settings(
    study: optuna.Study, config: RunConfig
) -> tuple[FrozenTrial, RunConfig, dict[str, float]] | None:
    """The best complete trial, its run config and its baseline parameters (``None``: no trial
    has completed)."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return None
    best = min(complete, key=lambda t: (t.value, t.number))
    settings = apply_values(config, dict(best.params))
    return best, settings.config, settings.baseline_params


def write_best(study: optuna.Study, config: RunConfig, target: str, out_dir: Path) -> Path | None:
    """Write ``best.yaml`` (a complete run config with the best trial's settings) and
    ``best.json`` (target, objective, parameters, baseline parameters) into ``out_dir``."""
    found = best_settings(study, config)
    if found is None:
        return None
    best, tuned, baseline_params = found
    params = ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(best.params.items()))
    header = (
        f"# Tuned by `metaloss tune --target {target}`: study {study.study_name}, "
        f"trial {best.number},\n"
        f"# meta-validation objective {best.value:.6g}; {params}\n"
    )
    if baseline_params:
        header += (
            f"# baseline {target}: "
            + ", ".join(f"{k}={v:.6g}" for k, v in baseline_params.items())
            + "\n"
        )
    path = out_dir / "best.yaml"
    _atomic_write(path, header + yaml.safe_dump(to_dict(tuned), sort_keys=False))
    record = {
        "target": target,
        "study": study.study_name,
        "trial": best.number,
        "value": best.value,
        "params": best.params,
        "baseline_params": baseline_params,
        "inner_lr": tuned.inner.lr,
        "config": "best.yaml",
    }
    _atomic_write(out_dir / "best.json", json.dumps(record, indent=2) + "\n")
    return path


class HParamsCallback:
    """An Optuna callback writing each finished trial's parameters and result to TensorBoard
    (``<log_dir>/trial_<number>``, one run per trial, compared in the HParams tab)."""

    def __init__(self, log_dir: Path, target: str) -> None:
        self.log_dir = Path(log_dir)
        self.target = target

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        from torch.utils.tensorboard import SummaryWriter

        if trial.user_attrs.get(SURPLUS_ATTR):
            return
        last = (
            max(trial.intermediate_values.items())[1] if trial.intermediate_values else float("nan")
        )
        value = trial.value if trial.value is not None else last
        hparams: dict[str, Any] = {"target": self.target, **trial.params}
        metrics = {
            "hparam/objective": float(value),
            "hparam/pruned": float(trial.state == TrialState.PRUNED),
        }
        writer = SummaryWriter(str(self.log_dir / f"trial_{trial.number:04d}"))
        try:
            for step, reported in sorted(trial.intermediate_values.items()):
                writer.add_scalar("tune/reported_objective", reported, step)
            writer.add_hparams(hparams, metrics, run_name=".")
        finally:
            writer.close()
