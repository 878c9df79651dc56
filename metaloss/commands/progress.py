"""Progress display for long runs (the command line prints; the library never does)."""

from __future__ import annotations

import sys

from tqdm import tqdm

from metaloss.outer.trainer import Callback, MetaTrainer, StepRecord, TrainResult, ValidationRecord

__all__ = ["ProgressCallback", "progress_bar"]


def progress_bar(
    total: int, desc: str, unit: str, initial: int = 0, mininterval: float = 1.0
) -> tqdm:
    """A tqdm bar on stderr, fitted to the terminal's width and redrawn at most every
    ``mininterval`` seconds."""
    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        dynamic_ncols=True,
        mininterval=mininterval,
        disable=None if sys.stderr.isatty() else False,
    )


class ProgressCallback(Callback):
    """A tqdm bar on stderr with the latest meta-train and meta-validation objectives."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None
        self.valid = float("nan")

    def on_start(self, trainer: MetaTrainer) -> None:
        total = trainer.config.outer.steps
        self.bar = progress_bar(total, "meta-train", "step", initial=trainer.step)

    def on_step(self, trainer: MetaTrainer, record: StepRecord) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(
                train=f"{record.meta_loss:.4g}",
                valid=f"{self.valid:.4g}",
                skipped=trainer.skipped,
                refresh=False,
            )

    def on_validation(self, trainer: MetaTrainer, record: ValidationRecord) -> None:
        self.valid = record.value

    def on_end(self, trainer: MetaTrainer, result: TrainResult) -> None:
        self.close()

    def close(self) -> None:
        """End the bar's line (also when training fails, so an error starts a line of its own)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
