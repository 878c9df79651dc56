"""A persistent process pool for independent RL training runs (one torch thread per worker).

Workers are started with ``spawn`` (safe with torch's thread pools) on first use and reused until
:meth:`WorkerPool.close`. With one worker, jobs run in the calling process. A worker that dies
raises :class:`concurrent.futures.process.BrokenProcessPool` instead of hanging.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

import torch

__all__ = ["WorkerPool"]

J = TypeVar("J")
R = TypeVar("R")


def _init_worker() -> None:
    torch.set_num_threads(1)


class WorkerPool:
    """Map a picklable function over jobs in ``workers`` processes, keeping them between calls.

    Example:
        >>> pool = WorkerPool(1)
        >>> pool.map(abs, [-1, 2])
        [1, 2]
        >>> pool.close()
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._executor: ProcessPoolExecutor | None = None

    def map(self, fn: Callable[[J], R], jobs: Sequence[J]) -> list[R]:
        """``[fn(job) for job in jobs]``, in parallel when there are several workers and jobs."""
        if self.workers <= 1 or len(jobs) <= 1:
            with torch.enable_grad():
                return [fn(job) for job in jobs]
        if self._executor is None:
            context = multiprocessing.get_context("spawn")
            self._executor = ProcessPoolExecutor(
                self.workers, mp_context=context, initializer=_init_worker
            )
        return list(self._executor.map(fn, jobs))

    def close(self) -> None:
        """Stop the worker processes (the pool restarts them if used again)."""
        if self._executor is not None:
            self._executor.shutdown()
            self._executor = None
