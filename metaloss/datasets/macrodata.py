"""A real multi-output regression problem bundled with statsmodels: US macroeconomic quarters
1959-2009 (``statsmodels.datasets.macrodata``, 203 quarters; no download).

:func:`load_macrodata` returns, for every quarter ``t`` with a previous and a next quarter, the
inputs ``[n, 24]`` (the 12 series at ``t`` and their change from ``t-1``, raw units) and the
candidate heads ``[n, 6]``, next-quarter quantities in their **raw units**, which differ by three
orders of magnitude in scale:

| head | what | units |
|---|---|---|
| ``d_realgdp`` | change of real GDP from ``t`` to ``t+1`` | billions of 2005 dollars |
| ``d_realcons`` | change of real personal consumption | billions of 2005 dollars |
| ``d_realinv`` | change of real private investment | billions of 2005 dollars |
| ``unemp`` | unemployment rate at ``t+1`` | percent |
| ``infl`` | inflation at ``t+1`` | percent per year |
| ``tbilrate`` | 3-month treasury bill rate at ``t+1`` | percent |

Reference: the data's source is the Federal Reserve Bank of St. Louis and the US Bureau of
Economic Analysis and Bureau of Labor Statistics, as packaged by statsmodels.
"""

from __future__ import annotations

from functools import cache

import torch
from torch import Tensor

from metaloss.datasets.registry import source_module

__all__ = ["MACRO_HEADS", "MACRO_SERIES", "load_macrodata"]

MACRO_SERIES = (
    "realgdp",
    "realcons",
    "realinv",
    "realgovt",
    "realdpi",
    "cpi",
    "m1",
    "tbilrate",
    "unemp",
    "pop",
    "infl",
    "realint",
)
"""The input series (each at quarter t and as its change from t-1)."""

MACRO_HEADS = ("d_realgdp", "d_realcons", "d_realinv", "unemp", "infl", "tbilrate")
"""Candidate heads, next-quarter quantities in raw units."""


@cache
def load_macrodata() -> tuple[Tensor, Tensor]:
    """Inputs ``[201, 24]`` and the six heads ``[201, 6]`` (float32, raw units; cached)."""
    macrodata = source_module("statsmodels.datasets.macrodata", "statsmodels", "macrodata")
    frame = macrodata.load_pandas().data
    series = torch.tensor(frame[list(MACRO_SERIES)].to_numpy(), dtype=torch.float32)
    now, before, after = series[1:-1], series[:-2], series[2:]
    x = torch.cat([now, now - before], dim=1)
    column = {name: i for i, name in enumerate(MACRO_SERIES)}
    heads = [
        after[:, column["realgdp"]] - now[:, column["realgdp"]],
        after[:, column["realcons"]] - now[:, column["realcons"]],
        after[:, column["realinv"]] - now[:, column["realinv"]],
        after[:, column["unemp"]],
        after[:, column["infl"]],
        after[:, column["tbilrate"]],
    ]
    return x, torch.stack(heads, dim=1)
