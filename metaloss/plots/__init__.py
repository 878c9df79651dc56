"""Loss-shape figures and curves, one *shape view* per loss kind, shared by TensorBoard
(:mod:`metaloss.summary`) and ``metaloss inspect``.

:mod:`metaloss.plots.base` holds the registry and the regression view; importing this package
also registers the classification view (:mod:`metaloss.plots.classification`) and the policy
view of reinforcement learning (:mod:`metaloss.rl.shape`).
"""

# `classification` and `rl.shape` are imported for their effect: each registers its kind's view.
from metaloss.plots import classification as _classification  # noqa: F401
from metaloss.plots.base import (
    SHAPE_VIEWS,
    ShapeView,
    describe_regression,
    evaluate_in_batch,
    figure_to_array,
    growth_exponent,
    register_shape_view,
    regression_curves,
    regression_figure,
    shape_view,
)
from metaloss.rl import shape as _policy  # noqa: F401

__all__ = [
    "SHAPE_VIEWS",
    "ShapeView",
    "describe_regression",
    "evaluate_in_batch",
    "figure_to_array",
    "growth_exponent",
    "register_shape_view",
    "regression_curves",
    "regression_figure",
    "shape_view",
]
