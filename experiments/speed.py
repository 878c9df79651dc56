"""Speed and memory of meta-training against idiomatic hand-written peers.

1. Meta-steps per second on sine (learner MLP 1-40-40-1, K = 10 SGD steps on 10 samples, the
   default learned loss) at meta-batch 4, 16 and 64, timed in interleaved windows with one
   thread. ``metaloss`` is ``MetaTrainer.meta_step()`` as a user runs it (sampling its tasks,
   the meta-gradient, clipping and the Adam step); every peer runs the same meta-step on one fixed
   meta-batch of the same family, with the same learner initialisations and the same loss
   network:

   - ``higher``: ``higher.innerloop_ctx`` with ``torch.optim.SGD``, a loop over tasks;
   - ``autograd loop``: ``torch.autograd.grad(create_graph=True)`` task by task;
   - ``torchopt``: torchopt's functional API (``torchopt.sgd``, ``apply_updates``) task by task;
   - ``vmap``: ``torch.func.grad`` inside ``torch.func.vmap`` over tasks;
   - ``stacked baddbmm``: the tasks' parameters stacked, one ``baddbmm`` per layer and one
     ``torch.autograd.grad`` of the summed task losses per step (the issue's fastest peer).

   Before timing, every peer's meta-gradient on the fixed meta-batch is compared with
   metaloss's (the max absolute difference is printed). The ratio is metaloss's meta-steps per
   second divided by the peer's (median of per-window ratios; above 1: metaloss is faster).
   ``--backends func higher`` adds metaloss's other backends; ``--engine`` adds metaloss's
   inner-loop engine alone on the peers' fixed meta-batch; ``--no-prefetch`` adds
   ``outer.prefetch=false`` (every meta-batch drawn in line); ``--compile`` adds
   ``inner.compile=true`` (its first compile takes minutes); ``--reference-src DIR`` adds the
   metaloss found in DIR (e.g. an export of an older commit), run in a worker process whose
   windows interleave with this one's.
2. Peak memory of one meta-step against K for a full unroll and a truncated one (last T steps),
   each measured in a fresh process from the kernel's peak-RSS counter (VmHWM, reset per step).

    python experiments/speed.py                                   # both
    python experiments/speed.py --skip-memory --meta-batches 16 --window 2
    python experiments/speed.py --memory-only --memory-backends auto func
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

HIDDEN = (40, 40)
DEVICE: str | None = None  # the ``device`` setting of every metaloss run (None: the default)


def make_config(
    meta_batch: int,
    steps: int,
    backend: str | None = None,
    estimator: str = "full_grad",
    truncation: int = 5,
    n_train: int = 10,
    compile_: bool = False,
    prefetch: bool = True,
) -> dict[str, Any]:
    inner: dict[str, Any] = {"steps": steps}
    if backend is not None:
        inner["backend"] = backend
    if compile_:
        inner["compile"] = True
    return {
        **({"device": DEVICE} if DEVICE else {}),
        "inner": inner,
        "learner": {"hidden": list(HIDDEN), "activation": "relu"},
        "outer": {
            "meta_batch": meta_batch,
            "estimator": estimator,
            "truncation": truncation,
            "steps": 10**6,
            **({} if prefetch else {"prefetch": False}),  # older trees (--reference-src) lack it
        },
        "task": {"family": "sine", "n_train": n_train},
    }


def make_trainer(config: dict[str, Any]) -> Any:
    from metaloss import MetaTrainer, parse

    return MetaTrainer(parse(config))


def first_batch(trainer: Any) -> Any:
    """The meta-batch a fresh trainer's first meta-step would draw (a ``SupervisedBatch``; older
    metaloss versions, timed with ``--reference-src``, return ``(tasks, inits)``)."""
    if hasattr(trainer, "problem"):
        return trainer.problem.sample(trainer.generator)
    return trainer.sample_meta_batch()


def flat_meta_gradient(trainer: Any, batch: Any) -> Tensor:
    """metaloss's meta-gradient on a given meta-batch, through its public pieces."""
    params = {k: v.detach() for k, v in trainer.loss.named_parameters()}
    if hasattr(trainer, "problem"):
        objective = trainer.problem.objective(trainer.loss, batch)
    else:
        objective = trainer.meta_objective(*batch)
    out = trainer.estimator.estimate(params, objective, trainer.generator)
    return torch.cat([out.grads[k].flatten() for k, _ in trainer.loss.named_parameters()])


