"""The shape of a policy objective: its objective ``r·A − drift`` against the probability ratio
``r`` for a positive and a negative advantage (``A = ±1``), beside PPO's clip (ε = 0.2) and DPO
(α = 2, β = 0.6), as the figures of Lu et al., "Discovered Policy Optimisation", NeurIPS 2022.

``POLICY_VIEW`` is the ``"policy"`` kind's shape view (named by its spec in
:mod:`metaloss.rl.objectives`), so TensorBoard and ``metaloss inspect`` draw learned policy
objectives like every other loss.
"""

from __future__ import annotations

import torch
from matplotlib.figure import Figure
from torch import Tensor

from metaloss.losses.module import per_sample_fn
from metaloss.plots.base import ShapeView
from metaloss.rl.objectives import PolicyObjective, dpo_objective, ppo_clip_objective

__all__ = ["POLICY_VIEW", "describe_policy", "policy_curves", "policy_figure"]

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


def describe_policy(objective: PolicyObjective) -> list[str]:
    """A few lines: the objective at r = 0.5, 1, 1.5 and 2 for A = ±1, and where it peaks."""
    curves = policy_curves(objective)
    ratio = curves["ratio"]
    lines = []
    for i, a in enumerate(ADVANTAGES):
        value = -curves["learned"][i]
        picks = ", ".join(
            f"r={r:g}: {float(value[(ratio - r).abs().argmin()]):.3f}" for r in (0.5, 1.0, 1.5, 2.0)
        )
        peak = float(ratio[value.argmax()])
        lines.append(f"A = {a:+g}: objective {picks}; maximised at r = {peak:.2f}")
    return lines


def _per_sample(loss: PolicyObjective) -> PolicyObjective:
    return per_sample_fn(loss)


POLICY_VIEW = ShapeView(
    lambda loss: policy_curves(_per_sample(loss)),
    policy_figure,
    lambda loss: describe_policy(_per_sample(loss)),
)
