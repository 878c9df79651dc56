"""PPO sanity check: our PPO (metaloss.rl.ppo, PPO-clip objective, CleanRL's classic-control
defaults: 4 envs × 128 steps, lr 2.5e-4 annealed, 4 epochs × 4 minibatches, ε = 0.2) on the
*default* CartPole-v1 and Acrobot-v1, 500k environment steps, several seeds.

Targets (CleanRL's reference ppo.py: CartPole-v1 488.75 ± 18.40, Acrobot-v1 −82.48 ± 5.93):
mean final return ≥ 475 on CartPole-v1 and ≥ −90 on Acrobot-v1. "Final return" is the mean
return of the training episodes that ended in the last 5% of the run (25k steps). The script
prints, per seed, the final return, wall time and environment steps per second, then the mean
± 95% CI over seeds and whether the target is met. Figures depend on the machine's load.

    nice -n 10 python experiments/ppo_sanity.py                      # both envs, 3 seeds, 500k
    nice -n 10 python experiments/ppo_sanity.py --env cartpole --seeds 5
    nice -n 10 python experiments/ppo_sanity.py --engine torch        # population PPO, torch envs

``--engine torch`` trains all seeds as one population (:mod:`metaloss.rl.population`) on the
torch environments (:mod:`metaloss.rl.torch_envs`); its wall time and steps/s are those of the
whole population.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from metaloss.evaluation.stats import mean_ci
from metaloss.rl.config import AcrobotConfig, CartPoleConfig, PPOConfig
from metaloss.rl.envs import EnvFamily, EnvTask
from metaloss.rl.objectives import make_objective
from metaloss.rl.population import RunSpec, train_population
from metaloss.rl.ppo import PPORun, train_ppo

TARGETS = {
    "cartpole": ("CartPole-v1", 475.0, CartPoleConfig()),
    "acrobot": ("Acrobot-v1", -90.0, AcrobotConfig()),
}


def _runs(task: EnvTask, engine: str, seeds: int, steps: int) -> list[PPORun]:
    if engine == "torch":
        specs = [RunSpec(task, seed) for seed in range(seeds)]
        return train_population(specs, PPOConfig(), total_steps=steps)
    return [
        train_ppo(task, PPOConfig(), make_objective("ppo_clip"), seed=seed, total_steps=steps)
        for seed in range(seeds)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--env", choices=["cartpole", "acrobot", "both"], default="both", help="which environment"
    )
    parser.add_argument("--seeds", type=int, default=3, help="training seeds (0..N-1)")
    parser.add_argument("--steps", type=int, default=500_000, help="environment steps per run")
    parser.add_argument(
        "--fraction", type=float, default=0.05, help="final return: episodes in this last part"
    )
    parser.add_argument(
        "--engine",
        choices=["gymnasium", "torch"],
        default="gymnasium",
        help="gymnasium: train_ppo one seed at a time; torch: all seeds as one population",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    names = ["cartpole", "acrobot"] if args.env == "both" else [args.env]
    print(f"engine {args.engine}; load average before: {os.getloadavg()}", flush=True)
    for name in names:
        env_id, target, task_config = TARGETS[name]
        task = EnvFamily(task_config).default_task()
        finals, total_steps, total_seconds = [], 0, 0.0
        for seed, run in enumerate(_runs(task, args.engine, args.seeds, args.steps)):
            final = run.final_return(args.fraction)
            finals.append(final)
            total_steps += run.total_steps
            total_seconds += run.seconds if args.engine == "gymnasium" else 0.0
            timing = (
                f", {run.total_steps} steps in {run.seconds:.0f} s = {run.steps_per_second:.0f} steps/s"
                if args.engine == "gymnasium"
                else f", {run.total_steps} steps"
            )
            print(
                f"{env_id} seed {seed}: final return {final:.2f} ({len(run.episode_returns)} episodes){timing}",
                flush=True,
            )
        if args.engine == "torch":
            total_seconds = run.seconds  # one batched run for all seeds
        ci = mean_ci(torch.tensor(finals))
        verdict = "meets" if ci.mean >= target else "MISSES"
        print(
            f"{env_id}: final return {ci.mean:.2f} ± {ci.half_width:.2f} (95% CI, {args.seeds} seeds); "
            f"{verdict} the target {target}; wall {total_seconds:.0f} s, {total_steps / total_seconds:.0f} steps/s",
            flush=True,
        )
    print(f"load average after: {os.getloadavg()}")
    print(f"finished at {time.strftime('%Y-%m-%d %H:%M:%S')}")


if __name__ == "__main__":
    main()
