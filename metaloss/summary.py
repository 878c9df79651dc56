"""TensorBoard logging of meta-training runs, grouped by tag prefix (as in CleanRL).

Tag groups written into the run folder (``tensorboard --logdir runs`` shows them):

* ``best/``: the inner curves of the start, best and reference losses on one axis (image
  ``best/inner_curves``), the loss-shape figure of the best (saved) loss (image
  ``best/shape_figure``), its numbers as a Markdown table (text ``best/shape_table``) and as
  tensors; the first group TensorBoard shows, so a run opens on what was learned.
* ``inner/`` scalars over the inner step ``k = 0..K``: the mean ``outer_valid`` objective on the
  fixed meta-validation tasks of learners trained with the learned loss at the start
  (``inner/start_curve``) and the end (``inner/end_curve``, best loss) of meta-training, and
  with the meta-objective itself as the inner loss (``inner/objective_curve``; MSE for
  regression), for reference. The Custom Scalars tab draws the three on one chart
  (:func:`metaloss.summary_layout.custom_layout`).
* ``meta/`` scalars: meta-train and meta-validation objective, the best meta-validation
  objective so far, meta-gradient norm, skipped (non-finite) steps, fraction of finite inner
  runs; ``time/`` seconds per step and the cumulative seconds spent in this callback.
* ``shape/``: the loss-shape figure (image ``shape/figure``), the same curves as a Markdown table
  (text ``shape/table``, readable in the Text tab) and as tensors (``shape/value``,
  ``shape/grad``, ...) every ``outer.shape_every`` meta-steps.
* ``losses/`` histograms of per-sample loss values and weights (``|d loss / d pred|``) on the
  inner-training samples of the meta-validation tasks, at the start and end of the inner loop
  (split into clean and corrupted samples when the family marks them with ``extras["clean"]``).
* ``test/``: ``metaloss train``'s meta-test comparison (:meth:`SummaryCallback.log_comparison`):
  its table as text and the paired difference to the tuned reference loss as a scalar.
* ``health/summary`` (text): the health of meta-training
  (:func:`metaloss.evaluation.training_summary.assess_training`: a meta-validation objective
  rising after its best step, meta-gradient norm spikes, skipped steps).
* ``config`` (text, YAML) and an HParams session with a dozen settings and metrics that are the
  run's own scalar series (:mod:`metaloss.summary_layout`), so no single-point cards are added.

The shape view is chosen by the loss kind (:func:`metaloss.plots.shape_view`); a kind without
one is noted once in the text ``shape/note`` and otherwise skipped. Histograms and inner curves
use the run's first meta-validation condition (its own family, learner and inner loop).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor
from torch.func import functional_call, vmap

from metaloss.config import to_dict
from metaloss.evaluation.training_summary import assess_training
from metaloss.inner.unroll import InnerResult
from metaloss.losses.kinds import KINDS
from metaloss.outer.supervised import Condition, SupervisedProblem
from metaloss.outer.trainer import Callback, MetaTrainer, StepRecord, TrainResult, ValidationRecord
from metaloss.plots import figure_to_array, has_shape_view, shape_view
from metaloss.summary_layout import TEST_DELTA_TAG, custom_layout, write_hparams

__all__ = ["SummaryCallback"]


def _problem(trainer: MetaTrainer) -> SupervisedProblem:
    """The supervised problem this summary describes (inner curves need a differentiable
    unroll; reinforcement learning logs through :mod:`metaloss.rl.summary`)."""
    problem = getattr(trainer.problem, "inner", trainer.problem)  # unwrap a sharded problem
    if not isinstance(problem, SupervisedProblem):
        raise TypeError(
            f"SummaryCallback: expected a supervised problem, got {type(problem).__name__}"
        )
    return problem


def _condition(trainer: MetaTrainer) -> Condition:
    """The first meta-validation condition: the validation tasks of :meth:`validation_set`
    belong to it, so its learner and backend (not necessarily the run's own) train on them."""
    return _problem(trainer).valid_conditions[0]


def _learned_loss_fn(trainer: MetaTrainer) -> Any:
    loss = trainer.loss
    return lambda pred, target: loss(pred, target, reduction="none")


def _inner_run(trainer: MetaTrainer, loss_fn: Any) -> InnerResult:
    """Train learners on the fixed meta-validation tasks, recording ``outer_valid`` per step."""
    tasks, inits = _problem(trainer).validation_set()
    with torch.no_grad():
        return _condition(trainer).backend.run(loss_fn, inits, tasks, record="outer_valid")  # type: ignore[no-any-return]


def _predict(trainer: MetaTrainer, params: dict[str, Tensor], x: Tensor) -> Tensor:
    learner = _condition(trainer).learner

    def one(p: dict[str, Tensor], xi: Tensor) -> Tensor:
        return functional_call(learner, p, (xi,))  # type: ignore[no-any-return]

    with torch.no_grad():
        return vmap(one)(params, x)  # type: ignore[no-any-return]


def _reference_name(trainer: MetaTrainer) -> str:
    """What the reference inner curve is: the kind's reference loss (MSE, CE) if it has one."""
    spec = KINDS.get(trainer.loss.kind)
    reference = spec.reference if spec is not None else None
    return reference.upper() if reference else "the meta-objective as the inner loss"


def _value_and_weight(trainer: MetaTrainer, pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Per-sample learned loss and ``|d loss / d pred|`` (the sample's weight in the update),
    task by task, since batch-level features (e.g. ``residual_scale``) see one task's batch."""
    values, weights = [], []
    for task_pred, task_target in zip(pred.detach(), target, strict=True):
        leaf = task_pred.clone().requires_grad_()
        with torch.enable_grad():
            value = trainer.loss.per_sample(leaf, task_target)
            (grad,) = torch.autograd.grad(value.sum(), leaf)
        values.append(value.detach().flatten())
        weights.append((grad.flatten(1).norm(dim=1) if grad.dim() > 1 else grad.abs()).flatten())
    return torch.cat(values), torch.cat(weights)


class SummaryCallback(Callback):
    """Write a meta-training run's scalars, loss shapes, histograms, config and hparams to
    TensorBoard event files in ``log_dir`` (see the module docstring for the tags).

    Args:
        log_dir: the run folder.
        shape_every: log the shape and histograms every N meta-steps (default: the config's
            ``outer.shape_every``).
    """

    def __init__(self, log_dir: Path, shape_every: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(str(self.log_dir))
        self.shape_every = shape_every
        self.seconds = 0.0
        self.final_step = 0
        self.start_curve: list[float] = []
        self._noted_kind = False

    # ---------------------------------------------------------------- pieces

    def log_shape(self, trainer: MetaTrainer, step: int, prefix: str = "shape/") -> None:
        """The loss-shape figure (image), its curves (tensors) and their table (text) under
        ``prefix``."""
        kind = trainer.loss.kind
        if not has_shape_view(kind):
            if not self._noted_kind:
                self.writer.add_text(
                    "shape/note", f"no shape view registered for loss kind {kind!r}", step
                )
                self._noted_kind = True
            return
        view = shape_view(kind)
        curves = view.curves(trainer.loss)
        for name, tensor in curves.items():
            self.writer.add_tensor(f"{prefix}{name}", tensor.detach().float().cpu(), step)
        if view.table is not None:
            self.writer.add_text(f"{prefix}table", view.table(curves), step)
        image = figure_to_array(view.figure(curves))
        self.writer.add_image(f"{prefix}figure", image, step, dataformats="HWC")

    def log_inner_curve(self, tag: str, result: InnerResult) -> list[float]:
        """Mean ``outer_valid`` objective after each inner step, as scalars over the step."""
        values = [float(v) for v in result.curve.mean(0).tolist()]
        for k, value in enumerate(values):
            self.writer.add_scalar(tag, value, k)
        return values

    def log_inner_figure(self, trainer: MetaTrainer, curves: dict[str, list[float]]) -> None:
        """The inner curves on one axis, as the image ``best/inner_curves`` (at the final
        meta-step): the first thing TensorBoard shows."""
        from metaloss.plots.curves import inner_curves_figure

        figure = inner_curves_figure(
            curves,
            "meta-objective (outer_valid split)",
            f"{trainer.config.name}: learners on {trainer.config.outer.val_tasks} "
            "meta-validation tasks",
        )
        image = figure_to_array(figure)
        self.writer.add_image("best/inner_curves", image, trainer.step, dataformats="HWC")

    def log_histograms(self, trainer: MetaTrainer, result: InnerResult, step: int) -> None:
        """Per-sample learned-loss values and weights on the validation tasks' train split."""
        spec = KINDS.get(trainer.loss.kind)
        if spec is None or not spec.per_sample_histograms:
            return
        tasks, inits = _problem(trainer).validation_set()
        batch = tasks.train
        clean = batch.extras.get("clean")
        for moment, params in (("inner_start", inits), ("inner_end", result.params)):
            values, weights = _value_and_weight(
                trainer, _predict(trainer, params, batch.x), batch.y
            )
            self.writer.add_histogram(f"losses/value_{moment}", values, step)
            self.writer.add_histogram(f"losses/weight_{moment}", weights, step)
            if clean is not None and clean.numel() == weights.numel():
                mask = clean.flatten().bool()
                for name, part in (("clean", mask), ("corrupted", ~mask)):
                    if bool(part.any()):
                        self.writer.add_histogram(
                            f"losses/weight_{moment}_{name}", weights[part], step
                        )

    def _snapshot(self, trainer: MetaTrainer, step: int) -> InnerResult:
        result = _inner_run(trainer, _learned_loss_fn(trainer))
        self.log_shape(trainer, step)
        self.log_histograms(trainer, result, step)
        return result

    def _every(self, trainer: MetaTrainer) -> int:
        return self.shape_every or trainer.config.outer.shape_every

    # ---------------------------------------------------------------- hooks

    def on_start(self, trainer: MetaTrainer) -> None:
        start = time.perf_counter()
        config = yaml.safe_dump(to_dict(trainer.config), sort_keys=False)
        self.writer.add_text("config", "```yaml\n" + config + "```", trainer.step)
        if trainer.step == 0:
            self.writer.add_custom_scalars(custom_layout(_reference_name(trainer)))
            write_hparams(self.writer, trainer.config)
            self.start_curve = self.log_inner_curve("inner/start_curve", self._snapshot(trainer, 0))
        self.seconds += time.perf_counter() - start

    def on_step(self, trainer: MetaTrainer, record: StepRecord) -> None:
        start = time.perf_counter()
        w = self.writer
        w.add_scalar("meta/train_objective", record.meta_loss, record.step)
        w.add_scalar("meta/grad_norm", record.grad_norm, record.step)
        w.add_scalar("meta/skipped_steps", trainer.skipped, record.step)
        w.add_scalar("meta/finite_inner_fraction", record.finite_fraction, record.step)
        w.add_scalar("time/seconds_per_step", record.seconds, record.step)
        if record.step % self._every(trainer) == 0:
            self._snapshot(trainer, record.step)
        self.seconds += time.perf_counter() - start
        w.add_scalar("time/summary_seconds", self.seconds, record.step)

    def on_validation(self, trainer: MetaTrainer, record: ValidationRecord) -> None:
        self.writer.add_scalar("meta/valid_objective", record.value, record.step)
        self.writer.add_scalar("meta/best_valid_objective", trainer.best_value, record.step)

    def on_end(self, trainer: MetaTrainer, result: TrainResult) -> None:
        start = time.perf_counter()
        self.final_step = trainer.step
        step = max(result.best_step, 0)
        self.log_shape(trainer, step, prefix="best/shape_")
        end = self.log_inner_curve(
            "inner/end_curve", _inner_run(trainer, _learned_loss_fn(trainer))
        )
        reference = _inner_run(trainer, _condition(trainer).family.objective)
        curves = {"learned loss at meta-step 0": self.start_curve} if self.start_curve else {}
        curves[f"learned loss, best (step {max(result.best_step, 0)})"] = end
        name = _reference_name(trainer)
        label = name if name.endswith("inner loss") else f"{name} as the inner loss"
        curves[label] = self.log_inner_curve("inner/objective_curve", reference)
        self.log_inner_figure(trainer, curves)
        health = assess_training(result.steps, result.validations, trainer.config.outer.grad_clip)
        text = "\n".join(f"- {line}" for line in health.lines())
        self.writer.add_text("health/summary", text, trainer.step)
        self.seconds += time.perf_counter() - start
        self.writer.flush()

    def log_comparison(self, comparison: Any) -> None:
        """``metaloss train``'s meta-test comparison (:class:`metaloss.evaluation.compare.Comparison`):
        its table as text ``test/results`` and the paired difference of the learned loss (tuned
        lr) to the tuned reference as the scalar :data:`~metaloss.summary_layout.TEST_DELTA_TAG`
        (an HParams metric)."""
        from torch.utils.tensorboard import SummaryWriter

        rows = {row.name: row for row in comparison.rows}
        learned = rows.get("learned (tuned lr)")
        # Its own event file in the run folder: the comparison runs after close().
        writer = SummaryWriter(str(self.log_dir), filename_suffix=".test")
        try:
            writer.add_text("test/results", comparison.markdown(), self.final_step)
            if learned is not None and learned.vs_tuned is not None:
                delta = learned.vs_tuned.difference.mean
                writer.add_scalar(TEST_DELTA_TAG, delta, self.final_step)
        finally:
            writer.close()

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()
