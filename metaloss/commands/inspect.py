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

from metaloss.atomic import atomic_path
from metaloss.commands.arguments import LOSS_FILE, Command, argument
from metaloss.commands.common import figure_path
from metaloss.errors import printable
from metaloss.export import load_loss, read_metadata
from metaloss.plots import has_shape_view, shape_view
from metaloss.plots.base import FIGURE_DPI, titled

__all__ = ["register", "run", "summary_lines"]


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
    figure_file = figure_path(args.out) if args.out is not None else None  # checked first
    meta = read_metadata(args.loss)
    loss = load_loss(args.loss, reduction="none")
    kind = str(loss.kind)
    view = shape_view(kind) if has_shape_view(kind) else None
    description = view.describe(loss) if view is not None and view.describe else None
    # A file's metadata is untrusted text: no escapes or newlines reach the terminal.
    print(f"{printable(str(args.loss), 200)}:")
    for line in summary_lines(meta, description):
        print(f"  {printable(line, 1000)}")
    if figure_file is None:
        return 0
    if view is None:
        print(
            f"figure: none written (loss kind {printable(kind, 40)!r} has no shape view: text summary only)"
        )
        return 0
    figure_file.parent.mkdir(parents=True, exist_ok=True)
    figure = titled(view.figure(view.curves(loss)), printable(_loss_title(args.loss, meta), 200))
    with atomic_path(figure_file) as tmp:
        figure.savefig(
            tmp, format=figure_file.suffix.lstrip(".").lower(), dpi=max(FIGURE_DPI, figure.dpi)
        )
    print(f"figure: {printable(str(figure_file), 200)}")
    return 0


_FIGURE = argument(
    "--out",
    type=Path,
    default=None,
    help="figure file, e.g. loss.png (.png is added to a name without a suffix; default: no "
    "figure)",
)
register = Command(
    "inspect",
    "draw a learned loss's shape and summarise it (file or zoo name)",
    __doc__,
    run,
    (LOSS_FILE, _FIGURE),
    layout="raw",
).register
