"""Speed and memory of the differentiable inner loop.

1. Meta-steps per second of the ``torch.func`` backend (``vmap`` over the tasks of a meta-batch)
   against the ``higher`` backend (a Python loop over tasks) on the same config and tasks,
   printed as a ratio (default: sine, meta-batch 16, K = 10).
2. Peak memory of one meta-step against K for a full unroll and a truncated one (last T steps),
   each measured in a fresh process from the kernel's peak-RSS counter (VmHWM, reset per step).

    python experiments/speed.py                      # both
    python experiments/speed.py --skip-memory --meta-batch 16 --steps 10
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from metaloss import MetaTrainer, parse


def trainer_for(
    backend: str,
    meta_batch: int,
    steps: int,
    estimator: str = "full_grad",
    truncation: int = 5,
    n_train: int = 10,
) -> MetaTrainer:
    config = parse(
        {
            "inner": {"backend": backend, "steps": steps},
            "outer": {
                "meta_batch": meta_batch,
                "estimator": estimator,
                "truncation": truncation,
                "steps": 10**6,
            },
            "task": {"family": "sine", "n_train": n_train},
        }
    )
    return MetaTrainer(config)


def steps_per_second(trainer: MetaTrainer, seconds: float) -> float:
    """Meta-steps per second of ``trainer`` over a window of ``seconds``."""
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        trainer.meta_step()
        done += 1
    return done / (time.perf_counter() - start)


def interleaved_rates(
    meta_batch: int, steps: int, seconds: float, rounds: int
) -> dict[str, list[float]]:
    """Alternate timing windows of the two backends, so that load from other processes on a
    shared machine falls on both alike; returns the rate of each window."""
    trainers = {name: trainer_for(name, meta_batch, steps) for name in ("func", "higher")}
    for trainer in trainers.values():
        for _ in range(3):  # warm-up
            trainer.meta_step()
    rates: dict[str, list[float]] = {name: [] for name in trainers}
    for _ in range(rounds):
        for name, trainer in trainers.items():
            rates[name].append(steps_per_second(trainer, seconds / rounds))
    return rates


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status")


def measure_memory(
    steps: int, estimator: str, truncation: int, n_train: int, meta_batch: int
) -> float:
    """Peak RSS growth (MiB) of one meta-step, in this process."""
    trainer = trainer_for("func", meta_batch, steps, estimator, truncation, n_train)
    batch = trainer.problem.sample(trainer.generator)
    del batch  # lazy imports and data paths warmed; no meta-step yet (its memory would be pooled)
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS counter
    before = _rss_kib("VmRSS")
    trainer.meta_step()
    return (_rss_kib("VmHWM") - before) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--meta-batch", type=int, default=16)
    parser.add_argument(
        "--steps", type=int, default=10, help="inner steps K for the speed comparison"
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="total timing per backend")
    parser.add_argument(
        "--rounds", type=int, default=5, help="interleaved timing windows per backend"
    )
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--memory-ks", type=int, nargs="+", default=[10, 20, 40, 80])
    parser.add_argument("--truncation", type=int, default=5)
    parser.add_argument(
        "--memory-n-train", type=int, default=1000, help="inner-train samples (scales memory)"
    )
    parser.add_argument("--_measure", nargs=2, metavar=("K", "ESTIMATOR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args._measure:
        k, estimator = int(args._measure[0]), args._measure[1]
        print(
            json.dumps(
                measure_memory(k, estimator, args.truncation, args.memory_n_train, args.meta_batch)
            )
        )
        return

    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, sine, meta-batch {args.meta_batch}, K={args.steps}"
    )
    rates = interleaved_rates(args.meta_batch, args.steps, args.seconds, args.rounds)
    func, high = statistics.median(rates["func"]), statistics.median(rates["higher"])
    ratios = sorted(f / h for f, h in zip(rates["func"], rates["higher"], strict=True))
    print(f"torch.func + vmap : {func:8.2f} meta-steps/s (median of {args.rounds} windows)")
    print(f"higher, task loop : {high:8.2f} meta-steps/s")
    print(
        f"speed-up          : {statistics.median(ratios):8.2f}x (median of per-window ratios; "
        f"range {ratios[0]:.2f}-{ratios[-1]:.2f})"
    )
    if args.skip_memory:
        return
    print(
        f"\npeak memory of one meta-step (MiB), func backend, n_train={args.memory_n_train}, "
        f"meta-batch {args.meta_batch}, truncation T={args.truncation}"
    )
    print("| K | full unroll | truncated (last T) |\n|---|---|---|")
    for k in args.memory_ks:
        row = []
        for estimator in ["full_grad", "truncated_grad"]:
            if estimator == "truncated_grad" and k <= args.truncation:
                row.append(float("nan"))
                continue
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--_measure",
                    str(k),
                    estimator,
                    "--truncation",
                    str(args.truncation),
                    "--memory-n-train",
                    str(args.memory_n_train),
                    "--meta-batch",
                    str(args.meta_batch),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            row.append(float(out.stdout.strip().splitlines()[-1]))
        print(f"| {k} | {row[0]:.1f} | {row[1]:.1f} |")


if __name__ == "__main__":
    main()
