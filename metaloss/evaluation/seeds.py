"""Claims across meta-training seeds: one config meta-trained with seeds ``0..N-1``, every
learned loss benchmarked on the same tasks, and for each row

* the spread over seeds: each seed's mean test metric, and their mean ± 95% CI over seeds;
* for each baseline, the claim "better than <baseline>" judged per seed (each seed's loss paired
  with the baseline over tasks) and for the mean of the seeds (each task's metric averaged over
  the seeds' losses, paired with the baseline over tasks), with the rule of
  :func:`metaloss.evaluation.stats.paired_comparison`; the claim *holds for every seed*, *for
  the mean of the seeds only*, *for some seeds only*, or *for no seed*.

What the zoo ships is one seed chosen on meta-validation (:func:`select_seed`); this module
reports how typical its claims are. Nothing here reads a meta-test task to choose anything.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from metaloss.evaluation.benchmark import BenchmarkResult
from metaloss.evaluation.formatting import PAIRED_COLUMNS, format_p, paired_cells
from metaloss.evaluation.stats import MeanCI, PairedComparison, mean_ci, paired_comparison
from metaloss.markdown import table_head, table_row

__all__ = [
    "SeedClaim",
    "SeedSpread",
    "claim_holds",
    "seed_claims",
    "seed_markdown",
    "seed_spreads",
    "seed_to_json",
    "select_seed",
]


@dataclass(frozen=True)
class SeedSpread:
    """One row: each seed's mean test metric over tasks, and their mean ± CI over seeds."""

    row: str
    per_seed: dict[str, float]
    spread: MeanCI


@dataclass(frozen=True)
class SeedClaim:
    """ "Better than ``baseline``" on ``row``, per seed and for the mean of the seeds."""

    row: str
    baseline: str
    per_seed: dict[str, PairedComparison]
    mean_of_seeds: PairedComparison
    holds: str

    @property
    def seed_differences(self) -> MeanCI:
        """Each seed's mean difference to the baseline, as a mean ± CI over seeds."""
        return mean_ci([c.difference.mean for c in self.per_seed.values()])


_CLAIM_COLUMNS = [
    "row",
    "vs",
    "per-seed verdicts",
    "Δ per seed (mean ± CI over seeds)",
    f"mean of seeds: {PAIRED_COLUMNS[0]}",
    *PAIRED_COLUMNS[1:],
    "claim holds for",
]


def claim_holds(per_seed: Sequence[str], mean_of_seeds: str) -> str:
    """Where "better" holds, from the verdicts of each seed and of the mean of the seeds:
    ``"every seed"``, ``"the mean of the seeds only (k of N seeds)"``, ``"some seeds only
    (k of N)"`` or ``"no seed"``; seeds judged worse are counted after a semicolon."""
    count, better = len(per_seed), sum(v == "better" for v in per_seed)
    worse = sum(v == "worse" for v in per_seed)
    if better == count and count > 0:
        text = "every seed"
    elif mean_of_seeds == "better":
        text = f"the mean of the seeds only ({better} of {count} seeds)"
    elif better > 0:
        text = f"some seeds only ({better} of {count})"
    else:
        text = "no seed"
    return text + (f"; worse for {worse} of {count}" if worse else "")


def seed_spreads(result: BenchmarkResult, seeds: Sequence[str]) -> list[SeedSpread]:
    """Per row: the mean test metric of each seed's loss, and their mean ± CI over seeds."""
    out = []
    for row in result.rows:
        means = {s: result.entry(row, s).score.mean for s in seeds}
        out.append(SeedSpread(row, means, mean_ci(list(means.values()))))
    return out


def seed_claims(result: BenchmarkResult, seeds: Sequence[str]) -> list[SeedClaim]:
    """Per row and baseline: "better than the baseline" judged per seed and for the mean of
    the seeds, paired over tasks (lower is better; verdicts held to ``result.min_pairs``)."""
    out = []
    for row in result.rows:
        learned = [result.entry(row, s).per_task.double() for s in seeds]
        mean = torch.stack(learned).mean(0)
        for base in (e for e in result.row_entries(row) if e.role == "baseline"):
            b = base.per_task.double()
            per_seed = {
                s: paired_comparison(x, b, min_pairs=result.min_pairs)
                for s, x in zip(seeds, learned, strict=True)
            }
            of_mean = paired_comparison(mean, b, min_pairs=result.min_pairs)
            holds = claim_holds([c.verdict for c in per_seed.values()], of_mean.verdict)
            out.append(SeedClaim(row, base.name, per_seed, of_mean, holds))
    return out


