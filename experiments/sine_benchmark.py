"""Sine regression (ML3, Bechtle et al. 2020): a learned loss against MSE on held-out tasks.

For each variant (a set of config overrides) it meta-trains a loss, then meta-tests on fixed
held-out sine tasks: a fresh learner trained for K steps with the learned loss and with MSE, at the
meta-training learning rate *and* at each loss's best learning rate from a grid selected on
meta-train tasks (never on test tasks). It prints clean test MSE mean ± 95% CI and the inner
steps each needs to reach MSE's final error. Known from the literature: ML3's advantage over MSE
can vanish once MSE's learning rate is tuned; the table shows whether it does here.

    python experiments/sine_benchmark.py                          # default variants, 200 test tasks
    python experiments/sine_benchmark.py --variant "inner.optimizer=adam outer.steps=500"
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from metaloss import MetaTrainer, load_config, make_family
from metaloss.evaluation.compare import compare_with_mse

DEFAULT_VARIANTS = [
    "",  # configs/sine.yaml as shipped
    "inner.steps=20",
    "loss.features=[residual,abs_residual,target,prediction]",
    "outer.meta_batch=32",
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="configs/sine.yaml")
    parser.add_argument(
        "--variant", action="append", help="space-separated key=value overrides (repeatable)"
    )
    parser.add_argument("--test-tasks", type=int, default=200, help="held-out tasks (>= 100)")
    parser.add_argument(
        "--seeds", type=int, default=1, help="learner initialisations per test task"
    )
    parser.add_argument("--out", type=Path, default=Path("reports/sine_benchmark"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    variants = args.variant or DEFAULT_VARIANTS
    args.out.mkdir(parents=True, exist_ok=True)
    summary = []
    for variant in variants:
        overrides = variant.split()
        config = load_config(args.config, overrides)
        start = time.perf_counter()
        result = MetaTrainer(config).train()
        seconds = time.perf_counter() - start
        tested = replace(
            config,
            evaluation=replace(config.evaluation, test_tasks=args.test_tasks, seeds=args.seeds),
        )
        comparison = compare_with_mse(result.loss.per_sample, make_family(config.task), tested)
        print(
            f"\n## variant: {variant or '(configs/sine.yaml)'} — meta-trained in {seconds:.0f} s, "
            f"best meta-validation {result.best_value:.4g} at step {result.best_step}"
        )
        print(comparison.markdown(), flush=True)
        summary.append({"variant": variant, "meta_train_seconds": seconds, **comparison.to_dict()})
    (args.out / "results.json").write_text(json.dumps(summary, indent=2))
    print(f"\nwrote {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
