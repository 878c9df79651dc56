"""Opt-in ``torch.compile`` of the batched backend's unroll (``inner.compile: true``).

The whole unroll of K steps (learner forward passes, the loss's gradients w.r.t. the predictions,
the hand-written backward through the layers, the optimiser updates and the non-finite guard) is
traced into one graph, compiled by inductor together with its backward, and reused by every later
meta-step with the same shapes and modes. Inside the compiled region the loss gradient is taken
with ``torch.func.grad`` (``torch.autograd.grad`` would break the graph); both give the same
values.

The first call compiles (minutes on a small CPU). A new grad mode (meta-training vs validation
and benchmarking under ``no_grad``), a new truncation, a new shape (meta-batch vs validation
tasks) or a new ``record`` split compiles another graph. :meth:`CompiledUnroll.report` counts the
graphs and the seconds spent compiling them.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["CompiledUnroll"]

logger = logging.getLogger(__name__)


def _eager_backward() -> Any:
    """Compile the backward graph with the forward (inductor defers it to the first backward
    by default), so that the compile time is all inside the call that is timed."""
    import torch._functorch.config as aot_config

    if hasattr(aot_config, "force_non_lazy_backward_lowering"):
        return aot_config.patch(force_non_lazy_backward_lowering=True)
    return contextlib.nullcontext()


class CompiledUnroll:
    """``torch.compile(fn)`` with the inductor backend, counting compiled graphs and the time of
    the calls that compiled them (tracing, compiling and that one execution); ``label`` names
    the setting in the log; ``eager_backward=False`` skips the backward-lowering patch for
    functions that take no backward outside the graph (it costs tens of µs per call)."""

    def __init__(
        self, fn: Callable[..., Any], label: str = "inner.compile", eager_backward: bool = True
    ) -> None:
        self.label = label
        self.eager_backward = eager_backward
        self.graphs = 0
        self.compile_seconds = 0.0
        self.compiled = torch.compile(fn, backend=self._backend)

    def _backend(self, graph: torch.fx.GraphModule, example_inputs: list[Any]) -> Any:
        from torch._inductor.compile_fx import compile_fx

        self.graphs += 1
        return compile_fx(graph, example_inputs)

    def __call__(self, *args: Any) -> Any:
        before, start = self.graphs, time.perf_counter()
        with _eager_backward() if self.eager_backward else contextlib.nullcontext():
            out = self.compiled(*args)
        if self.graphs > before:
            seconds = time.perf_counter() - start
            self.compile_seconds += seconds
            logger.info("%s: %d graph(s) compiled in %.1f s", self.label, self.graphs, seconds)
        return out

    def report(self) -> dict[str, float]:
        """``compile_seconds`` (wall time of the calls that compiled), ``graphs`` (compiled
        graphs) and ``recompiles`` (graphs after the first: new modes, shapes, graph breaks)."""
        return {
            "compile_seconds": self.compile_seconds,
            "graphs": float(self.graphs),
            "recompiles": float(max(self.graphs - 1, 0)),
        }
