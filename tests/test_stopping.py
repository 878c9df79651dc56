"""Stop requests (metaloss.stopping): a signal during meta-training stops the run between
meta-steps, with its prefetch worker stopped and every finished step checkpointed."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch
from test_trainer import small_config

from metaloss import stopping
from metaloss.outer import Callback, MetaTrainer
from metaloss.outer.checkpoint import load_checkpoint


def config(prefetch: bool, steps: int = 10):  # type: ignore[no-untyped-def]
    return small_config(steps=steps, prefetch=prefetch)


class Signal(Callback):
    """What the command line's handler does when the signal arrives during step ``at``."""

    def __init__(self, at: int, signum: int) -> None:
        self.at, self.signum, self.deferred = at, signum, None

    def on_step(self, trainer: MetaTrainer, record: object) -> None:
        if trainer.step == self.at:
            self.deferred = stopping.defer(self.signum)


def test_outside_a_marked_loop_a_signal_is_not_deferred() -> None:
    assert not stopping.defer(signal.SIGTERM)
    stopping.check()  # nothing pending: returns


def test_a_second_signal_is_not_deferred_and_a_late_one_is_raised_when_the_loop_ends() -> None:
    with pytest.raises(stopping.Terminated), stopping.safe_points():
        assert stopping.defer(signal.SIGTERM)
        assert not stopping.defer(signal.SIGTERM)  # the caller stops at once
    stopping.check()  # raised once: nothing left pending
    with pytest.raises(KeyboardInterrupt), stopping.safe_points():
        assert stopping.defer(signal.SIGINT)
        stopping.check()


def test_a_loop_that_fails_keeps_its_own_error_and_drops_the_request() -> None:
    with pytest.raises(ValueError), stopping.safe_points():
        stopping.defer(signal.SIGTERM)
        raise ValueError
    stopping.check()


@pytest.mark.parametrize("prefetch", [True, False])
def test_a_stop_request_ends_the_run_after_the_step_and_resumes_exactly(
    tmp_path: Path, prefetch: bool
) -> None:
    reference = MetaTrainer(config(prefetch), tmp_path / "ref").train()
    request = Signal(at=7, signum=signal.SIGTERM)
    trainer = MetaTrainer(config(prefetch), tmp_path / "run", callbacks=[request])
    with pytest.raises(stopping.Terminated):
        trainer.train()
    assert request.deferred is True
    assert trainer.step == 7  # stopped before step 8 began
    prefetcher = trainer.problem._prefetch  # type: ignore[attr-defined]
    assert prefetcher._pending is None and prefetcher._worker is None  # its worker was stopped
    saved = load_checkpoint(trainer.checkpoint_path())
    assert len(saved["steps"]) == 7  # step 7 was checkpointed although checkpoint_every is 5
    resumed = MetaTrainer(config(prefetch), tmp_path / "run").train(resume=True)
    for name, value in reference.loss.state_dict().items():
        torch.testing.assert_close(resumed.loss.state_dict()[name], value, rtol=0, atol=0)
    assert [r.meta_loss for r in resumed.steps] == [r.meta_loss for r in reference.steps]


def test_ctrl_c_is_deferred_the_same_way(tmp_path: Path) -> None:
    trainer = MetaTrainer(config(True), tmp_path, callbacks=[Signal(2, signal.SIGINT)])
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    assert trainer.step == 2
