"""Classical robust fits: contenders that are not a loss trained by the inner loop but a linear
model fitted to convergence on each task's ``train`` split, as a practitioner would fit one.

They enter the benchmark like a baseline (``benchmark.baselines: [{name: huber_regressor,
param: epsilon, values: [...]}]``; the parameter is selected on the ``outer_valid`` split of
meta-train tasks, never on test) but only on rows whose learner is linear
(``learner.hidden: []``): on those rows they are the model the learned loss's linear learner
competes with; on other rows they are left out of the tables.

Registered here: ``huber_regressor``, scikit-learn's ``HuberRegressor`` (Huber's M-estimator
with a concomitant scale, Owen 2007), parameter ``epsilon`` (the Huber threshold in units of
the jointly estimated scale; default 1.35, 95% efficiency under Gaussian noise).

References:
    Huber, "Robust Estimation of a Location Parameter", Ann. Math. Statist., 1964.
    Owen, "A robust hybrid of lasso and ridge regression", Contemporary Mathematics, 2007.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from metaloss.device import to_device

__all__ = ["FITS", "Fit", "LinearModel", "fit_scores", "huber_regressor", "register_fit"]

LinearModel = tuple[np.ndarray, float]
"""Coefficients ``[d]`` and intercept of a fitted linear model."""

Fit = Callable[..., LinearModel]
"""``fit(x [n, d], y [n], **params) -> (coefficients, intercept)`` (float64 NumPy arrays)."""

FITS: dict[str, Fit] = {}
"""Classical fits by the name used in ``benchmark.baselines``."""


def register_fit(name: str, fit: Fit) -> None:
    """Make ``benchmark.baselines: [{name: NAME}]`` enter ``fit`` on linear-learner rows."""
    FITS[name] = fit


def huber_regressor(x: np.ndarray, y: np.ndarray, epsilon: float = 1.35) -> LinearModel:
    """scikit-learn's ``HuberRegressor`` (tiny ridge ``alpha=1e-4``, up to 1000 L-BFGS
    iterations; a fit that stops at the iteration limit is used as it is)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import HuberRegressor

    model = HuberRegressor(epsilon=epsilon, alpha=1e-4, max_iter=1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, y)
    return model.coef_.astype(np.float64), float(model.intercept_)


def fit_scores(
    fit: Fit,
    params: dict[str, Any],
    tasks: Any,
    record: str,
    objective: Callable[[Tensor, Tensor], Tensor],
) -> Tensor:
    """Fit a model on every stacked task's ``train`` split and score it with ``objective`` on
    the ``record`` split: one mean per task, ``[tasks]``. Identical tasks (the same task under
    several learner seeds) are fitted once. Runs on the CPU (the fits are scikit-learn's), with
    the scores on the CPU."""
    tasks = to_device(tasks, "cpu")
    train, scored = tasks.train, getattr(tasks, record)
    out = torch.empty(train.x.shape[0], dtype=torch.float64)
    cache: dict[bytes, LinearModel] = {}
    for i in range(train.x.shape[0]):
        x = train.x[i].double().numpy()
        y = train.y[i, :, 0].double().numpy()
        key = x.tobytes() + y.tobytes()
        if key not in cache:
            cache[key] = fit(x, y, **params)
        coef, intercept = cache[key]
        xs = scored.x[i].double()
        pred = (xs @ torch.as_tensor(coef) + intercept).unsqueeze(-1)
        out[i] = objective(pred, scored.y[i].double()).mean()
    return out


register_fit("huber_regressor", huber_regressor)
