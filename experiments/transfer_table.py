"""The transfer goal, row by row, from a ``metaloss benchmark`` report (docs/transfer.md).

Reads the ``results.json`` of a benchmark run (any split) and prints, for every row, the best
tuned baseline (the baseline with the lowest mean test metric on that row, its own parameter and
learning rate selected as always), MSE, and for each learned loss its mean, the paired difference
to the best tuned baseline with both p-values and the report's verdict, and its verdict against
MSE. Then one line per learned loss counts what the goal asks:

- rows better / tied / worse than the best tuned baseline (all rows);
- rows with outliers (``eps=...`` > 0 in the row name) where it is better than the best baseline;
- clean rows (``eps=0``) where it is worse than MSE.

Verdicts are the report's own (paired t test and Wilcoxon signed-rank test, both at 5%, from
:mod:`metaloss.evaluation.stats`); nothing is recomputed here but the choice of the best baseline.

    python experiments/transfer_table.py reports/outliers_transfer/results.json
    python experiments/transfer_table.py reports/x/results.json --learned seed-0 robust-regression
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from metaloss.markdown import table_head, table_row

__all__ = ["best_baselines", "epsilon_of", "main", "summarise"]

_EPSILON = re.compile(r"eps=([0-9]*\.?[0-9]+)")
_SHORT = {"better": "**better**", "worse": "worse", "no significant difference": "tie"}


def epsilon_of(row: str) -> float | None:
    """The outlier fraction a row's name states (``eps=0.2``), or ``None``."""
    found = _EPSILON.search(row)
    return float(found.group(1)) if found else None


def best_baselines(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per row, the baseline entry with the lowest finite mean."""
    best: dict[str, dict[str, Any]] = {}
    for entry in data["entries"]:
        if entry["role"] != "baseline" or entry["mean"] is None:
            continue
        current = best.get(entry["row"])
        if current is None or entry["mean"] < current["mean"]:
            best[entry["row"]] = entry
    return best


def _label(entry: dict[str, Any]) -> str:
    param = entry.get("param") or {}
    settings = ", ".join(f"{k} {v:g}" for k, v in param.items())
    return f"{entry['loss']} ({settings})" if settings else str(entry["loss"])


def _verdict(comparison: dict[str, Any] | None) -> str:
    if comparison is None:
        return "—"
    verdict = str(comparison["verdict"])
    return _SHORT.get(verdict, verdict)


def summarise(data: dict[str, Any], learned: list[str]) -> tuple[list[str], dict[str, Any]]:
    """The Markdown table lines and the per-loss counts."""
    best = best_baselines(data)
    means = {(e["row"], e["loss"]): e["mean"] for e in data["entries"]}
    pairs = {(c["row"], c["learned"], c["baseline"]): c for c in data["comparisons"]}
    header = ["row", "best tuned baseline", "mse", *learned]
    lines = table_head(header)
    counts = {
        name: {"better": 0, "tie": 0, "worse": 0, "other": 0, "noisy_rows": 0,
               "noisy_better": 0, "clean_rows": 0, "clean_worse_than_mse": 0}
        for name in learned
    }  # fmt: skip
    for row in data["rows"]:
        base = best.get(row)
        if base is None:
            continue
        eps = epsilon_of(row)
        cells = [
            row,
            f"{_label(base)} {base['mean']:.4g}",
            f"{means.get((row, 'mse'), float('nan')):.4g}",
        ]
        for name in learned:
            vs_best = pairs.get((row, name, base["loss"]))
            vs_mse = pairs.get((row, name, "mse"))
            mean = means.get((row, name))
            if vs_best is None or mean is None:
                cells.append("—")
                continue
            verdict = str(vs_best["verdict"])
            tally = counts[name]
            key = {"better": "better", "worse": "worse", "no significant difference": "tie"}
            tally[key.get(verdict, "other")] += 1
            if eps is not None and eps > 0:
                tally["noisy_rows"] += 1
                tally["noisy_better"] += verdict == "better"
            if eps == 0:
                tally["clean_rows"] += 1
                tally["clean_worse_than_mse"] += vs_mse is not None and vs_mse["verdict"] == "worse"
            cell = (
                f"{mean:.4g}, {vs_best['difference']:+.3g} (p {vs_best['p_t']:.2g} / "
                f"{vs_best['p_wilcoxon']:.2g}) {_verdict(vs_best)}"
            )
            if eps == 0 and base["loss"] != "mse":
                cell += f"; vs MSE {_verdict(vs_mse)}"
            cells.append(cell)
        lines.append(table_row(cells))
    return lines, counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="results.json of a metaloss benchmark run")
    parser.add_argument("--learned", nargs="+", default=None, help="learned losses (default: all)")
    args = parser.parse_args(argv)
    try:
        data = json.loads(args.results.read_text())
        available = [n for n, role in _roles(data).items() if role == "learned"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        print(
            f"{args.results}: expected a metaloss benchmark results.json ({error})", file=sys.stderr
        )
        return 2
    learned = args.learned or available
    missing = [n for n in learned if n not in available]
    if missing:
        print(f"--learned: {', '.join(missing)} not in {', '.join(available)}", file=sys.stderr)
        return 2
    lines, counts = summarise(data, learned)
    print(f"{data.get('metric', 'test metric')}; split {data.get('split')}; "
          f"{data.get('test_tasks')} test tasks x {data.get('seeds')} seed(s) per row; "
          "difference to the best tuned baseline (p paired t / Wilcoxon) and verdict at 5%")  # fmt: skip
    print("\n".join(lines))
    print()
    for name, c in counts.items():
        print(
            f"{name}: vs best tuned baseline {c['better']} better / {c['tie']} tied / "
            f"{c['worse']} worse" + (f" / {c['other']} other" if c["other"] else "") + "; "
            f"better in {c['noisy_better']} of {c['noisy_rows']} rows with outliers; "
            f"worse than MSE in {c['clean_worse_than_mse']} of {c['clean_rows']} clean rows"
        )
    return 0


def _roles(data: dict[str, Any]) -> dict[str, str]:
    return {e["loss"]: e["role"] for e in data["entries"]}


if __name__ == "__main__":
    sys.exit(main())
