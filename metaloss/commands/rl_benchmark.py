"""``metaloss rl-benchmark`` (also reached through ``metaloss benchmark`` for RL configs): PPO's
clip (tuned), DPO and learned policy objectives on held-out environment variants at an equal
step budget; writes results.md, results.csv, results.json (the shared report writers of
:mod:`metaloss.evaluation.report`), learning_curves.png and the objectives' shape figures."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from metaloss.commands.common import add_overrides
from metaloss.commands.config import config_epilog
from metaloss.config import RunConfig, load_config, to_dict
from metaloss.evaluation.benchmark import BenchmarkResult
from metaloss.evaluation.report import finite_json, markdown, to_json, write_csv
from metaloss.export import load_loss, zoo_names
from metaloss.rl.benchmark import policy_contenders, pooled_comparisons, run_rl_benchmark
from metaloss.rl.config import check_rl_settings
from metaloss.rl.objectives import LearnedDrift
from metaloss.rl.problem import rl_task_config
from metaloss.rl.shape import policy_curves, policy_figure

__all__ = ["load_drifts", "register", "run", "run_rl"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "rl-benchmark",
        help="benchmark policy objectives on held-out RL variants",
        description=__doc__,
        epilog=config_epilog(),
    )
    p.add_argument("config", help="config file or shipped name of an RL family, e.g. cartpole")
    p.add_argument(
        "--loss",
        nargs="+",
        default=None,
        metavar="FILE|ZOO_NAME",
        help="learned objectives: files or zoo names (default: the family's zoo objective)",
    )
    p.add_argument("--out", type=Path, default=None, help="report folder (default: reports/<name>)")
    add_overrides(p, "evaluation.seeds=3")
    p.set_defaults(func=run)


def load_drifts(sources: list[str]) -> dict[str, LearnedDrift]:
    """Learned objectives by report name (``learned`` for one; else ``learned:<file stem or run folder>``)."""
    drifts: dict[str, LearnedDrift] = {}
    for source in sources:
        module = load_loss(source, reduction="none")
        if not isinstance(module, LearnedDrift):
            raise ValueError(
                f"--loss: {source} is a {type(module).__name__}, expected a learned policy objective (LearnedDrift)"
            )
        drifts[_name(source, set(drifts), len(sources))] = module
    return drifts


def _name(source: str, taken: set[str], count: int) -> str:
    if count == 1:
        return "learned"
    path = Path(source)
    stem = path.stem if path.suffix == ".safetensors" else source
    if stem == "loss" and path.parent.name:
        stem = path.parent.name  # runs/<run>/loss.safetensors -> <run>
    name, i = f"learned:{stem}", 2
    while name in taken:
        name, i = f"learned:{stem}-{i}", i + 1
    return name


def _sources(args: argparse.Namespace, config: RunConfig) -> list[str]:
    if getattr(args, "loss", None):
        return list(args.loss)
    if config.benchmark.losses:
        return list(config.benchmark.losses)
    name = config.task.family
    if name not in zoo_names():
        raise ValueError(
            f"--loss: the family's zoo objective {name!r} is not installed; pass a loss file "
            f"(zoo: {', '.join(zoo_names()) or 'none installed'})"
        )
    return [name]


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
    sources = _sources(args, config)
    drifts = load_drifts(sources)
    contenders = policy_contenders(config, drifts)  # refuses bad baselines before any output
    out: Path = args.out or Path("reports") / config.name
    out.mkdir(parents=True, exist_ok=True)
    ev = config.evaluation
    print(
        f"metaloss benchmark (RL): {', '.join(c.name for c in contenders)} × {1 + ev.test_tasks} rows × "
        f"{ev.seeds} seeds at {task.bench_total_steps} env steps, writing to {out}",
        file=sys.stderr,
    )
    result = run_rl_benchmark(
        config, drifts, progress=lambda message: print(message, file=sys.stderr, flush=True)
    )
    result.extra["losses"] = dict(zip(drifts, sources, strict=True))
    table = report_markdown(result)
    data = finite_json(to_json(result, to_dict(config)))
    (out / "results.md").write_text(table)
    write_csv(result, out / "results.csv")
    (out / "results.json").write_text(json.dumps(data, indent=2, allow_nan=False))
    _curves_png(result, out / "learning_curves.png")
    paths = [out / n for n in ("results.md", "results.csv", "results.json", "learning_curves.png")]
    for name, drift in drifts.items():
        path = out / f"shape_{name.replace(':', '_')}.png"
        policy_figure(policy_curves(drift)).savefig(path)
        paths.append(path)
    print(table)
    print("outputs:\n" + "\n".join(f"  {p}" for p in paths))
    return 0
