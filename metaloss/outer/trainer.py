"""The meta-trainer: one outer loop for every meta-problem.

Each meta-step asks the :class:`~metaloss.outer.problem.MetaProblem` for a meta-batch of
meta-train tasks, asks the gradient estimator for a meta-gradient of the problem's per-task
meta-loss, guards against non-finite values, clips, and takes an Adam step on the learned
module. Every ``val_every`` steps it scores the problem's fixed meta-validation set (early
stopping keeps the best module), every ``checkpoint_every`` steps it writes an atomic checkpoint
from which :meth:`MetaTrainer.train` resumes to exactly the numbers of an uninterrupted run.
The trainer never knows which problem it trains: supervised families unroll differentiable
inner loops (:class:`~metaloss.outer.supervised.SupervisedProblem`), reinforcement learning
scores ES candidates by PPO returns; both share this loop, its guards and its callbacks.

Reference: Bechtle et al., "Meta Learning via Learned Loss" (ML3), ICPR 2020; Metz et al.,
``learned_optimization`` (the gradient learner apart from the inner problem).
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

from metaloss import stopping
from metaloss.config import ConfigError, RunConfig, to_dict
from metaloss.losses.collapse import DegeneracyReport, check_degenerate
from metaloss.losses.module import LossModule
from metaloss.outer.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from metaloss.outer.estimators import make_estimator
from metaloss.outer.problem import MetaProblem
from metaloss.outer.supervised import SupervisedProblem
from metaloss.tasks import TaskFamily

__all__ = [
    "CHECKPOINT_NAME",
    "Callback",
    "MetaTrainer",
    "NonFiniteError",
    "StepRecord",
    "TrainResult",
    "ValidationRecord",
    "make_problem",
]


def make_problem(config: RunConfig, family: TaskFamily | None = None) -> MetaProblem:
    """The meta-problem of ``config``'s task family (supervised unless the family registers
    its own, e.g. reinforcement learning)."""
    from metaloss.tasks.registry import family_spec

    factory = family_spec(config.task.family).problem
    if factory is None:
        return SupervisedProblem(config, family)
    return factory(config)


class NonFiniteError(RuntimeError):
    """Too many meta-steps produced NaN/Inf meta-gradients."""


@dataclass(frozen=True)
class StepRecord:
    """One meta-step: the mean meta-loss, the meta-gradient norm (before clipping), whether the
    step was skipped as non-finite, the fraction of per-task meta-losses that were finite,
    seconds, and estimator-specific figures (``extra``; e.g. an ES population's mean and best
    meta-loss)."""

    step: int
    meta_loss: float
    grad_norm: float
    skipped: bool
    finite_fraction: float
    seconds: float
    extra: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ValidationRecord:
    """A validation: the mean meta-loss on the fixed meta-validation set."""

    step: int
    value: float
    best: bool


@dataclass
class TrainResult:
    """What meta-training produced: the best module (by meta-validation) and its history."""

    loss: LossModule
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
        """After training, with the best module restored."""


class MetaTrainer:
    """Meta-train the learned module of a :class:`~metaloss.outer.problem.MetaProblem`.

    Args:
        config: the run configuration.
        out_dir: where checkpoints go (``None``: no checkpoints).
        callbacks: progress, logging and summary hooks.
        family: the task family of a supervised problem (default: the one ``config.task``
            names); ignored when ``problem`` is given.
        problem: the meta-problem (default: :func:`make_problem` of ``config``).

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
        problem: MetaProblem | None = None,
    ) -> None:
        self.config = config
        self.out_dir = out_dir
        self.callbacks = list(callbacks)
        self.problem = problem or make_problem(config, family)
        if config.outer.estimator not in self.problem.estimators:
            raise ConfigError(
                f"outer.estimator: expected one of {', '.join(self.problem.estimators)} for the "
                f"{config.task.family} family, got {config.outer.estimator!r}"
            )
        self.generator = torch.Generator().manual_seed(config.seed)
        self.estimator = make_estimator(config.outer)
        self.loss = self.problem.make_loss(self.generator)
        self.optimizer = torch.optim.Adam(self.loss.parameters(), lr=config.outer.lr)
        self.step = 0
        self.skipped = 0
        self.bad_validations = 0
        self.best_value = float("inf")
        self.best_step = -1
        self.best_state: dict[str, Tensor] = {}
        self.steps: list[StepRecord] = []
        self.validations: list[ValidationRecord] = []

    # ---------------------------------------------------------------- one step

    def validate(self) -> float:
        """The problem's mean meta-loss of the current module on its meta-validation set."""
        return self.problem.validate(self.loss)

    def meta_step(self) -> StepRecord:
        """Sample, estimate, guard, clip and apply one meta-gradient step."""
        start = time.perf_counter()
        batch = self.problem.sample(self.generator)
        params: dict[str, Tensor] = dict(self.loss.named_parameters())
        objective = self.problem.objective(self.loss, batch)
        out = self.estimator.estimate(params, objective, self.generator)
        grad_norm = torch.sqrt(sum((g.double() ** 2).sum() for g in out.grads.values()))  # type: ignore[arg-type]
        finite_fraction = float(torch.isfinite(out.per_task).double().mean())
        finite = bool(torch.isfinite(grad_norm)) and bool(torch.isfinite(out.meta_loss))
        if finite:
            clip = self.config.outer.grad_clip
            scale = min(1.0, clip / (float(grad_norm) + 1e-12)) if clip else 1.0
            for name, p in self.loss.named_parameters():
                p.grad = out.grads[name] * scale if scale < 1.0 else out.grads[name]
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
        extra = {}
        if out.candidates is not None:
            extra = {
                "population_mean": float(out.candidates.mean()),
                "population_best": float(out.candidates.min()),
            }
        return StepRecord(
            self.step,
            float(out.meta_loss),
            float(grad_norm),
            not finite,
            finite_fraction,
            time.perf_counter() - start,
            extra,
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
        """Run the outer loop to ``outer.steps`` (continuing a checkpoint with ``resume``).

        A stop request (:mod:`metaloss.stopping`: the command line's SIGINT / SIGTERM) is
        honoured between meta-steps: the finished steps are checkpointed, the stop is raised
        from there, and the problem's workers are stopped on the way out.
        """
        with stopping.safe_points():  # a signal while closing is deferred too
            try:
                return self._train(resume)
            finally:
                self.problem.close()

    def _stop_if_requested(self) -> None:
        try:
            stopping.check()
        except BaseException:
            if self.steps:  # save() writes only for a run with a folder
                self.save()
            raise

    def _train(self, resume: bool) -> TrainResult:
        outer = self.config.outer
        if resume:
            self.resume()
        if self.step == 0 and not self.validations:
            self._emit("on_validation", self._after_validation(self.validate()))
        self._emit("on_start")
        stopped_early = False
        while self.step < outer.steps:
            self._stop_if_requested()
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
