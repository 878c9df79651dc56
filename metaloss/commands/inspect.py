"""``metaloss inspect``: draw a saved loss's shape and print a short summary of it.

    metaloss inspect runs/sine/loss.safetensors --out loss.png
    metaloss inspect robust-regression --out loss.png      # a zoo name instead of a file

The figure is the one TensorBoard shows under ``shape/figure`` (for regression: the loss and
``d loss / d pred`` against the residual for several targets, beside MSE, L1 and Huber), titled
with the loss's name, at 120 dpi or more. The summary names the input features and, where the
loss kind has a description, the growth at large residuals (bounded / linear / quadratic), the
symmetry, the value at zero residual, the minimum for each target (a target-dependent loss may
have its minimum away from zero residual) and whether the shape depends on the target. A kind
without a shape view (e.g. ``multitask``) gets the text summary; ``--out`` then writes nothing
and says so.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from metaloss.export import load_loss, read_metadata
from metaloss.plots import has_shape_view, shape_view
from metaloss.plots.base import FIGURE_DPI, titled

__all__ = ["register", "run", "summary_lines"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "inspect",
        help="draw a learned loss's shape and summarise it (file or zoo name)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("loss", help="a loss file (.safetensors) or a zoo name")
    p.add_argument(
        "--out", type=Path, default=None, help="figure path, e.g. loss.png (default: no figure)"
    )
    p.set_defaults(func=run)


def summary_lines(meta: dict[str, Any], description: list[str] | None) -> list[str]:
    """The text ``metaloss inspect`` prints for a loss file's metadata and shape description."""
    arguments = meta.get("arguments", {})
    extra = meta.get("extra") or {}
    config = meta.get("config") or {}
    lines = [
        f"kind: {meta.get('task_kind', arguments.get('kind', '?'))}",
        f"input features: {', '.join(meta.get('features', arguments.get('features', [])))}",
        f"network: hidden {arguments.get('hidden')}, {arguments.get('activation')}, "
        f"output transform {meta.get('output', arguments.get('output'))}",
        f"trained on: {config.get('name', '?')} (task family {(config.get('task') or {}).get('family', '?')}); "
        f"metaloss {meta.get('package_version', '?')}, file format {meta.get('format_version')}",
    ]
    if "best_valid_objective" in extra:
        lines.append(
            f"best meta-validation objective: {extra['best_valid_objective']:.4g} at step {extra.get('best_step')}"
        )
    lines += (
        description if description is not None else ["shape summary: not available for this kind"]
    )
    return lines


def _loss_title(source: str, meta: dict[str, Any]) -> str:
    """The figure's title: the file (as given) or zoo name, and the run it came from."""
    config = meta.get("config") or {}
    name = str(source)
    trained = config.get("name")
    return f"{name} (trained on {trained})" if trained and trained not in name else name


def run(args: argparse.Namespace) -> int:
    meta = read_metadata(args.loss)
    loss = load_loss(args.loss, reduction="none")
    kind = str(loss.kind)
    view = shape_view(kind) if has_shape_view(kind) else None
    description = view.describe(loss) if view is not None and view.describe else None
    print(f"{args.loss}:")
    for line in summary_lines(meta, description):
        print(f"  {line}")
    if args.out is None:
        return 0
    if view is None:
        print(f"figure: none written (loss kind {kind!r} has no shape view: text summary only)")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure = titled(view.figure(view.curves(loss)), _loss_title(args.loss, meta))
    figure.savefig(args.out, dpi=max(FIGURE_DPI, figure.dpi))
    print(f"figure: {args.out}")
    return 0