# ---------------------------------------------------------------------------------- runners


class Runner:
    """Something that takes one meta-step; ``meta_gradient`` is checked before timing."""

    name = ""

    def step(self) -> None:
        raise NotImplementedError

    def meta_gradient(self) -> Tensor:
        raise NotImplementedError

    def close(self) -> None:
        pass


class Metaloss(Runner):
    """``MetaTrainer.meta_step()``: sampling, meta-gradient, clipping, the Adam step."""

    def __init__(self, name: str, config: dict[str, Any], batch: Any) -> None:
        self.name = name
        self.trainer = make_trainer(config)
        self.batch = batch

    def step(self) -> None:
        self.trainer.meta_step()

    def meta_gradient(self) -> Tensor:
        return flat_meta_gradient(self.trainer, self.batch)

    def report(self) -> dict[str, float]:
        return dict(self.trainer.problem.backend.report())


class Peer(Runner):
    """A hand-written meta-step on a fixed meta-batch: the subclass computes the meta-gradient
    into ``self.loss``'s ``.grad``; clipping (norm 1) and Adam (lr 3e-3) as metaloss does."""

    def __init__(
        self, loss: nn.Module, tasks: Any, inits: dict[str, Tensor], lr: float, steps: int
    ):
        self.loss = copy.deepcopy(loss)
        self.optimizer = torch.optim.Adam(self.loss.parameters(), lr=3e-3)
        self.tasks = tasks
        self.x, self.y = tasks.train.x, tasks.train.y
        self.xv, self.yv = tasks.outer_valid.x, tasks.outer_valid.y
        self.inits = inits
        self.count = self.x.shape[0]
        self.lr, self.steps = lr, steps

    def accumulate(self) -> None:
        raise NotImplementedError

    def inner_loss(self, pred: Tensor, y: Tensor) -> Tensor:
        return self.loss(pred, y)  # the loss module's mean reduction

    @staticmethod
    def objective(pred: Tensor, y: Tensor) -> Tensor:
        return ((pred - y) ** 2).mean()

    def step(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.accumulate()
        torch.nn.utils.clip_grad_norm_(self.loss.parameters(), 1.0)
        self.optimizer.step()

    def meta_gradient(self) -> Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        self.accumulate()
        flat = torch.cat([p.grad.flatten() for p in self.loss.parameters()])  # type: ignore[union-attr]
        self.optimizer.zero_grad(set_to_none=True)
        return flat


def mlp_module() -> nn.Sequential:
    widths = (1, *HIDDEN, 1)
    layers: list[nn.Module] = []
    for i in range(len(widths) - 1):
        layers.append(nn.Linear(widths[i], widths[i + 1]))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def mlp_forward(params: list[Tensor], x: Tensor) -> Tensor:
    h = x
    for i in range(0, len(params), 2):
        h = nn.functional.linear(h, params[i], params[i + 1])
        if i < len(params) - 2:
            h = torch.relu(h)
    return h


class HigherPeer(Peer):
    name = "higher (innerloop_ctx)"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        import higher

        self.higher = higher
        self.model = mlp_module().to(device=self.x.device, dtype=self.x.dtype)
        self.inner_optimizer = torch.optim.SGD(self.model.parameters(), lr=self.lr)

    def accumulate(self) -> None:
        for i in range(self.count):
            with torch.no_grad():
                for name, p in self.model.named_parameters():
                    p.copy_(self.inits[name][i])
            with self.higher.innerloop_ctx(
                self.model, self.inner_optimizer, copy_initial_weights=True
            ) as (fmodel, diffopt):
                for _ in range(self.steps):
                    diffopt.step(self.inner_loss(fmodel(self.x[i]), self.y[i]))
                (self.objective(fmodel(self.xv[i]), self.yv[i]) / self.count).backward()


class AutogradLoopPeer(Peer):
    name = "autograd loop"

    def accumulate(self) -> None:
        names = list(self.inits)
        for i in range(self.count):
            params = [self.inits[n][i].clone().requires_grad_() for n in names]
            for _ in range(self.steps):
                loss = self.inner_loss(mlp_forward(params, self.x[i]), self.y[i])
                grads = torch.autograd.grad(loss, params, create_graph=True)
                params = [p - self.lr * g for p, g in zip(params, grads, strict=True)]
            (self.objective(mlp_forward(params, self.xv[i]), self.yv[i]) / self.count).backward()


class TorchoptPeer(Peer):
    name = "torchopt (functional)"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        import torchopt

        self.torchopt = torchopt
        self.inner_optimizer = torchopt.sgd(self.lr)

    def accumulate(self) -> None:
        names = list(self.inits)
        for i in range(self.count):
            params = tuple(self.inits[n][i].clone().requires_grad_() for n in names)
            state = self.inner_optimizer.init(params)
            for _ in range(self.steps):
                loss = self.inner_loss(mlp_forward(list(params), self.x[i]), self.y[i])
                grads = torch.autograd.grad(loss, params, create_graph=True)
                updates, state = self.inner_optimizer.update(grads, state, inplace=False)
                params = self.torchopt.apply_updates(params, updates, inplace=False)
            meta = self.objective(mlp_forward(list(params), self.xv[i]), self.yv[i])
            (meta / self.count).backward()


class VmapPeer(Peer):
    name = "vmap (torch.func)"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.model = mlp_module().to(device=self.x.device, dtype=self.x.dtype)

    def accumulate(self) -> None:
        def inner(params: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
            return self.inner_loss(functional_call(self.model, params, (x,)), y)

        def task(params: dict[str, Tensor], x: Tensor, y: Tensor, xv: Tensor, yv: Tensor) -> Tensor:
            for _ in range(self.steps):
                grads = grad(inner)(params, x, y)
                params = {n: p - self.lr * grads[n] for n, p in params.items()}
            return self.objective(functional_call(self.model, params, (xv,)), yv)

        vmap(task)(self.inits, self.x, self.y, self.xv, self.yv).mean().backward()


class StackedBmmPeer(Peer):
    """The issue's fastest hand-written peer: every task's parameters stacked, one ``baddbmm``
    per layer, and one ``autograd.grad(create_graph=True)`` of the summed task losses w.r.t. the
    stacked parameters per step, no vmap. The loss is called on the stacked predictions at once
    when it is elementwise (as the default sine loss is), else mapped over tasks."""

    name = "stacked baddbmm + autograd"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        if getattr(self.loss, "elementwise", False):
            self.task_losses = lambda pred, y: self.loss(pred, y, reduction="none").mean((1, 2))
        else:
            self.task_losses = vmap(lambda pred, y: self.inner_loss(pred, y))

    @staticmethod
    def forward(params: list[Tensor], x: Tensor) -> Tensor:
        h = x
        for i in range(0, len(params), 2):
            h = torch.baddbmm(params[i + 1].unsqueeze(1), h, params[i].transpose(1, 2))
            if i < len(params) - 2:
                h = torch.relu(h)
        return h

    def accumulate(self) -> None:
        params = [p.clone().requires_grad_() for p in self.inits.values()]
        for _ in range(self.steps):
            total = self.task_losses(self.forward(params, self.x), self.y).sum()
            grads = torch.autograd.grad(total, params, create_graph=True)
            params = [p - self.lr * g for p, g in zip(params, grads, strict=True)]
        ((self.forward(params, self.xv) - self.yv) ** 2).mean().backward()


class EngineOnFixedBatch(Peer):
    """Not a peer: metaloss's inner-loop engine (``backend.run``) on the peers' fixed meta-batch,
    with the peers' outer step. Beside the ``metaloss`` row it splits metaloss's time into the
    engine and what the trainer adds (sampling a new meta-batch each step, its bookkeeping)."""

    name = "metaloss engine, fixed batch"

    def __init__(self, backend: Any, *args: Any) -> None:
        super().__init__(*args)
        from metaloss.inner import task_batched
        from metaloss.losses.module import gradient_fn

        self.backend = backend
        per_sample = gradient_fn(self.loss)  # what the trainer unrolls
        elementwise = getattr(self.loss, "elementwise", False)
        self.per_sample = task_batched(per_sample) if elementwise else per_sample

    def accumulate(self) -> None:
        self.backend.run(self.per_sample, self.inits, self.tasks).meta_objective.mean().backward()


PEERS: dict[str, type[Peer]] = {
    "higher": HigherPeer,
    "autograd": AutogradLoopPeer,
    "torchopt": TorchoptPeer,
    "vmap": VmapPeer,
    "bmm": StackedBmmPeer,
}


class Reference(Runner):
    """The metaloss in another source tree, in a worker process driven window by window."""

    def __init__(self, source: Path, meta_batch: int, steps: int) -> None:
        self.name = f"metaloss @ {source.name}"
        env = {**os.environ, "PYTHONPATH": str(source)}
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--_worker",
                str(meta_batch),
                str(steps),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=source,
        )
        self.gradient = torch.tensor(json.loads(self._read()), dtype=torch.float64)

    def _read(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name}: the worker process ended")
        return line

    def window(self, seconds: float) -> float:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{seconds}\n")
        self.process.stdin.flush()
        return float(self._read())

    def meta_gradient(self) -> Tensor:
        return self.gradient

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=60)


