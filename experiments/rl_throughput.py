"""Environment steps per second: population PPO on batched torch environments vs the gymnasium
path (one ``train_ppo`` run), in one process, interleaved.

Both paths run the same PPO (the config's ``task.ppo``, printed first: configs/cartpole.yaml's is
4 envs × 64 steps, 4 epochs × 4 minibatches, 32×32 tanh actor and critic) on meta-train variants
of the config's family. The gymnasium path trains one agent at a time (as ``metaloss rl-train`` does per
worker); the population path trains ``--population`` agents, each on its own variant, in one
batched computation, once eager and once with ``task.ppo.compile`` (``torch.compile`` of the
rollout steps, GAE and the minibatch update; compiled by a warm-up run before the measurements,
whose compile seconds are printed; ``--no-compile`` skips it). Each path is measured
``--repeats`` times, alternating, and the script prints per repeat and in total: aggregate
environment steps per second of wall time and per second of this process's CPU time (the machine
is shared: CPU time says what the code costs, wall time what a user waits), each population
path's ratio to the gymnasium path against the 100× goal, and the load average before and after.

``--compare-vmap`` also times the agents' forward and backward pass written as batched matrix
products (what :mod:`metaloss.rl.stacked` uses) against ``torch.func.vmap`` over
``functional_call`` of the single-run agent, and ``torch.tanh`` against the sigmoid form.

    nice -n 10 python experiments/rl_throughput.py                       # CartPole, population 32
    nice -n 10 python experiments/rl_throughput.py --no-compile          # without the compile
    nice -n 10 python experiments/rl_throughput.py --config configs/acrobot.yaml --compare-vmap
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.func import functional_call, stack_module_state, vmap

from metaloss.config import load_config
from metaloss.rl.config import PPOConfig, RLTaskConfig
from metaloss.rl.envs import EnvFamily, EnvTask
from metaloss.rl.objectives import make_objective
from metaloss.rl.population import RunSpec, compile_report, train_population
from metaloss.rl.ppo import Agent, train_ppo
from metaloss.rl.stacked import StackedAgent, fast_tanh
from metaloss.rl.torch_envs import spaces
from metaloss.tasks.base import Split


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} cores"


def _timed(fn: Callable[[], int]) -> tuple[int, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    steps = fn()
    return steps, time.perf_counter() - wall, time.process_time() - cpu


def _gym(tasks: list[EnvTask], ppo: PPOConfig, steps: int) -> int:
    run = train_ppo(tasks[0], ppo, make_objective("ppo_clip"), seed=0, total_steps=steps)
    return run.total_steps


GOAL = 100.0
"""The aggregate-throughput goal: population 32 against one gymnasium run."""


def _population(tasks: list[EnvTask], ppo: PPOConfig, steps: int, env_dtype: torch.dtype) -> int:
    runs = [RunSpec(task, seed) for seed, task in enumerate(tasks)]
    results = train_population(runs, ppo, total_steps=steps, env_dtype=env_dtype)
    return sum(r.total_steps for r in results)


def _compare_kernels(env_id: str, ppo: PPOConfig, population: int, repeats: int = 20) -> None:
    obs_dim, n_actions = spaces(env_id)
    agents = [
        Agent(obs_dim, n_actions, ppo.hidden, torch.Generator().manual_seed(i))
        for i in range(population)
    ]
    samples = ppo.num_envs * ppo.num_steps // ppo.minibatches
    obs = torch.randn(population, samples, obs_dim)
    stacked = StackedAgent(agents)
    params, _ = stack_module_state(agents)  # type: ignore[arg-type]
    params = {k: v.detach().requires_grad_() for k, v in params.items()}
    base = agents[0]

    def single(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(base.actor, _prefix(p, "actor."), (x,)).log_softmax(-1).sum() + (
            functional_call(base.critic, _prefix(p, "critic."), (x,)).sum()
        )

    batched = vmap(single)

    def with_vmap() -> None:
        out = batched(params, obs).sum()
        torch.autograd.grad(out, list(params.values()))

    def with_bmm() -> None:
        out = stacked.log_probs(obs).sum() + stacked.value(obs).sum()
        torch.autograd.grad(out, list(stacked.params.values()))

    for name, fn in (("vmap(functional_call)", with_vmap), ("batched matmul", with_bmm)):
        fn()
        start = time.process_time()
        for _ in range(repeats):
            fn()
        per = (time.process_time() - start) / repeats
        print(
            f"agents forward+backward, {name}: {per * 1e3:.2f} ms CPU per minibatch "
            f"({population} agents × {samples} samples)"
        )
    x = torch.randn(population, samples, ppo.hidden[0])
    for name, act in (("torch.tanh", torch.tanh), ("sigmoid form", fast_tanh)):
        act(x)
        start = time.process_time()
        for _ in range(repeats * 10):
            act(x)
        per = (time.process_time() - start) / (repeats * 10)
        print(f"hidden activation, {name}: {per * 1e6:.0f} µs CPU per call ({x.numel()} values)")


def _prefix(params: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, default=Path("configs/cartpole.yaml"))
    parser.add_argument("--population", type=int, default=32, help="runs trained at once")
    parser.add_argument("--gym-steps", type=int, default=8192, help="steps of the gymnasium run")
    parser.add_argument("--steps", type=int, default=8192, help="steps per population run")
    parser.add_argument("--repeats", type=int, default=2, help="alternating measurements")
    parser.add_argument("--env-dtype", choices=["float32", "float64"], default="float64")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--compare-vmap", action="store_true", help="also time the kernels")
    parser.add_argument(
        "--no-compile", action="store_true", help="skip the task.ppo.compile population path"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_config(args.config)
    task_config = config.task
    if not isinstance(task_config, RLTaskConfig):
        raise SystemExit(f"{args.config}: expected an RL config (task.family cartpole or acrobot)")
    ppo = dataclasses.replace(task_config.ppo, compile=False)
    tasks = EnvFamily(task_config).tasks(Split.META_TRAIN, args.population)
    env_dtype = getattr(torch, args.env_dtype)
    print(
        f"{task_config.env}, PPO {ppo.num_envs} envs × {ppo.num_steps} steps, "
        f"{ppo.epochs} epochs × {ppo.minibatches} minibatches, hidden {list(ppo.hidden)}; "
        f"{args.threads} torch thread(s)"
    )
    print(f"before: {_load()}", flush=True)
    paths: dict[str, Callable[[], int]] = {
        "gym": lambda: _gym(tasks, ppo, args.gym_steps),
        "population eager": lambda: _population(tasks, ppo, args.steps, env_dtype),
    }
    if not args.no_compile:
        compiled = dataclasses.replace(ppo, compile=True)
        one_update = ppo.num_envs * ppo.num_steps
        _, wall, cpu = _timed(lambda: _population(tasks, compiled, one_update, env_dtype))
        report = compile_report()
        print(
            f"task.ppo.compile warm-up (one update): {wall:.1f} s wall ({cpu:.1f} s CPU), of which "
            f"compiling {report['compile_seconds']:.1f} s ({report['graphs']:.0f} graphs)",
            flush=True,
        )
        paths["population compiled"] = lambda: _population(tasks, compiled, args.steps, env_dtype)
    totals = {name: [0, 0.0, 0.0] for name in paths}
    for repeat in range(args.repeats):
        for name, path in paths.items():
            steps, wall, cpu = _timed(path)
            for i, value in enumerate((steps, wall, cpu)):
                totals[name][i] += value
            print(
                f"repeat {repeat + 1}, {name}: {steps} steps in {wall:.1f} s wall "
                f"({cpu:.1f} s CPU): {steps / wall:.0f} steps/s wall, "
                f"{steps / cpu:.0f} per CPU-second",
                flush=True,
            )
    print(f"after: {_load()}")
    if not args.no_compile and compile_report() != report:
        print(
            f"warning: task.ppo.compile compiled again during the measurements: {compile_report()}"
        )
    gym_steps, gym_wall, gym_cpu = totals["gym"]
    print(
        f"gymnasium train_ppo (1 run): {gym_steps / gym_wall:.0f} steps/s wall, "
        f"{gym_steps / gym_cpu:.0f} per CPU-second"
    )
    for name in list(paths)[1:]:
        steps, wall, cpu = totals[name]
        print(
            f"{name} ({args.population} runs, env {args.env_dtype}): {steps / wall:.0f} steps/s "
            f"wall, {steps / cpu:.0f} per CPU-second; ratio to gymnasium "
            f"{(steps / wall) / (gym_steps / gym_wall):.1f}x wall, "
            f"{(steps / cpu) / (gym_steps / gym_cpu):.1f}x CPU (goal: {GOAL:.0f}x)"
        )
    if args.compare_vmap:
        _compare_kernels(task_config.env, ppo, args.population)


if __name__ == "__main__":
    main()
