"""The noisy-label benchmark with each learned loss mixed with cross-entropy, the mix selected
like every baseline's own parameter.

A learned loss ``L`` enters as ``L_m = (1 - m) * CE + m * L`` with ``m`` chosen from ``--mix``
(default 0, 0.5, 1) jointly with the learning rate on meta-train tasks (their clean
``outer_valid`` split), exactly as GCE's ``q`` or SCE's ``alpha`` are: ``m = 0`` is plain CE and
``m = 1`` the learned loss as shipped. For a weight-form loss ``w * CE`` the mix is the weight
``1 - m + m * w``. The point is the one a practitioner meets: a loss meta-trained to discount
flipped labels cannot tell them, from the training labels alone, from labels that are
ambiguous by nature (overlapping classes), and there it makes the learner overconfident; a
validation split can tell, and choosing ``m`` on it is the same selection every baseline gets.
Everything else is ``metaloss benchmark``'s harness and report (rows, baselines, oracle,
paired tests); ``--set benchmark.split=meta_valid`` screens without reading a meta-test task.

    python experiments/noisy_labels_ce_mix_benchmark.py configs/noisy_labels_datasets.yaml \
        --loss noisy-labels runs/noisy_labels_broad/loss.safetensors --out reports/ce_mix
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from metaloss.commands.benchmarking import load_learned
from metaloss.config import load_config
from metaloss.evaluation.benchmark import (
    Contender,
    contenders_from_config,
    rows_from_config,
    run_benchmark,
)
from metaloss.evaluation.report import write_report
from metaloss.losses.learned import cross_entropy

PerSampleLoss = Callable[[Tensor, Tensor], Tensor]


def mixed(loss: PerSampleLoss) -> Callable[..., PerSampleLoss]:
    """``make(mix=m)``: the per-sample loss ``(1 - m) * CE + m * loss``."""

    def make(mix: float) -> PerSampleLoss:
        if mix == 1.0:
            return loss
        return lambda z, y: (1.0 - mix) * cross_entropy(z, y) + mix * loss(z, y)

    return make


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("config")
    parser.add_argument("--loss", nargs="+", required=True, help="learned loss files or zoo names")
    parser.add_argument("--mix", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    parser.add_argument("--out", type=Path, default=Path("reports/ce_mix"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    if any(not 0.0 <= m <= 1.0 for m in args.mix):
        print("noisy_labels_ce_mix_benchmark: --mix: expected values in [0, 1]", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    config = load_config(args.config, args.overrides)
    rows = rows_from_config(config)
    learned = load_learned(args.loss)
    contenders = [
        Contender(f"{name} + CE mix", "learned", mixed(fn), "mix", tuple(args.mix))
        for name, fn in learned.items()
    ]
    contenders += contenders_from_config(config, {}, rows[0].family)
    result = run_benchmark(rows, contenders, lambda message: print(f"  {message}", flush=True))
    for path in write_report(result, args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
