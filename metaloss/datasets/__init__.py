"""Real data sets that ship inside installed packages (no download), as plain tensors.

Each source module (one per package the data comes from) registers its loaders here with
:func:`register_regression`; a loader returns a :class:`TabularData` with raw, unscaled features
and targets, and says in its docstring which column is the target and why. Task families (e.g.
:mod:`metaloss.tasks.tabular`) split, scale and contaminate them; nothing here is random.

Regression sources: :mod:`metaloss.datasets.sklearn_regression` (diabetes) and
:mod:`metaloss.datasets.statsmodels_regression` (fair, macrodata, statecrime, ccard, stackloss;
needs the optional ``statsmodels`` package, ``pip install metaloss[data]``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

__all__ = [
    "REGRESSION",
    "TabularData",
    "load_regression",
    "register_regression",
    "regression_names",
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
modules imported at the bottom of this file)."""


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


# Importing a source module registers its loaders (imports for their effect).
from metaloss.datasets import sklearn_regression as _sklearn_regression  # noqa: E402, F401
from metaloss.datasets import statsmodels_regression as _statsmodels_regression  # noqa: E402, F401
