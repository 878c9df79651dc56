"""The zoo: learned losses that ship with the package, each made by the project's own commands
(this folder's README lists them with the command that made each).

Rule for names against paths (:data:`ZOO_RULE`, repeated by the error messages): a bare name --
no folder, no ``.safetensors`` suffix -- that is a zoo entry means the zoo entry, even if a file
or folder of that name exists in the current folder; ``./NAME`` is the local file. Anything
else is a path.
"""

from __future__ import annotations

import os
from pathlib import Path

from metaloss.errors import LossFileError, elide

__all__ = ["ZOO_DIR", "ZOO_RULE", "LossFileError", "resolve", "zoo_names"]

ZOO_DIR = Path(__file__).parent
ZOO_RULE = (
    "a bare name that is a zoo entry means the zoo entry; write ./NAME for a file of that name"
)
"""How a loss source is resolved (:func:`resolve`); error messages repeat it."""


def zoo_names() -> list[str]:
    """Names of the losses that ship with the package."""
    return sorted(p.stem for p in ZOO_DIR.glob("*.safetensors"))


def _is_bare_name(source: str) -> bool:
    return (
        not any(sep in source for sep in ("/", os.sep))
        and not source.startswith(".")
        and not source.endswith(".safetensors")
    )


def resolve(source: str | Path) -> Path:
    """The file of a loss given as a zoo name, a path or a Hugging Face-layout folder (its
    ``model.safetensors``, see :mod:`metaloss.hub`). A bare string that is a zoo entry is the
    zoo entry even if a file or folder of that name exists here (:data:`ZOO_RULE`)."""
    if isinstance(source, str) and _is_bare_name(source) and source in zoo_names():
        return ZOO_DIR / f"{source}.safetensors"
    path = Path(source)
    if path.is_dir() and (path / "model.safetensors").is_file():
        return path / "model.safetensors"
    if os.path.lexists(path):
        return path
    names = ", ".join(zoo_names()) or "none installed"
    raise LossFileError(
        f"loss: {elide(str(source), 120)} is neither a file nor a zoo name (zoo: {names}); "
        f"{ZOO_RULE}"
    )
