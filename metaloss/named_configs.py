"""Configs that ship with the package, resolvable by name (``metaloss train outliers``).

The YAML files live in ``metaloss/configs/`` (package data, so an installed wheel has them);
the clone's ``configs/`` is a link to that folder, so ``configs/outliers.yaml`` and ``outliers``
name the same file there. For configs an existing file wins over a shipped name (a config is
a file users copy and edit in place); for loss names the zoo's rule applies
(:func:`metaloss.zoo.resolve`: a bare zoo name is the zoo entry).
"""

from __future__ import annotations

from pathlib import Path

from metaloss.errors import ConfigError

__all__ = ["CONFIG_DIR", "config_names", "resolve_config"]

CONFIG_DIR = Path(__file__).parent / "configs"
"""Where the shipped configs are (one ``NAME.yaml`` per config)."""


def config_names() -> list[str]:
    """Names of the configs that ship with the package, sorted."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def resolve_config(source: str | Path) -> Path:
    """The file of a config given as a path or a shipped name (``outliers`` or
    ``outliers.yaml``).

    An existing path wins over a shipped name. Anything else raises :class:`ConfigError`
    with one line that lists the shipped names.
    """
    path = Path(source)
    if path.is_file():
        return path
    name = path.name[: -len(".yaml")] if path.name.endswith(".yaml") else path.name
    if str(source) in (name, f"{name}.yaml") and name in config_names():
        return CONFIG_DIR / f"{name}.yaml"
    if path.is_dir():
        raise ConfigError(f"config: {str(source)!r} is a folder, expected a YAML file")
    if name in config_names():
        raise ConfigError(
            f"config: no such file {str(source)!r}; the shipped config of that name is {name!r} "
            f"(metaloss config --list)"
        )
    names = ", ".join(config_names()) or "none installed"
    raise ConfigError(
        f"config: no such file {str(source)!r}, nor a shipped config of that name ({names})"
    )
