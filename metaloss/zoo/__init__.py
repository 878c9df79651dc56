"""The zoo: learned losses that ship with the package, each made by the project's own commands
(this folder's README lists them with the command that made each).

Rule for names against paths: a string that names a zoo entry *and* an existing file or folder
is ambiguous; :func:`resolve` takes an existing path first and a zoo name otherwise.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["ZOO_DIR", "LossFileError", "resolve", "zoo_names"]

ZOO_DIR = Path(__file__).parent


class LossFileError(ValueError):
    """A file is not a loadable metaloss loss file (or a name is neither a file nor a zoo
    entry)."""


def zoo_names() -> list[str]:
    """Names of the losses that ship with the package."""
    return sorted(p.stem for p in ZOO_DIR.glob("*.safetensors"))


def resolve(source: str | Path) -> Path:
    """The file of a loss given as a path, a Hugging Face-layout folder (its
    ``model.safetensors``, see :mod:`metaloss.hub`) or a zoo name."""
    path = Path(source)
    if path.is_dir() and (path / "model.safetensors").is_file():
        return path / "model.safetensors"
    if path.exists():
        return path
    if isinstance(source, str) and source in zoo_names():
        return ZOO_DIR / f"{source}.safetensors"
    names = ", ".join(zoo_names()) or "none installed"
    raise LossFileError(f"loss: {str(source)!r} is neither a file nor a zoo name (zoo: {names})")
