"""Draw the next meta-batch in the background while the current meta-step back-propagates.

Sampling is a deterministic function of the generator's state. After a meta-batch is drawn,
:class:`Prefetcher` clones the generator; :meth:`Prefetcher.start` (called by the problem when
its meta-objective has been computed, right before the outer backward) draws the next meta-batch
from the clone in a worker thread. The next :meth:`Prefetcher.sample` uses it only if the
generator is then in exactly the state the clone started from (and advances the generator to the
clone's final state), so the meta-batches, the generator's states, checkpoints and resumed runs
are exactly those of sampling in line. If something else drew from the generator in between
(e.g. the noise of evolution strategies) or the state was restored from a checkpoint, the
prefetched batch is discarded and the meta-batch is drawn in line.

Why at the backward: the autograd engine runs without the GIL, so the Python-heavy drawing then
competes least with the main thread. The worker uses the main thread's number of intra-op threads
(a new thread would otherwise start with OpenMP's default team, which made every small op of the
worker many times slower on a loaded machine).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

import torch

__all__ = ["Prefetcher"]

T = TypeVar("T")


class Prefetcher(Generic[T]):
    """``sample(generator)`` with the next call's result computed ahead in a worker thread.

    Args:
        draw: ``draw(generator) -> batch``, deterministic given the generator's state.
        enabled: ``False`` draws every batch in line (no thread).
    """

    def __init__(self, draw: Callable[[torch.Generator], T], enabled: bool = True) -> None:
        self.draw = draw
        self.enabled = enabled
        self.hits = 0
        self.misses = 0
        self._executor: ThreadPoolExecutor | None = None
        self._pending: tuple[torch.Tensor, Future[tuple[T, torch.Tensor]]] | None = None
        self._next: torch.Tensor | None = None

    def _ahead(self, clone: torch.Generator) -> tuple[T, torch.Tensor]:
        batch = self.draw(clone)
        return batch, clone.get_state()

    def sample(self, generator: torch.Generator) -> T:
        """The batch ``draw(generator)`` would return, with ``generator`` advanced the same."""
        batch: T | None = None
        if self._pending is not None:
            begin, future = self._pending
            self._pending = None
            error = future.exception()
            if torch.equal(begin, generator.get_state()):
                if error is not None:  # drawing in line would fail the same way
                    raise error
                batch, end = future.result()
                generator.set_state(end)
                self.hits += 1
        if batch is None:
            batch = self.draw(generator)
            self.misses += 1
        self._next = generator.get_state() if self.enabled else None
        return batch

    def start(self) -> None:
        """Begin drawing the batch after the last one :meth:`sample` returned (once; a no-op
        when disabled or already started)."""
        if self._next is None:
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                1,
                thread_name_prefix="metaloss-prefetch",
                initializer=torch.set_num_threads,
                initargs=(torch.get_num_threads(),),
            )
        clone = torch.Generator()
        clone.set_state(self._next)
        self._pending = (self._next, self._executor.submit(self._ahead, clone))
        self._next = None

    def close(self) -> None:
        """Wait for the worker and stop it (a later :meth:`sample` starts a new one)."""
        self._pending = self._next = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
