"""One error type per class of user input, and the helpers that keep their messages one line.

Every refusal of bad input is an :class:`InputError` whose message is a single line that names
the field, file or folder and says what was expected. The command line (:mod:`metaloss.cli`)
prints it as ``metaloss: error: ...`` (``metaloss: config error: ...`` for configs), so values
quoted from hostile input must be short and printable: :func:`elide` and :func:`printable`.
"""

from __future__ import annotations

import reprlib
from typing import Any

__all__ = [
    "ConfigError",
    "InputError",
    "LossFileError",
    "RunFolderError",
    "TuningStorageError",
    "elide",
    "printable",
]


class InputError(ValueError):
    """Bad user input: a config, a loss file, a run folder or a tuning storage."""


class ConfigError(InputError):
    """A configuration value (YAML file or ``--set`` override) is missing, unknown, of the wrong
    type or out of range."""


class LossFileError(InputError):
    """A file (or zoo name) is not a loadable metaloss loss file."""


class RunFolderError(InputError):
    """An output folder (``--out``) cannot be used: it holds another run or files that are not a
    run, it is not a folder, or ``--resume`` does not match what it holds."""


class TuningStorageError(InputError):
    """A tuning study's storage (``--storage`` URL or journal file) cannot be used."""


_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxstring = 60
_REPR.maxother = 60
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 6
_REPR.maxlong = 40


def elide(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to about ``limit`` characters, in bounded work (a list of a billion
    elements is not traversed), with control characters escaped."""
    text = printable(_REPR.repr(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def printable(text: str, limit: int | None = None) -> str:
    """``text`` with control characters (ANSI escapes, newlines, carriage returns) shown as
    ``\\xNN`` escapes, so it prints as one harmless line; cut to ``limit`` characters."""
    if limit is not None and len(text) > limit:
        text = text[: limit - 3] + "..."
    if text.isprintable():
        return text
    return "".join(
        c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}"
        for c in text
    )
