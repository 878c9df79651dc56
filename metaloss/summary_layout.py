"""How a meta-training run is laid out in TensorBoard beyond plain scalars: the custom-scalars
layout (learned vs reference inner curves on one chart), and the hyper-parameters shown in the
HParams tab (a dozen settings that tell runs apart, and metrics that are scalar series of the
run, so no single-point cards are written for them).

Used by :class:`metaloss.summary.SummaryCallback`; nothing here computes anything about a run.
"""

from __future__ import annotations

from typing import Any

from metaloss.config import RunConfig, to_dict

__all__ = [
    "HPARAM_KEYS",
    "METRIC_TAGS",
    "TEST_DELTA_TAG",
    "custom_layout",
    "run_hparams",
    "write_hparams",
]

HPARAM_KEYS = (
    "task.family",
    "seed",
    "loss.features",
    "loss.form",
    "loss.hidden",
    "inner.optimizer",
    "inner.steps",
    "inner.lr",
    "outer.estimator",
    "outer.lr",
    "outer.meta_batch",
)
"""The settings in the HParams table: what tells meta-training runs apart (the full config is
the ``config`` text and the run folder's ``config.yaml``)."""

TEST_DELTA_TAG = "test/delta_vs_tuned_reference"
"""Scalar of ``metaloss train``'s meta-test comparison: the paired difference of the learned
loss (tuned lr) to the tuned reference loss (MSE for regression, CE for classification) on the
held-out tasks; negative is better."""

METRIC_TAGS = (
    "meta/best_valid_objective",
    "inner/objective_curve",
    TEST_DELTA_TAG,
    "meta/skipped_steps",
)
"""The HParams metrics: scalar series of the run whose last value is the metric (the best
meta-validation objective so far; the validation objective after K steps with the
meta-objective as inner loss; the meta-test difference; skipped steps)."""


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flat(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def run_hparams(config: RunConfig) -> dict[str, Any]:
    """The values of :data:`HPARAM_KEYS` in ``config`` (lists joined with commas)."""
    flat = _flat(to_dict(config))
    values: dict[str, Any] = {}
    for key in HPARAM_KEYS:
        value = flat.get(key)
        if isinstance(value, list):
            value = ",".join(str(v) for v in value) or "-"
        if isinstance(value, (bool, int, float, str)):
            values[key] = value
    return values


def write_hparams(writer: Any, config: RunConfig) -> None:
    """Write the HParams session of this run into ``writer``'s own event file: the settings of
    :func:`run_hparams` and the metric tags :data:`METRIC_TAGS` (their values are the runs'
    scalar series, written by the summary as training goes)."""
    from torch.utils.tensorboard.summary import hparams

    # The metric values given here only declare the metrics; they are not written as scalars.
    experiment, start, end = hparams(run_hparams(config), dict.fromkeys(METRIC_TAGS, 0.0))
    for summary in (experiment, start, end):
        writer.file_writer.add_summary(summary)


def custom_layout(reference: str) -> dict[str, dict[str, list[Any]]]:
    """The Custom Scalars layout: the inner curves of the learned loss (at the start and the
    best step of meta-training) and of the ``reference`` loss (the meta-objective used as the
    inner loss, e.g. MSE) on one chart, and the meta-training curves."""
    return {
        "what was learned": {
            f"inner training on the meta-validation tasks: learned loss (start, best) vs {reference}": [
                "Multiline",
                [r"inner/start_curve$", r"inner/end_curve$", r"inner/objective_curve$"],
            ],
        },
        "meta-training": {
            "meta-objective: train, validation, best so far": [
                "Multiline",
                [
                    r"meta/train_objective$",
                    r"meta/valid_objective$",
                    r"meta/best_valid_objective$",
                ],
            ],
            "meta-gradient norm (before clipping) and skipped steps": [
                "Multiline",
                [r"meta/grad_norm$", r"meta/skipped_steps$"],
            ],
        },
    }
