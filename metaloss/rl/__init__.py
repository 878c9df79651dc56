"""Reinforcement learning: a learned policy objective (LPO's drift) against PPO's clip and DPO.

Modules, one job each (import them directly; this package imports nothing heavy):

- :mod:`metaloss.rl.config` — task options of the ``cartpole`` and ``acrobot`` families.
- :mod:`metaloss.rl.envs` — environment variants with sampled physics; vector environments.
- :mod:`metaloss.rl.objectives` — PPO clip, DPO drift, the learned drift.
- :mod:`metaloss.rl.torch_envs` — CartPole-v1 and Acrobot-v1 in torch, batched, physics per env.
- :mod:`metaloss.rl.ppo` — the PPO loop with a pluggable policy objective (gymnasium).
- :mod:`metaloss.rl.stacked` — stacked agents, per-run Adam and gradient clipping.
- :mod:`metaloss.rl.population` — population PPO: many runs as one batched computation.
- :mod:`metaloss.rl.evaluate` — who trains a population: this process or a distributed group.
- :mod:`metaloss.rl.problem` — the RL meta-problem (ES fitness) for the shared meta-trainer.
- :mod:`metaloss.rl.benchmark` — tuned baselines vs the learned drift on held-out variants.
- :mod:`metaloss.rl.summary` — TensorBoard logging of RL meta-training.
- :mod:`metaloss.rl.shape` — the objective-shape view of the ``policy`` kind.
- :mod:`metaloss.rl.families` — registration of the ``cartpole`` and ``acrobot`` families.
"""

__all__: list[str] = []
