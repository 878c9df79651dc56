"""The registry of bundled data sets: :class:`TabularData` and the loaders by name (the source
modules register theirs here; :mod:`metaloss.datasets` imports them)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

from torch import Tensor

__all__ = [
    "REGRESSION",
    "TabularData",
    "load_regression",
    "register_regression",
    "regression_names",
    "source_module",
]


@dataclass(frozen=True)
class TabularData:
    """A table of ``n`` rows: raw features ``x`` ``[n, d]`` and raw targets ``y`` ``[n]``
    (float64, in the data set's own units), with the names of the columns they came from."""

    name: str
    x: Tensor
    y: Tensor
    features: tuple[str, ...]
    target: str

    def __post_init__(self) -> None:
        if self.x.dim() != 2 or self.y.dim() != 1 or self.x.shape[0] != self.y.shape[0]:
            raise ValueError(
                f"{self.name}: expected x [n, d] and y [n], got {tuple(self.x.shape)} and "
                f"{tuple(self.y.shape)}"
            )
        if self.x.shape[1] != len(self.features):
            raise ValueError(
                f"{self.name}: expected {self.x.shape[1]} feature names, got {len(self.features)}"
            )

    @property
    def rows(self) -> int:
        return int(self.y.shape[0])


REGRESSION: dict[str, Callable[[], TabularData]] = {}
"""Regression data sets by name: ``REGRESSION[name]() -> TabularData`` (filled by the source
modules, which :mod:`metaloss.datasets` imports)."""


def register_regression(name: str, loader: Callable[[], TabularData]) -> None:
    """Make ``load_regression(name)`` call ``loader``."""
    REGRESSION[name] = loader


def regression_names() -> list[str]:
    """The registered regression data sets, sorted."""
    return sorted(REGRESSION)


def load_regression(name: str) -> TabularData:
    """The regression data set called ``name`` (see :func:`regression_names`)."""
    if name not in REGRESSION:
        raise ValueError(f"dataset: expected one of {', '.join(regression_names())}, got {name!r}")
    return REGRESSION[name]()


def source_module(module: str, package: str, dataset: str, install: str = "") -> ModuleType:
    """The module ``module`` of the installed ``package`` that data set ``dataset`` comes from,
    or an ``ImportError`` naming both and the command that installs the package (``install``;
    default ``pip install <package>``)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        install = install or f"`pip install {package}`"
        raise ImportError(f"dataset {dataset}: {package} is not installed; run {install}") from None
