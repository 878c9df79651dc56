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

import atexit
import threading
import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import torch

__all__ = ["Prefetcher"]

T = TypeVar("T")

_LIVE: weakref.WeakSet[Prefetcher[Any]] = weakref.WeakSet()
"""Every prefetcher alive, so that a draw still running when the interpreter exits is waited
for: a worker thread inside torch during interpreter finalisation aborts the process
("terminate called without an active exception", exit status 134 instead of the program's own).
Measured: a script that raised right after a meta-objective (the draw started, not finished)
aborted 4 times in 4."""


@atexit.register
def _join_live_prefetchers() -> None:
    for prefetcher in list(_LIVE):
        prefetcher.close()


class _Ahead(Generic[T]):
    """One batch drawn in a daemon thread from a clone of the generator.

    A plain daemon thread, not a thread pool: a SIGTERM turned into an exception in the main
    thread can land inside the pool's own locking (``submit``'s semaphore) and leave a lock held,
    after which joining the pool's worker hangs forever; a daemon thread shares no lock with the
    main thread and never keeps the interpreter from exiting. The prefetcher records each
    thread before starting it and joins it in ``close`` (a daemon thread still inside torch at
    interpreter exit would abort the process).
    """

    def __init__(self, draw: Callable[[torch.Generator], T], begin: torch.Tensor) -> None:
        self.begin = begin
        self.batch: T | None = None
        self.end: torch.Tensor | None = None
        self.error: BaseException | None = None
        self._draw = draw
        self._threads = torch.get_num_threads()
        self._thread = threading.Thread(target=self._run, name="metaloss-prefetch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        torch.set_num_threads(self._threads)
        clone = torch.Generator()
        clone.set_state(self.begin)
        try:
            self.batch = self._draw(clone)
            self.end = clone.get_state()
        except BaseException as error:  # re-raised in the main thread if the batch is used
            self.error = error

    def wait(self) -> None:
        """Until the batch is drawn (at once if the thread never started)."""
        if self._thread.ident is not None:
            self._thread.join()


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
        self._pending: _Ahead[T] | None = None
        self._next: torch.Tensor | None = None
        _LIVE.add(self)

    def sample(self, generator: torch.Generator) -> T:
        """The batch ``draw(generator)`` would return, with ``generator`` advanced the same."""
        batch: T | None = None
        if self._pending is not None:
            ahead = self._pending
            ahead.wait()  # still pending if a signal interrupts the wait: close() joins it
            self._pending = None
            if torch.equal(ahead.begin, generator.get_state()):
                if ahead.error is not None:  # drawing in line would fail the same way
                    raise ahead.error
                assert ahead.end is not None
                batch = ahead.batch
                generator.set_state(ahead.end)
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
        ahead = _Ahead(self.draw, self._next)
        self._pending, self._next = ahead, None  # recorded before it runs: close() always joins
        ahead.start()

    def close(self) -> None:
        """Wait for a batch still being drawn and drop it."""
        self._next = None
        if self._pending is not None:
            self._pending.wait()
        self._pending = None
