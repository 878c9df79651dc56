"""The regression shape view: a loss and its gradient w.r.t. the prediction against the residual,
for several targets, beside MSE, L1 and Huber (as the loss plots of Bechtle et al., "Meta Learning
via Learned Loss", ICPR 2020), and a text summary (growth at large residuals, influence, symmetry,
value at zero residual). The numbers come from
:func:`metaloss.losses.regression.regression_curves`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from metaloss.losses.baselines import baseline
from metaloss.losses.module import loss_dtype
from metaloss.losses.regression import (
    evaluate_in_batch,
    regression_curves,
)
from metaloss.markdown import markdown_table
from metaloss.plots.base import FIGURE_DPI, ShapeView
from metaloss.typing import PerSampleLoss

__all__ = [
    "REGRESSION_BASELINES",
    "REGRESSION_VIEW",
    "describe_regression",
    "growth_exponent",
    "regression_figure",
    "regression_table",
]

Curves = dict[str, torch.Tensor]

REGRESSION_BASELINES = {"MSE": "mse", "L1": "l1", "Huber (δ=1)": "huber"}
"""Hand-designed losses drawn in grey beside the learned one."""


def _robust_limits(arrays: list[np.ndarray], floor: float) -> tuple[float, float]:
    finite = np.concatenate([a[np.isfinite(a)].ravel() for a in arrays] or [np.zeros(1)])
    low = min(float(finite.min()) if finite.size else 0.0, 0.0)
    high = max(float(finite.max()) if finite.size else 0.0, floor)
    pad = 0.08 * (high - low)
    return low - pad, high + pad


def regression_figure(curves: Curves) -> Figure:
    """Two panels: the loss and its gradient w.r.t. the prediction against the residual (for a
    weight-form loss: the loss it descends, see :func:`weight_form_potential`).

    The learned loss is drawn for each target (solid; one curve if it ignores the target); MSE,
    L1 and Huber are grey (dashed, dotted, dash-dotted). The y-range fits the learned loss, L1
    and Huber, so MSE leaves the panel at large residuals instead of flattening the learned
    curves. A batch-dependent loss gets a title naming its reference batch's scale.
    """
    r = curves["residual"].double()
    targets = curves["target"].double()
    values = curves["value"].double().numpy()
    grads = curves["grad"].double().numpy()
    refs = {}
    for label, name in REGRESSION_BASELINES.items():
        pred = r.clone().requires_grad_()
        value = baseline(name)(pred, torch.zeros_like(r))
        (grad,) = torch.autograd.grad(value.sum(), pred)
        refs[label] = (value.detach().numpy(), grad.numpy())

    figure = Figure(figsize=(9.0, 3.8), dpi=FIGURE_DPI, layout="constrained")
    ax_value, ax_grad = figure.subplots(1, 2)
    x = r.numpy()
    same = np.allclose(values, values[:1], rtol=1e-5, atol=1e-7)  # no dependence on the target
    weight_form = "weight_form" in curves and bool(curves["weight_form"].item())
    form = ", weight form, mean w(0) = 1" if weight_form else ""
    for i, t in enumerate(targets.tolist()[:1] if same else targets.tolist()):
        label = f"learned (any target{form})" if same else f"learned, target {t:g}{form}"
        ax_value.plot(x, values[i], lw=2, label=label)
        ax_grad.plot(x, grads[i], lw=2)
    for (label, (ref_value, ref_grad)), style in zip(refs.items(), ("--", ":", "-."), strict=True):
        ax_value.plot(x, ref_value, style, lw=1.2, color="0.3", label=label)
        ax_grad.plot(x, ref_grad, style, lw=1.2, color="0.3")
    l1_huber = [refs["L1"][0], refs["Huber (δ=1)"][0]]
    ax_value.set_ylim(*_robust_limits([values, *l1_huber], 1.0))
    ax_grad.set_ylim(*_robust_limits([grads, -np.abs(grads), np.ones(1), -np.ones(1)], 1.0))
    title = "loss descended: ∫ 2 w(r) r dr" if weight_form else "loss"
    ax_value.set(xlabel="residual (pred - target)", ylabel="loss", title=title)
    ax_grad.set(xlabel="residual (pred - target)", ylabel="d loss / d pred", title="gradient")
    for ax in (ax_value, ax_grad):
        ax.axhline(0, color="0.8", lw=0.8, zorder=0)
        ax.axvline(0, color="0.8", lw=0.8, zorder=0)
        ax.grid(alpha=0.3)
    ax_value.legend(fontsize=9, loc="upper center", framealpha=0.9)
    dependent = curves.get("batch_dependent")
    if dependent is not None and bool(dependent.item()):
        scale = float(curves["context_scale"].item())
        figure.suptitle(
            f"one sample in a batch with median |residual| = {scale:g} and target MAD 1",
            fontsize=9,
        )
    return figure


def growth_exponent(
    loss: PerSampleLoss, near: float = 2.5, far: float = 5.0, sign: float = 1.0, target: float = 0.0
) -> float:
    """Log-log slope of ``loss(target + r) - loss(target)`` between ``|r| = near`` and ``far``
    (each evaluated in the reference batch of :func:`evaluate_in_batch`).

    About 0 for a bounded loss, 1 for linear growth (L1, Huber), 2 for quadratic growth (MSE);
    negative when the loss falls again at large residuals (redescending).
    """
    dtype = loss_dtype(loss)
    t = torch.full((3, 1), float(target), dtype=dtype)
    pred = t + torch.tensor([[0.0], [sign * near], [sign * far]], dtype=dtype)
    values = evaluate_in_batch(loss, pred, t)[0].double().flatten()
    return _log_log_slope(float(values[1] - values[0]), float(values[2] - values[0]), near, far)


def _log_log_slope(rise_near: float, rise_far: float, near: float, far: float) -> float:
    """Slope of ``log rise`` against ``log |r|`` between ``near`` and ``far``; ``-inf`` when the
    loss falls again (redescending), 0 when it does not rise at all."""
    if rise_near <= 0 or rise_far <= 0:
        return float("-inf") if rise_far < rise_near else 0.0
    return math.log(rise_far / rise_near) / math.log(far / near)


def _growth_word(exponent: float) -> str:
    bands = [
        (0.35, "bounded"),
        (0.75, "sub-linear"),
        (1.3, "linear"),
        (1.7, "between linear and quadratic"),
        (2.5, "quadratic"),
    ]
    return next((word for limit, word in bands if exponent < limit), "faster than quadratic")


def _influence_line(r: Tensor, grad: Tensor) -> str:
    """How much pull the largest residuals keep, relative to the strongest pull on their side."""
    ratios = []
    for side in (r > 0, r < 0):
        peak = float(grad[side].abs().max())
        edge = float(grad[side][-1 if bool(side[-1]) else 0].abs())
        ratios.append(edge / peak if peak > 0 else float("nan"))
    redescending = max(ratios) < 0.3
    words = (
        "redescending: the largest residuals are down-weighted"
        if redescending
        else "not redescending"
    )
    return (
        f"influence at |r| = 5 (|grad| / its peak on that side, target 0): {ratios[0]:.2f} "
        f"(pred > target), {ratios[1]:.2f} (pred < target); {words}"
    )


TARGET_DEPENDENCE = 0.05
"""Spread across targets (share of the largest value) above which a shape depends on the target."""


def _minimum_lines(r: Tensor, targets: Tensor, values: Tensor) -> list[str]:
    """Where the loss is lowest for each target. A loss whose minimum is not at zero residual
    pulls predictions to that residual instead of to the target."""
    step = float(r[1] - r[0])
    negligible = 1e-6 * float(values.abs().max())  # rounding error, shown as 0
    parts, off = [], []
    for t, row in zip(targets.tolist(), values, strict=True):
        at = int(torch.argmin(row))
        where, lowest = float(r[at]), float(row[at])
        where_text = "0" if abs(where) < step / 2 else f"{where:+.2g}"
        lowest = 0.0 if abs(lowest) <= negligible else lowest
        parts.append(f"target {t:g}: {lowest:.3g} at residual {where_text}")
        if abs(float(r[at])) > 1.5 * step:
            off.append(f"{t:g}")
    lines = [f"minimum per target (residuals in [-5, 5]): {'; '.join(parts)}"]
    if off:
        lines.append(
            f"the minimum is away from zero residual for target(s) {', '.join(off)}: training "
            "with this loss pulls those predictions off the target, towards the minimum"
        )
    return lines


def describe_regression(loss: PerSampleLoss) -> list[str]:
    """Growth at large residuals, symmetry, the value at zero residual, the minimum for each
    target and whether the shape depends on the target, as text lines."""
    curves = regression_curves(loss)
    r, values = curves["residual"], curves["value"].double()
    lines = []
    for side, sign in (("pred > target", 1.0), ("pred < target", -1.0)):
        exponent = (
            _curve_growth(r, values[1], sign)
            if bool(curves["weight_form"].item())
            else growth_exponent(loss, sign=sign)
        )
        lines.append(
            f"growth at large residuals (target 0, {side}, |r| 2.5 -> 5): {_growth_word(exponent)} (log-log slope {exponent:+.2f})"
        )
    lines.append(_influence_line(r, curves["grad"][1].double()))
    mirrored = values.flip(-1)  # r is symmetric around 0, so flip gives loss(-r)
    norm = values.abs().mean() + mirrored.abs().mean() + 1e-12
    asymmetry = float((values - mirrored).abs().mean() / norm * 2)
    word = "symmetric" if asymmetry < 0.05 else "asymmetric"
    lines.append(
        f"symmetry in the residual: {word} (mean |L(r) - L(-r)| / mean |L| = {asymmetry:.3f})"
    )
    zero = int(torch.argmin(r.abs()))
    at_zero = ", ".join(f"{v:.3g}" for v in values[:, zero].tolist())
    targets = ", ".join(f"{t:g}" for t in curves["target"].tolist())
    lines.append(f"value at zero residual (targets {targets}): {at_zero}")
    lines += _minimum_lines(r, curves["target"], values)
    spread = float((values - values.mean(0)).abs().max() / (values.abs().max() + 1e-12))
    if spread > TARGET_DEPENDENCE:
        lines.append(
            f"dependence on the target: the shape depends on the target (max spread across "
            f"targets {spread:.1%} of the largest value); the growth and influence lines are "
            "for target 0, the symmetry line for all targets, the figure draws one curve per target"
        )
    else:
        lines.append(
            f"dependence on the target: none to speak of (max spread across targets "
            f"{spread:.1%} of the largest value)"
        )
    if bool(curves["batch_dependent"].item()):
        context = float(curves["context_scale"].item())
        lines.append(
            "depends on the batch (batch-level features): figures and numbers are for one sample "
            f"in a batch whose median |residual| is {context:g}"
        )
    if bool(curves["weight_form"].item()):
        lines.append(
            "form 'weight': the loss is w * r^2 with w not differentiated (IRLS); the curves and "
            "numbers above are for the loss it descends, integral of 2 w(r) r, scaled to mean w(0) = 1 "
            "over the targets (one factor for all: their relative weights are kept)"
        )
    return lines


def _curve_growth(
    r: Tensor, values: Tensor, sign: float, near: float = 2.5, far: float = 5.0
) -> float:
    """:func:`growth_exponent` read off a curve sampled on the grid ``r`` (target 0)."""

    def at(x: float) -> float:
        return float(values[int(torch.argmin((r - x).abs()))])

    zero = at(0.0)
    return _log_log_slope(at(sign * near) - zero, at(sign * far) - zero, near, far)


TABLE_RESIDUALS = (-5.0, -3.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 3.0, 5.0)
"""Residuals at which :func:`regression_table` prints the curves."""


def regression_table(curves: Curves) -> str:
    """The loss and ``d loss / d pred`` at a few residuals, per target (one pair of columns if
    the loss ignores the target), as a Markdown table."""
    r = curves["residual"].double()
    values, grads = curves["value"].double(), curves["grad"].double()
    targets = curves["target"].tolist()
    same = bool(torch.allclose(values, values[:1], rtol=1e-5, atol=1e-7))
    rows_of = [0] if same else list(range(len(targets)))
    header = ["residual"]
    for i in rows_of:
        name = "any target" if same else f"target {targets[i]:g}"
        header += [f"loss ({name})", f"d loss / d pred ({name})"]
    rows = []
    for x in TABLE_RESIDUALS:
        at = int(torch.argmin((r - x).abs()))
        row = ["0" if x == 0 else f"{x:+g}"]
        for i in rows_of:
            row += [f"{float(values[i, at]):.4g}", f"{float(grads[i, at]):+.4g}"]
        rows.append(row)
    note = (
        " (the loss it descends: weight form, mean w(0) = 1)"
        if bool(curves["weight_form"].item())
        else ""
    )
    return markdown_table(header, rows) + f"\n\nValues on the figure's grid{note}."


REGRESSION_VIEW = ShapeView(
    regression_curves, regression_figure, describe_regression, regression_table
)
"""The regression shape view (named by the regression kind's spec)."""
