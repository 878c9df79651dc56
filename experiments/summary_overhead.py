"""What TensorBoard logging costs during meta-training.

Meta-trains the same config three ways, interleaved for ``--reps`` repetitions: without any
summary, with :class:`~metaloss.summary.SummaryCallback` but shapes/histograms never due
(``shape_every`` beyond the run: scalars, config, inner curves at start and end, hparams), and
with the full callback (shape figure + tensors + histograms every ``outer.shape_every`` steps).
Prints process CPU seconds and wall seconds of each run, and the wall seconds spent inside the
callback. One torch thread, so CPU time is comparable on a shared machine.

    python experiments/summary_overhead.py configs/sine.yaml --reps 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from metaloss.config import load_config
from metaloss.outer.trainer import MetaTrainer
from metaloss.summary import SummaryCallback


def run_once(config_path: str, mode: str, folder: Path) -> tuple[float, float, float]:
    """(CPU seconds, wall seconds, seconds inside the callback) of one meta-training run."""
    config = load_config(config_path)
    callbacks = []
    if mode != "none":
        every = config.outer.steps + 1 if mode == "scalars" else None
        callbacks.append(SummaryCallback(folder / mode, shape_every=every))
    cpu, wall = time.process_time(), time.perf_counter()
    MetaTrainer(config, None, callbacks=callbacks).train()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    inside = 0.0
    for callback in callbacks:
        callback.close()
        inside = callback.seconds
    return cpu, wall, inside


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("config", nargs="?", default="configs/sine.yaml")
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    modes = ("none", "scalars", "full")
    results: dict[str, list[tuple[float, float, float]]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            for mode in modes:
                results[mode].append(run_once(args.config, mode, Path(tmp) / str(rep)))
    print(f"{args.config}: {args.reps} interleaved runs per mode, one thread")
    print(
        f"{'summary':<10} {'CPU s (median)':>15} {'wall s (median)':>16} {'in callback s':>14}  CPU s per run"
    )
    for mode, rows in results.items():
        cpu = statistics.median(r[0] for r in rows)
        wall = statistics.median(r[1] for r in rows)
        inside = statistics.median(r[2] for r in rows)
        each = ", ".join(f"{r[0]:.2f}" for r in rows)
        print(f"{mode:<10} {cpu:>15.2f} {wall:>16.2f} {inside:>14.2f}  {each}")


if __name__ == "__main__":
    main()
