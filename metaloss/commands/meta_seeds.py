"""``metaloss benchmark CONFIG --meta-seeds N --out DIR``: claims across meta-training seeds.

Meta-trains the config with ``seed = 0 .. N-1`` into ``DIR/seed-k/`` (each a run folder like
``metaloss train``'s: config, checkpoint, loss file, TensorBoard events), then benchmarks the N
learned losses together on the config's rows (the same tasks and learner initialisations for
every seed: the benchmark uses the config's own ``seed``), and writes the usual benchmark
report into ``DIR`` plus ``seeds.md`` / ``seeds.json`` (:mod:`metaloss.evaluation.seeds`).

Resumable: a seed whose ``loss.safetensors`` exists is not trained again, and a seed killed
during meta-training continues from its checkpoint to the numbers of an uninterrupted run. A
seed folder written with a different config is refused before anything runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import yaml

from metaloss.commands.common import prepare_run_folder
from metaloss.commands.progress import ProgressCallback
from metaloss.config import ConfigError, RunConfig, to_dict
from metaloss.export import read_metadata, save_loss
from metaloss.outer.trainer import MetaTrainer

__all__ = ["LOSS_NAME", "check_seed_folders", "run_meta_seeds", "seed_folder", "train_seed"]

LOSS_NAME = "loss.safetensors"


def seed_folder(out: Path, seed: int) -> Path:
    """The run folder of meta-training seed ``seed``."""
    return out / f"seed-{seed}"


def _config_of(config: RunConfig, seed: int) -> RunConfig:
    return replace(config, seed=seed)


def check_seed_folders(out: Path, configs: list[RunConfig]) -> None:
    """Refuse, in one line, a seed folder whose recorded config differs from the one it would be
    trained with now (a finished seed is reused only if it is the same run)."""
    for seed, config in enumerate(configs):
        recorded = seed_folder(out, seed) / "config.yaml"
        if not recorded.exists():
            continue
        expected = yaml.safe_load(yaml.safe_dump(to_dict(config), sort_keys=False))
        try:
            found = yaml.safe_load(recorded.read_text())
        except yaml.YAMLError:
            found = None
        if found != expected:
            raise ValueError(
                f"--out: {recorded.parent} was meta-trained with a different config; "
                "choose another --out folder or remove that seed folder"
            )


def train_seed(config: RunConfig, folder: Path) -> Path:
    """Meta-train ``config`` into ``folder`` (continuing its checkpoint if there is one) and
    write its loss file last, so that the file exists only for a finished seed."""
    from metaloss.summary import SummaryCallback

    started = folder.is_dir() and any(folder.iterdir())  # a seed killed mid-run continues
    prepare_run_folder(folder, config, resume=started)
    summary = SummaryCallback(folder)
    trainer = MetaTrainer(config, folder, callbacks=[ProgressCallback(), summary])
    try:
        result = trainer.train(resume=True)
    finally:
        summary.close()
    extra = {"best_step": result.best_step, "best_valid_objective": result.best_value}
    return save_loss(result.loss, folder / LOSS_NAME, to_dict(config), extra)


def _valid_objective(path: Path) -> float:
    value = read_metadata(path).get("extra", {}).get("best_valid_objective")
    return float(value) if isinstance(value, (int, float)) else float("nan")


def run_meta_seeds(args: argparse.Namespace, config: RunConfig) -> int:
    """The ``--meta-seeds`` branch of ``metaloss benchmark`` (see the module docstring)."""
    from metaloss.commands.benchmarking import benchmark_and_report, load_learned
    from metaloss.evaluation.report import finite_json
    from metaloss.evaluation.seeds import seed_markdown, seed_to_json

    count: int = args.meta_seeds
    if count < 2:
        raise ConfigError(f"--meta-seeds: expected at least 2 seeds, got {count}")
    if args.loss:
        raise ConfigError(
            "--loss: not with --meta-seeds (the learned losses are the meta-trained seeds)"
        )
    if args.out is None:
        raise ConfigError("--out: expected a folder for the seed runs and the report")
    out: Path = args.out
    configs = [_config_of(config, k) for k in range(count)]
    check_seed_folders(out, configs)
    paths = []
    for seed, seed_config in enumerate(configs):
        folder = seed_folder(out, seed)
        path = folder / LOSS_NAME
        if path.exists():
            print(f"metaloss benchmark: seed {seed} already trained ({path})", file=sys.stderr)
        else:
            print(f"metaloss benchmark: meta-training seed {seed} into {folder}", file=sys.stderr)
            train_seed(seed_config, folder)
        paths.append(path)
    learned = load_learned([str(p) for p in paths], config.device)
    names = [f"seed-{k}" for k in range(count)]
    learned = dict(zip(names, learned.values(), strict=True))
    result = benchmark_and_report(args, config, learned, [str(p) for p in paths], out)
    objectives = {name: _valid_objective(p) for name, p in zip(names, paths, strict=True)}
    table = seed_markdown(result, names, objectives)
    (out / "seeds.md").write_text(table)
    data = finite_json(seed_to_json(result, names, objectives))
    (out / "seeds.json").write_text(json.dumps(data, indent=2, allow_nan=False))
    print(table)
    print(f"  {out / 'seeds.md'}\n  {out / 'seeds.json'}")
    return 0
