"""Proximal Policy Optimisation on a vector environment, with a pluggable policy objective.

One clear, single-purpose loop in the spirit of CleanRL's ``ppo.py``: rollouts of
``num_steps × num_envs``, generalised advantage estimation, per-minibatch advantage normalisation,
``epochs`` passes of shuffled minibatches, a clipped value loss, an entropy bonus, gradient-norm
clipping and linear learning-rate annealing. Only the policy term is pluggable: ``objective``
maps ``(log_ratio, advantages)`` to a per-sample loss (PPO's clip, DPO's drift or a learned
drift, see :mod:`metaloss.rl.objectives`), so everything else is identical between objectives.

gymnasium 1.x autoreset (``NEXT_STEP``): the step after a terminal or truncated step is a reset
step; it is stored but masked out of every loss. Because the observation returned at a truncated
step is the true final observation, GAE bootstraps from it (only termination stops bootstrapping).

References:
    Schulman et al., "Proximal Policy Optimization Algorithms", 2017.
    Schulman et al., "High-Dimensional Continuous Control Using Generalized Advantage
    Estimation", ICLR 2016.
    Huang et al., "The 37 Implementation Details of Proximal Policy Optimization", 2022.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from metaloss.rl.config import PPOConfig
from metaloss.rl.envs import EnvTask, make_vec_env
from metaloss.rl.objectives import PolicyObjective

__all__ = ["Agent", "PPORun", "compute_gae", "normalise_advantages", "train_ppo"]


def _layer(n_in: int, n_out: int, gain: float, generator: torch.Generator) -> nn.Linear:
    layer = nn.Linear(n_in, n_out)
    nn.init.orthogonal_(layer.weight, gain, generator=generator)
    nn.init.zeros_(layer.bias)
    return layer


def _mlp(
    n_in: int, hidden: tuple[int, ...], n_out: int, out_gain: float, g: torch.Generator
) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip((n_in, *hidden[:-1]), hidden, strict=True):
        layers += [_layer(a, b, math.sqrt(2), g), nn.Tanh()]
    layers.append(_layer(hidden[-1], n_out, out_gain, g))
    return nn.Sequential(*layers)


class Agent(nn.Module):
    """Separate actor and critic MLPs with tanh activations and orthogonal initialisation
    (actor output gain 0.01, critic 1.0), as in CleanRL's ``ppo.py`` for discrete actions."""

    def __init__(
        self, obs_dim: int, n_actions: int, hidden: tuple[int, ...], generator: torch.Generator
    ) -> None:
        super().__init__()
        self.actor = _mlp(obs_dim, hidden, n_actions, 0.01, generator)
        self.critic = _mlp(obs_dim, hidden, 1, 1.0, generator)

    def value(self, obs: Tensor) -> Tensor:
        """State values ``[B]``."""
        return self.critic(obs).squeeze(-1)

    def log_probs(self, obs: Tensor) -> Tensor:
        """Log-probabilities of every action ``[B, n_actions]``."""
        return torch.log_softmax(self.actor(obs), dim=-1)


@dataclass
class PPORun:
    """What one training run produced: the end step and return of every finished episode."""

    episode_steps: list[int] = field(default_factory=list)
    episode_returns: list[float] = field(default_factory=list)
    total_steps: int = 0
    seconds: float = 0.0
    skipped_updates: int = 0

    def mean_return_after(self, step: int) -> float:
        """Mean return of the episodes that ended after env step ``step`` (NaN if none)."""
        values = [
            r for s, r in zip(self.episode_steps, self.episode_returns, strict=True) if s > step
        ]
        return float(np.mean(values)) if values else float("nan")

    def final_return(self, fraction: float = 0.1) -> float:
        """Mean return of the episodes that ended in the last ``fraction`` of the run (falling
        back to the last episode if none did)."""
        value = self.mean_return_after(int(self.total_steps * (1 - fraction)))
        if math.isnan(value) and self.episode_returns:
            return self.episode_returns[-1]
        return value

    def steps_to_threshold(self, threshold: float, window: int = 20) -> int | None:
        """The first env step at which the mean of the last ``window`` episode returns reaches
        ``threshold`` (``None`` if it never does)."""
        returns = np.asarray(self.episode_returns, dtype=np.float64)
        for i in range(window - 1, len(returns)):
            if returns[i - window + 1 : i + 1].mean() >= threshold:
                return self.episode_steps[i]
        return None

    @property
    def steps_per_second(self) -> float:
        return self.total_steps / self.seconds if self.seconds > 0 else float("nan")


