"""``metaloss benchmark``: learned losses against hand-designed baselines (and an oracle) on
fixed held-out tasks, with learning rates and loss parameters selected on meta-train tasks.
``--meta-seeds N`` meta-trains the config with N seeds first and reports claims across them
(:mod:`metaloss.commands.meta_seeds`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from metaloss.commands.common import add_overrides
from metaloss.commands.config import config_epilog
from metaloss.config import ConfigError, RunConfig, load_config, to_dict
from metaloss.device import resolve_device
from metaloss.evaluation.benchmark import (
    BenchmarkResult,
    PerSampleLoss,
    contenders_from_config,
    plan_size,
    rows_from_config,
    run_benchmark,
)
from metaloss.evaluation.report import write_report
from metaloss.export import load_loss, zoo_names
from metaloss.rl.config import is_rl_config
from metaloss.tasks import family_spec

__all__ = ["benchmark_and_report", "load_learned", "register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "benchmark",
        help="benchmark learned losses against baselines",
        description=__doc__,
        epilog=config_epilog(),
    )
    p.add_argument(
        "config", help="config file or shipped name with a benchmark section (e.g. outliers)"
    )
    p.add_argument(
        "--loss",
        nargs="+",
        default=None,
        metavar="FILE|ZOO_NAME",
        help="learned losses: files or zoo names (default: benchmark.losses, else the family's zoo loss)",
    )
    p.add_argument("--out", type=Path, default=None, help="report folder (default: reports/<name>)")
    p.add_argument(
        "--tuned",
        type=Path,
        default=None,
        metavar="DIR",
        help="tuning folder of `metaloss tune`: losses tuned there use their tuned lr and parameter",
    )
    p.add_argument(
        "--meta-seeds",
        type=int,
        default=None,
        metavar="N",
        help="meta-train the config with seeds 0..N-1 into OUT/seed-k/ (resumable), benchmark "
        "all N losses and report the spread and claims across seeds (needs --out)",
    )
    add_overrides(p, "evaluation.test_tasks=200")
    p.set_defaults(func=run)


def _loss_name(source: str, taken: set[str]) -> str:
    path = Path(source)
    name = path.stem if path.suffix == ".safetensors" else source
    if name == "loss" and path.parent.name:
        name = path.parent.name  # runs/<run>/loss.safetensors -> <run>
    base, i = name, 2
    while name in taken:
        name, i = f"{base}-{i}", i + 1
    return name


def load_learned(sources: list[str], device: str = "cpu") -> dict[str, PerSampleLoss]:
    """Learned losses by report name, each as its per-sample function, on ``device`` (the
    ``device`` setting's name)."""
    losses: dict[str, PerSampleLoss] = {}
    for source in sources:
        module = load_loss(source, reduction="none", map_location=resolve_device(device))
        losses[_loss_name(source, set(losses))] = module
    return losses


def _sources(
    args: argparse.Namespace, configured: tuple[str, ...], default: str | None
) -> list[str]:
    if args.loss:
        return list(args.loss)
    if configured:
        return list(configured)
    if default is None:
        raise ValueError(
            "--loss: expected a loss file or zoo name (the config has no benchmark.losses)"
        )
    if default not in zoo_names():
        raise ValueError(
            f"--loss: the family's zoo loss {default!r} is not installed; pass a loss file "
            f"(zoo: {', '.join(zoo_names()) or 'none installed'})"
        )
    return [default]


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides)
    if is_rl_config(
        config.task
    ):  # RL families: their own benchmark (metaloss.rl.benchmark, docs/rl.md)
        from metaloss.commands.rl_benchmark import run_rl

        if config.benchmark.split != "meta_test":
            raise ConfigError(
                "benchmark.split: RL benchmarks test on their held-out variants; expected "
                "'meta_test' for an RL config"
            )
        return run_rl(args, config)
    if args.meta_seeds is not None:  # claims across meta-training seeds
        from metaloss.commands.meta_seeds import run_meta_seeds

        return run_meta_seeds(args, config)
    sources = _sources(args, config.benchmark.losses, family_spec(config.task.family).zoo_loss)
    learned = load_learned(sources, config.device)
    out: Path = args.out or Path("reports") / config.name
    benchmark_and_report(args, config, learned, sources, out)
    return 0


def benchmark_and_report(
    args: argparse.Namespace,
    config: RunConfig,
    learned: dict[str, PerSampleLoss],
    sources: list[str],
    out: Path,
) -> BenchmarkResult:
    """Benchmark ``learned`` (loaded from ``sources``) against the config's baselines, write the
    report into ``out`` and print it; ``args.tuned`` applies a tuning folder."""
    rows = rows_from_config(config)
    references = load_learned(list(config.benchmark.learned_baselines), config.device)
    contenders = contenders_from_config(config, learned, rows[0].family, references)
    tuned_notes: dict[str, str] = {}
    if args.tuned is not None:  # tuned vs tuned (metaloss tune, docs/tuning.md)
        from metaloss.tuning.tuned import apply_tuned, read_tuned

        contenders, tuned_notes = apply_tuned(contenders, read_tuned(args.tuned))
        print("\n".join(f"  {name}: {note}" for name, note in tuned_notes.items()), file=sys.stderr)
    print(
        f"metaloss benchmark: {len(contenders)} losses x {len(rows)} rows, {config.evaluation.test_tasks} "
        f"{'meta-validation' if config.benchmark.split == 'meta_valid' else 'test'} tasks x "
        f"{config.evaluation.seeds} seed(s), writing to {out}",
        file=sys.stderr,
    )
    bar = tqdm(
        total=plan_size(rows, contenders),
        desc="benchmark",
        unit="run",
        file=sys.stderr,
        dynamic_ncols=True,
        mininterval=1.0,
        disable=None if sys.stderr.isatty() else False,
    )

    def progress(message: str) -> None:
        bar.set_postfix_str(message, refresh=False)
        bar.update(1)

    try:
        result = run_benchmark(rows, contenders, progress)
    finally:
        bar.close()
    result.extra["losses"] = dict(zip(learned, sources, strict=True))
    if tuned_notes:
        result.extra["tuned"] = {"folder": str(args.tuned), **tuned_notes}
    paths = write_report(result, out, to_dict(config))
    print((out / "results.md").read_text())
    print("outputs:\n" + "\n".join(f"  {p}" for p in paths))
    print(f"  {out}/events.out.tfevents.*  (view: tensorboard --logdir {out})")
    return result
