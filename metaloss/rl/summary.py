"""TensorBoard for RL meta-training, and the shape of a policy objective.

The shape view draws each objective's per-sample loss ``−(r·A − drift)`` and its drift against
the probability ratio ``r`` for a positive and a negative advantage (``A = ±1``), the learned
objective beside PPO's clip (ε = 0.2) and DPO (α = 2, β = 0.6), as the figures of Lu et al.,
"Discovered Policy Optimisation", NeurIPS 2022. Scalars: ``meta/`` (centre, population and best
returns, validation return, search-gradient norm), ``time/``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch import Tensor

from metaloss.rl.meta import RLCallback, RLMetaTrainer, RLStepRecord, RLTrainResult, RLValidation
from metaloss.rl.objectives import PolicyObjective, dpo_objective, ppo_clip_objective

__all__ = ["RLSummaryCallback", "policy_curves", "policy_figure"]

ADVANTAGES = (1.0, -1.0)


def policy_curves(
    objective: PolicyObjective, low: float = 0.3, high: float = 2.5, points: int = 221
) -> dict[str, Tensor]:
    """Per-sample loss of ``objective``, PPO's clip and DPO on a ratio grid, for ``A = +1, −1``:
    tensors ``ratio [R]``, ``advantage [2]`` and ``learned``/``ppo_clip``/``dpo`` ``[2, R]``."""
    ratio = torch.linspace(low, high, points)
    log_ratio = torch.log(ratio)
    out: dict[str, Tensor] = {"ratio": ratio, "advantage": torch.tensor(ADVANTAGES)}
    fns: dict[str, PolicyObjective] = {
        "learned": objective,
        "ppo_clip": ppo_clip_objective,
        "dpo": dpo_objective,
    }
    with torch.no_grad():
        for name, fn in fns.items():
            out[name] = torch.stack(
                [fn(log_ratio, torch.full_like(ratio, a)).reshape(-1) for a in ADVANTAGES]
            )
    return out


def policy_figure(curves: dict[str, Tensor]) -> Figure:
    """Two panels (``A = +1``, ``A = −1``): the objective to maximise, ``r·A − drift``, against
    ``r`` for the learned objective, PPO's clip and DPO."""
    figure = Figure(figsize=(9, 3.6), dpi=90)
    ratio = curves["ratio"].numpy()
    styles = {
        "learned": ("C3", "-", "learned"),
        "ppo_clip": ("C0", "--", "PPO clip ε=0.2"),
        "dpo": ("C2", ":", "DPO α=2 β=0.6"),
    }
    for i, a in enumerate(curves["advantage"].tolist()):
        axis = figure.add_subplot(1, 2, i + 1)
        for name, (color, line, label) in styles.items():
            axis.plot(ratio, -curves[name][i].numpy(), color=color, linestyle=line, label=label)
        axis.axvline(1.0, color="0.7", linewidth=0.8)
        axis.set_title(f"advantage A = {a:+.0f}")
        axis.set_xlabel("ratio r = π/π_old")
        axis.set_ylabel("objective r·A − drift")
        axis.legend(fontsize=7)
    figure.tight_layout()
    return figure


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
