"""Regression data bundled with scikit-learn.

- ``diabetes``: 442 patients, 10 baseline variables (age, sex, body-mass index, blood pressure
  and six blood serum measurements, in their raw units: ``load_diabetes(scaled=False)``); the
  target is a quantitative measure of disease progression one year later (25 to 346, mildly
  right-skewed). Efron, Hastie, Johnstone and Tibshirani, "Least Angle Regression", Ann.
  Statist., 2004.
"""

from __future__ import annotations

import torch

from metaloss.datasets.registry import TabularData, register_regression, source_module

__all__ = ["diabetes"]


def diabetes() -> TabularData:
    """scikit-learn's diabetes data: raw features ``[442, 10]``, disease progression as target."""
    data = source_module("sklearn.datasets", "scikit-learn", "diabetes").load_diabetes(scaled=False)
    return TabularData(
        "diabetes",
        torch.tensor(data.data, dtype=torch.float64),
        torch.tensor(data.target, dtype=torch.float64),
        tuple(data.feature_names),
        "disease progression",
    )


register_regression("diabetes", diabetes)
