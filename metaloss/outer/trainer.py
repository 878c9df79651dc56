"""The meta-trainer: the outer loop that learns a loss through differentiable inner loops.

Each meta-step samples a meta-batch of meta-train tasks and fresh learner initialisations, asks
the gradient estimator for a meta-gradient of the learners' error on ``outer_valid`` after K
inner steps, guards against non-finite values, clips, and takes an Adam step on the loss
network. Every ``val_every`` steps it scores fixed meta-validation tasks (early stopping keeps
the best loss), every ``checkpoint_every`` steps it writes an atomic checkpoint from which
:meth:`MetaTrainer.train` resumes to exactly the numbers of an uninterrupted run.

Reference: Bechtle et al., "Meta Learning via Learned Loss" (ML3), ICPR 2020.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.func import functional_call

from metaloss.config import RunConfig, to_dict
from metaloss.inner import make_backend
from metaloss.learners import init_params, make_learner
from metaloss.losses import LearnedLoss
from metaloss.losses.shape import DegeneracyReport, check_degenerate
from metaloss.outer.checkpoint import load_checkpoint, save_checkpoint
from metaloss.outer.estimators import MetaObjective, make_estimator
from metaloss.tasks import Split, Task, TaskFamily, make_family
from metaloss.tasks.base import cast_task

__all__ = [
    "VALID_INIT_SEED",
    "Callback",
    "MetaTrainer",
    "NonFiniteError",
    "StepRecord",
    "TrainResult",
    "ValidationRecord",
]

CHECKPOINT_NAME = "checkpoint.pt"
VALID_INIT_SEED = 1_000_003
"""Seed of the meta-validation learners' initialisations (shared with tuning objectives)."""


class NonFiniteError(RuntimeError):
    """Too many meta-steps produced NaN/Inf meta-gradients."""


@dataclass(frozen=True)
class StepRecord:
    """One meta-step: the mean meta-loss, the meta-gradient norm (before clipping), whether the
    step was skipped as non-finite, the fraction of inner runs that stayed finite, seconds."""

    step: int
    meta_loss: float
    grad_norm: float
    skipped: bool
    finite_fraction: float
    seconds: float


@dataclass(frozen=True)
class ValidationRecord:
    """A validation: mean meta-objective on the fixed meta-validation tasks."""

    step: int
    value: float
    best: bool


@dataclass
class TrainResult:
    """What meta-training produced: the best loss (by meta-validation) and its history."""

    loss: LearnedLoss
    steps: list[StepRecord]
    validations: list[ValidationRecord]
    best_step: int
    best_value: float
    skipped_steps: int
    stopped_early: bool
    degeneracy: DegeneracyReport
    extra: dict[str, Any] = field(default_factory=dict)


class Callback:
    """Hooks called by :class:`MetaTrainer`; override the ones you need."""

    def on_start(self, trainer: MetaTrainer) -> None:
        """Before the first step (also after a resume)."""

    def on_step(self, trainer: MetaTrainer, record: StepRecord) -> None:
        """After every meta-step."""

    def on_validation(self, trainer: MetaTrainer, record: ValidationRecord) -> None:
        """After every validation."""

    def on_end(self, trainer: MetaTrainer, result: TrainResult) -> None:
        """After training, with the best loss restored."""


