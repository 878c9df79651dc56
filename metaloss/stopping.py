"""Stop requests: a signal asks a long loop to stop at its next safe point.

A signal handler that raises lands wherever the main thread happens to be: inside a thread
join, inside ``threading``'s own locking, between a file write and its rename. With a
background thread alive (TensorBoard's writer) that can leave a lock held, so the process hangs;
inside a read from the meta-batch prefetcher's worker process it leaves half a message in the
pipe. A loop that can
stop cleanly therefore runs inside :func:`safe_points` and calls :func:`check` at its
boundaries; while it does, the first signal only *requests* a stop (:func:`defer`) and the loop
raises :class:`Terminated` or :class:`KeyboardInterrupt` at its next :func:`check`, after its
workers have been stopped. A second signal, or a signal outside any such loop, is the
caller's to raise at once.

The command line installs the handlers (``metaloss.cli``); library code only marks its loops.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["Terminated", "check", "defer", "safe_points", "stop"]


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that atomic writes clean up after themselves."""


class _State:
    def __init__(self) -> None:
        self.depth = 0
        self.pending: int | None = None  # the signal number of a deferred request


_state = _State()


@contextmanager
def safe_points() -> Iterator[None]:
    """Mark a loop that calls :func:`check` at its boundaries (main thread only). A request
    still pending when the outermost one ends is raised then; if the loop ends by an exception,
    that exception goes on and the request is dropped."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _state.depth += 1
    try:
        yield
    finally:
        _state.depth -= 1
        signum = _state.pending if _state.depth == 0 else None
        if _state.depth == 0:
            _state.pending = None
    if signum is not None:
        stop(signum)


def defer(signum: int) -> bool:
    """Record a stop request for the running loop; ``False`` when there is none or a request
    is already pending (then the caller stops at once)."""
    if _state.depth == 0 or _state.pending is not None:
        return False
    _state.pending = signum
    return True


def check() -> None:
    """Raise the deferred request, if any: :class:`KeyboardInterrupt` for SIGINT,
    :class:`Terminated` otherwise."""
    signum, _state.pending = _state.pending, None
    if signum is not None:
        stop(signum)


def stop(signum: int) -> None:
    """Raise the stop for signal ``signum`` now: :class:`KeyboardInterrupt` for SIGINT,
    :class:`Terminated` otherwise."""
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated
