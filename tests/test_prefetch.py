"""Meta-batches drawn ahead in a worker process: the same batches, generator states and runs as
drawing in line, a fallback when something else drew from the generator or the worker failed or
died, and no worker left behind."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from metaloss.config import parse
from metaloss.outer import MetaTrainer
from metaloss.outer.prefetch import Prefetcher, _Worker
from metaloss.tasks.base import Batch, Task

SMALL = {
    "learner": {"hidden": [16]},
    "loss": {"hidden": [8]},
    "outer": {"meta_batch": 4, "val_every": 3, "val_tasks": 4, "checkpoint_every": 5, "steps": 6},
}


@pytest.fixture(autouse=True)
def _a_spare_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker is tested whatever the machine's CPU count (with one CPU it is off by
    default, see the last test)."""
    import metaloss.outer.prefetch as prefetch

    if not sys.platform.startswith("linux"):
        pytest.skip("the prefetch worker is forked on Linux only")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert prefetch.fork_available()


def test_with_one_cpu_every_batch_is_drawn_in_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    prefetcher = Prefetcher(draw)
    prefetcher.sample(torch.Generator().manual_seed(0))
    prefetcher.start()
    assert not prefetcher.enabled and prefetcher._worker is None


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


def fails_on_odd_states(generator: torch.Generator) -> torch.Tensor:
    """A draw that fails for some generator states, deterministically (as a broken task would),
    in the worker and in line alike."""
    batch = draw(generator)
    if batch[0] < 0.5:
        raise RuntimeError("broken task")
    return batch


def test_a_draw_that_fails_in_the_worker_fails_in_line_with_its_own_error() -> None:
    inline, ahead = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    prefetcher = Prefetcher(fails_on_odd_states)
    outcomes = []
    for _ in range(12):
        try:
            expected: torch.Tensor | None = fails_on_odd_states(inline)
        except RuntimeError:
            expected = None
        try:
            got: torch.Tensor | None = prefetcher.sample(ahead)
        except RuntimeError as error:
            assert str(error) == "broken task"
            got = None
        prefetcher.start()
        outcomes.append(expected is None)
        assert (got is None) == (expected is None)
        if expected is not None and got is not None:
            torch.testing.assert_close(got, expected, rtol=0, atol=0)
        assert torch.equal(ahead.get_state(), inline.get_state())
    assert any(outcomes) and not all(outcomes)  # both kinds of draw met
    prefetcher.close()


def test_batches_of_nested_tensors_come_back_exactly() -> None:
    def nested(generator: torch.Generator) -> dict[str, object]:
        values = torch.randn(3, 5, generator=generator, dtype=torch.float64)
        return {
            "task": Task(
                Batch(values, values[:, :1].float(), {"clean_y": values > 0}),
                Batch(torch.randint(0, 7, (4,), generator=generator), torch.zeros(0), {}),
                Batch(torch.tensor(2.5), torch.rand((), generator=generator), {"n": 3}),  # type: ignore[dict-item]
            ),
            "lr": None,
            "index": 2,
        }

    inline, ahead = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    prefetcher = Prefetcher(nested)
    for _ in range(3):
        got, expected = prefetcher.sample(ahead), nested(inline)
        prefetcher.start()
        assert (got["lr"], got["index"]) == (None, 2)
        assert type(got["task"]) is Task and type(got["task"].train) is Batch
        torch.testing.assert_close(got["task"], expected["task"], rtol=0, atol=0)
    assert prefetcher.hits == 2
    prefetcher.close()


def _drawing_ahead(
    fn: Callable[[torch.Generator], torch.Tensor], seed: int
) -> tuple[Prefetcher[torch.Tensor], _Worker, torch.Generator, torch.Generator]:
    """A prefetcher whose worker is drawing the second batch, its worker, and the generators
    of drawing in line and ahead, both after the first batch."""
    inline, ahead = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    prefetcher = Prefetcher(fn)
    prefetcher.sample(ahead), fn(inline)
    prefetcher.start()
    assert prefetcher._worker is not None
    return prefetcher, prefetcher._worker, inline, ahead


