"""``metaloss export``: write a learned loss in the Hugging Face layout (a folder with
``model.safetensors``, ``config.json`` and a README model card), to share it on a model hub.

    metaloss export runs/sine/loss.safetensors --out hub/sine-loss
    metaloss export robust-regression --out hub/robust-regression     # a zoo name

``load_loss("hub/sine-loss")`` loads the folder back (see :mod:`metaloss.hub`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from metaloss.commands.arguments import LOSS_FILE, Command, argument

__all__ = ["register", "run"]


def run(args: argparse.Namespace) -> int:
    from metaloss.hub import CONFIG_NAME, README_NAME, WEIGHTS_NAME, save_pretrained

    folder = save_pretrained(args.loss, args.out)
    print(
        "outputs:\n"
        + "\n".join(f"  {folder / n}" for n in (WEIGHTS_NAME, CONFIG_NAME, README_NAME))
    )
    print(f"load it with: load_loss({str(folder)!r})")
    return 0


register = Command(
    "export",
    "write a loss as a Hugging Face-layout folder (safetensors, config.json, model card)",
    __doc__,
    run,
    (LOSS_FILE, argument("--out", type=Path, required=True, help="the new folder to write")),
    layout="raw",
).register
