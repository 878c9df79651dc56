"""Split a classifier's cross-entropy into an irreducible and a reducible part.

For a task whose true posterior ``p(y|x)`` is known (Gaussian mixtures), the expected
cross-entropy of a prediction ``q`` under labels drawn from ``p`` is

    E_{y~p}[-log q_y] = H(p) + KL(p || q),

the entropy of ``p`` (irreducible: no learner can go below it) plus the KL divergence from ``p``
to the prediction (reducible: what a better loss can remove). A loss that lowers test
cross-entropy by lowering KL improved the fit; one whose CE moves only because the sample of
test labels moved stayed within the noise floor. The per-sample identity holds exactly, so the
two parts sum to the expected cross-entropy up to float rounding.

The per-sample parts and the metrics reported for every classification family (accuracy, the
expected calibration error) are :mod:`metaloss.tasks.classification_metrics`'s, re-exported
here; this module summarises and logs the decomposition.

References:
    Cover & Thomas, "Elements of Information Theory", 2nd ed., 2006, eq. 2.91 (the
    cross-entropy identity H(p, q) = H(p) + D(p || q)).
    Guo, Pleiss, Sun and Weinberger, "On Calibration of Modern Neural Networks", ICML 2017
    (expected calibration error, 15 equal-width confidence bins).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from metaloss.evaluation.stats import MeanCI, mean_ci
from metaloss.tasks.classification_metrics import (
    ECE_BINS,
    Decomposition,
    accuracy,
    calibration_contributions,
    calibration_error,
    classification_metrics,
    decompose,
)

__all__ = [
    "ECE_BINS",
    "Decomposition",
    "DecompositionSummary",
    "accuracy",
    "calibration_contributions",
    "calibration_error",
    "classification_metrics",
    "decompose",
    "log_decomposition",
    "summarise",
]


@dataclass(frozen=True)
class DecompositionSummary:
    """Means with 95% CIs over runs (each run: the mean over its test samples)."""

    cross_entropy: MeanCI
    entropy: MeanCI
    kl: MeanCI

    def as_dict(self) -> dict[str, float]:
        """Flat numbers for JSON reports: ``{part}_mean`` and ``{part}_ci95``."""
        out: dict[str, float] = {}
        for name in ("cross_entropy", "entropy", "kl"):
            value: MeanCI = getattr(self, name)
            out[f"{name}_mean"], out[f"{name}_ci95"] = value.mean, value.half_width
        return out


def summarise(parts: Decomposition) -> DecompositionSummary:
    """Average each run's samples (last dimension), then mean ± 95% CI over runs."""
    return DecompositionSummary(
        mean_ci(parts.cross_entropy.mean(-1)),
        mean_ci(parts.entropy.mean(-1)),
        mean_ci(parts.kl.mean(-1)),
    )


class _Writer(Protocol):
    def add_scalar(self, tag: str, value: float, step: int) -> Any: ...


def log_decomposition(
    writer: _Writer, prefix: str, summary: DecompositionSummary, step: int = 0
) -> None:
    """Write the three parts as TensorBoard scalars ``{prefix}/cross_entropy``, ``/entropy``
    (irreducible) and ``/kl`` (reducible)."""
    writer.add_scalar(f"{prefix}/cross_entropy", summary.cross_entropy.mean, step)
    writer.add_scalar(f"{prefix}/entropy", summary.entropy.mean, step)
    writer.add_scalar(f"{prefix}/kl", summary.kl.mean, step)
