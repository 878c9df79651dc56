"""Loss-shape figures, one *shape view* per loss kind, shared by TensorBoard
(:mod:`metaloss.summary`) and ``metaloss inspect``.

:mod:`metaloss.plots.base` resolves a kind's view from its
:class:`~metaloss.losses.kinds.KindSpec`; the regression and classification views live in
:mod:`metaloss.plots.regression` and :mod:`metaloss.plots.classification` (the policy view in
:mod:`metaloss.rl.shape`). Importing this package imports none of them.
"""

from metaloss.plots.base import ShapeView, figure_to_array, has_shape_view, shape_view

__all__ = ["ShapeView", "figure_to_array", "has_shape_view", "shape_view"]
