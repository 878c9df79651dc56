"""Loss-shape views: the curves that show what a loss does, a figure drawn from them, and a
short text description, dispatched on the loss kind.

A *shape view* of a kind has three parts, so that TensorBoard, ``metaloss inspect`` and tests
all read the same numbers:

* ``curves(loss)`` evaluates the loss on a fixed grid and returns named tensors (stored in
  TensorBoard as tensors, so scripts can read them back as numbers);
* ``figure(curves)`` draws those tensors, beside the hand-designed baselines of that kind;
* ``describe(loss)`` returns a few lines of text (growth, symmetry, value at zero residual).

Regression is registered here: value and ``d loss / d pred`` against the residual for several
targets, beside MSE, L1 and Huber (as the loss plots of Bechtle et al., "Meta Learning via
Learned Loss", ICPR 2020). Other families add their own view with :func:`register_shape_view`
(classification: against the labelled-class probability beside CE/GCE; RL: against the ratio
for positive and negative advantages beside PPO's clip).

Figures are plain :class:`matplotlib.figure.Figure` objects rendered with the Agg canvas; pyplot
and its global state are never touched.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from metaloss.losses.baselines import PerSampleLoss, baseline

__all__ = [
    "SHAPE_VIEWS",
    "ShapeView",
    "describe_regression",
    "evaluate_in_batch",
    "figure_to_array",
    "growth_exponent",
    "is_weight_form",
    "register_shape_view",
    "regression_curves",
    "regression_figure",
    "shape_view",
    "weight_form_potential",
]

Curves = dict[str, Tensor]


@dataclass(frozen=True)
class ShapeView:
    """How losses of one kind are evaluated, drawn and described.

    Attributes:
        curves: ``loss -> named tensors`` on a fixed grid (the numbers behind the figure).
        figure: ``curves -> Figure`` drawn from exactly those tensors.
        describe: ``loss -> lines of text`` for ``metaloss inspect`` (``None``: no summary).
    """

    curves: Callable[[PerSampleLoss], Curves]
    figure: Callable[[Curves], Figure]
    describe: Callable[[PerSampleLoss], list[str]] | None = None


SHAPE_VIEWS: dict[str, ShapeView] = {}


def register_shape_view(kind: str, view: ShapeView) -> None:
    """Make ``view`` the shape view of losses of ``kind`` (replacing any earlier one)."""
    SHAPE_VIEWS[kind] = view


def shape_view(kind: str) -> ShapeView:
    """The shape view registered for ``kind``; ``ValueError`` naming the known kinds if none."""
    if kind not in SHAPE_VIEWS:
        known = ", ".join(sorted(SHAPE_VIEWS))
        raise ValueError(f"loss kind: no shape view for {kind!r} (known: {known})")
    return SHAPE_VIEWS[kind]


def figure_to_array(figure: Figure) -> np.ndarray:
    """Render ``figure`` with the Agg canvas to an ``[H, W, 3]`` uint8 RGB array."""
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


# --------------------------------------------------------------------------------------------
# Regression.

REGRESSION_TARGETS = (-2.0, 0.0, 2.0)
REGRESSION_BASELINES = {"MSE": "mse", "L1": "l1", "Huber (δ=1)": "huber"}
CONTEXT_SCALE = 1.0
"""Median ``|residual|`` of the reference batch in which shapes are evaluated."""


def _dtype_of(loss: PerSampleLoss) -> torch.dtype:
    """The floating dtype of a module's parameters (float32 for plain functions)."""
    parameter = next(iter(getattr(loss, "parameters", list)()), None)
    return (
        parameter.dtype
        if isinstance(parameter, Tensor) and parameter.is_floating_point()
        else torch.float32
    )


def evaluate_in_batch(
    loss: PerSampleLoss, pred: Tensor, target: Tensor, scale: float = CONTEXT_SCALE
) -> tuple[Tensor, Tensor]:
    """Per-sample loss and ``d loss / d pred`` of probes ``pred [N, 1]``, each evaluated inside a
    reference batch whose median absolute residual is exactly ``scale``.

    An element-wise loss (MSE, or a learned loss over residual features) is unaffected by the
    batch. A loss with batch-level features (``residual_scale``, ``scaled_residual``: the batch's
    median ``|residual|``; ``target_scale``: the spread of its targets) is defined only relative
    to its batch; the reference batch (``2N + 1`` samples at residual ``±scale`` and target
    ``±1``, more than half of the whole) fixes that context, so the curves show how one sample is
    treated in a batch of typical residual ``scale`` and targets of median absolute deviation 1.
    """
    per_sample = getattr(loss, "per_sample", loss)
    n = pred.shape[0]
    signs = torch.ones(2 * n + 1, 1, dtype=pred.dtype)
    signs[1::2] = -1
    context_target = signs.roll(1, 0)
    with torch.enable_grad():
        probe = pred.detach().clone().requires_grad_()
        batch_pred = torch.cat([probe, context_target + scale * signs])
        values = per_sample(batch_pred, torch.cat([target, context_target]))[:n]
        (grad,) = torch.autograd.grad(values.sum(), probe)
    return values.detach(), grad


