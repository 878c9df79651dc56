"""Multi-task problems: one shared trunk, T heads of different kinds, units and noise levels.

Each problem draws T heads (``task.heads``, 2 to 8), each a regression head (targets in units
that differ by orders of magnitude, ``task.scale_range``, with relative noise
``task.noise_range``) or a classification head (``task.classes`` classes, label noise of the
same range). Heads are built on random nonlinear features of the input: most share one basis
(tasks that help each other), some draw a private basis (tasks that compete for the trunk's
capacity), some use other functions (cosines) of the shared input directions (tasks that pull
the shared features in other ways). The mix,
scales and noise levels are sampled per problem, so meta-test problems are new combinations.

``task.toy: true`` gives the classic toy of the uncertainty-weighting literature (Kendall, Gal &
Cipolla, CVPR 2018): two linear regression targets of the same inputs with noise standard
deviations ``task.toy_noise`` (10 and 1).

Layout (padded to ``task.max_heads`` = M heads so that problems with different T stack and vmap):

* targets ``y``: ``[n, 3M]`` = head targets (regression value or class index) | head kinds
  (:data:`ABSENT`, :data:`REGRESSION`, :data:`CLASSIFICATION`) | normalisers (the expected
  target variance of a regression head, ``log C`` for a classification head; the objective only).
* predictions: ``[n, M*W + M]`` = M head blocks of width W = ``task.classes`` (a regression head
  reads column 0 of its block) | M per-task log-variances, free learner parameters
  (``learner.log_variances: M``, see :class:`metaloss.learners.LogVarianceMLP`).

Losses read targets and kinds only (never the normalisers): the units are theirs to cope with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from metaloss.config import TaskConfig, setting
from metaloss.tasks.base import Batch, ConfiguredFamily, Split, Task, TaskFamily
from metaloss.tasks.registry import FamilySpec, Metric, register_family

__all__ = [
    "ABSENT",
    "CLASSIFICATION",
    "REGRESSION",
    "HeadLosses",
    "MultiTaskConfig",
    "MultiTaskFamily",
    "head_errors",
    "head_losses",
    "head_metrics",
    "log_variances",
    "only_head",
    "standardise_targets",
]

ABSENT, REGRESSION, CLASSIFICATION = 0, 1, 2


@dataclass(frozen=True)
class MultiTaskConfig(TaskConfig):
    """Options of the multi-task family (see :mod:`metaloss.tasks.multitask`)."""

    family: str = setting("multitask", "name of the task family")
    max_heads: int = setting(
        8, "heads M every problem is padded to (learner.log_variances: M)", ge=1, le=64
    )
    heads: tuple[int, int] = setting((2, 8), "range of the number of heads T per problem", ge=1)
    classes: int = setting(3, "classes of a classification head (block width W)", ge=2, le=100)
    in_features: int = setting(8, "input dimension", ge=1)
    basis: int = setting(4, "random nonlinear features per basis", ge=1)
    classification_prob: float = setting(
        0.3, "probability that a head is a classification head", ge=0, le=1
    )
    private_prob: float = setting(
        0.3, "probability that a head has its own basis (competes)", ge=0, le=1
    )
    conflict_prob: float = setting(
        0.2, "probability that a head uses cosines of the shared directions", ge=0, le=1
    )
    scale_range: tuple[float, float] = setting(
        (0.1, 10.0), "regression target units (log-uniform)", gt=0
    )
    noise_range: tuple[float, float] = setting(
        (0.05, 2.0), "relative noise of a head (log-uniform)", gt=0
    )
    toy: bool = setting(
        False, "the uncertainty-weighting toy: two linear targets, noise std toy_noise"
    )
    toy_noise: tuple[float, float] = setting((10.0, 1.0), "toy: noise standard deviations", gt=0)
    standardise: bool = setting(
        False,
        "every regression head standardised with its training rows' mean and std (the view "
        "standardise_targets: what a practitioner trains on; objectives stay in raw units)",
    )
    n_train: int = setting(64, "inner-training samples per problem", ge=1)
    n_outer_valid: int = setting(64, "meta-objective samples per problem", ge=1)
    n_test: int = setting(256, "test samples per problem", ge=1)

    def __post_init__(self) -> None:
        low, high = self.heads
        if not low <= high <= self.max_heads:
            raise ValueError(
                f"task.heads: expected low <= high <= max_heads={self.max_heads}, got {list(self.heads)}"
            )
        if self.toy and self.max_heads < 2:
            raise ValueError(f"task.max_heads: the toy needs 2 heads, got {self.max_heads}")
        for name in ("scale_range", "noise_range"):
            low_f, high_f = getattr(self, name)
            if low_f > high_f:
                raise ValueError(
                    f"task.{name}: expected low <= high, got {list(getattr(self, name))}"
                )


class HeadLosses(NamedTuple):
    """Per-sample, per-head losses ``[..., n, M]`` (zero for absent heads) and head kinds."""

    losses: Tensor
    kinds: Tensor


def _layout(pred: Tensor, target: Tensor) -> tuple[int, int]:
    """``(M, W)`` from the shapes of predictions ``[..., M*W + M]`` and targets ``[..., 3M]``."""
    heads = target.shape[-1] // 3
    width = pred.shape[-1] // max(heads, 1) - 1
    if (
        heads < 1
        or target.shape[-1] != 3 * heads
        or width < 1
        or pred.shape[-1] != heads * (width + 1)
    ):
        raise ValueError(
            f"pred: expected M*W + M columns (M heads of width W, then M log-variances: set "
            f"learner.log_variances to task.max_heads) for targets of 3M={target.shape[-1]} columns, "
            f"got {pred.shape[-1]}"
        )
    return heads, width


def _split(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    heads, width = _layout(pred, target)
    blocks = pred[..., : heads * width].unflatten(-1, (heads, width))
    return (
        blocks,
        target[..., :heads],
        target[..., heads : 2 * heads].round(),
        pred[..., heads * width :],
    )


def head_losses(pred: Tensor, target: Tensor) -> HeadLosses:
    """Squared error of each regression head, cross-entropy of each classification head."""
    blocks, values, kinds, _ = _split(pred, target)
    squared = (blocks[..., 0] - values) ** 2
    labels = torch.where(kinds == CLASSIFICATION, values, torch.zeros_like(values)).long()
    labels = labels.clamp(0, blocks.shape[-1] - 1)
    log_probs = torch.log_softmax(blocks, dim=-1)
    ce = -log_probs.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    zero = torch.zeros_like(squared)
    losses = torch.where(
        kinds == REGRESSION, squared, torch.where(kinds == CLASSIFICATION, ce, zero)
    )
    return HeadLosses(losses, kinds)


def head_errors(pred: Tensor, target: Tensor) -> HeadLosses:
    """Per-head test errors: squared error (regression), 0/1 error (classification)."""
    blocks, values, kinds, _ = _split(pred, target)
    squared = (blocks[..., 0] - values) ** 2
    wrong = (blocks.argmax(-1) != values.long()).to(pred.dtype)
    zero = torch.zeros_like(squared)
    return HeadLosses(
        torch.where(
            kinds == REGRESSION, squared, torch.where(kinds == CLASSIFICATION, wrong, zero)
        ),
        kinds,
    )


def log_variances(pred: Tensor, target: Tensor) -> Tensor:
    """The learner's per-task log-variances ``s_t = log sigma_t^2`` ``[..., n, M]``."""
    return _split(pred, target)[3]


