"""The transfer goal, row by row, from a ``metaloss benchmark`` report (docs/transfer.md).

Reads the ``results.json`` of a benchmark run (any split) and prints, for every row, the best
tuned baseline (the baseline with the lowest mean test metric on that row, its own parameter and
learning rate selected as always), the reference loss (MSE for regression, CE for classification,
``--reference``), and for each learned loss its mean, the paired difference to the best tuned
baseline with both p-values and the report's verdict, and its verdict against the reference.
Then one line per learned loss counts what the goal asks:

- rows better / tied / worse than the best tuned baseline (all rows);
- rows with outliers or label noise (``eps=0.2``, ``sym 0.4``, ``pair 0.3`` in the row name)
  where it is better than the best baseline;
- clean rows (``eps=0`` or ``clean``; with ``--unnamed-clean`` also every row whose name states
  no contamination, for families whose transfer rows carry none, e.g. sine) where it is worse
  than the reference loss.

A learned loss whose mean is not finite on a row (some of its test runs diverged at the rate
selected for it) counts as worse there, and as worse than the reference on a clean row: to the
user of that loss the row failed.

``--pick validation`` takes as each row's baseline instead the one a user would have picked:
the baseline whose selected setting scored best on the meta-train tasks' ``outer_valid`` split
(the scores every selection already recorded; no test figure enters the choice). The goal is
stated against the best on test, the stricter and biased-against-the-learned-loss reading (the
lowest of several noisy means); the validation pick has no such bias.

Verdicts are the report's own (paired t test and Wilcoxon signed-rank test, both at 5%, from
:mod:`metaloss.evaluation.stats`); nothing is recomputed here but the choice of the best baseline.

    python experiments/transfer_table.py reports/outliers_transfer/results.json
    python experiments/transfer_table.py reports/x/results.json --learned seed-0 robust-regression
    python experiments/transfer_table.py reports/noisy_labels_transfer/results.json --reference ce
    python experiments/transfer_table.py reports/sine_transfer_seeds/results.json --unnamed-clean
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

from metaloss.markdown import table_head, table_row

__all__ = ["best_baselines", "contamination_of", "main", "summarise"]

_CONTAMINATION = re.compile(r"(?:eps=|sym |pair )([0-9]*\.?[0-9]+)")
_CLEAN = re.compile(r"\bclean\b")
_SHORT = {"better": "**better**", "worse": "worse", "no significant difference": "tie"}


def contamination_of(row: str) -> float | None:
    """The outlier fraction or label-noise rate a row's name states (``eps=0.2``, ``sym 0.4``,
    ``pair 0.3``; ``clean`` is 0), or ``None``."""
    found = _CONTAMINATION.search(row)
    if found:
        return float(found.group(1))
    return 0.0 if _CLEAN.search(row) else None


def best_baselines(data: dict[str, Any], pick: str = "test") -> dict[str, dict[str, Any]]:
    """Per row, the baseline entry with the best finite mean test metric (``pick="test"``), or
    the one a user would pick: the best score of its selected setting on the meta-train tasks'
    ``outer_valid`` split (``pick="validation"``; a baseline without a selection is not ranked).
    """
    sign = -1.0 if data.get("higher_is_better") else 1.0
    best: dict[str, tuple[float, dict[str, Any]]] = {}
    for entry in data["entries"]:
        if entry["role"] != "baseline" or entry["mean"] is None:
            continue
        score = entry["mean"] if pick == "test" else _validation_score(entry, sign)
        if score is None:
            continue
        current = best.get(entry["row"])
        if current is None or sign * score < sign * current[0]:
            best[entry["row"]] = (score, entry)
    return {row: entry for row, (_, entry) in best.items()}


def _validation_score(entry: dict[str, Any], sign: float) -> float | None:
    scores = (entry.get("selection_scores_outer_valid") or {}).values()
    finite = [v for v in scores if isinstance(v, (int, float)) and math.isfinite(v)]
    return min(finite, key=lambda v: sign * v) if finite else None


def _label(entry: dict[str, Any]) -> str:
    param = entry.get("param") or {}
    settings = ", ".join(f"{k} {v:g}" for k, v in param.items())
    return f"{entry['loss']} ({settings})" if settings else str(entry["loss"])


def _mean(value: float | None) -> str:
    return "not finite" if value is None else f"{value:.4g}"


def _verdict(comparison: dict[str, Any] | None) -> str:
    if comparison is None:
        return "—"
    verdict = str(comparison["verdict"])
    return _SHORT.get(verdict, verdict)


def summarise(
    data: dict[str, Any],
    learned: list[str],
    reference: str = "mse",
    unnamed_clean: bool = False,
    pick: str = "test",
) -> tuple[list[str], dict[str, Any]]:
    """The Markdown table lines and the per-loss counts (clean rows against ``reference``;
    ``unnamed_clean``: a row whose name states no contamination is clean; ``pick``: how each
    row's baseline is chosen, see :func:`best_baselines`)."""
    best = best_baselines(data, pick)
    means = {(e["row"], e["loss"]): e["mean"] for e in data["entries"]}
    pairs = {(c["row"], c["learned"], c["baseline"]): c for c in data["comparisons"]}
    header = ["row", "best tuned baseline", reference, *learned]
    lines = table_head(header)
    counts = {
        name: {"better": 0, "tie": 0, "worse": 0, "other": 0, "noisy_rows": 0,
               "noisy_better": 0, "clean_rows": 0, "clean_worse_than_reference": 0}
        for name in learned
    }  # fmt: skip
    for row in data["rows"]:
        base = best.get(row)
        if base is None:
            continue
        eps = contamination_of(row)
        if eps is None and unnamed_clean:
            eps = 0.0
        cells = [
            row,
            f"{_label(base)} {base['mean']:.4g}",
            _mean(means.get((row, reference), float("nan"))),
        ]
        for name in learned:
            vs_best = pairs.get((row, name, base["loss"]))
            vs_ref = pairs.get((row, name, reference))
            mean = means.get((row, name))
            if vs_best is None:
                cells.append("—")
                continue
            diverged = mean is None  # some test runs ended non-finite at the selected rate
            verdict = "worse" if diverged else str(vs_best["verdict"])
            tally = counts[name]
            key = {"better": "better", "worse": "worse", "no significant difference": "tie"}
            tally[key.get(verdict, "other")] += 1
            if eps is not None and eps > 0:
                tally["noisy_rows"] += 1
                tally["noisy_better"] += verdict == "better"
            if eps == 0:
                tally["clean_rows"] += 1
                tally["clean_worse_than_reference"] += diverged or (
                    vs_ref is not None and vs_ref["verdict"] == "worse"
                )
            if diverged:
                runs = next(
                    e.get("diverged", "?")
                    for e in data["entries"]
                    if e["row"] == row and e["loss"] == name
                )
                cells.append(f"not finite ({runs} of {vs_best['n']} test runs diverged) worse")
                continue
            cell = (
                f"{mean:.4g}, {vs_best['difference']:+.3g} (p {vs_best['p_t']:.2g} / "
                f"{vs_best['p_wilcoxon']:.2g}) {_verdict(vs_best)}"
            )
            if eps == 0 and base["loss"] != reference:
                cell += f"; vs {reference} {_verdict(vs_ref)}"
            cells.append(cell)
        lines.append(table_row(cells))
    return lines, counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="results.json of a metaloss benchmark run")
    parser.add_argument("--learned", nargs="+", default=None, help="learned losses (default: all)")
    parser.add_argument(
        "--reference", default="mse", help="the loss clean rows are held to (mse; ce for labels)"
    )
    parser.add_argument(
        "--unnamed-clean",
        action="store_true",
        help="count rows whose name states no outliers or label noise as clean rows",
    )
    parser.add_argument(
        "--pick",
        choices=["test", "validation"],
        default="test",
        help="each row's baseline: the best on test (the goal's, default) or the one selected "
        "on the meta-train tasks' validation scores (what a user would have picked)",
    )
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
    lines, counts = summarise(data, learned, args.reference, args.unnamed_clean, args.pick)
    which = "best tuned baseline" if args.pick == "test" else "baseline picked on validation"
    print(f"{data.get('metric', 'test metric')}; split {data.get('split')}; "
          f"{data.get('test_tasks')} test tasks x {data.get('seeds')} seed(s) per row; "
          f"difference to the {which} (p paired t / Wilcoxon) and verdict at 5%")  # fmt: skip
    print("\n".join(lines))
    print()
    for name, c in counts.items():
        print(
            f"{name}: vs {which} {c['better']} better / {c['tie']} tied / "
            f"{c['worse']} worse" + (f" / {c['other']} other" if c["other"] else "") + "; "
            f"better in {c['noisy_better']} of {c['noisy_rows']} rows with outliers or noise; "
            f"worse than {args.reference} in {c['clean_worse_than_reference']} of "
            f"{c['clean_rows']} clean rows"
        )
    return 0


def _roles(data: dict[str, Any]) -> dict[str, str]:
    return {e["loss"]: e["role"] for e in data["entries"]}


if __name__ == "__main__":
    sys.exit(main())
