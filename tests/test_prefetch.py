"""Meta-batches drawn ahead in a worker thread: the same batches, generator states and runs as
drawing in line, a fallback when something else drew from the generator, errors re-raised."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from metaloss.config import parse
from metaloss.outer import MetaTrainer
from metaloss.outer.prefetch import Prefetcher

SMALL = {
    "learner": {"hidden": [16]},
    "loss": {"hidden": [8]},
    "outer": {"meta_batch": 4, "val_every": 3, "val_tasks": 4, "checkpoint_every": 5, "steps": 6},
}


def draw(generator: torch.Generator) -> torch.Tensor:
    return torch.rand(3, generator=generator)


def test_prefetched_batches_and_generator_states_equal_drawing_in_line() -> None:
    inline, ahead = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    prefetcher = Prefetcher(draw)
    for i in range(6):
        torch.testing.assert_close(prefetcher.sample(ahead), draw(inline), rtol=0, atol=0)
        assert torch.equal(ahead.get_state(), inline.get_state())
        if i != 2:  # not started once: that batch is drawn in line
            prefetcher.start()
            prefetcher.start()  # once only
    assert (prefetcher.hits, prefetcher.misses) == (4, 2)
    prefetcher.close()


def test_a_generator_used_in_between_discards_the_prefetched_batch() -> None:
    inline, ahead = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    prefetcher = Prefetcher(draw)
    for _ in range(3):
        torch.testing.assert_close(prefetcher.sample(ahead), draw(inline), rtol=0, atol=0)
        prefetcher.start()
        torch.randn(2, generator=ahead), torch.randn(2, generator=inline)  # e.g. ES noise
    assert prefetcher.hits == 0 and prefetcher.misses == 3
    assert torch.equal(ahead.get_state(), inline.get_state())
    prefetcher.close()


def test_an_error_of_the_worker_is_raised_by_the_sample_that_would_have_drawn_it() -> None:
    calls = {"n": 0}

    def flaky(generator: torch.Generator) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] in (2, 4):  # the draws made ahead
            raise RuntimeError("broken task")
        return draw(generator)

    prefetcher = Prefetcher(flaky)
    generator = torch.Generator().manual_seed(0)
    prefetcher.sample(generator)
    prefetcher.start()
    with pytest.raises(RuntimeError, match="broken task"):
        prefetcher.sample(generator)  # the state the failed draw started from
    prefetcher.sample(generator)  # draw 3, in line; draw 4 fails ahead
    prefetcher.start()
    torch.randn(1, generator=generator)  # ... but the generator moves on: it is not needed
    assert prefetcher.sample(generator).shape == (3,)
    prefetcher.close()


@pytest.mark.parametrize("estimator", ["full_grad", "antithetic_es"])
def test_meta_training_with_prefetch_equals_drawing_in_line(tmp_path: Path, estimator: str) -> None:
    results = {}
    for prefetch in (False, True):
        outer = {**SMALL["outer"], "prefetch": prefetch, "estimator": estimator, "es_population": 2}
        trainer = MetaTrainer(parse({**SMALL, "outer": outer}), tmp_path / str(prefetch))
        results[prefetch] = trainer.train()
        if prefetch:
            hits = trainer.problem._prefetch.hits  # type: ignore[attr-defined]
            # ES draws its noise from the generator between samples: nothing to reuse.
            assert hits == (5 if estimator == "full_grad" else 0)
    inline, ahead = results[False], results[True]
    assert [r.meta_loss for r in ahead.steps] == [r.meta_loss for r in inline.steps]
    assert [r.grad_norm for r in ahead.steps] == [r.grad_norm for r in inline.steps]
    for name, value in inline.loss.state_dict().items():
        torch.testing.assert_close(ahead.loss.state_dict()[name], value, rtol=0, atol=0)


EXIT_WHILE_DRAWING = """
import torch
from metaloss.outer.prefetch import Prefetcher

def slow_draw(generator):
    x = torch.rand(64, 64, generator=generator)
    for _ in range(3000):
        x = torch.tanh(x @ x.T / 64)
    return x

prefetcher = Prefetcher(slow_draw)
prefetcher.sample(torch.Generator().manual_seed(0))
prefetcher.start()  # the next draw is running in the worker thread ...
raise SystemExit(3)  # ... when the program exits
"""


def test_a_program_that_exits_while_a_batch_is_drawn_keeps_its_exit_status() -> None:
    # Without waiting for the worker at exit, the interpreter's finalisation met the thread
    # inside torch and the process aborted (status -6/134, "terminate called ...").
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", EXIT_WHILE_DRAWING], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 3, done.stderr[-500:]
    assert "terminate called" not in done.stderr
