"""Tiny run configs shared by the tests (plain dicts, as a YAML file would hold them)."""

from __future__ import annotations

from typing import Any

__all__ = ["TINY_OUTLIERS", "TINY_SINE", "merged"]


def merged(base: dict[str, Any], **sections: dict[str, Any]) -> dict[str, Any]:
    """A copy of the config ``base`` with each of ``sections`` merged into its section of that
    name (its settings replace the base's; the base's other settings stay)."""
    data = dict(base)
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return data


TINY_SINE: dict[str, Any] = {
    "name": "tiny",
    "task": {"family": "sine", "n_train": 5, "n_outer_valid": 8, "n_test": 8},
    "learner": {"hidden": [8]},
    "loss": {"hidden": [8]},
    "inner": {"steps": 3, "lr": 0.01},
    "outer": {"steps": 4, "meta_batch": 2, "val_every": 2, "val_tasks": 4},
}
"""A sine run of a few meta-steps on tiny tasks (tuning tests)."""

TINY_OUTLIERS: dict[str, Any] = {
    "name": "tiny",
    "task": {"family": "outliers", "n_train": 12, "n_outer_valid": 16, "n_test": 16},
    "learner": {"hidden": [8]},
    "inner": {"steps": 4, "optimizer": "adam"},
}
"""Outlier regression on tiny tasks (benchmark tests add their evaluation and benchmark)."""