def worker(meta_batch: int, steps: int) -> None:
    """Serve timing windows of the importable metaloss (the reference tree) over stdin/stdout."""
    torch.set_num_threads(1)
    import metaloss

    source = Path(os.environ.get("PYTHONPATH", "")).resolve()
    if source not in Path(metaloss.__file__).resolve().parents:
        raise SystemExit(f"--reference-src: imported {metaloss.__file__}, not the tree {source}")
    trainer = make_trainer(make_config(meta_batch, steps))
    batch = first_batch(make_trainer(make_config(meta_batch, steps)))
    print(json.dumps(flat_meta_gradient(trainer, batch).double().tolist()), flush=True)
    for _ in range(2):
        trainer.meta_step()
    for line in sys.stdin:
        print(window(trainer.meta_step, float(line)), flush=True)


def window(step: Callable[[], None], seconds: float) -> float:
    """Steps per second over at least ``seconds`` (and at least one step)."""
    done, start = 0, time.perf_counter()
    while done == 0 or time.perf_counter() - start < seconds:
        step()
        done += 1
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return done / (time.perf_counter() - start)


def rate_of(runner: Runner, seconds: float) -> float:
    if isinstance(runner, Reference):
        return runner.window(seconds)
    return window(runner.step, seconds)


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def time_meta_batch(args: argparse.Namespace, meta_batch: int) -> dict[str, list[float]]:
    """Interleaved windows of every runner at one meta-batch; prints the gradient check."""
    config = make_config(meta_batch, args.steps)
    probe = make_trainer(config)
    batch = first_batch(probe)
    tasks, inits = batch.tasks, batch.inits
    lr = float(probe.config.inner.lr)
    runners: list[Runner] = [Metaloss("metaloss", config, batch)]
    for backend in args.backends:
        runners.append(
            Metaloss(
                f"metaloss, backend {backend}",
                make_config(meta_batch, args.steps, backend),
                batch,
            )
        )
    if args.no_prefetch:
        inline = make_config(meta_batch, args.steps, prefetch=False)
        runners.append(Metaloss("metaloss, outer.prefetch false", inline, batch))
    if args.compile:
        compiled = make_config(meta_batch, args.steps, compile_=True)
        runners.append(Metaloss("metaloss, inner.compile", compiled, batch))
    if args.reference_src:
        runners.append(Reference(Path(args.reference_src).resolve(), meta_batch, args.steps))
    for key in args.peers:
        if key == "torchopt" and not _importable("torchopt"):
            print("torchopt is not installed or does not import: its row is skipped")
            continue
        runners.append(PEERS[key](probe.loss, tasks, inits, lr, args.steps))
    if args.engine:
        runners.append(
            EngineOnFixedBatch(probe.problem.backend, probe.loss, tasks, inits, lr, args.steps)
        )
    reference = runners[0].meta_gradient().double()
    for runner in runners:
        start = time.perf_counter()
        difference = float((runner.meta_gradient().double() - reference).abs().max())
        for _ in range(args.warmup):
            runner.step() if not isinstance(runner, Reference) else runner.window(0.0)
        note = ""
        if isinstance(runner, Metaloss) and runner.report():
            report = runner.report()
            note = (
                f"; compiled {report['graphs']:.0f} graphs in {report['compile_seconds']:.0f} s "
                f"(first calls {time.perf_counter() - start:.0f} s)"
            )
        print(
            f"  meta-batch {meta_batch}: {runner.name:<28} max |meta-gradient - metaloss's| "
            f"{difference:.1e}{note}",
            flush=True,
        )
    rates: dict[str, list[float]] = {r.name: [] for r in runners}
    for _ in range(args.rounds):
        for runner in runners:
            rates[runner.name].append(rate_of(runner, args.window))
    for runner in runners:
        if isinstance(runner, Metaloss) and runner.report():
            report = runner.report()
            print(
                f"  meta-batch {meta_batch}: {runner.name}: {report['graphs']:.0f} graphs, "
                f"{report['recompiles']:.0f} recompiles, {report['compile_seconds']:.0f} s compiling"
            )
        runner.close()
    return rates


