"""How every report writes a paired comparison: the same columns, p-value format and flags in
the benchmark, multi-task, ``metaloss train`` and tuning reports (and RL's, via this module)."""

from __future__ import annotations

import math

from metaloss.evaluation.stats import PairedComparison

__all__ = ["PAIRED_COLUMNS", "format_p", "paired_cells"]

PAIRED_COLUMNS = (
    "n",
    "mean difference (95% CI)",
    "win rate",
    "p (paired t)",
    "p (Wilcoxon)",
    "verdict",
)
"""Column headings matching :func:`paired_cells`."""


def format_p(p: float) -> str:
    """A p-value in three significant decimals, scientific below 0.001, ``n/a`` when NaN."""
    if not math.isfinite(p):
        return "n/a"
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"


def paired_cells(c: PairedComparison) -> list[str]:
    """The cells of :data:`PAIRED_COLUMNS` for one comparison: ``n`` is marked ⚠ below
    :data:`~metaloss.evaluation.stats.FEW_PAIRS`, and a "no significant difference" where the
    two tests disagree (:attr:`~metaloss.evaluation.stats.PairedComparison.tests_disagree`) is
    marked †."""
    n = f"{c.n} ⚠" if c.few_pairs else str(c.n)
    diff = c.difference
    low, high = diff.low, diff.high
    interval = (
        f"{diff.mean:+.4g} [{low:+.3g}, {high:+.3g}]" if math.isfinite(low) else f"{diff.mean:+.4g}"
    )
    win = "n/a" if not math.isfinite(c.win_rate) else f"{c.win_rate:.0%}"
    dagger = c.verdict == "no significant difference" and c.tests_disagree
    return [
        n,
        interval,
        win,
        format_p(c.p_t),
        format_p(c.p_wilcoxon),
        c.verdict + ("†" if dagger else ""),
    ]
