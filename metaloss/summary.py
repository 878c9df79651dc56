"""TensorBoard logging of meta-training runs, grouped by tag prefix (as in CleanRL):
``meta/`` (objectives, gradient norm, skipped steps), ``time/``, ``config`` (text) and hparams.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from metaloss.config import to_dict
from metaloss.outer.trainer import Callback, MetaTrainer, StepRecord, TrainResult, ValidationRecord

__all__ = ["SummaryCallback", "hparams_of"]


def hparams_of(config: Any) -> dict[str, Any]:
    """Flatten a config into TensorBoard-friendly hyper-parameters (``inner.lr`` -> value)."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        elif isinstance(value, (list, tuple)):
            flat[prefix] = ",".join(str(v) for v in value)
        elif isinstance(value, (bool, int, float, str)):
            flat[prefix] = value

    walk("", to_dict(config))
    return flat


class SummaryCallback(Callback):
    """Write a meta-training run's scalars, config and hparams to TensorBoard event files."""

    def __init__(self, log_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(str(self.log_dir))

    def on_start(self, trainer: MetaTrainer) -> None:
        self.writer.add_text("config", "```yaml\n" + yaml.safe_dump(to_dict(trainer.config), sort_keys=False) + "```", trainer.step)

    def on_step(self, trainer: MetaTrainer, record: StepRecord) -> None:
        w = self.writer
        w.add_scalar("meta/train_objective", record.meta_loss, record.step)
        w.add_scalar("meta/grad_norm", record.grad_norm, record.step)
        w.add_scalar("meta/skipped_steps", trainer.skipped, record.step)
        w.add_scalar("meta/finite_inner_fraction", record.finite_fraction, record.step)
        w.add_scalar("time/seconds_per_step", record.seconds, record.step)

    def on_validation(self, trainer: MetaTrainer, record: ValidationRecord) -> None:
        self.writer.add_scalar("meta/valid_objective", record.value, record.step)

    def on_end(self, trainer: MetaTrainer, result: TrainResult) -> None:
        metrics = {
            "hparam/best_valid_objective": result.best_value,
            "hparam/best_step": float(result.best_step),
            "hparam/skipped_steps": float(result.skipped_steps),
        }
        self.writer.add_hparams(hparams_of(trainer.config), metrics, run_name=".")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