def print_table(all_rates: dict[int, dict[str, list[float]]]) -> None:
    batches = list(all_rates)
    names = list(next(iter(all_rates.values())))
    head = " | ".join(f"meta-batch {b}" for b in batches)
    print("\nmeta-steps/s (median of windows) and metaloss ÷ row (median of per-window ratios)")
    print(f"| | {head} |\n|---|" + "---|" * len(batches))
    for name in names:
        cells = []
        for b in batches:
            rates = all_rates[b]
            ours = rates["metaloss"]
            median = statistics.median(rates[name])
            ratios = sorted(o / r for o, r in zip(ours, rates[name], strict=True))
            if name == "metaloss":
                cells.append(f"{median:.2f}/s")
            else:
                cells.append(
                    f"{median:.2f}/s, {statistics.median(ratios):.2f}× "
                    f"({ratios[0]:.2f}–{ratios[-1]:.2f})"
                )
        print(f"| {name} | " + " | ".join(cells) + " |")
    print_goals(all_rates)


def _ratio(rates: dict[str, list[float]], a: str, b: str) -> float:
    """Median over windows of ``a``'s rate divided by ``b``'s in the same round."""
    return statistics.median(x / y for x, y in zip(rates[a], rates[b], strict=True))


def print_goals(all_rates: dict[int, dict[str, list[float]]]) -> None:
    """The issue's goals, each with the figure measured here and whether it is reached."""
    print("\ngoals (median of per-window ratios):")
    for b, rates in all_rates.items():
        peers = [PEERS[k].name for k in PEERS if PEERS[k].name in rates and k != "higher"]
        if peers:
            fastest = max(peers, key=lambda n: statistics.median(rates[n]))
            r = _ratio(rates, "metaloss", fastest)
            print(
                f"  meta-batch {b}: metaloss ÷ fastest hand-written peer ({fastest}) "
                f"{r:.2f}× (goal ≥ 1.0: {'reached' if r >= 1.0 else 'NOT reached'})"
            )
        reference = next((n for n in rates if n.startswith("metaloss @ ")), None)
        if reference:
            r = _ratio(rates, "metaloss", reference)
            print(
                f"  meta-batch {b}: metaloss ÷ {reference} {r:.2f}× "
                f"(goal ≥ 2: {'reached' if r >= 2.0 else 'NOT reached'})"
            )
            if "metaloss, inner.compile" in rates:
                r = _ratio(rates, "metaloss, inner.compile", reference)
                print(
                    f"  meta-batch {b}: inner.compile ÷ {reference} {r:.2f}× after warm-up "
                    f"(goal ≥ 3: {'reached' if r >= 3.0 else 'NOT reached'})"
                )
        if b == 16 and HigherPeer.name in rates:
            r = _ratio(rates, "metaloss", HigherPeer.name)
            print(
                f"  meta-batch 16: metaloss ÷ higher {r:.2f}× "
                f"(goal ≥ 10: {'reached' if r >= 10.0 else 'NOT reached'})"
            )