def test_a_killed_worker_is_replaced_and_its_batch_drawn_in_line() -> None:
    prefetcher, worker, inline, ahead = _drawing_ahead(draw, 1)
    os.kill(worker.process.pid, signal.SIGKILL)  # type: ignore[arg-type]
    worker.process.join()
    for _ in range(3):
        torch.testing.assert_close(prefetcher.sample(ahead), draw(inline), rtol=0, atol=0)
        prefetcher.start()
    assert prefetcher._worker is not worker and (prefetcher.hits, prefetcher.misses) == (2, 2)
    prefetcher.close()
    assert not worker.process.is_alive()


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


def test_a_worker_that_hangs_is_stopped_and_its_batch_drawn_in_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import metaloss.outer.prefetch as prefetch

    monkeypatch.setattr(prefetch, "_MIN_WAIT_SECONDS", 0.5)
    owner = os.getpid()

    def hangs_in_the_worker(generator: torch.Generator) -> torch.Tensor:
        if os.getpid() != owner:  # e.g. a lock another thread held at the fork
            threading.Event().wait()
        return draw(generator)

    prefetcher, worker, inline, ahead = _drawing_ahead(hangs_in_the_worker, 4)
    torch.testing.assert_close(prefetcher.sample(ahead), draw(inline), rtol=0, atol=0)
    assert not worker.process.is_alive() and (prefetcher.hits, prefetcher.misses) == (0, 2)
    prefetcher.start()  # a worker that hung once may hang again: no new one
    torch.testing.assert_close(prefetcher.sample(ahead), draw(inline), rtol=0, atol=0)
    assert prefetcher._worker is None and not prefetcher.enabled and prefetcher.misses == 3
    prefetcher.close()


def test_a_pipe_the_program_closes_is_not_held_open_by_the_worker() -> None:
    # A forked worker inherits every descriptor; one that kept a pipe's write end open made a
    # subprocess driven through its stdin (experiments/speed.py's reference worker) wait forever.
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    prefetcher = Prefetcher(draw)
    prefetcher.sample(torch.Generator().manual_seed(0))
    prefetcher.start()  # forks the worker while the pipe is open
    prefetcher.sample(torch.Generator().manual_seed(1))  # the worker has answered once
    os.close(write_end)
    try:
        assert os.read(read_end, 1) == b""  # end of file: no writer left (the worker's is gone)
    finally:
        os.close(read_end)
        prefetcher.close()


EXIT_WHILE_DRAWING = """
import os, signal, sys, torch
from metaloss.outer.prefetch import Prefetcher

os.sched_getaffinity = lambda pid: {0, 1}  # the worker whatever the machine's CPU count

def slow_draw(generator):
    x = torch.rand(64, 64, generator=generator)
    for _ in range(30000):
        x = torch.tanh(x @ x.T / 64)
    return x

prefetcher = Prefetcher(slow_draw)
prefetcher.sample(torch.Generator().manual_seed(0))
prefetcher.start()  # the next draw is running in the worker ...
print(prefetcher._worker.process.pid, flush=True)
if sys.argv[1] == "kill":
    os.kill(os.getpid(), signal.SIGKILL)  # ... when the program is killed
raise SystemExit(3)  # ... when the program exits
"""


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (an orphan's parent may never reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@pytest.mark.parametrize(("how", "status"), [("exit", 3), ("kill", -signal.SIGKILL)])
def test_the_worker_ends_with_the_program_that_started_it(how: str, status: int) -> None:
    # The program keeps its exit status, and its worker, in the middle of a long draw, does not
    # outlive it (after a SIGKILL the worker notices within about a second that its parent is
    # gone). The deadline bounds a hang on a loaded machine, not a speed.
    import subprocess
    import sys
    import time

    done = subprocess.run(
        [sys.executable, "-c", EXIT_WHILE_DRAWING, how], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == status, done.stderr[-500:]
    assert "Traceback" not in done.stderr
    pid = int(done.stdout.split()[0])
    deadline = time.time() + 60
    while _running(pid) and time.time() < deadline:
        time.sleep(0.1)
    assert not _running(pid)
