"""Tuned vs tuned: enter each loss in ``metaloss benchmark`` with what ``metaloss tune`` chose.

A tuning folder holds ``<target>/best.json`` per tuned target (``learned``, ``mse``, ``huber``,
...). :func:`apply_tuned` gives each benchmark contender with a tuned counterpart that
learning rate and, for baselines, that parameter value, as a one-point grid: the benchmark
then skips its own selection for it. Learned contenders take ``learned/best.json``'s inner
learning rate (the one their loss was meta-trained with when trained from
``learned/best.yaml``). Contenders without a tuned counterpart, and the oracle, keep the
benchmark's selection on meta-train tasks.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from metaloss.evaluation.benchmark import Contender
from metaloss.tuning.space import LEARNED

__all__ = ["Tuned", "apply_tuned", "read_tuned"]


@dataclass(frozen=True)
class Tuned:
    """What tuning chose for one target: the inner learning rate and the baseline's parameters."""

    target: str
    inner_lr: float
    baseline_params: dict[str, float]
    value: float


def _read(path: Path) -> Tuned:
    try:
        data = json.loads(path.read_text())
        tuned = Tuned(
            str(data["target"]),
            float(data["inner_lr"]),
            {str(k): float(v) for k, v in data["baseline_params"].items()},
            float(data["value"]),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(
            f"--tuned: {path} is not a best.json written by metaloss tune ({error})"
        ) from None
    if not (math.isfinite(tuned.inner_lr) and tuned.inner_lr > 0):
        raise ValueError(f"--tuned: {path}: expected a positive inner_lr, got {tuned.inner_lr}")
    return tuned


def read_tuned(folder: Path) -> dict[str, Tuned]:
    """Every ``<target>/best.json`` of a tuning folder, by target."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(
            f"--tuned: expected a folder written by metaloss tune, got {str(folder)!r}"
        )
    found = {p.parent.name: _read(p) for p in sorted(folder.glob("*/best.json"))}
    if not found:
        raise ValueError(f"--tuned: no <target>/best.json in {folder} (has a trial completed?)")
    return found


def apply_tuned(
    contenders: Sequence[Contender], tuned: dict[str, Tuned]
) -> tuple[list[Contender], dict[str, str]]:
    """The contenders with their tuned learning rate and parameter, and a note per contender
    saying where its settings come from."""
    out, notes = [], {}
    for c in contenders:
        key = LEARNED if c.role == "learned" else c.name
        t = tuned.get(key) if c.role != "oracle" else None
        if t is None:
            out.append(c)
            notes[c.name] = "selected on meta-train tasks"
            continue
        values = c.values
        if c.param:
            if c.param not in t.baseline_params:
                raise ValueError(
                    f"--tuned: {key}/best.json has no tuned {c.param!r} (tune {key}.{c.param})"
                )
            values = (t.baseline_params[c.param],)
        out.append(replace(c, lr_grid=(t.inner_lr,), values=values))
        params = "".join(f", {c.param}={v:.4g}" for v in values[:1] if c.param)
        notes[c.name] = f"tuned ({key}): lr={t.inner_lr:.4g}{params}"
    return out, notes
