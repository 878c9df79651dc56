"""Run a test's worker in two gloo processes on loopback, with the rendezvous store hosted by
the test process itself (as torchrun's agent hosts it), so no worker's exit can take the store
away from a peer that is still shutting down, and no free port is guessed before it is bound.

A member that finished leaves as the command line's torchrun processes do
(``metaloss.commands.distributed.leave``: streams flushed, no interpreter teardown): CI saw a
member abort after its work ('terminate called without an active exception', SIGABRT) twice in
many runs, and the same abort in teardown was reproduced in the torchrun launch (5 of 45 runs).
``faulthandler`` prints every thread's Python stack if a member is still killed by a signal."""

from __future__ import annotations

import faulthandler
import os
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from metaloss.commands.distributed import leave

HOST = "127.0.0.1"


def spawn_gloo(worker: Callable[..., None], world: int, *args: Any) -> None:
    """``worker(rank, *args)`` in ``world`` spawned processes joined in one gloo group; raises
    if any process fails."""
    store = dist.TCPStore(HOST, 0, is_master=True, wait_for_workers=False)
    mp.spawn(_member, args=(world, store.port, worker, args), nprocs=world, join=True)


def _member(
    rank: int, world: int, port: int, worker: Callable[..., None], args: tuple[Any, ...]
) -> None:
    faulthandler.enable(all_threads=True)
    torch.set_num_threads(1)
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"  # keep gloo on loopback
    store = dist.TCPStore(HOST, port, is_master=False)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=world)
    try:
        worker(rank, *args)
        dist.barrier()  # every member done before any tears the group down
    finally:
        dist.destroy_process_group()
    leave(0)  # done: no interpreter teardown (see the module's docstring)