def only_head(target: Tensor, head: int) -> Tensor:
    """Targets with every head but ``head`` marked absent: the single-task view of a problem."""
    heads = target.shape[-1] // 3
    out = target.clone()
    keep = torch.zeros(heads, dtype=torch.bool)
    keep[head] = True
    out[..., heads : 2 * heads] = torch.where(
        keep, out[..., heads : 2 * heads], torch.zeros_like(out[..., :heads])
    )
    return out


def standardise_targets(tasks: Task) -> Task:
    """The view of (stacked) problems a practitioner trains on after standardising each
    regression head with the mean and std of its *training* targets: every split's regression
    targets become ``(y - mean) / std`` and its normalisers ``norm / std**2``, so the family's
    normalised objective of a prediction ``z`` of the standardised target equals the one of the
    raw-unit prediction ``z * std + mean`` (test scores stay comparable with raw-unit losses).
    Classification heads are unchanged. Batches carry ``extras["target_scale"]`` (the std per
    sample and head, 1 for other heads), so per-head errors can be reported in raw units; on
    tasks that are already a view (``task.standardise`` and the view again) the scales compose,
    so the report stays in the raw units of the original targets."""
    train_y = tasks.train.y
    heads = train_y.shape[-1] // 3
    regression = train_y[..., :1, heads : 2 * heads].round() == REGRESSION
    values = train_y[..., :heads]
    mean = torch.where(regression, values.mean(-2, keepdim=True), 0.0)
    std = torch.where(regression, values.std(-2, keepdim=True).clamp_min(1e-8), 1.0)

    def scale(batch: Batch) -> Batch:
        y = batch.y.clone()
        y[..., :heads] = (y[..., :heads] - mean) / std
        y[..., 2 * heads :] = y[..., 2 * heads :] / std**2
        scale = std.expand_as(y[..., :heads])
        earlier = batch.extras.get("target_scale")  # the tasks were already a view
        extras = {**batch.extras, "target_scale": scale if earlier is None else earlier * scale}
        return batch._replace(y=y, extras=extras)

    return Task(scale(tasks.train), scale(tasks.outer_valid), scale(tasks.test))


