"""The classification shape view: a learned loss against the labelled-class probability, beside
cross-entropy, generalized cross-entropy (Zhang & Sabuncu, NeurIPS 2018) and symmetric
cross-entropy (Wang et al., ICCV 2019).

Named by the classification kind's spec (``CLASSIFICATION_VIEW``), so TensorBoard
(``shape/figure`` and the ``shape/*`` tensors) and ``metaloss inspect`` draw it. The numbers come
from :func:`metaloss.losses.classification.classification_shape`.
"""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from metaloss.losses.baselines import baseline
from metaloss.losses.classification import classification_shape
from metaloss.losses.module import loss_dtype
from metaloss.markdown import markdown_table
from metaloss.plots.base import FIGURE_DPI, ShapeView
from metaloss.typing import PerSampleLoss

__all__ = [
    "CLASSIFICATION_VIEW",
    "REFERENCES",
    "classification_curves",
    "classification_figure",
    "classification_table",
    "describe_classification",
]

Curves = dict[str, Tensor]

REFERENCES = {"CE": ("ce", {}), "GCE (q=0.7)": ("gce", {"q": 0.7}), "SCE": ("sce", {})}
"""Hand-designed losses drawn in grey beside the learned one."""


def classification_curves(loss: PerSampleLoss) -> Curves:
    """Loss and ``d loss / d z_y`` against the labelled-class probability (see
    :func:`~metaloss.losses.classification.classification_shape`)."""
    return classification_shape(loss, dtype=loss_dtype(loss))


def classification_figure(curves: Curves) -> Figure:
    """Two panels against the labelled-class probability ``p_y``: the loss, and its gradient
    w.r.t. the labelled logit (negative: training raises ``p_y``). The learned loss is drawn
    once per reference-batch context when it depends on the batch; CE, GCE and SCE are grey."""
    p = curves["prob"].double().numpy()
    values, grads = curves["value"].double().numpy(), curves["grad"].double().numpy()
    contexts = curves["context"].double().tolist()
    dependent = bool(curves["batch_dependent"].item())
    figure = Figure(figsize=(9.0, 3.8), dpi=FIGURE_DPI, layout="constrained")
    ax_value, ax_grad = figure.subplots(1, 2)
    for i, context in enumerate(contexts if dependent else contexts[:1]):
        label = f"learned, batch mean p_y = {context:g}" if dependent else "learned"
        ax_value.plot(p, values[i], lw=2, label=label)
        ax_grad.plot(p, grads[i], lw=2)
    for (label, (name, params)), style in zip(REFERENCES.items(), ("--", ":", "-."), strict=True):
        ref = classification_shape(baseline(name, **params), contexts=(0.6,), dtype=torch.float64)
        ax_value.plot(p, ref["value"][0].numpy(), style, lw=1.2, color="0.3", label=label)
        ax_grad.plot(p, ref["grad"][0].numpy(), style, lw=1.2, color="0.3")
    ax_value.set_ylim(
        min(0.0, float(np.nanmin(values))) - 0.1,
        max(3.0, float(np.nanmax(values[:, p > 0.05]))) + 0.1,
    )
    ax_value.set(xlabel="probability of the labelled class p_y", ylabel="loss", title="loss")
    ax_grad.set(
        xlabel="probability of the labelled class p_y",
        ylabel="d loss / d z_y",
        title="gradient (labelled logit)",
    )
    for ax in (ax_value, ax_grad):
        ax.axhline(0, color="0.8", lw=0.8, zorder=0)
        ax.grid(alpha=0.3)
    ax_value.legend(fontsize=9, loc="upper right", framealpha=0.9)
    return figure


def describe_classification(loss: PerSampleLoss) -> list[str]:
    """Boundedness at small ``p_y``, where the gradient is largest, and batch dependence."""
    curves = classification_curves(loss)
    p, values, grads = curves["prob"].double(), curves["value"].double(), curves["grad"].double()
    middle = len(curves["context"]) // 2
    v, g = values[middle], grads[middle]
    low, high = float(v[0]), float(v[-1])
    lines = [
        f"loss at p_y = 0.01 / 0.5 / 0.99: {low:.3g} / {float(v[len(v) // 2]):.3g} / {high:.3g} "
        f"(cross-entropy: 4.61 / 0.693 / 0.01)",
        f"largest push on the labelled logit at p_y = {float(p[int(g.argmin())]):.2f} "
        f"(cross-entropy: at p_y -> 0; robust losses such as GCE push hardest at intermediate p_y)",
        f"gradient at p_y = 0.01 relative to its largest magnitude: {float(g[0] / g.abs().max()):+.2f} "
        "(near 0: mislabelled-looking samples are ignored)",
    ]
    if bool(curves["batch_dependent"].item()):
        lines.append(
            "depends on the batch (batch-level features): curves drawn for reference batches with mean "
            "p_y " + ", ".join(f"{c:g}" for c in curves["context"].tolist())
        )
    return lines


TABLE_PROBABILITIES = (0.01, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.95, 0.99)
"""Labelled-class probabilities at which :func:`classification_table` prints the curves."""


def classification_table(curves: Curves) -> str:
    """The loss and ``d loss / d z_y`` at a few labelled-class probabilities (per reference
    batch when the loss depends on the batch), as a Markdown table."""
    p = curves["prob"].double()
    values, grads = curves["value"].double(), curves["grad"].double()
    contexts = curves["context"].tolist()
    dependent = bool(curves["batch_dependent"].item())
    rows_of = list(range(len(contexts))) if dependent else [0]
    header = ["p_y"]
    for i in rows_of:
        name = f" (batch mean p_y {contexts[i]:g})" if dependent else ""
        header += [f"loss{name}", f"d loss / d z_y{name}"]
    rows = []
    for x in TABLE_PROBABILITIES:
        at = int(torch.argmin((p - x).abs()))
        row = [f"{float(p[at]):.3g}"]
        for i in rows_of:
            row += [f"{float(values[i, at]):.4g}", f"{float(grads[i, at]):+.4g}"]
        rows.append(row)
    return markdown_table(header, rows)


CLASSIFICATION_VIEW = ShapeView(
    classification_curves, classification_figure, describe_classification, classification_table
)
"""The classification shape view (named by the classification kind's spec)."""
