"""The command line declared as data: each sub-command is a :class:`Command` (name, help, run
function, arguments), and the arguments several commands share are defined once here.

A command module ends with ``register = Command(...).register``; ``metaloss.cli`` calls it with
the sub-parsers (argparse's ``add_parser`` and ``add_argument`` are only called here).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "LOSS_FILE",
    "PREVIEW_OVERRIDES",
    "RESUME",
    "Argument",
    "Command",
    "argument",
    "config_argument",
    "config_epilog",
    "losses_option",
    "out_option",
    "overrides_option",
    "switch",
]


@dataclass(frozen=True)
class Argument:
    """One ``add_argument`` call: the flags (or the positional's name) and its keywords."""

    flags: tuple[str, ...]
    keywords: Mapping[str, Any] = field(default_factory=dict)

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        """Add this argument to ``parser``."""
        parser.add_argument(*self.flags, **self.keywords)


def argument(*flags: str, **keywords: Any) -> Argument:
    """An :class:`Argument` written as the ``add_argument`` call it stands for."""
    return Argument(flags, keywords)


def switch(flag: str, help: str) -> Argument:
    """An on/off flag (``store_true``)."""
    return argument(flag, action="store_true", help=help)


DEFAULT_JOB = "sine"
"""The shipped config a command runs when its optional ``config`` is left out (the README's
default job, ``configs/sine.yaml``)."""


def config_argument(help: str, optional: bool = False) -> Argument:
    """The positional ``config`` (a config file or shipped name); ``optional``: it may be left
    out (then the shipped :data:`DEFAULT_JOB` config)."""
    if optional:
        return argument("config", nargs="?", default=DEFAULT_JOB, help=help)
    return argument("config", help=help)


def losses_option(help: str) -> Argument:
    """``--loss FILE|ZOO_NAME ...``: the learned losses (or objectives) to benchmark."""
    return argument("--loss", nargs="+", default=None, metavar="FILE|ZOO_NAME", help=help)


def _set_option(help: str) -> Argument:
    return argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help
    )


def overrides_option(example: str = "outer.steps=50") -> Argument:
    """``--set KEY=VALUE`` (repeatable), collected in ``args.overrides`` and validated with the
    config, so a wrong key, type or range ends in one line naming the field."""
    return _set_option(f"override a setting, e.g. --set {example} (repeatable)")


def _folder_argument(text: str) -> Path:
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a folder path, got {text!r}")
    if "\0" in text:
        raise argparse.ArgumentTypeError("expected a folder path, got a path with a NUL byte")
    return Path(text)


def out_option(what: str) -> Argument:
    """``--out DIR`` (default: a new folder under ``runs/``); an empty path is refused."""
    return argument(
        "--out",
        type=_folder_argument,
        default=None,
        metavar="DIR",
        help=f"{what} (default: a new folder runs/<name>__<command>__<seed>__<time>; an "
        "existing folder is used only if it is empty or, with --resume, holds this run)",
    )


RESUME = switch("--resume", "continue the run folder's checkpoint")
"""``--resume``: continue a run folder's checkpoint (the meta-training commands)."""
LOSS_FILE = argument("loss", help="a loss file (.safetensors) or a zoo name")
"""The positional ``loss`` of the commands that read one loss file."""
PREVIEW_OVERRIDES = _set_option("apply an override first, as train/benchmark/tune do (repeatable)")
"""``--set`` of ``metaloss config``, which shows the settings an override would give."""


def config_epilog() -> str:
    """The paragraph every command that reads a config ends its ``--help`` with."""
    from metaloss.config_docs import section_docs

    parts = [name if doc in ("", name) else f"{name} ({doc})" for name, doc in section_docs()]
    return (
        "config sections: "
        + ", ".join(parts)
        + ". Every setting with its value, default, range and documentation: "
        "`metaloss config CONFIG_OR_NAME`; shipped configs: `metaloss config --list`."
    )


@dataclass(frozen=True)
class Command:
    """A sub-command: its name, one-line ``help``, its module docstring as ``description``, the
    function that runs it and its arguments in the order ``--help`` lists them.

    ``layout="settings"`` (commands that run a config) ends ``--help`` with the config sections
    (:func:`config_epilog`); ``"raw"`` keeps the description's own line breaks instead.
    """

    name: str
    help: str
    description: str | None
    run: Callable[[argparse.Namespace], int]
    arguments: tuple[Argument, ...]
    layout: Literal["settings", "raw"] = "settings"

    def register(self, subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
        """Add the command's parser to ``subparsers`` (``args.func`` is its run function)."""
        if self.layout == "settings":
            extra: dict[str, Any] = {"epilog": config_epilog()}
        else:
            extra = {"formatter_class": argparse.RawDescriptionHelpFormatter}
        parser = subparsers.add_parser(
            self.name, help=self.help, description=self.description, **extra
        )
        for arg in self.arguments:
            arg.add_to(parser)
        parser.set_defaults(func=self.run)
