"""Classification data sets bundled with scikit-learn and statsmodels (no download).

Each loader returns ``(x, y)``: float32 features ``[n, d]`` (raw units; families standardise
them with the statistics of the rows they may train on) and integer labels ``[n]`` in
``0..C-1``.

- ``digits``: scikit-learn's 8x8 digits, all 10 classes (1,797 images, pixels 0..16).
- ``anes96``: statsmodels' 1996 American National Election Study (944 respondents): party
  identification ``PID`` (7 classes, strong Democrat .. strong Republican) from log population,
  TV news per week, self-placement and placements of Clinton and Dole on the left-right scale,
  age, education, income and expected vote. The raw population is left out (its log is in).
- ``fair``: statsmodels' affairs survey (Fair, 1978; 6,366 women): binary, ``affairs > 0``,
  from marriage rating, age, years married, children, religiousness, education and the two
  occupation codes.
- ``make_classification``: scikit-learn's generator (Guyon, 2003), 4 classes, 20 features of which
  8 informative, 2 clusters per class, 2,000 samples, drawn from a fixed seed so that the data
  set is the same everywhere.

Out-of-distribution *meta-validation* data sets (choosing checkpoints and candidate losses; no
transfer test row uses them): scikit-learn's ``wine`` (178 wines, 3 cultivars, 13 chemical
measurements), ``breast_cancer`` (569 tumours, benign / malignant, 30 features) and ``iris``
(150 flowers, 3 species, 4 measurements).

References:
    Fair, "A Theory of Extramarital Affairs", Journal of Political Economy, 1978.
    Rosenstone, Kinder and Miller, American National Election Study 1996.
    Guyon, "Design of experiments for the NIPS 2003 variable selection benchmark", 2003.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from types import ModuleType
from typing import Any

import torch
from torch import Tensor

from metaloss.datasets.registry import source_module
from metaloss.datasets.statsmodels_regression import FAIR_FEATURES

__all__ = ["CLASSIFICATION_DATASETS", "load_classification"]

_ANES_FEATURES = (
    "logpopul",
    "TVnews",
    "selfLR",
    "ClinLR",
    "DoleLR",
    "age",
    "educ",
    "income",
    "vote",
)
_GENERATOR_SEED = 12


def _sklearn(name: str) -> ModuleType:
    return source_module("sklearn.datasets", "scikit-learn", name)


def _statsmodels(name: str) -> Any:
    return getattr(source_module("statsmodels.datasets", "statsmodels", name), name)


def _digits() -> tuple[Tensor, Tensor]:
    data = _sklearn("digits").load_digits()
    return torch.tensor(data.data, dtype=torch.float32), torch.tensor(data.target)


def _anes96() -> tuple[Tensor, Tensor]:
    frame = _statsmodels("anes96").load_pandas().data
    x = torch.tensor(frame[list(_ANES_FEATURES)].to_numpy(), dtype=torch.float32)
    return x, torch.tensor(frame["PID"].to_numpy()).long()


def _fair() -> tuple[Tensor, Tensor]:
    frame = _statsmodels("fair").load_pandas().data
    x = torch.tensor(frame[list(FAIR_FEATURES)].to_numpy(), dtype=torch.float32)
    return x, torch.tensor((frame["affairs"] > 0).to_numpy()).long()


def _make_classification() -> tuple[Tensor, Tensor]:
    x, y = _sklearn("make_classification").make_classification(
        n_samples=2000,
        n_features=20,
        n_informative=8,
        n_redundant=4,
        n_classes=4,
        n_clusters_per_class=2,
        random_state=_GENERATOR_SEED,
    )
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y).long()


def _sklearn_bundled(loader: str) -> Callable[[], tuple[Tensor, Tensor]]:
    def load() -> tuple[Tensor, Tensor]:
        data = getattr(_sklearn(loader), loader)()
        return torch.tensor(data.data, dtype=torch.float32), torch.tensor(data.target).long()

    return load


CLASSIFICATION_DATASETS: dict[str, Callable[[], tuple[Tensor, Tensor]]] = {
    "digits": _digits,
    "anes96": _anes96,
    "fair": _fair,
    "make_classification": _make_classification,
    "wine": _sklearn_bundled("load_wine"),
    "breast_cancer": _sklearn_bundled("load_breast_cancer"),
    "iris": _sklearn_bundled("load_iris"),
}
"""Loader of every bundled classification data set, by name."""


@cache
def load_classification(name: str) -> tuple[Tensor, Tensor]:
    """Features ``[n, d]`` and labels ``[n]`` of the data set ``name`` (cached; do not modify)."""
    if name not in CLASSIFICATION_DATASETS:
        raise ValueError(
            f"dataset: expected one of {', '.join(CLASSIFICATION_DATASETS)}, got {name!r}"
        )
    return CLASSIFICATION_DATASETS[name]()
