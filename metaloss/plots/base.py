"""Loss-shape views: the curves that show what a loss does, a figure drawn from them, and a
short text description, one view per loss kind.

A *shape view* of a kind has three parts, so that TensorBoard, ``metaloss inspect`` and tests
all read the same numbers:

* ``curves(loss)`` evaluates the loss on a fixed grid and returns named tensors (stored in
  TensorBoard as tensors, so scripts can read them back as numbers);
* ``figure(curves)`` draws those tensors, beside the hand-designed baselines of that kind;
* ``describe(loss)`` returns a few lines of text (growth, symmetry, value at zero residual);
* ``table(curves)`` (optional) prints those tensors at a few points as a Markdown table
  (TensorBoard's Text tab shows it: tensors alone are not drawn anywhere in its UI).

Each kind names its view in its :class:`~metaloss.losses.kinds.KindSpec` (``shape_view``, as
``"module:attribute"``); :func:`shape_view` imports it on first use. Regression: value and
``d loss / d pred`` against the residual beside MSE, L1 and Huber (:mod:`metaloss.plots.regression`);
classification: against the labelled-class probability beside CE/GCE/SCE
(:mod:`metaloss.plots.classification`); RL: against the ratio for positive and negative
advantages beside PPO's clip (:mod:`metaloss.rl.shape`).

Figures are plain :class:`matplotlib.figure.Figure` objects rendered with the Agg canvas; pyplot
and its global state are never touched.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from metaloss.losses.kinds import KINDS, known_kinds
from metaloss.typing import PerSampleLoss

__all__ = [
    "FIGURE_DPI",
    "ShapeView",
    "figure_to_array",
    "has_shape_view",
    "shape_view",
    "titled",
]

Curves = dict[str, Tensor]

FIGURE_DPI = 120
"""Resolution of the shape figures (TensorBoard images and ``metaloss inspect``'s files)."""


@dataclass(frozen=True)
class ShapeView:
    """How losses of one kind are evaluated, drawn and described.

    Attributes:
        curves: ``loss -> named tensors`` on a fixed grid (the numbers behind the figure).
        figure: ``curves -> Figure`` drawn from exactly those tensors.
        describe: ``loss -> lines of text`` for ``metaloss inspect`` (``None``: no summary).
        table: ``curves -> Markdown table`` of the curves at a few points, so the numbers are
            readable in TensorBoard's Text tab (``None``: no table).
    """

    curves: Callable[[PerSampleLoss], Curves]
    figure: Callable[[Curves], Figure]
    describe: Callable[[PerSampleLoss], list[str]] | None = None
    table: Callable[[Curves], str] | None = None


def shape_view(kind: str) -> ShapeView:
    """The shape view of losses of ``kind``; ``ValueError`` naming the kinds that have one."""
    spec = KINDS.get(kind)
    if spec is None or spec.shape_view is None:
        known = ", ".join(k for k in known_kinds() if KINDS[k].shape_view)
        raise ValueError(f"loss kind: no shape view for {kind!r} (known: {known})")
    return _resolve(spec.shape_view)


def has_shape_view(kind: str) -> bool:
    """Whether losses of ``kind`` have a shape view."""
    spec = KINDS.get(kind)
    return spec is not None and spec.shape_view is not None


@functools.cache
def _resolve(location: str) -> ShapeView:
    module, _, attribute = location.partition(":")
    view = getattr(importlib.import_module(module), attribute)
    if not isinstance(view, ShapeView):
        raise TypeError(f"{location} is not a ShapeView")  # a bug in a kind's registration
    return view


def titled(figure: Figure, title: str) -> Figure:
    """``figure`` with ``title`` (e.g. the loss's name) above its panels, before any title the
    view gave it (such as the reference batch of a batch-dependent loss)."""
    suptitle = getattr(figure, "_suptitle", None)  # Figure.get_suptitle needs matplotlib 3.8
    existing = suptitle.get_text() if suptitle is not None else ""
    figure.suptitle(f"{title}\n{existing}" if existing else title, fontsize=11)
    return figure


def figure_to_array(figure: Figure) -> np.ndarray:
    """Render ``figure`` with the Agg canvas to an ``[H, W, 3]`` uint8 RGB array."""
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
