"""Regression data bundled with statsmodels (``pip install metaloss[data]``; no download).

Each loader picks a target whose distribution is skewed or heavy-tailed, because that is what a
learned robust loss must not mistake for outliers, and the features an analyst would use to
predict it (never a column the target is computed from):

- ``fair``: Fair's 1978 survey of 6366 married women (Redbook, 1974). Target: time spent in
  extramarital affairs (``affairs``; 68% zeros, skewness 8.8, maximum 26 standard deviations
  above the mean). Features: marriage rating, age, years married, children, religiousness,
  education, own and husband's occupation.
- ``macrodata``: US quarterly macro-economic series, 1959Q1-2009Q3 (202 quarters after
  differencing). Target: growth of real personal consumption (annualised percent,
  ``400 * diff(log(realcons))``; left-skewed, excess kurtosis 2). Features: annualised growth of
  real GDP, investment, government spending, disposable income, M1 and population; inflation,
  the T-bill rate and unemployment of the quarter.
- ``statecrime``: the 50 US states and DC, 2009. Target: violent crimes per 100,000 people
  (``violent``; skewness 1.8, DC at 4.5 standard deviations is a real value, not an error).
  Features: high-school graduation, poverty, single-parent households, share white, share
  urban (``murder`` is left out: it is part of the target).
- ``ccard``: credit-card expenditure of 72 card holders (Greene, "Econometric Analysis").
  Target: average monthly expenditure (``AVGEXP``; skewness 3.0). Features: age, income,
  income squared, home ownership.
- ``stackloss``: Brownlee's stack-loss plant data, 21 days of operation. Target: stack loss
  (ammonia lost, ``STACKLOSS``). Features: air flow, cooling-water temperature, acid
  concentration. The classical robust-regression example (its own rows 1, 3, 4 and 21 are
  often flagged as outliers; here they stay, as in the data set).

Four more are kept for *out-of-distribution meta-validation* (choosing checkpoints and candidate
losses on data sets that no transfer table reports):

- ``engel``: Engel's 1857 household budgets, 235 Belgian working-class households. Target: food
  expenditure (skewness 1.7, its spread grows with income). Feature: income.
- ``grunfeld``: Grunfeld's investment data, 11 US firms over 20 years (220 rows). Target: gross
  investment (skewness 3.0). Features: market value and capital stock.
- ``randhie``: the RAND Health Insurance Experiment, 20190 person-years. Target: number of
  outpatient visits (``mdvis``; 31% zeros, skewness 4.8). Features: the 9 other columns
  (coinsurance, deductible, income, family size, health status, ...).
- ``strikes``: 62 strikes in US manufacturing. Target: strike duration in days (skewness 1.6).
  Feature: the industrial production index.

References:
    Fair, "A Theory of Extramarital Affairs", J. Political Economy, 1978.
    Greene, "Econometric Analysis", Prentice Hall (the ccard data).
    Brownlee, "Statistical Theory and Methodology in Science and Engineering", Wiley, 1965.
    Koenker & Bassett, "Robust Tests for Heteroscedasticity Based on Regression Quantiles",
    Econometrica, 1982 (the Engel data).
    Grunfeld, "The Determinants of Corporate Investment", PhD thesis, University of Chicago, 1958.
    Kennan, "The Duration of Contract Strikes in U.S. Manufacturing", J. Econometrics, 1985.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from metaloss.datasets.registry import TabularData, register_regression, source_module

__all__ = [
    "FAIR_FEATURES",
    "VALIDATION",
    "ccard",
    "engel",
    "fair",
    "grunfeld",
    "macrodata",
    "randhie",
    "stackloss",
    "statecrime",
    "strikes",
]

VALIDATION = ("engel", "grunfeld", "randhie", "strikes")
"""Data sets for out-of-distribution meta-validation only (never in a transfer table)."""


def _load(name: str) -> Any:
    """The pandas frame of ``statsmodels.datasets.<name>``."""
    install = "`pip install metaloss[data]` (or `pip install statsmodels`)"
    datasets = source_module("statsmodels.datasets", "statsmodels", name, install)
    return getattr(datasets, name).load_pandas().data


def _table(name: str, frame: Any, features: list[str], target: str) -> TabularData:
    x = torch.tensor(frame[features].to_numpy(dtype=np.float64))
    y = torch.tensor(frame[target].to_numpy(dtype=np.float64))
    return TabularData(name, x, y, tuple(features), target)


FAIR_FEATURES = (
    "rate_marriage",
    "age",
    "yrs_married",
    "children",
    "religious",
    "educ",
    "occupation",
    "occupation_husb",
)
"""The features of statsmodels' ``fair`` survey (the regression and the classification target
share them)."""


def fair() -> TabularData:
    """Time in extramarital affairs (6366 rows, 8 features); see the module docstring."""
    return _table("fair", _load("fair"), list(FAIR_FEATURES), "affairs")


def macrodata() -> TabularData:
    """Real consumption growth (202 quarters, 9 features); see the module docstring."""
    frame = _load("macrodata")
    growth = ["realgdp", "realinv", "realgovt", "realdpi", "m1", "pop"]
    levels = ["infl", "tbilrate", "unemp"]

    def annualised_growth(column: str) -> np.ndarray:
        return 400.0 * np.diff(np.log(frame[column].to_numpy(dtype=np.float64)))

    x = np.column_stack(
        [annualised_growth(c) for c in growth]
        + [frame[c].to_numpy(dtype=np.float64)[1:] for c in levels]
    )
    names = tuple(f"growth of {c}" for c in growth) + tuple(levels)
    return TabularData(
        "macrodata",
        torch.tensor(x),
        torch.tensor(annualised_growth("realcons")),
        names,
        "growth of realcons",
    )


def statecrime() -> TabularData:
    """Violent crime rate of 51 states (5 features); see the module docstring."""
    features = ["hs_grad", "poverty", "single", "white", "urban"]
    return _table("statecrime", _load("statecrime"), features, "violent")


def ccard() -> TabularData:
    """Average credit-card expenditure of 72 holders (4 features); see the module docstring."""
    return _table("ccard", _load("ccard"), ["AGE", "INCOME", "INCOMESQ", "OWNRENT"], "AVGEXP")


def stackloss() -> TabularData:
    """Stack loss of 21 days of plant operation (3 features); see the module docstring."""
    features = ["AIRFLOW", "WATERTEMP", "ACIDCONC"]
    return _table("stackloss", _load("stackloss"), features, "STACKLOSS")


def engel() -> TabularData:
    """Food expenditure of 235 households (1 feature); see the module docstring."""
    return _table("engel", _load("engel"), ["income"], "foodexp")


def grunfeld() -> TabularData:
    """Gross investment of 11 firms over 20 years (2 features); see the module docstring."""
    return _table("grunfeld", _load("grunfeld"), ["value", "capital"], "invest")


def randhie() -> TabularData:
    """Outpatient visits in 20190 person-years (9 features); see the module docstring."""
    features = ["lncoins", "idp", "lpi", "fmde", "physlm", "disea", "hlthg", "hlthf", "hlthp"]
    return _table("randhie", _load("randhie"), features, "mdvis")


def strikes() -> TabularData:
    """Duration of 62 strikes (1 feature); see the module docstring."""
    return _table("strikes", _load("strikes"), ["iprod"], "duration")


for _name, _loader in {
    "fair": fair,
    "macrodata": macrodata,
    "statecrime": statecrime,
    "ccard": ccard,
    "stackloss": stackloss,
    "engel": engel,
    "grunfeld": grunfeld,
    "randhie": randhie,
    "strikes": strikes,
}.items():
    register_regression(_name, _loader)
