"""``metaloss export``: write a learned loss in the Hugging Face layout (a folder with
``model.safetensors``, ``config.json`` and a README model card), to share it on a model hub.

    metaloss export runs/sine/loss.safetensors --out hub/sine-loss
    metaloss export robust-regression --out hub/robust-regression     # a zoo name

``load_loss("hub/sine-loss")`` loads the folder back (see :mod:`metaloss.hub`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "export",
        help="write a loss as a Hugging Face-layout folder (safetensors, config.json, model card)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("loss", help="a loss file (.safetensors) or a zoo name")
    p.add_argument("--out", type=Path, required=True, help="the new folder to write")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from metaloss.hub import CONFIG_NAME, README_NAME, WEIGHTS_NAME, save_pretrained

    folder = save_pretrained(args.loss, args.out)
    print(
        "outputs:\n"
        + "\n".join(f"  {folder / n}" for n in (WEIGHTS_NAME, CONFIG_NAME, README_NAME))
    )
    print(f"load it with: load_loss({str(folder)!r})")
    return 0
