"""``metaloss benchmark``: learned losses against hand-designed baselines (and an oracle) on
fixed held-out tasks, with learning rates and loss parameters selected on meta-train tasks.
``--meta-seeds N`` meta-trains the config with N seeds first and reports claims across them
(:mod:`metaloss.commands.meta_seeds`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from metaloss.commands.arguments import (
    Command,
    argument,
    config_argument,
    losses_option,
    out_option,
    overrides_option,
)
from metaloss.commands.benchmarking import benchmark_and_report, load_learned, loss_sources
from metaloss.commands.common import plan_folder
from metaloss.config import ConfigError, load_config
from metaloss.evaluation.benchmark import rows_from_config
from metaloss.rl.config import is_rl_config
from metaloss.tasks import family_spec

__all__ = ["register", "run"]


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
    rows_from_config(config)  # checks the rows before anything is trained or written
    if args.meta_seeds is not None:  # claims across meta-training seeds
        from metaloss.commands.meta_seeds import run_meta_seeds

        return run_meta_seeds(args, config)
    plan = plan_folder(args.out, config, "benchmark", resumable=False)  # checks only
    zoo_loss = family_spec(config.task.family).zoo_loss
    sources = loss_sources(args.loss, config.benchmark.losses, zoo_loss)
    learned = load_learned(sources, config.device)
    benchmark_and_report(args, config, learned, sources, plan)
    return 0


register = Command(
    "benchmark",
    "benchmark learned losses against baselines",
    __doc__,
    run,
    (
        config_argument("config file or shipped name with a benchmark section (e.g. outliers)"),
        losses_option(
            "learned losses: files or zoo names (default: benchmark.losses, else the family's "
            "zoo loss)"
        ),
        out_option("report folder"),
        argument(
            "--tuned",
            type=Path,
            default=None,
            metavar="DIR",
            help="tuning folder of `metaloss tune`: losses tuned there use their tuned lr and "
            "parameter",
        ),
        argument(
            "--meta-seeds",
            type=int,
            default=None,
            metavar="N",
            help="meta-train the config with seeds 0..N-1 into OUT/seed-k/ (resumable), "
            "benchmark all N losses and report the spread and claims across seeds (needs --out)",
        ),
        overrides_option("evaluation.test_tasks=200"),
    ),
).register
