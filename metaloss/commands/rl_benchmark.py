"""``metaloss rl-benchmark`` (also reached through ``metaloss benchmark`` for RL configs): PPO's
clip (tuned), DPO and learned policy objectives on held-out environment variants at an equal
step budget; writes results.md, results.csv, results.json (the shared report writers of
:mod:`metaloss.evaluation.report`), learning_curves.png and the objectives' shape figures."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from metaloss.atomic import write_text_atomic
from metaloss.commands.arguments import (
    Command,
    config_argument,
    losses_option,
    out_option,
    overrides_option,
)
from metaloss.commands.benchmarking import loss_sources, source_name
from metaloss.commands.common import (
    plan_folder,
    staged_folder,
    staged_target,
    write_marker,
)
from metaloss.config import RunConfig, load_config, to_dict
from metaloss.evaluation.benchmark import BenchmarkResult
from metaloss.evaluation.report import finite_json, markdown, to_json, write_csv
from metaloss.export import load_loss
from metaloss.rl.benchmark import policy_contenders, pooled_comparisons, run_rl_benchmark
from metaloss.rl.config import check_rl_settings
from metaloss.rl.objectives import LearnedDrift
from metaloss.rl.problem import rl_task_config
from metaloss.rl.shape import policy_curves, policy_figure

__all__ = ["load_drifts", "register", "run", "run_rl"]


def load_drifts(sources: list[str]) -> dict[str, LearnedDrift]:
    """Learned objectives by report name (``learned`` for one; else ``learned:<file stem or run folder>``)."""
    drifts: dict[str, LearnedDrift] = {}
    for source in sources:
        module = load_loss(source, reduction="none")
        if not isinstance(module, LearnedDrift):
            raise ValueError(
                f"--loss: {source} is a {type(module).__name__}, expected a learned policy objective (LearnedDrift)"
            )
        name = "learned" if len(sources) == 1 else source_name(source, set(drifts), "learned:")
        drifts[name] = module
    return drifts


def run(args: argparse.Namespace) -> int:
    return run_rl(args, load_config(args.config, args.overrides))


def report_markdown(result: BenchmarkResult) -> str:
    """The shared report's Markdown, then the pooled paired tests and the variants' physics."""
    extra = result.extra
    lines = [
        f'Each row is one environment variant; its {result.test_tasks} "tasks" are training '
        f"seeds (the same for every objective). Budget {extra['budget_env_steps']} env steps per "
        f"run; final return = mean return of the episodes ending in the last "
        f"{extra['final_fraction']:.0%}; steps to threshold {extra['threshold']:g} = first step at "
        "which the mean of the last 20 episode returns reaches it (the budget if never).",
        "",
        markdown(result),
        "## Pooled paired comparisons of final return (learned − baseline, every variant × seed)",
        "",
        "| learned | baseline | rows | pairs | mean difference ± 95% CI | p (t) | p (Wilcoxon) "
        "| win rate | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in pooled_comparisons(result):
        c = p.paired
        lines.append(
            f"| {p.learned} | {p.baseline} | {p.rows} | {c.n} | {c.difference.mean:+.2f} ± "
            f"{c.difference.half_width:.2f} | {c.p_t:.3g} | {c.p_wilcoxon:.3g} | "
            f"{c.win_rate:.0%} | {c.verdict} |"
        )
    lines += ["", "## Variants (multipliers of the default physical parameters)", ""]
    for name, mult in extra["variants"].items():
        lines.append(f"- {name}: " + ", ".join(f"{k} × {v:.2f}" for k, v in mult.items()))
    return "\n".join(lines) + "\n"


def _curves_png(result: BenchmarkResult, path: Path) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4 * len(result.rows), 3.4), dpi=100)
    budget = result.extra["budget_env_steps"]
    for i, row in enumerate(result.rows):
        axis = figure.add_subplot(1, len(result.rows), i + 1)
        for e in result.row_entries(row):
            steps = [(k + 1) * budget / len(e.curve) for k in range(len(e.curve))]
            axis.plot(steps, e.curve.numpy(), label=e.name)
        axis.set_title(row)
        axis.set_xlabel("environment steps")
        axis.grid(alpha=0.3)
    figure.axes[0].set_ylabel("mean episode return")
    figure.axes[-1].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path)


def run_rl(args: argparse.Namespace, config: RunConfig) -> int:
    """Run the RL benchmark for ``config`` with the command's ``--loss`` and ``--out``."""
    task = rl_task_config(config)
    check_rl_settings(config)
    plan = plan_folder(args.out, config, "benchmark", resumable=False)  # checks only
    given = getattr(args, "loss", None)
    sources = loss_sources(given, config.benchmark.losses, config.task.family, "objective")
    drifts = load_drifts(sources)
    contenders = policy_contenders(config, drifts)  # refuses bad baselines before any output
    out = staged_target(plan)
    ev = config.evaluation
    print(
        f"metaloss benchmark (RL): {', '.join(c.name for c in contenders)} × {1 + ev.test_tasks} rows × "
        f"{ev.seeds} seeds at {task.bench_total_steps} env steps, writing to {out}",
        file=sys.stderr,
    )
    with staged_folder(plan, out) as staged:  # the report appears complete, or not at all
        result = run_rl_benchmark(
            config, drifts, progress=lambda message: print(message, file=sys.stderr, flush=True)
        )
        result.extra["losses"] = dict(zip(drifts, sources, strict=True))
        tmp = staged.staging
        table = report_markdown(result)
        data = finite_json(to_json(result, to_dict(config)))
        write_marker(tmp, plan)
        write_text_atomic(tmp / "results.md", table)
        write_csv(result, tmp / "results.csv")
        write_text_atomic(tmp / "results.json", json.dumps(data, indent=2, allow_nan=False))
        _curves_png(result, tmp / "learning_curves.png")
        names = ["results.md", "results.csv", "results.json", "learning_curves.png"]
        for name, drift in drifts.items():
            names.append(f"shape_{name.replace(':', '_')}.png")
            policy_figure(policy_curves(drift)).savefig(tmp / names[-1])
    assert staged.final is not None
    out = staged.final
    paths = [out / name for name in names]
    print(table)
    print("outputs:\n" + "\n".join(f"  {p}" for p in paths))
    return 0


register = Command(
    "rl-benchmark",
    "benchmark policy objectives on held-out RL variants",
    __doc__,
    run,
    (
        config_argument("config file or shipped name of an RL family, e.g. cartpole"),
        losses_option(
            "learned objectives: files or zoo names (default: the family's zoo objective)"
        ),
        out_option("report folder"),
        overrides_option("evaluation.seeds=3"),
    ),
).register
