"""How a tuning trial that diverged is recorded: pruned with a finite penalty and the reason in a
user attribute (returning NaN would make TPE keep sampling the bad region). Shared by the
supervised objectives (:mod:`metaloss.tuning.objective`) and the RL ones
(:mod:`metaloss.rl.tune`)."""

from __future__ import annotations

import optuna

__all__ = ["DIVERGED_ATTR", "prune_as_diverged"]

DIVERGED_ATTR = "diverged"
"""User attribute holding why a trial was pruned as diverged or invalid."""


def prune_as_diverged(
    trial: optuna.Trial, reason: str, penalty: float, step: int
) -> optuna.TrialPruned:
    """The exception to raise for a diverged trial, after recording ``reason`` and reporting
    ``penalty`` at ``step``."""
    trial.set_user_attr(DIVERGED_ATTR, reason)
    trial.report(penalty, step)
    return optuna.TrialPruned(f"diverged: {reason}")
