"""Check metaloss on a GPU in a few minutes, for machines that have one.

1. Random draws are made on CPU generators and moved: the first meta-batch of a seed (tasks and
   learner initialisations) must be bitwise the same on the GPU as on the CPU; the meta-gradient
   on it is printed with its relative difference to the CPU's (GPU kernels round differently).
2. The speed table of ``experiments/speed.py`` (metaloss and the hand-written peers) on the GPU at
   meta-batch 16, 64 and 256, and metaloss's meta-steps per second on the CPU for comparison.
3. One benchmark: ``metaloss benchmark configs/outliers.yaml`` (the shipped zoo loss against the
   tuned baselines, 50 test tasks) on the GPU and on the CPU, with the largest difference between
   the two reports' numbers.

    python experiments/gpu_check.py                  # the first CUDA device, else MPS
    python experiments/gpu_check.py --device cuda:1

Without a GPU it says so in one line and exits with status 0: there is nothing to check.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import speed


def gpu_device(requested: str | None) -> str | None:
    """The device to check, or ``None`` if this machine has no GPU."""
    if requested:
        return requested
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    return "mps" if mps is not None and mps.is_available() else None


def check_same_draws(device: str) -> None:
    speed.DEVICE = "cpu"
    cpu = speed.make_trainer(speed.make_config(16, 10))
    speed.DEVICE = device
    gpu = speed.make_trainer(speed.make_config(16, 10))
    a, b = speed.first_batch(cpu), speed.first_batch(gpu)
    same = all(torch.equal(x, y.cpu()) for x, y in zip(_tensors(a), _tensors(b), strict=True))
    print(f"same tasks and initialisations on {device} as on the CPU: {same}")
    g_cpu = speed.flat_meta_gradient(cpu, a).double()
    g_gpu = speed.flat_meta_gradient(gpu, b).double().cpu()
    relative = float((g_gpu - g_cpu).norm() / g_cpu.norm())
    print(f"meta-gradient on {device} vs CPU: relative difference {relative:.1e}")
    if not same:
        raise SystemExit("gpu_check: the same seed gave different tasks on the GPU")


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    return []


def speed_table(device: str, window: float, rounds: int) -> None:
    args = argparse.Namespace(
        steps=10,
        window=window,
        rounds=rounds,
        warmup=2,
        peers=[p for p in speed.PEERS if p != "higher"],
        backends=[],
        compile=False,
        reference_src=None,
    )
    speed.DEVICE = device
    rates = {b: speed.time_meta_batch(args, b) for b in (16, 64, 256)}
    speed.print_table(rates)
    speed.DEVICE = "cpu"
    for b in (16, 64, 256):
        trainer = speed.make_trainer(speed.make_config(b, 10))
        trainer.meta_step()
        print(
            f"metaloss on the CPU, meta-batch {b}: {speed.window(trainer.meta_step, window):.2f}/s"
        )


def benchmark(device: str, tasks: int) -> None:
    from metaloss.cli import main

    reports = {}
    with tempfile.TemporaryDirectory() as scratch:
        for where in (device, "cpu"):
            out = Path(scratch) / where.replace(":", "_")
            start = time.perf_counter()
            command = ["benchmark", "configs/outliers.yaml", "--out", str(out)]
            command += ["--set", f"device={where}", "--set", f"evaluation.test_tasks={tasks}"]
            if main(command) != 0:
                raise SystemExit(f"gpu_check: the benchmark failed on {where}")
            print(f"benchmark on {where}: {time.perf_counter() - start:.0f} s")
            reports[where] = json.loads((out / "results.json").read_text())
    print(
        f"largest difference between the two reports' numbers: "
        f"{_largest_difference(reports[device], reports['cpu']):.2e}"
    )


def _largest_difference(a: Any, b: Any) -> float:
    if isinstance(a, dict) and isinstance(b, dict):
        return max((_largest_difference(a[k], b[k]) for k in a.keys() & b.keys()), default=0.0)
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return float("inf")
        return max((_largest_difference(x, y) for x, y in zip(a, b, strict=True)), default=0.0)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        if a == b:  # also equal infinities
            return 0.0
        return abs(float(a) - float(b))
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", help="cuda, cuda:N or mps (default: the first GPU found)")
    parser.add_argument("--window", type=float, default=1.0, help="seconds per timing window")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--test-tasks", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = gpu_device(args.device)
    if device is None:
        print(
            "gpu_check: no GPU here (torch.cuda.is_available() is False and MPS is not "
            "available): nothing to check"
        )
        return 0
    name = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else device
    print(f"torch {torch.__version__}, checking {device} ({name})")
    check_same_draws(device)
    speed_table(device, args.window, args.rounds)
    benchmark(device, args.test_tasks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