def select_seed(valid_objectives: Mapping[str, float]) -> str:
    """The seed the zoo ships: the lowest best meta-validation objective (ties: the first).
    Seeds whose objective is not finite are never chosen."""
    finite = {s: v for s, v in valid_objectives.items() if math.isfinite(v)}
    if not finite:
        raise ValueError("select_seed: no seed has a finite meta-validation objective")
    return min(finite, key=lambda s: finite[s])


def seed_markdown(
    result: BenchmarkResult, seeds: Sequence[str], valid_objectives: Mapping[str, float]
) -> str:
    """The seed report: spread per row, then each claim per seed and for the mean of seeds."""
    chosen = select_seed(valid_objectives)
    lines = [
        f"## Across {len(seeds)} meta-training seeds ({result.metric}; lower is better)",
        "",
        f"Spread: each seed's mean over {result.test_tasks} tasks, and the mean ± 95% CI of those "
        f"{len(seeds)} means over seeds (t with {len(seeds) - 1} degrees of freedom).",
        "",
        *table_head(["row", "mean ± CI over seeds", *seeds]),
    ]
    for spread in seed_spreads(result, seeds):
        cells = [f"{spread.per_seed[s]:.4g}" for s in seeds]
        lines.append(table_row([spread.row, f"{spread.spread}", *cells]))
    lines += [
        "",
        'Claims "better than <baseline>": each seed\'s loss paired with the baseline over tasks, '
        "and the mean of the seeds (each task's metric averaged over the seeds' losses) paired "
        "with it; Δ per seed = each seed's mean difference, as mean ± CI over seeds.",
        "",
        *table_head(_CLAIM_COLUMNS),
    ]
    for claim in seed_claims(result, seeds):
        verdicts = ", ".join(
            f"{s}: {c.verdict} (p {format_p(c.p_t)} / {format_p(c.p_wilcoxon)})"
            for s, c in claim.per_seed.items()
        )
        cells = [claim.row, claim.baseline, verdicts, str(claim.seed_differences)]
        cells += [*paired_cells(claim.mean_of_seeds), claim.holds]
        lines.append(table_row(cells))
    objectives = ", ".join(f"{s}: {valid_objectives[s]:.4g}" for s in seeds)
    lines += [
        "",
        f"Per-seed p-values: paired t / Wilcoxon. Best meta-validation objective per seed: "
        f"{objectives}. The zoo rule ships the seed with the lowest: **{chosen}** "
        "(chosen on meta-validation; its claims are those of its column above).",
    ]
    return "\n".join(lines) + "\n"


def seed_to_json(
    result: BenchmarkResult, seeds: Sequence[str], valid_objectives: Mapping[str, float]
) -> dict[str, Any]:
    """The seed report as plain data (non-finite floats are left to the caller)."""
    return {
        "seeds": list(seeds),
        "best_valid_objective": dict(valid_objectives),
        "chosen_seed": select_seed(valid_objectives),
        "min_pairs": result.min_pairs,
        "spread": [
            {
                "row": s.row,
                "per_seed": s.per_seed,
                "mean": s.spread.mean,
                "ci95": s.spread.half_width,
            }
            for s in seed_spreads(result, seeds)
        ],
        "claims": [
            {
                "row": c.row,
                "baseline": c.baseline,
                "per_seed": {s: p.to_dict() for s, p in c.per_seed.items()},
                "mean_of_seeds": c.mean_of_seeds.to_dict(),
                "seed_differences_mean": c.seed_differences.mean,
                "seed_differences_ci95": c.seed_differences.half_width,
                "holds": c.holds,
            }
            for c in seed_claims(result, seeds)
        ],
    }