def compute_gae(
    rewards: Tensor,
    values: Tensor,
    next_values: Tensor,
    terminated: Tensor,
    dones: Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimates and returns over a ``[T, N]`` rollout.

    ``δ_t = r_t + γ V(s_{t+1}) (1 − terminated_t) − V(s_t)`` and
    ``A_t = δ_t + γ λ (1 − done_t) A_{t+1}``, where ``done = terminated or truncated`` cuts the
    λ-chain at every episode end while truncation still bootstraps from ``V(s_{t+1})``.
    ``next_values[t]`` is ``V`` of the observation that followed step ``t``. Returns
    ``(advantages, advantages + values)``.
    """
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[0])
    for t in reversed(range(rewards.shape[0])):
        delta = rewards[t] + gamma * next_values[t] * (1 - terminated[t]) - values[t]
        last = delta + gamma * gae_lambda * (1 - dones[t]) * last
        advantages[t] = last
    return advantages, advantages + values


def normalise_advantages(values: Tensor, eps: float = 1e-8) -> Tensor:
    """Zero mean, unit standard deviation (unchanged if there is a single value)."""
    if values.numel() < 2:
        return values
    return (values - values.mean()) / (values.std() + eps)


@dataclass
class _Rollout:
    obs: Tensor
    actions: Tensor
    logprobs: Tensor
    rewards: Tensor
    terminated: Tensor
    dones: Tensor
    valid: Tensor
    values: Tensor


UpdateCallback = Callable[[int, dict[str, float]], None]


def train_ppo(
    task: EnvTask,
    config: PPOConfig,
    objective: PolicyObjective,
    seed: int,
    total_steps: int | None = None,
    on_update: UpdateCallback | None = None,
) -> PPORun:
    """Train a fresh agent with PPO on ``task`` and return its episodes.

    Args:
        task: the environment variant.
        config: PPO settings (``config.clip_coef`` clips the value loss for every objective).
        objective: ``objective(log_ratio, advantages) -> per-sample loss``, e.g.
            ``make_objective("ppo_clip")`` or ``load_loss("cartpole", reduction="none")``.
        seed: seeds the environment, the agent's initialisation, action sampling and shuffling.
        total_steps: environment steps (default ``config.total_steps``).
        on_update: called after each update with the env step and loss statistics.

    Example:
        >>> from metaloss.rl.config import CartPoleConfig
        >>> from metaloss.rl.envs import EnvFamily
        >>> from metaloss.rl.objectives import make_objective
        >>> task = EnvFamily(CartPoleConfig()).default_task()
        >>> run = train_ppo(task, PPOConfig(), make_objective("ppo_clip"), seed=1, total_steps=2048)
    """
    if config.compile:
        raise ValueError(
            "task.ppo.compile: the gymnasium path (train_ppo) runs eagerly; compile applies to "
            "population PPO on the batched torch environments; expected compile: false here"
        )
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    env, first_obs = make_vec_env(task, config.num_envs, seed)
    try:
        n_actions = int(env.single_action_space.n)
        agent = Agent(first_obs.shape[-1], n_actions, config.hidden, generator)
        optimizer = torch.optim.Adam(agent.parameters(), lr=config.lr, eps=1e-5)
        budget = total_steps or config.total_steps
        updates = max(1, budget // (config.num_envs * config.num_steps))
        state = _LoopState(torch.as_tensor(first_obs, dtype=torch.float32), config.num_envs)
        run = PPORun()
        for update in range(updates):
            if config.anneal_lr:
                optimizer.param_groups[0]["lr"] = (1.0 - update / updates) * config.lr
            rollout = _collect(env, agent, state, config, generator, run)
            stats = _update(agent, optimizer, rollout, state, config, objective, generator, run)
            if on_update is not None:
                on_update(state.global_step, stats)
        run.total_steps = state.global_step
    finally:
        env.close()
    run.seconds = time.perf_counter() - start
    return run


class _LoopState:
    """What carries over between rollouts: the current observation, which sub-environments just
    ended an episode (their next step is a reset step), running returns, the step count."""

    def __init__(self, obs: Tensor, num_envs: int) -> None:
        self.obs = obs
        self.prev_done = np.zeros(num_envs, dtype=bool)
        self.episode_return = np.zeros(num_envs, dtype=np.float64)
        self.global_step = 0


def _collect(
    env: object, agent: Agent, state: _LoopState, config: PPOConfig, g: torch.Generator, run: PPORun
) -> _Rollout:
    T, N = config.num_steps, config.num_envs
    obs_buf = torch.zeros((T, N, state.obs.shape[-1]))
    actions = torch.zeros((T, N), dtype=torch.long)
    logprobs, rewards, terminated, dones, valid, values = (torch.zeros((T, N)) for _ in range(6))
    for t in range(T):
        obs_buf[t] = state.obs
        valid[t] = torch.as_tensor(~state.prev_done, dtype=torch.float32)
        with torch.no_grad():
            logp = agent.log_probs(state.obs)
            values[t] = agent.value(state.obs)
            action = torch.multinomial(logp.exp(), 1, generator=g).squeeze(-1)
        actions[t] = action
        logprobs[t] = logp.gather(-1, action[:, None]).squeeze(-1)
        next_obs, reward, term, trunc, _ = env.step(action.numpy())  # type: ignore[attr-defined]
        done = np.logical_or(term, trunc)
        state.global_step += N
        rewards[t] = torch.as_tensor(reward, dtype=torch.float32)
        terminated[t] = torch.as_tensor(term, dtype=torch.float32)
        dones[t] = torch.as_tensor(done, dtype=torch.float32)
        state.episode_return += np.where(state.prev_done, 0.0, reward)
        for i in np.flatnonzero(done):
            run.episode_steps.append(state.global_step)
            run.episode_returns.append(float(state.episode_return[i]))
            state.episode_return[i] = 0.0
        state.prev_done = done
        state.obs = torch.as_tensor(next_obs, dtype=torch.float32)
    return _Rollout(obs_buf, actions, logprobs, rewards, terminated, dones, valid, values)


def _update(
    agent: Agent,
    optimizer: torch.optim.Optimizer,
    r: _Rollout,
    state: _LoopState,
    config: PPOConfig,
    objective: PolicyObjective,
    g: torch.Generator,
    run: PPORun,
) -> dict[str, float]:
    with torch.no_grad():
        next_values = torch.cat([r.values[1:], agent.value(state.obs)[None]])
    advantages, returns = compute_gae(
        r.rewards, r.values, next_values, r.terminated, r.dones, config.gamma, config.gae_lambda
    )
    keep = r.valid.flatten().bool()
    obs = r.obs.flatten(0, 1)[keep]
    actions, old_logp = r.actions.flatten()[keep], r.logprobs.flatten()[keep]
    adv, ret, old_v = advantages.flatten()[keep], returns.flatten()[keep], r.values.flatten()[keep]
    size = obs.shape[0]
    mb_size = max(1, math.ceil(size / config.minibatches))
    totals = {"policy_loss": 0.0, "value_loss": 0.0, "entropy": 0.0, "approx_kl": 0.0}
    count = 0
    for _ in range(config.epochs):
        order = torch.randperm(size, generator=g)
        for begin in range(0, size, mb_size):
            idx = order[begin : begin + mb_size]
            logp_all = agent.log_probs(obs[idx])
            log_ratio = logp_all.gather(-1, actions[idx, None]).squeeze(-1) - old_logp[idx]
            mb_adv = normalise_advantages(adv[idx]) if config.norm_adv else adv[idx]
            policy_loss = objective(log_ratio, mb_adv).mean()
            value = agent.value(obs[idx])
            value_loss = _value_loss(value, old_v[idx], ret[idx], config)
            entropy = -(logp_all.exp() * logp_all).sum(-1).mean()
            loss = policy_loss - config.ent_coef * entropy + config.vf_coef * value_loss
            if not torch.isfinite(loss):
                run.skipped_updates += 1
                continue
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(agent.parameters(), config.max_grad_norm)
            optimizer.step()
            with torch.no_grad():
                kl = ((log_ratio.exp() - 1) - log_ratio).mean()
            for key, value_ in zip(totals, (policy_loss, value_loss, entropy, kl), strict=True):
                totals[key] += float(value_.detach())
            count += 1
    return {k: v / max(count, 1) for k, v in totals.items()}


def _value_loss(value: Tensor, old_value: Tensor, returns: Tensor, config: PPOConfig) -> Tensor:
    if not config.clip_vloss:
        return 0.5 * ((value - returns) ** 2).mean()
    clipped = old_value + torch.clamp(value - old_value, -config.clip_coef, config.clip_coef)
    return 0.5 * torch.maximum((value - returns) ** 2, (clipped - returns) ** 2).mean()