class MultiTaskFamily(ConfiguredFamily[MultiTaskConfig]):
    """Multi-task problems with a shared trunk and T heads (see the module docstring).

    The meta-objective and test metric is the mean over a problem's heads of each head's loss
    divided by its normaliser (regression: squared error over the expected target variance;
    classification: cross-entropy over ``log C``), so that no head's units dominate it.

    References:
        Kendall, Gal & Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses for Scene
        Geometry and Semantics", CVPR 2018 (the toy and the uncertainty-weighting baseline).
    """

    kind = "multitask"

    def __init__(self, config: MultiTaskConfig) -> None:
        super().__init__(config)
        self.in_features = config.in_features
        self.heads = config.max_heads
        self.width = config.classes
        self.out_features = config.max_heads * config.classes

    def objective(self, pred: Tensor, target: Tensor) -> Tensor:  # type: ignore[override]
        """Per-sample mean over active heads of the normalised head losses."""
        if pred.shape[-1] != self.heads * (self.width + 1):
            raise ValueError(
                f"pred: expected {self.heads * (self.width + 1)} columns ({self.heads} heads of width "
                f"{self.width}, then learner.log_variances={self.heads}), got {pred.shape[-1]}"
            )
        losses, kinds = head_losses(pred, target)
        norm = target[..., 2 * self.heads :]
        active = (kinds != ABSENT).to(pred.dtype)
        scaled = losses / torch.where(active > 0, norm, torch.ones_like(norm))
        return (scaled * active).sum(-1) / active.sum(-1).clamp_min(1.0)

    def make_task(self, generator: torch.Generator, split: Split) -> Task:
        cfg = self.config
        n = cfg.n_train + cfg.n_outer_valid + cfg.n_test
        x = torch.randn(n, cfg.in_features, generator=generator)
        columns = self._toy(x, generator) if cfg.toy else self._heads(x, generator)
        y = self._pack(columns, n)
        cuts = (cfg.n_train, cfg.n_train + cfg.n_outer_valid)
        task = Task(
            Batch(x[: cuts[0]], y[: cuts[0]], {}),
            Batch(x[cuts[0] : cuts[1]], y[cuts[0] : cuts[1]], {}),
            Batch(x[cuts[1] :], y[cuts[1] :], {}),
        )
        return standardise_targets(task) if cfg.standardise else task

    # ------------------------------------------------------------------ problem construction

    def _pack(self, columns: list[tuple[Tensor, int, float]], n: int) -> Tensor:
        m = self.heads
        y = torch.zeros(n, 3 * m)
        y[:, 2 * m :] = 1.0
        for t, (values, kind, norm) in enumerate(columns):
            y[:, t], y[:, m + t], y[:, 2 * m + t] = values, float(kind), norm
        return y

    def _projection(self, x: Tensor, generator: torch.Generator) -> Tensor:
        d, k = x.shape[1], self.config.basis
        a = torch.randn(d, k, generator=generator) * (2.0 / math.sqrt(d))
        b = torch.rand(k, generator=generator) * 2 - 1
        return x @ a + b

    def _heads(self, x: Tensor, generator: torch.Generator) -> list[tuple[Tensor, int, float]]:
        cfg = self.config
        low, high = cfg.heads
        count = int(torch.randint(low, high + 1, (1,), generator=generator))
        shared = self._projection(x, generator)
        columns: list[tuple[Tensor, int, float]] = []
        for _ in range(count):
            u = torch.rand(3, generator=generator)
            if u[1] < cfg.private_prob:  # its own features: competes for the trunk
                basis = torch.tanh(self._projection(x, generator))
            elif u[2] < cfg.conflict_prob:  # other functions of the same directions
                basis = torch.cos(2.0 * shared)
            else:  # the shared features: helps the other heads
                basis = torch.tanh(shared)
            noise = _log_uniform(cfg.noise_range, generator)
            if u[0] < cfg.classification_prob:
                logits = _unit(basis @ torch.randn(cfg.basis, cfg.classes, generator=generator))
                uniform = torch.rand(logits.shape, generator=generator).clamp(1e-12, 1 - 1e-12)
                labels = (3.0 * logits - 3.0 * noise * torch.log(-torch.log(uniform))).argmax(-1)
                columns.append((labels.float(), CLASSIFICATION, math.log(cfg.classes)))
                continue
            signal = _unit(basis @ torch.randn(cfg.basis, generator=generator))
            scale = _log_uniform(cfg.scale_range, generator)
            values = scale * (signal + noise * torch.randn(signal.shape, generator=generator))
            columns.append((values, REGRESSION, scale**2 * (1 + noise**2)))
        return columns

    def _toy(self, x: Tensor, generator: torch.Generator) -> list[tuple[Tensor, int, float]]:
        d = x.shape[1]
        columns: list[tuple[Tensor, int, float]] = []
        for sigma in self.config.toy_noise:
            w = torch.randn(d, generator=generator)
            values = x @ w + sigma * torch.randn(x.shape[0], generator=generator)
            columns.append((values, REGRESSION, d + sigma**2))
        return columns


