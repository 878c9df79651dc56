"""The inner-loop learning curves of a meta-training run as one figure: learners on the
meta-validation tasks trained with the learned loss (at the start and at the best step of
meta-training) and with the reference loss, on one axis, so TensorBoard's first screen shows
what meta-training bought (:class:`metaloss.summary.SummaryCallback` writes it as
``best/inner_curves``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure

from metaloss.plots.base import FIGURE_DPI

__all__ = ["inner_curves_figure"]

_STYLES = {
    0: {"lw": 1.5, "ls": "--"},
    1: {"lw": 2.2, "ls": "-"},
    2: {"lw": 1.5, "ls": "-", "color": "0.3"},
}


def inner_curves_figure(curves: Mapping[str, Sequence[float]], ylabel: str, title: str) -> Figure:
    """One line per named curve (values after inner steps ``0..K``), in the order given; the
    last curve is drawn in grey as the reference."""
    figure = Figure(figsize=(6.0, 3.8), dpi=FIGURE_DPI, layout="constrained")
    axis = figure.subplots()
    names = list(curves)
    for i, name in enumerate(names):
        values = list(curves[name])
        style = _STYLES[2] if i == len(names) - 1 and len(names) > 1 else _STYLES[min(i, 1)]
        axis.plot(range(len(values)), values, marker="o", ms=3, label=name, **style)  # type: ignore[arg-type]
    axis.set(xlabel="inner step", ylabel=ylabel, title=title)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=9, framealpha=0.9)
    return figure
