"""Plug a learned policy objective file into the PPO loop with one line.

The objective loads with the same loader as every learned loss (``metaloss.load_loss``: a
safetensors + JSON file, no code executed) and is passed to ``train_ppo`` in place of PPO's
clip. Prints the final return and steps per second on the default environment, beside PPO's clip.

    nice -n 10 python experiments/rl_objective_from_file.py --loss cartpole --steps 30000
    nice -n 10 python experiments/rl_objective_from_file.py --loss runs/cartpole/loss.safetensors
"""

from __future__ import annotations

import argparse

import torch

from metaloss import load_loss
from metaloss.rl.config import CartPoleConfig, PPOConfig
from metaloss.rl.envs import EnvFamily
from metaloss.rl.objectives import make_objective
from metaloss.rl.ppo import train_ppo


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--loss", default="cartpole", help="loss file or zoo name")
    parser.add_argument("--steps", type=int, default=30_000, help="environment steps per run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    task = EnvFamily(CartPoleConfig()).default_task()
    config = PPOConfig(num_envs=8, num_steps=64, lr=1e-3)

    objective = load_loss(
        args.loss, reduction="none"
    )  # <- the one line: a learned objective from a file

    for name, fn in (("learned", objective), ("ppo_clip", make_objective("ppo_clip"))):
        run = train_ppo(task, config, fn, seed=args.seed, total_steps=args.steps)
        print(
            f"{name}: final return {run.final_return(0.1):.1f} after {run.total_steps} steps "
            f"({run.steps_per_second:.0f} steps/s)"
        )


if __name__ == "__main__":
    main()
