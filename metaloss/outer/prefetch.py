"""Draw the next meta-batch in a worker process while the current meta-step runs.

Sampling is a deterministic function of the generator's state. :meth:`Prefetcher.start` (called
by the problem right after a meta-batch is drawn) sends the generator's state to a worker
process, which draws the next meta-batch from a clone of it. The next :meth:`Prefetcher.sample`
uses that batch only if the generator is then in exactly the state the clone started from (and
advances the generator to the clone's final state), so the meta-batches, the generator's states,
checkpoints and resumed runs are exactly those of sampling in line. If something else drew from
the generator in between (e.g. the noise of evolution strategies), the state was restored from a
checkpoint, or the worker failed, the batch is drawn in line.

Why a process, not a thread: torch's CPU autograd holds the GIL for most of a small backward,
so a drawing thread's Python competed with the meta-step instead of running beside it (a Python
thread spinning beside a plain ``bmm``/``tanh`` backward made it 13× slower here). The worker is
forked once (as ``torch.utils.data.DataLoader``'s workers are on Linux) and runs with one
intra-op thread; it draws on the CPU only. The batch comes back as JSON (its tree, each tensor
replaced by its place) and one byte buffer (the tensors' bytes): no pickle, and no shared-memory
file per tensor. Every other descriptor the fork inherited points at ``/dev/null`` in the
worker, so it holds none of its parent's pipes open. The worker is stopped when the prefetcher is closed or the program exits, and stops itself
within about a second when its parent dies; a worker that fails, dies or does not answer (see
:data:`_MIN_WAIT_SECONDS`) leaves the batch to be drawn in line. Where ``fork`` is not available
(Windows; macOS, whose system frameworks are not fork-safe), or the process may run on one CPU
only, every batch is drawn in line.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import multiprocessing
import os
import signal
import sys
import time
import weakref
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, Generic, TypeVar

import torch

__all__ = ["Prefetcher", "fork_available"]

T = TypeVar("T")

_ALIGN = 16
"""Byte alignment of every tensor in the transfer buffer (so that each can be viewed in place)."""

_MIN_WAIT_SECONDS = 30.0
"""How long :meth:`Prefetcher.sample` waits at least for the worker before drawing in line
instead; the bound is 20 times the slowest draw made in line, if that is longer (a bound against
a worker that hangs, e.g. on a lock another thread held at the fork, far above any honest draw).
After a worker hung, the prefetcher draws every batch in line."""

_LIVE: weakref.WeakSet[Prefetcher[Any]] = weakref.WeakSet()
"""Every prefetcher alive, so that its worker is stopped when the interpreter exits."""


@atexit.register
def _close_live_prefetchers() -> None:
    for prefetcher in list(_LIVE):
        prefetcher.close()


def fork_available() -> bool:
    """Whether batches can be drawn in a forked worker here: a platform with ``fork`` and a CPU
    to spare (with one CPU the worker would only take turns with the meta-step)."""
    if (
        not sys.platform.startswith("linux")
        or "fork" not in multiprocessing.get_all_start_methods()
    ):
        return False
    return len(os.sched_getaffinity(0)) > 1


# ---------------------------------------------------------------------------------- transfer


def pack(tree: Any) -> tuple[bytes, bytes]:
    """``tree`` (tensors, ``None``, numbers and strings in dicts with string keys, tuples and
    named tuples) as ``(skeleton, data)``: the tree as JSON with every tensor replaced by its
    place in ``data`` (offset, dtype, shape), and the tensors' bytes."""
    tensors: list[tuple[int, torch.Tensor]] = []
    end = 0

    def encode(node: Any) -> Any:
        nonlocal end
        if isinstance(node, torch.Tensor):
            flat = node.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
            tensors.append((end, flat))
            place = [end, str(node.dtype).removeprefix("torch."), list(node.shape)]
            end = -(-(end + flat.numel()) // _ALIGN) * _ALIGN
            return {"tensor": place}
        if isinstance(node, dict):
            if not all(isinstance(k, str) for k in node):
                raise TypeError("prefetch: a batch's dict keys must be strings")
            return {"dict": [[k, encode(v)] for k, v in node.items()]}
        if isinstance(node, tuple):
            items = [encode(v) for v in node]
            if hasattr(node, "_fields"):
                kind = type(node)
                return {"namedtuple": [kind.__module__, kind.__qualname__, items]}
            return {"tuple": items}
        if node is None or isinstance(node, bool | int | float | str):
            return {"value": node}
        raise TypeError(f"prefetch: cannot send a {type(node).__name__} in a batch")

    skeleton = json.dumps(encode(tree)).encode()
    data = torch.zeros(end, dtype=torch.uint8, device="cpu")
    for offset, flat in tensors:
        data[offset : offset + flat.numel()] = flat
    return skeleton, data.numpy().tobytes()


def unpack(skeleton: bytes, data: bytes) -> Any:
    """The tree :func:`pack` packed (each tensor a view into one buffer of ``data``). Only JSON
    is parsed: named tuples are looked up among the classes of modules already imported, dtypes
    among torch's; nothing is imported or executed."""
    if not data:
        data = bytes(_ALIGN)  # torch.frombuffer refuses an empty buffer
    buffer = torch.frombuffer(bytearray(data), dtype=torch.uint8)

    def decode(node: dict[str, Any]) -> Any:
        ((kind, value),) = node.items()
        if kind == "tensor":
            offset, name, shape = value
            dtype = getattr(torch, name)
            if not isinstance(dtype, torch.dtype):
                raise TypeError(f"prefetch: {name!r} is not a torch dtype")
            size = torch.Size(shape).numel() * dtype.itemsize
            return buffer[offset : offset + size].view(dtype).reshape(shape)
        if kind == "dict":
            return {k: decode(v) for k, v in value}
        if kind == "tuple":
            return tuple(decode(v) for v in value)
        if kind == "namedtuple":
            module, qualname, items = value
            return _named_tuple_class(module, qualname)(*(decode(v) for v in items))
        return value

    return decode(json.loads(skeleton))


def _named_tuple_class(module: str, qualname: str) -> type:
    """A named tuple class of a module that is already imported."""
    found: Any = sys.modules[module]
    for part in qualname.split("."):
        found = getattr(found, part)
    if not (isinstance(found, type) and issubclass(found, tuple) and hasattr(found, "_fields")):
        raise TypeError(f"prefetch: {module}.{qualname} is not a named tuple class")
    return found


# ---------------------------------------------------------------------------------- the worker


def _bytes(state: torch.Tensor) -> bytes:
    """A generator state as plain bytes (a tensor sent through a pipe would be shared through a
    file descriptor by torch's reductions)."""
    return state.numpy().tobytes()


def _state(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def _release_inherited_files(keep: int) -> None:
    """Point every file descriptor the fork inherited, but ``keep``, at ``/dev/null``.

    A forked worker holds a copy of each of its parent's descriptors, so a pipe the parent
    closes (a subprocess's stdin, a pipe another program reads to its end) would stay open while
    the worker lives and its reader would wait for it. Redirecting rather than closing keeps the
    numbers taken, so a file the worker opens later never reuses one that an inherited Python
    object may still close."""
    null = os.open(os.devnull, os.O_RDWR)
    try:
        open_fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:  # no /proc: every descriptor below the usual limit
        open_fds = list(range(1024))
    for fd in open_fds:
        if fd in (keep, null):
            continue
        with contextlib.suppress(OSError):  # the listing's own descriptor, already closed
            os.dup2(null, fd)


def _serve(
    requests: Connection, inherited: Connection, draw: Callable[[torch.Generator], Any], parent: int
) -> None:
    """The worker's loop: for each generator state received, the batch drawn from a clone of it
    (skeleton, end state and data, as three messages of bytes), or an empty message if the draw
    failed (the parent then draws in line and meets the error itself). Ends at an empty
    request, when the parent's end closes, or when the parent process is gone (checked every
    second: another process forked later may hold a copy of the parent's end)."""
    inherited.close()  # the parent's end: holding it would hide the parent's death
    _release_inherited_files(requests.fileno())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    torch.set_num_threads(1)
    try:
        while True:
            while not requests.poll(1.0):
                if os.getppid() != parent:
                    return
            begin = requests.recv_bytes()
            if not begin:
                return
            clone = torch.Generator()
            clone.set_state(_state(begin))
            try:
                skeleton, data = pack(draw(clone))
            except Exception:
                requests.send_bytes(b"")
                continue
            requests.send_bytes(skeleton)
            requests.send_bytes(_bytes(clone.get_state()))
            requests.send_bytes(data)
    except (EOFError, OSError, KeyboardInterrupt):
        return


class _Worker:
    """One forked process that draws batches on request."""

    def __init__(self, draw: Callable[[torch.Generator], Any]) -> None:
        context = multiprocessing.get_context("fork")
        self.connection, child = context.Pipe()
        self.process = context.Process(
            target=_serve,
            args=(child, self.connection, draw, os.getpid()),
            name="metaloss-prefetch",
            daemon=True,
        )
        self.process.start()
        child.close()
        self.timed_out = False

    def request(self, begin: torch.Tensor) -> bool:
        try:
            self.connection.send_bytes(_bytes(begin))
        except OSError:
            return False
        return True

    def receive(self, timeout: float) -> tuple[Any, torch.Tensor] | None:
        """The pending batch and the generator state after it, or ``None`` if the draw failed,
        the worker died or did not answer within ``timeout`` seconds (then it is stopped)."""
        try:
            if not self.connection.poll(timeout):
                self.timed_out = True
                self.close()
                return None
            skeleton = self.connection.recv_bytes()
            if not skeleton:  # the draw failed
                return None
            end = _state(self.connection.recv_bytes())
            return unpack(skeleton, self.connection.recv_bytes()), end
        except (EOFError, OSError):
            return None

    def alive(self) -> bool:
        return self.process.is_alive()

    def close(self) -> None:
        """Stop the worker at once (it holds nothing but a batch being drawn)."""
        self.connection.close()
        self.process.kill()
        self.process.join()


# ---------------------------------------------------------------------------------- the interface


class Prefetcher(Generic[T]):
    """``sample(generator)`` with the next call's result drawn ahead in a worker process.

    Args:
        draw: ``draw(generator) -> batch`` on the CPU, deterministic given the generator's
            state; its batch holds tensors in dicts, tuples and named tuples.
        enabled: ``False`` (or a platform without ``fork``, or a process with one CPU) draws
            every batch in line.
    """

    def __init__(self, draw: Callable[[torch.Generator], T], enabled: bool = True) -> None:
        self.draw = draw
        self.enabled = enabled and fork_available()
        self.hits = 0
        self.misses = 0
        self._worker: _Worker | None = None
        self._pending: torch.Tensor | None = None  # the state the worker's draw started from
        self._next: torch.Tensor | None = None  # the state after the last batch returned
        self._slowest = 0.0  # seconds of the slowest draw made in line
        self._owner = os.getpid()  # a forked worker inherits this object: only its owner closes it
        _LIVE.add(self)

    def sample(self, generator: torch.Generator) -> T:
        """The batch ``draw(generator)`` would return, with ``generator`` advanced the same."""
        batch: T | None = None
        if self._pending is not None and self._worker is not None:
            begin, self._pending = self._pending, None
            result = self._worker.receive(max(_MIN_WAIT_SECONDS, 20 * self._slowest))
            if self._worker.timed_out:  # a worker that hung once may hang again: draw in line
                self.enabled, self._worker = False, None
            if result is not None and torch.equal(begin, generator.get_state()):
                batch = result[0]
                generator.set_state(result[1])
                self.hits += 1
        if batch is None:
            began = time.perf_counter()
            batch = self.draw(generator)
            self._slowest = max(self._slowest, time.perf_counter() - began)
            self.misses += 1
        self._next = generator.get_state() if self.enabled else None
        return batch

    def start(self) -> None:
        """Begin drawing the batch after the last one :meth:`sample` returned (once; a no-op
        when disabled or already started). The worker is forked at the first call."""
        if self._next is None:
            return
        begin, self._next = self._next, None
        if self._worker is None or not self._worker.alive():
            if self._worker is not None:
                self._worker.close()
            self._worker = _Worker(self.draw)
        if self._worker.request(begin):
            self._pending = begin

    def close(self) -> None:
        """Stop the worker and drop a batch it may be drawing."""
        self._next = self._pending = None
        if self._worker is not None:
            worker, self._worker = self._worker, None
            worker.close()

    def __del__(self) -> None:  # a prefetcher dropped without close(): stop its worker
        if getattr(self, "_worker", None) is not None and os.getpid() == self._owner:
            self.close()
