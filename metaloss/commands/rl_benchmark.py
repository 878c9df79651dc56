"""``metaloss rl-benchmark`` (also reached through ``metaloss benchmark`` for RL configs): PPO's
clip (tuned), DPO and learned policy objectives on held-out environment variants at an equal
step budget; writes results.md, results.csv, results.json and the objectives' shape figure."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from metaloss.commands.common import add_overrides
from metaloss.commands.config import config_epilog
from metaloss.config import RunConfig, load_config
from metaloss.export import load_loss, zoo_names
from metaloss.rl.benchmark import run_rl_benchmark
from metaloss.rl.meta import rl_task_config
from metaloss.rl.objectives import LearnedDrift
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
    add_overrides(p, "task.bench_seeds=3")
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
    name = config.task.family
    if name not in zoo_names():
        raise ValueError(
            f"--loss: the family's zoo objective {name!r} is not installed; pass a loss file "
            f"(zoo: {', '.join(zoo_names()) or 'none installed'})"
        )
    return [name]


def run(args: argparse.Namespace) -> int:
    return run_rl(args, load_config(args.config, args.overrides))


def run_rl(args: argparse.Namespace, config: RunConfig) -> int:
    """Run the RL benchmark for ``config`` with the command's ``--loss`` and ``--out``."""
    task = rl_task_config(config)
    sources = _sources(args, config)
    drifts = load_drifts(sources)
    out: Path = args.out or Path("reports") / config.name
    out.mkdir(parents=True, exist_ok=True)
    print(
        f"metaloss benchmark (RL): ppo_clip, dpo, {', '.join(drifts)} × {1 + task.bench_variants} rows × "
        f"{task.bench_seeds} seeds at {task.bench_total_steps} env steps, writing to {out}",
        file=sys.stderr,
    )
    result = run_rl_benchmark(
        config, drifts, lambda message: print(message, file=sys.stderr, flush=True)
    )
    result.extra["losses"] = dict(zip(drifts, sources, strict=True))
    (out / "results.md").write_text(result.markdown())
    (out / "results.csv").write_text(result.csv())
    (out / "results.json").write_text(json.dumps(result.to_dict(), indent=2))
    paths = [out / "results.md", out / "results.csv", out / "results.json"]
    for name, drift in drifts.items():
        path = out / f"shape_{name.replace(':', '_')}.png"
        policy_figure(policy_curves(drift)).savefig(path)
        paths.append(path)
    print(result.markdown())
    print("outputs:\n" + "\n".join(f"  {p}" for p in paths))
    return 0