# ---------------------------------------------------------------------------------- memory


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status")


def measure_memory(
    steps: int, estimator: str, truncation: int, n_train: int, meta_batch: int, backend: str
) -> float:
    """Peak RSS growth (MiB) of one meta-step, in this process."""
    config = make_config(meta_batch, steps, backend, estimator, truncation, n_train)
    trainer = make_trainer(config)
    first_batch(trainer)  # lazy imports and data paths warmed; no meta-step yet
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS counter
    before = _rss_kib("VmRSS")
    trainer.meta_step()
    return (_rss_kib("VmHWM") - before) / 1024


def memory_table(args: argparse.Namespace) -> None:
    for backend in args.memory_backends:
        print(
            f"\npeak memory of one meta-step (MiB), backend {backend}, n_train={args.memory_n_train}, "
            f"meta-batch {args.memory_meta_batch}, truncation T={args.truncation}"
        )
        print("| K | full unroll | truncated (last T) |\n|---|---|---|")
        for k in args.memory_ks:
            row = []
            for estimator in ["full_grad", "truncated_grad"]:
                if estimator == "truncated_grad" and k <= args.truncation:
                    row.append(float("nan"))
                    continue
                command = [
                    sys.executable,
                    __file__,
                    "--_measure",
                    str(k),
                    estimator,
                    backend,
                    "--truncation",
                    str(args.truncation),
                    "--memory-n-train",
                    str(args.memory_n_train),
                    "--memory-meta-batch",
                    str(args.memory_meta_batch),
                ]
                out = subprocess.run(command, capture_output=True, text=True, check=True)
                row.append(float(out.stdout.strip().splitlines()[-1]))
            print(f"| {k} | {row[0]:.0f} | {row[1]:.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--meta-batches", type=int, nargs="+", default=[4, 16, 64])
    parser.add_argument("--steps", type=int, default=10, help="inner steps K")
    parser.add_argument("--window", type=float, default=1.0, help="seconds per timing window")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved windows per runner")
    parser.add_argument("--warmup", type=int, default=2, help="untimed meta-steps per runner")
    parser.add_argument(
        "--peers", nargs="*", default=list(PEERS), choices=list(PEERS), help="peers to time"
    )
    parser.add_argument(
        "--backends",
        nargs="*",
        default=[],
        choices=["bmm", "func", "higher"],
        help="also time metaloss with these inner.backend values",
    )
    parser.add_argument("--compile", action="store_true", help="also time inner.compile=true")
    parser.add_argument(
        "--no-prefetch",
        action="store_true",
        help="also time outer.prefetch=false (every meta-batch drawn in line)",
    )
    parser.add_argument(
        "--engine",
        action="store_true",
        help="also time metaloss's inner-loop engine alone on the peers' fixed meta-batch",
    )
    parser.add_argument("--reference-src", help="also time the metaloss in this source tree")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--memory-only", action="store_true")
    parser.add_argument("--memory-ks", type=int, nargs="+", default=[10, 20, 40, 80])
    parser.add_argument("--memory-backends", nargs="+", default=["auto"])
    parser.add_argument("--memory-meta-batch", type=int, default=16)
    parser.add_argument("--truncation", type=int, default=5)
    parser.add_argument(
        "--memory-n-train", type=int, default=1000, help="inner-train samples (scales memory)"
    )
    parser.add_argument("--device", help="the device setting of the runs (default: auto)")
    parser.add_argument("--_measure", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--_worker", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    global DEVICE
    DEVICE = args.device
    if args._worker:
        worker(*args._worker)
        return
    if args._measure:
        k, estimator, backend = int(args._measure[0]), args._measure[1], args._measure[2]
        value = measure_memory(
            k, estimator, args.truncation, args.memory_n_train, args.memory_meta_batch, backend
        )
        print(json.dumps(value))
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread, load {os.getloadavg()}")
    if not args.memory_only:
        print(
            f"sine, K={args.steps}, {args.rounds} interleaved windows of {args.window} s per runner"
        )
        all_rates = {b: time_meta_batch(args, b) for b in args.meta_batches}
        print_table(all_rates)
    if args.memory_only or not args.skip_memory:
        memory_table(args)
    print(f"\nload {os.getloadavg()}")


if __name__ == "__main__":
    main()
