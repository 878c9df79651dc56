"""Real data sets that ship inside installed packages (no download), as plain tensors.

Each source module (one per package the data comes from) registers its loaders here with
:func:`register_regression`; a loader returns a :class:`TabularData` with raw, unscaled features
and targets, and says in its docstring which column is the target and why. Task families (e.g.
:mod:`metaloss.tasks.tabular`) split, scale and contaminate them; nothing here is random.

Regression sources: :mod:`metaloss.datasets.sklearn_regression` (diabetes) and
:mod:`metaloss.datasets.statsmodels_regression` (fair, macrodata, statecrime, ccard, stackloss;
needs the optional ``statsmodels`` package, ``pip install metaloss[data]``). Classification
sources (:mod:`metaloss.datasets.classification`: digits, anes96, fair, make_classification) and
the multi-output :mod:`metaloss.datasets.macrodata` are plain loaders read by their task families.
"""

from metaloss.datasets import (  # noqa: F401  (imported to register their loaders)
    sklearn_regression,
    statsmodels_regression,
)
from metaloss.datasets.registry import (
    REGRESSION,
    TabularData,
    load_regression,
    register_regression,
    regression_names,
)

__all__ = [
    "REGRESSION",
    "TabularData",
    "load_regression",
    "register_regression",
    "regression_names",
]
