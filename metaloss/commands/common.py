"""Arguments shared by several sub-commands."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from metaloss.config import RunConfig, to_dict
from metaloss.outer.trainer import CHECKPOINT_NAME

__all__ = ["add_overrides", "prepare_run_folder"]


def add_overrides(parser: argparse.ArgumentParser, example: str = "outer.steps=50") -> None:
    """``--set KEY=VALUE`` (repeatable), collected in ``args.overrides`` and validated with the
    config, so a wrong key, type or range ends in one line naming the field."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a setting, e.g. --set {example} (repeatable)",
    )


def prepare_run_folder(out: Path | None, config: RunConfig, resume: bool) -> Path:
    """The run folder (default ``runs/<name>``), created, with the resolved ``config.yaml``.

    A folder that already holds a checkpoint is refused in one line unless ``resume`` is set,
    so a finished or running run is never overwritten by accident.
    """
    folder = out or Path("runs") / config.name
    if (folder / CHECKPOINT_NAME).exists() and not resume:
        raise FileExistsError(
            f"--out: {folder} already holds a run; pass --resume to continue it, or choose another folder"
        )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
    return folder
