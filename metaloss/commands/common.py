"""Arguments shared by several sub-commands."""

from __future__ import annotations

import argparse

__all__ = ["add_overrides"]


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