def _unit(values: Tensor) -> Tensor:
    """Centre and scale to unit standard deviation along the samples (dim 0)."""
    return (values - values.mean(0)) / values.std(0).clamp_min(1e-6)


def _log_uniform(bounds: tuple[float, float], generator: torch.Generator) -> float:
    low, high = math.log(bounds[0]), math.log(bounds[1])
    return math.exp(low + (high - low) * float(torch.rand((), generator=generator)))


def _head_metric(head: int) -> Metric:
    def error(pred: Tensor, batch: Batch) -> Tensor:
        value = head_errors(pred, batch.y).losses[..., head]
        scale = batch.extras.get("target_scale")  # standardised targets: back to raw units
        return value if scale is None else value * scale[..., head] ** 2

    return Metric(error)


def head_metrics(family: TaskFamily) -> dict[str, Metric]:
    """The test error of each head slot, ``"head0"`` ... (0 where a problem has no such head), in
    the targets' raw units also for losses trained on standardised targets."""
    return {f"head{t}": _head_metric(t) for t in range(getattr(family, "heads", 0))}


register_family(
    FamilySpec(
        "multitask",
        MultiTaskConfig,
        MultiTaskFamily,
        kind="multitask",
        metric="test objective",
        zoo_loss="multitask",
        metrics=head_metrics,
    )
)
