"""``metaloss train``: meta-train a loss, save it, and compare it with MSE on held-out tasks."""

from __future__ import annotations

import argparse
import json
import sys

from metaloss.atomic import write_text_atomic
from metaloss.cli import EXIT_DIVERGED
from metaloss.commands.arguments import (
    RESUME,
    Command,
    config_argument,
    out_option,
    overrides_option,
    switch,
)
from metaloss.commands.common import create_folder, plan_folder
from metaloss.commands.progress import ProgressCallback
from metaloss.config import load_config, to_dict
from metaloss.evaluation.compare import compare_with_mse
from metaloss.evaluation.training_summary import assess_training
from metaloss.export import save_loss
from metaloss.losses.kinds import kind_spec
from metaloss.outer.supervised import supervised_family
from metaloss.outer.trainer import CHECKPOINT_NAME, MetaTrainer
from metaloss.rl.config import is_rl_config
from metaloss.summary import SummaryCallback

__all__ = ["register", "run"]


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides)
    if is_rl_config(config.task):  # RL families meta-train with ES (metaloss rl-train, docs/rl.md)
        from metaloss.commands.rl_train import run as run_rl_train

        return run_rl_train(args)
    if args.distributed:  # under torchrun: every process trains its shard (commands/distributed.py)
        from metaloss.commands.distributed import run_distributed

        return run_distributed(args, config)
    plan = plan_folder(args.out, config, "train", args.resume)  # checks only
    progress = ProgressCallback()
    trainer = MetaTrainer(config, plan.path, callbacks=[progress])
    out = create_folder(plan, config)  # the first side effect, after every check
    trainer.out_dir = out
    print(
        f"metaloss train: {config.name}, {config.outer.steps} meta-steps, writing to {out}",
        file=sys.stderr,
    )
    summary = SummaryCallback(out)
    trainer.callbacks.append(summary)
    try:
        result = trainer.train(resume=args.resume)
    finally:
        progress.close()
        summary.close()
    loss_path = save_loss(
        result.loss,
        out / "loss.safetensors",
        to_dict(config),
        {
            "best_step": result.best_step,
            "best_valid_objective": result.best_value,
            "argv": getattr(args, "argv", ["metaloss", *sys.argv[1:]]),
        },
    )
    print(
        f"best meta-validation objective {result.best_value:.4g} at step {result.best_step}; "
        f"skipped steps: {result.skipped_steps}"
    )
    log_scale = config.outer.objective_transform == "log"
    report = assess_training(result.steps, result.validations, config.outer.grad_clip, log_scale)
    print("meta-training health:\n" + "\n".join(f"  {line}" for line in report.lines()))
    backend = getattr(trainer.problem, "backend", None)
    compiled = backend.report() if backend is not None else {}
    if compiled:  # inner.compile
        print(
            f"inner.compile: {compiled['graphs']:.0f} graphs compiled "
            f"({compiled['recompiles']:.0f} recompiles), {compiled['compile_seconds']:.0f} s "
            "in the calls that compiled"
        )
    if result.degeneracy.collapsed:
        print(
            f"warning: the learned loss has collapsed: {result.degeneracy.reason}", file=sys.stderr
        )
    outputs = [loss_path, out / "config.yaml", out / CHECKPOINT_NAME]
    family = supervised_family(trainer)
    if not args.no_eval:
        print(
            f"meta-testing against {kind_spec(family.kind).reference} ...",
            file=sys.stderr,
        )
        comparison = compare_with_mse(result.loss.per_sample, family, config)
        summary.log_comparison(comparison)
        table = comparison.markdown()
        write_text_atomic(out / "results.md", table)
        write_text_atomic(out / "results.json", json.dumps(comparison.to_dict(), indent=2))
        outputs += [out / "results.md", out / "results.json"]
        print(table)
    print("outputs:\n" + "\n".join(f"  {p}" for p in outputs))
    print(f"  {out}/events.out.tfevents.*  (view: tensorboard --logdir {out.parent})")
    for finding in report.health.findings:  # last, so they are seen (exit status 3 on an error)
        print(f"warning: {finding.message}", file=sys.stderr)
    if report.diverged:
        print(
            f"metaloss train: meta-training diverged (exit status {EXIT_DIVERGED})", file=sys.stderr
        )
        return EXIT_DIVERGED
    return 0


register = Command(
    "train",
    "meta-train a learned loss (default: the sine job, configs/sine.yaml)",
    __doc__,
    run,
    (
        config_argument(
            "config file or shipped name, e.g. outliers (default: sine, the default job)", True
        ),
        out_option("run folder"),
        overrides_option("outer.steps=50"),
        RESUME,
        switch("--no-eval", "skip the comparison with MSE after training"),
        switch(
            "--distributed",
            "data-parallel meta-training: launch with torchrun (see docs/tuning.md)",
        ),
    ),
).register
