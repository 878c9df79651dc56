"""What ES fitness budget per candidate fits a 30-minute meta-training run: for a few short PPO
settings, the fitness (mean return over the last 30% of a run) of PPO's clip and DPO on 8
meta-train variants, its spread over variants, and the CPU seconds one ES generation would cost
(``--population`` candidates × ``--variants`` variants, measured on a population of that size).

A useful fitness is neither saturated nor flat (returns well between the random policy and the
maximum) and a generation costs a few CPU seconds, so that hundreds of generations fit in
30 minutes of one core.

    nice -n 10 python experiments/rl_budget.py --env cartpole --steps 4096,8192
    nice -n 10 python experiments/rl_budget.py --env acrobot --steps 8192,16384
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from metaloss.rl.config import AcrobotConfig, CartPoleConfig, PPOConfig
from metaloss.rl.envs import EnvFamily
from metaloss.rl.objectives import ClipObjective, DPOObjective, LearnedDrift
from metaloss.rl.population import RunSpec, train_population
from metaloss.tasks.base import Split

SETTINGS = {
    "64x64 8 envs x 64 lr 1e-3": PPOConfig(num_envs=8, num_steps=64, hidden=(64, 64), lr=1e-3),
    "32x32 8 envs x 64 lr 2e-3": PPOConfig(num_envs=8, num_steps=64, hidden=(32, 32), lr=2e-3),
    "32x32 4 envs x 64 lr 3e-3": PPOConfig(num_envs=4, num_steps=64, hidden=(32, 32), lr=3e-3),
    "32x32 4 envs x 32 lr 2e-3": PPOConfig(num_envs=4, num_steps=32, hidden=(32, 32), lr=2e-3),
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", choices=["cartpole", "acrobot"], default="cartpole")
    parser.add_argument("--steps", default="4096,8192", help="fitness budgets (env steps per run)")
    parser.add_argument("--population", type=int, default=33, help="ES candidates")
    parser.add_argument("--variants", type=int, default=4, help="variants per generation")
    args = parser.parse_args()
    torch.set_num_threads(1)
    family = EnvFamily(CartPoleConfig() if args.env == "cartpole" else AcrobotConfig())
    tasks = family.tasks(Split.META_TRAIN, 8)
    size = args.population * args.variants
    drift = LearnedDrift(hidden=(16,), reduction="none")
    print(f"{args.env}; load average {os.getloadavg()}", flush=True)
    for steps in (int(s) for s in args.steps.split(",")):
        for name, ppo in SETTINGS.items():
            runs = [
                RunSpec(t, 100 + i, objective)
                for objective in (ClipObjective(0.2), DPOObjective())
                for i, t in enumerate(tasks)
            ]
            finals = [r.final_return(0.3) for r in train_population(runs, ppo, total_steps=steps)]
            clip, dpo = finals[: len(tasks)], finals[len(tasks) :]
            generation = [RunSpec(tasks[i % len(tasks)], i, drift) for i in range(size)]
            start = time.process_time()
            train_population(
                generation, ppo, total_steps=min(steps, 4 * ppo.num_envs * ppo.num_steps)
            )
            per_step = (time.process_time() - start) / (
                size * min(steps, 4 * ppo.num_envs * ppo.num_steps)
            )
            print(
                f"{steps} steps, {name}: fitness clip {statistics.mean(clip):.1f} "
                f"(sd {statistics.stdev(clip):.1f}), dpo {statistics.mean(dpo):.1f} "
                f"(sd {statistics.stdev(dpo):.1f}); one generation of {size} runs "
                f"≈ {per_step * size * steps:.1f} CPU-s",
                flush=True,
            )
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
