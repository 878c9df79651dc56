"""The ``device`` setting: validation, and the whole path (meta-training, the benchmark) run
with an explicit device while every tensor factory call is watched."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.overrides import TorchFunctionMode

from metaloss.cli import main
from metaloss.config import ConfigError, parse
from metaloss.device import resolve_device, to_device

ROOT = Path(__file__).resolve().parents[1] / "metaloss"

FACTORIES: set[Callable[..., Any]] = {
    torch.zeros,
    torch.ones,
    torch.empty,
    torch.full,
    torch.tensor,
    torch.as_tensor,
    torch.arange,
    torch.linspace,
    torch.eye,
    torch.rand,
    torch.randn,
    torch.randint,
    torch.randperm,
    torch.scalar_tensor,
}

# Modules whose tensors are CPU-side by design: task generation (drawn on CPU generators and then
# moved by the caller), statistics and reports of results already brought back to the CPU,
# figures, TensorBoard logs, the command line and hyper-parameter search.
CPU_SIDE = (
    "tasks/",
    "datasets/",
    "evaluation/stats.py",
    "evaluation/report.py",
    "plots/",
    "summary.py",
    "commands/",
    "tuning/",
    "export.py",
    "zoo/",
)


class FactoryWatch(TorchFunctionMode):
    """Records tensor factory calls made by the library without a ``device`` (nor a CPU
    generator, whose draws the callers move): on a GPU those tensors would be created on the
    CPU, away from the run's tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.offenders: set[str] = set()
        self.devices: set[str] = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        if func in FACTORIES and "device" not in kwargs and "generator" not in kwargs:
            where = self._caller()
            if where is not None:
                self.offenders.add(f"{where} {func.__name__}")
        out = func(*args, **kwargs)
        for value in out if isinstance(out, tuple) else (out,):
            # (loading a loss file builds the module on the meta device, then assigns weights)
            if isinstance(value, torch.Tensor) and value.device.type != "meta":
                self.devices.add(str(value.device))
        return out

    @staticmethod
    def _caller() -> str | None:
        for frame in inspect.stack(context=0)[2:]:
            path = Path(frame.filename).resolve()
            if ROOT in path.parents:
                relative = path.relative_to(ROOT).as_posix()
                if relative.startswith(CPU_SIDE):
                    return None
                return f"{relative}:{frame.lineno}"
        return None  # not the library's call (torch internals called from tests)


def test_device_names_are_validated_in_one_line() -> None:
    assert parse({}).device == "auto"
    assert parse({"device": "cpu"}).device == "cpu"
    with pytest.raises(ConfigError, match=r"^device: expected auto, cpu, cuda, cuda:N or mps"):
        parse({"device": "gpu"})
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"^device: 'cuda:1' is not available here"):
            parse({"device": "cuda:1"})
    assert resolve_device("auto").type in {"cuda", "mps", "cpu"}


def test_to_device_moves_nested_tasks() -> None:
    from metaloss.tasks.base import Batch, Task

    batch = Batch(torch.zeros(2), torch.ones(2), {"clean_y": torch.ones(2)})
    moved = to_device(Task(batch, batch, batch), "meta")
    assert isinstance(moved, Task) and isinstance(moved.test, Batch)
    assert moved.train.extras["clean_y"].device.type == "meta"


TINY = [
    "--set", "device=cpu",
    "--set", "learner.hidden=[8]",
    "--set", "loss.hidden=[4]",
    "--set", "outer.meta_batch=3",
    "--set", "outer.steps=3",
    "--set", "outer.val_every=3",
    "--set", "outer.val_tasks=3",
    "--set", "inner.steps=3",
    "--set", "evaluation.test_tasks=4",
    "--set", "evaluation.grid_tasks=3",
    "--set", "evaluation.lr_grid=[0.01,0.1]",
]  # fmt: skip


@pytest.mark.parametrize(
    "config", ["configs/sine.yaml", "configs/outliers.yaml", "configs/noisy_labels.yaml"]
)
def test_meta_training_and_the_benchmark_create_every_tensor_on_the_device(
    tmp_path: Path, config: str
) -> None:
    watch = FactoryWatch()
    with watch:
        assert main(["train", config, "--out", str(tmp_path / "run"), *TINY]) == 0
        benchmark = ["benchmark", config, "--loss", str(tmp_path / "run" / "loss.safetensors")]
        assert main([*benchmark, "--out", str(tmp_path / "bench"), *TINY]) == 0
    assert watch.devices == {"cpu"}
    assert not watch.offenders, sorted(watch.offenders)


def test_multitask_meta_training_and_benchmark_create_every_tensor_on_the_device(
    tmp_path: Path,
) -> None:
    from metaloss.config import load_config
    from metaloss.export import save_loss
    from metaloss.outer import MetaTrainer

    overrides = [TINY[i + 1] for i in range(0, len(TINY), 2)]
    watch = FactoryWatch()
    with watch:
        config = load_config("configs/multitask.yaml", overrides)
        result = MetaTrainer(config, tmp_path / "run").train()
        path = save_loss(result.loss, tmp_path / "loss.safetensors")
        benchmark = ["benchmark", "configs/multitask.yaml", "--loss", str(path)]
        assert main([*benchmark, "--out", str(tmp_path / "bench"), *TINY]) == 0
    assert watch.devices == {"cpu"}
    assert not watch.offenders, sorted(watch.offenders)


@pytest.mark.skipif(
    torch.cuda.is_available() or (torch.backends.mps.is_available()),
    reason="this machine has a GPU: gpu_check would run its checks",
)
def test_gpu_check_says_there_is_no_gpu_and_exits_0() -> None:
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "experiments" / "gpu_check.py"
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0
    assert out.stdout.startswith("gpu_check: no GPU here") and "nothing to check" in out.stdout
