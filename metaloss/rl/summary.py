"""TensorBoard for RL meta-training on the shared trainer: returns rather than meta-losses.

The writer, the config text, the objective-shape figure (the policy kind's shape view,
:data:`metaloss.rl.shape.POLICY_VIEW`: the objective against the ratio for A = ±1 beside PPO's
clip and DPO; ``shape/`` every ``outer.shape_every`` steps, ``best/shape_`` at the end) and the
hparams come from :class:`metaloss.summary.SummaryCallback`; the supervised inner-loop curves
and histograms do not apply. Scalars: ``meta/centre_return``, ``meta/population_return``,
``meta/best_candidate_return`` (ES fitness: mean return over the last ``task.fitness_fraction``
of the runs), ``meta/valid_return``, ``meta/grad_norm``, ``meta/skipped_steps``,
``time/seconds_per_step``.
"""

from __future__ import annotations

import yaml

from metaloss.config import to_dict
from metaloss.outer.trainer import MetaTrainer, StepRecord, TrainResult, ValidationRecord
from metaloss.summary import SummaryCallback
from metaloss.summary_layout import run_hparams

__all__ = ["RLSummaryCallback"]


class RLSummaryCallback(SummaryCallback):
    """Write an RL meta-training run's returns, objective shapes and hparams to TensorBoard."""

    def on_start(self, trainer: MetaTrainer) -> None:
        config = yaml.safe_dump(to_dict(trainer.config), sort_keys=False)
        self.writer.add_text("config", "```yaml\n" + config + "```", trainer.step)
        self.log_shape(trainer, trainer.step)

    def on_step(self, trainer: MetaTrainer, record: StepRecord) -> None:
        w = self.writer
        w.add_scalar("meta/centre_return", -record.meta_loss, record.step)
        if "population_mean" in record.extra:
            w.add_scalar("meta/population_return", -record.extra["population_mean"], record.step)
            w.add_scalar(
                "meta/best_candidate_return", -record.extra["population_best"], record.step
            )
        w.add_scalar("meta/grad_norm", record.grad_norm, record.step)
        w.add_scalar("meta/skipped_steps", trainer.skipped, record.step)
        w.add_scalar("time/seconds_per_step", record.seconds, record.step)
        if record.step % self._every(trainer) == 0:
            self.log_shape(trainer, record.step)

    def on_validation(self, trainer: MetaTrainer, record: ValidationRecord) -> None:
        self.writer.add_scalar("meta/valid_return", -record.value, record.step)

    def on_end(self, trainer: MetaTrainer, result: TrainResult) -> None:
        self.log_shape(trainer, max(result.best_step, 0), prefix="best/shape_")
        metrics = {
            "hparam/best_valid_return": -result.best_value,
            "hparam/best_step": float(result.best_step),
            "hparam/skipped_steps": float(result.skipped_steps),
            "hparam/meta_steps": float(trainer.step),
        }
        self.writer.add_hparams(run_hparams(trainer.config), metrics, run_name=".")
        self.writer.flush()
