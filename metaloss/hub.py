"""Export a learned loss in the Hugging Face layout, so it can be shared on a model hub and
loaded back with :func:`metaloss.load_loss`.

The folder holds three files (no ``huggingface_hub`` dependency; upload it with any client):

* ``model.safetensors`` — the loss file itself (:mod:`metaloss.export`: weights plus the
  metaloss JSON header), so loading it runs the same checks as any loss file and never
  executes code;
* ``config.json`` — the same metadata as plain JSON (architecture, constructor arguments,
  features, the training config and its results), for people and hub pages;
* ``README.md`` — the model card (:func:`metaloss.card.model_card`) under a YAML header with
  ``library_name: metaloss`` and tags.

``load_loss(folder)`` reads ``folder/model.safetensors``; ``config.json`` is informative only.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from metaloss.export import load_loss, read_metadata, save_loss
from metaloss.losses.module import LossModule
from metaloss.zoo import resolve

__all__ = ["CONFIG_NAME", "README_NAME", "WEIGHTS_NAME", "is_pretrained_folder", "save_pretrained"]

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
README_NAME = "README.md"


def _front_matter(kind: str) -> str:
    tags = ["metaloss", "learned-loss", "meta-learning", kind]
    return "---\nlibrary_name: metaloss\ntags:\n" + "".join(f"- {t}\n" for t in tags) + "---\n\n"


def _write_weights(loss: LossModule | str | Path, path: Path) -> None:
    if isinstance(loss, LossModule):
        meta = loss.metadata or {}
        save_loss(loss, path, meta.get("config"), meta.get("extra"))
    else:
        read_metadata(loss)  # validates it as a loss file before anything is copied
        shutil.copyfile(resolve(loss), path)


def save_pretrained(loss: LossModule | str | Path, folder: str | Path) -> Path:
    """Write ``loss`` (a module, a loss file or a zoo name) to ``folder`` in the Hugging Face
    layout and return the folder. The folder must not exist yet (or be empty); it appears
    whole or not at all (written beside it, then renamed).

    Example:
        >>> save_pretrained("runs/sine/loss.safetensors", "hub/sine-loss")  # doctest: +SKIP
        >>> criterion = load_loss("hub/sine-loss")                           # doctest: +SKIP
    """
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise FileExistsError(f"--out: {folder} already exists; choose a new folder")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        _write_weights(loss, staging / WEIGHTS_NAME)
        meta = read_metadata(staging / WEIGHTS_NAME)
        (staging / CONFIG_NAME).write_text(
            json.dumps({"library_name": "metaloss", **meta}, indent=2, sort_keys=True) + "\n"
        )
        card = load_loss(staging / WEIGHTS_NAME).model_card(source=str(folder))
        kind = str(meta.get("task_kind", "loss"))
        (staging / README_NAME).write_text(_front_matter(kind) + card)
        if folder.exists():
            folder.rmdir()
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def is_pretrained_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder in this layout (holds ``model.safetensors``)."""
    path = Path(path)
    return path.is_dir() and (path / WEIGHTS_NAME).is_file()
