"""Atomic, pickle-free checkpoints: a run killed at any moment loses no finished work.

A checkpoint is written to a temporary file and renamed into place, so a reader only ever sees a
complete file. It is loaded with ``torch.load(weights_only=True)``: tensors, numbers, strings,
lists and dicts only, never arbitrary objects.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

__all__ = ["CHECKPOINT_NAME", "load_checkpoint", "save_checkpoint"]

CHECKPOINT_NAME = "checkpoint.pt"
"""The checkpoint's file name in a run folder."""


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (no code is executed)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(
            f"checkpoint: {path} is not a readable metaloss checkpoint ({type(error).__name__})"
        ) from None
    if not isinstance(state, dict) or "step" not in state:
        raise ValueError(f"checkpoint: {path} is not a metaloss checkpoint")
    return state
