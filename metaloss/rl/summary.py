"""TensorBoard for RL meta-training: the objective-shape figure (``shape/objective``, drawn by
:mod:`metaloss.rl.shape`: the learned objective against the ratio for A = ±1 beside PPO's clip
and DPO) every ``outer.shape_every`` steps and for the best objective at the end. Scalars:
``meta/`` (centre, population and best returns, validation return, search-gradient norm),
``time/``.
"""

from __future__ import annotations

from pathlib import Path

from metaloss.rl.meta import RLCallback, RLMetaTrainer, RLStepRecord, RLTrainResult, RLValidation
from metaloss.rl.shape import policy_curves, policy_figure

__all__ = ["RLSummaryCallback"]


class RLSummaryCallback(RLCallback):
    """Write an RL meta-training run's scalars and objective-shape figures to TensorBoard."""

    def __init__(self, log_dir: Path, shape_every: int = 10) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(log_dir))
        self.shape_every = shape_every

    def _shape(self, trainer: RLMetaTrainer, step: int, tag: str = "shape/objective") -> None:
        objective = trainer.objective
        curves = policy_curves(lambda lr, adv: objective(lr, adv, reduction="none"))
        self.writer.add_figure(tag, policy_figure(curves), step)

    def on_start(self, trainer: RLMetaTrainer) -> None:
        self._shape(trainer, trainer.step)

    def on_step(self, trainer: RLMetaTrainer, record: RLStepRecord) -> None:
        w = self.writer
        w.add_scalar("meta/centre_return", record.centre_return, record.step)
        w.add_scalar("meta/population_return", record.population_return, record.step)
        w.add_scalar("meta/best_candidate_return", record.best_return, record.step)
        w.add_scalar("meta/grad_norm", record.grad_norm, record.step)
        w.add_scalar("time/seconds_per_step", record.seconds, record.step)
        if record.step % self.shape_every == 0:
            self._shape(trainer, record.step)

    def on_validation(self, trainer: RLMetaTrainer, record: RLValidation) -> None:
        self.writer.add_scalar("meta/valid_return", record.value, record.step)

    def on_end(self, trainer: RLMetaTrainer, result: RLTrainResult) -> None:
        self._shape(trainer, trainer.step, "shape/best_objective")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