def regression_curves(loss: PerSampleLoss, scale: float = CONTEXT_SCALE) -> Curves:
    """Loss and ``d loss / d pred`` on residuals in [-5, 5] for targets -2, 0 and 2.

    Returns tensors ``residual [R]``, ``target [T]``, ``value [T, R]``, ``grad [T, R]``, the
    reference batch's median ``|residual|`` ``context_scale [1]`` (see :func:`evaluate_in_batch`),
    ``batch_dependent [1]`` (1.0 if the values change with that scale, else 0.0) and
    ``weight_form [1]`` (1.0 for a weight-form loss, whose value and gradient are then those of
    the loss it descends, scaled to ``w(0) = 1``: see :func:`weight_form_potential`).
    """
    dtype = _dtype_of(loss)
    r = torch.linspace(-5, 5, 201, dtype=dtype)
    t = torch.tensor(REGRESSION_TARGETS, dtype=dtype)
    target = t.repeat_interleave(len(r))[:, None]
    pred = target + r.repeat(len(t))[:, None]
    values, grads = evaluate_in_batch(loss, pred, target, scale)
    other, _ = evaluate_in_batch(loss, pred, target, 2 * scale)
    dependent = not torch.allclose(values, other, rtol=1e-4, atol=1e-6)
    shape = (len(t), len(r))
    value, grad = values.reshape(shape), grads.reshape(shape)
    weight_form = is_weight_form(loss)
    if weight_form:
        value, grad = weight_form_potential(r, grad)
    return {
        "residual": r,
        "target": t,
        "value": value,
        "grad": grad,
        "context_scale": torch.tensor([scale], dtype=dtype),
        "batch_dependent": torch.tensor([float(dependent)], dtype=dtype),
        "weight_form": torch.tensor([float(weight_form)], dtype=dtype),
    }


def is_weight_form(loss: PerSampleLoss) -> bool:
    """Whether ``loss`` is a learned weight times the squared residual (``form="weight"``)."""
    return getattr(loss, "form", "loss") == "weight"


def weight_form_potential(r: Tensor, grad: Tensor) -> tuple[Tensor, Tensor]:
    """The loss a weight-form loss actually descends, scaled so that it is comparable with MSE.

    A weight-form loss ``w · r²`` with ``w`` not differentiated updates along ``2 w(r) r``; the
    function with that derivative is ``ρ(r) = ∫₀ʳ 2 w(s) s ds`` (the M-estimator whose IRLS
    weights are ``w``). Adam ignores a constant factor, so both are divided by the weight next to
    zero residual: ``w(0) = 1``, and a constant weight gives exactly MSE's ``r²`` and ``2 r``.
    Returns ``(ρ, 2 w r)`` for each row of ``grad [T, R]`` on the symmetric grid ``r [R]``.
    """
    centre = int(torch.argmin(r.abs()))
    near = centre + 1
    w0 = grad[:, near : near + 1] / (2 * r[near])
    scaled = grad / w0.clamp_min(torch.finfo(grad.dtype).tiny)
    steps = (scaled[:, 1:] + scaled[:, :-1]) / 2 * (r[1:] - r[:-1])
    rising = torch.cumsum(steps[:, centre:], dim=-1)
    falling = torch.cumsum(steps[:, :centre].flip(-1), dim=-1).flip(-1)
    zero = torch.zeros_like(grad[:, :1])
    potential = torch.cat([-falling, zero, rising], dim=-1)
    return potential, scaled


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

    figure = Figure(figsize=(8.0, 3.2), dpi=80, layout="constrained")
    ax_value, ax_grad = figure.subplots(1, 2)
    x = r.numpy()
    same = np.allclose(values, values[:1], rtol=1e-5, atol=1e-7)  # no dependence on the target
    weight_form = "weight_form" in curves and bool(curves["weight_form"].item())
    form = ", weight form, w(0) = 1" if weight_form else ""
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
    ax_value.legend(fontsize=7, loc="upper center")
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
    dtype = _dtype_of(loss)
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


def describe_regression(loss: PerSampleLoss) -> list[str]:
    """Growth at large residuals, symmetry and the value at zero residual, as text lines."""
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
    spread = float((values - values.mean(0)).abs().max() / (values.abs().max() + 1e-12))
    lines.append(
        f"dependence on the target: max spread across targets {spread:.1%} of the largest value"
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
            "numbers above are for the loss it descends, integral of 2 w(r) r, scaled to w(0) = 1"
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


register_shape_view(
    "regression", ShapeView(regression_curves, regression_figure, describe_regression)
)