class MetaTrainer:
    """Meta-train a :class:`LearnedLoss` on a task family.

    Args:
        config: the run configuration.
        out_dir: where checkpoints go (``None``: no checkpoints).
        callbacks: progress, logging and summary hooks.
        family: a task family (default: the one ``config.task`` names).

    Example:
        >>> from metaloss.config import parse
        >>> result = MetaTrainer(parse({"outer": {"steps": 2}})).train()  # doctest: +SKIP
        >>> criterion = result.loss
    """

    def __init__(
        self,
        config: RunConfig,
        out_dir: Path | None = None,
        callbacks: Sequence[Callback] = (),
        family: TaskFamily | None = None,
    ) -> None:
        self.config = config
        self.out_dir = out_dir
        self.callbacks = list(callbacks)
        self.family = family or make_family(config.task)
        self.dtype = getattr(torch, config.dtype)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.learner = make_learner(
            config.learner, self.family.in_features, self.family.out_features
        ).to(self.dtype)
        self.backend = make_backend(self.learner, config.inner, self.family.objective)
        self.estimator = make_estimator(config.outer)
        self.loss = LearnedLoss.from_config(
            config.loss, self.family.kind, self.generator, num_classes=self.family.out_features
        ).to(self.dtype)
        self.optimizer = torch.optim.Adam(self.loss.parameters(), lr=config.outer.lr)
        self.step = 0
        self.skipped = 0
        self.bad_validations = 0
        self.best_value = float("inf")
        self.best_step = -1
        self.best_state: dict[str, Tensor] = {}
        self.steps: list[StepRecord] = []
        self.validations: list[ValidationRecord] = []
        self._valid: tuple[Task, dict[str, Tensor]] | None = None

    # ---------------------------------------------------------------- meta-objective

    def meta_objective(self, tasks: Task, inits: dict[str, Tensor]) -> MetaObjective:
        """The per-task meta-loss of these tasks and initialisations, as a function of the
        loss network's parameters (and a back-propagation horizon)."""

        def objective(params: dict[str, Tensor], backprop_steps: int | None) -> Tensor:
            def loss_fn(pred: Tensor, target: Tensor) -> Tensor:
                return functional_call(self.loss, params, (pred, target), {"reduction": "none"})  # type: ignore[no-any-return]

            value = self.backend.run(
                loss_fn, inits, tasks, backprop_steps=backprop_steps
            ).meta_objective
            if self.config.outer.objective_transform == "log":
                return value.clamp_min(1e-12).log()
            return value

        return objective

    def sample_meta_batch(self) -> tuple[Task, dict[str, Tensor]]:
        """A meta-batch of meta-train tasks and fresh learner initialisations."""
        size = self.config.outer.meta_batch
        tasks = cast_task(self.family.sample(Split.META_TRAIN, size, self.generator), self.dtype)
        return tasks, init_params(self.learner, size, self.generator, self.dtype)

    def validation_set(self) -> tuple[Task, dict[str, Tensor]]:
        """The fixed meta-validation tasks and initialisations (independent of the run seed)."""
        if self._valid is None:
            count = self.config.outer.val_tasks
            tasks = cast_task(self.family.tasks(Split.META_VALID, count), self.dtype)
            generator = torch.Generator().manual_seed(VALID_INIT_SEED)
            self._valid = (tasks, init_params(self.learner, count, generator, self.dtype))
        return self._valid

    def validate(self) -> float:
        """Mean meta-objective of the current loss on the meta-validation tasks."""
        tasks, inits = self.validation_set()
        params = {k: v.detach() for k, v in self.loss.named_parameters()}
        with torch.no_grad():
            return float(self.meta_objective(tasks, inits)(params, None).mean())

    # ---------------------------------------------------------------- one step

    def meta_step(self) -> StepRecord:
        """Sample, estimate, guard, clip and apply one meta-gradient step."""
        start = time.perf_counter()
        tasks, inits = self.sample_meta_batch()
        params: dict[str, Tensor] = dict(self.loss.named_parameters())
        out = self.estimator.estimate(params, self.meta_objective(tasks, inits), self.generator)
        grad_norm = torch.sqrt(sum((g.double() ** 2).sum() for g in out.grads.values()))  # type: ignore[arg-type]
        finite_fraction = float(torch.isfinite(out.per_task).double().mean())
        finite = bool(torch.isfinite(grad_norm)) and bool(torch.isfinite(out.meta_loss))
        if finite:
            clip = self.config.outer.grad_clip
            scale = min(1.0, clip / (float(grad_norm) + 1e-12)) if clip else 1.0
            for name, p in self.loss.named_parameters():
                p.grad = out.grads[name] * scale
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        else:
            self.skipped += 1
            if self.skipped > self.config.outer.max_nonfinite:
                raise NonFiniteError(
                    f"outer: {self.skipped} meta-steps had NaN/Inf meta-gradients "
                    f"(limit outer.max_nonfinite={self.config.outer.max_nonfinite}); "
                    "lower inner.lr or outer.lr, or set inner.grad_clip"
                )
        self.step += 1
        return StepRecord(
            self.step,
            float(out.meta_loss),
            float(grad_norm),
            not finite,
            finite_fraction,
            time.perf_counter() - start,
        )

    # ---------------------------------------------------------------- checkpoints

    def checkpoint_path(self) -> Path | None:
        return None if self.out_dir is None else self.out_dir / CHECKPOINT_NAME

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this trainer is."""
        return {
            "format": 1,
            "config": json.dumps(to_dict(self.config), sort_keys=True),
            "step": self.step,
            "loss": {k: v.detach().clone() for k, v in self.loss.state_dict().items()},
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "generator": self.generator.get_state(),
            "skipped": self.skipped,
            "bad_validations": self.bad_validations,
            "best_value": self.best_value,
            "best_step": self.best_step,
            "best_state": self.best_state,
            "steps": [list(vars(r).values()) for r in self.steps],
            "validations": [list(vars(r).values()) for r in self.validations],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (the config must match, except ``outer.steps``)."""
        saved = json.loads(state["config"])
        current = to_dict(self.config)
        saved["outer"].pop("steps", None)
        current["outer"].pop("steps", None)
        if saved != current:
            diff = _first_difference(saved, current)
            raise ValueError(
                f"--resume: the checkpoint was written with a different config ({diff})"
            )
        self.step = state["step"]
        self.loss.load_state_dict(state["loss"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.skipped = state["skipped"]
        self.bad_validations = state["bad_validations"]
        self.best_value = state["best_value"]
        self.best_step = state["best_step"]
        self.best_state = state["best_state"]
        self.steps = [StepRecord(*r) for r in state["steps"]]
        self.validations = [ValidationRecord(*r) for r in state["validations"]]

    def save(self) -> None:
        path = self.checkpoint_path()
        if path is not None:
            save_checkpoint(self.state_dict(), path)

    def resume(self) -> bool:
        """Load the run folder's checkpoint if there is one; return whether it did."""
        path = self.checkpoint_path()
        if path is None or not path.exists():
            return False
        self.load_state_dict(load_checkpoint(path))
        return True

    # ---------------------------------------------------------------- the loop

    def _after_validation(self, value: float) -> ValidationRecord:
        best = value < self.best_value
        if best:
            self.best_value, self.best_step = value, self.step
            self.best_state = {k: v.detach().clone() for k, v in self.loss.state_dict().items()}
            self.bad_validations = 0
        else:
            self.bad_validations += 1
        record = ValidationRecord(self.step, value, best)
        self.validations.append(record)
        return record

    def _emit(self, hook: str, *args: Any) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(self, *args)

    def train(self, resume: bool = False) -> TrainResult:
        """Run the outer loop to ``outer.steps`` (continuing a checkpoint with ``resume``)."""
        outer = self.config.outer
        if resume:
            self.resume()
        if self.step == 0 and not self.validations:
            self._emit("on_validation", self._after_validation(self.validate()))
        self._emit("on_start")
        stopped_early = False
        while self.step < outer.steps:
            record = self.meta_step()
            self.steps.append(record)
            self._emit("on_step", record)
            if self.step % outer.val_every == 0 or self.step == outer.steps:
                self._emit("on_validation", self._after_validation(self.validate()))
                stopped_early = bool(outer.patience) and self.bad_validations >= outer.patience
            if self.step % outer.checkpoint_every == 0 or self.step == outer.steps or stopped_early:
                self.save()
            if stopped_early:
                break
        if self.best_state:
            self.loss.load_state_dict(self.best_state)
        result = TrainResult(
            loss=self.loss,
            steps=self.steps,
            validations=self.validations,
            best_step=self.best_step,
            best_value=self.best_value,
            skipped_steps=self.skipped,
            stopped_early=stopped_early,
            degeneracy=check_degenerate(self.loss),
        )
        self._emit("on_end", result)
        return result


def _first_difference(a: Any, b: Any, path: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else key)
    return f"{path}: {a!r} in the checkpoint, {b!r} now"
