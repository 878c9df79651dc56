"""Population PPO: many independent PPO training runs as one batched computation per step.

A population is a list of :class:`RunSpec` (an environment variant, a seed, a policy objective
and a learning rate per run). All runs step their ``num_envs`` torch environments
(:mod:`metaloss.rl.torch_envs`) together, act with stacked agents
(:class:`~metaloss.rl.stacked.StackedAgent`) and update together with per-run Adam, so one
population of ``R`` runs costs one batched rollout and one batched update per PPO iteration.

The algorithm of every run is :func:`metaloss.rl.ppo.train_ppo`'s (CleanRL ``ppo.py`` semantics):
rollouts of ``num_steps × num_envs``, GAE, gymnasium's ``NEXT_STEP`` reset steps masked out of
every loss, ``epochs`` passes over ``minibatches`` shuffled minibatches *of the run's valid
samples* (their number differs between runs: the minibatches are padded and masked), advantage
normalisation per minibatch, the objective's policy loss, the clipped value loss
(``config.clip_coef``), the entropy bonus, gradient-norm clipping, Adam with linear learning-rate
annealing, and updates with a non-finite loss skipped. Only the source of randomness differs
from the gymnasium path (torch environments and inverse-CDF action sampling), so a seed does not
give :func:`train_ppo`'s numbers.

Reproducibility: run ``r``'s randomness (agent initialisation, action sampling, shuffling,
environment resets) comes from generators seeded by its own ``seed`` only, and no operation mixes
runs. A run's numbers therefore do not depend on the rest of the population: the same run alone
or inside any population gives the same episodes (on one thread, bit for bit; tested in
``tests/test_rl_population.py``). Runs with the same seed share initial weights and environment
resets: common random numbers for comparing objectives.

References:
    Schulman et al., "Proximal Policy Optimization Algorithms", 2017.
    Huang et al., "The 37 Implementation Details of Proximal Policy Optimization", 2022.
    Lu et al., "Discovered Policy Optimisation", NeurIPS 2022 (a population of PPO runs per ES
    generation, vectorised on an accelerator; here on CPU).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from metaloss.rl.config import PPOConfig
from metaloss.rl.envs import EnvTask
from metaloss.rl.objectives import ClipObjective, RunObjective, StackedObjective
from metaloss.rl.ppo import Agent, PPORun, _Rollout, compute_gae
from metaloss.rl.stacked import Params, StackedAdam, StackedAgent, clip_grad_norms
from metaloss.rl.torch_envs import TorchVectorEnv, make_torch_env, spaces

__all__ = ["PopulationRollout", "RunSpec", "minibatch_orders", "train_population"]


@dataclass(frozen=True)
class RunSpec:
    """One training run of a population: variant, seed, policy objective, learning rate
    (``None``: ``config.lr``)."""

    task: EnvTask
    seed: int
    objective: RunObjective = field(default_factory=ClipObjective)
    lr: float | None = None


@dataclass
class PopulationRollout(_Rollout):
    """``num_steps`` steps of every run: the single-run rollout's tensors with a run dimension,
    ``[T, R, E, ...]``, and the observations that follow the last step."""

    next_obs: Tensor


UpdateCallback = Callable[[int, dict[str, Tensor]], None]


class _Population:
    """What carries over between rollouts for every run."""

    def __init__(self, runs: Sequence[RunSpec], config: PPOConfig, env_dtype: torch.dtype) -> None:
        self.runs = list(runs)
        self.config = config
        self.generators = [torch.Generator().manual_seed(r.seed) for r in runs]
        env_ids = {r.task.env_id for r in runs}
        if len(env_ids) != 1:
            raise ValueError(f"runs: expected variants of one environment, got {sorted(env_ids)}")
        obs_dim, n_actions = spaces(env_ids.pop())
        # the agent's initialisation comes first from the run's generator, as in train_ppo
        agents = [Agent(obs_dim, n_actions, config.hidden, g) for g in self.generators]
        env_generators = [
            torch.Generator().manual_seed(int(torch.randint(0, 1 << 62, (), generator=g)))
            for g in self.generators
        ]
        batch = (len(runs), config.num_envs)
        self.env: TorchVectorEnv = make_torch_env(
            [r.task for r in runs], batch, env_generators, env_dtype
        )
        self.template = agents[0]
        self.agent = StackedAgent(agents)
        self.optimizer = StackedAdam(self.agent.flat, eps=1e-5)
        self.base_lr = torch.tensor(
            [config.lr if r.lr is None else r.lr for r in runs], dtype=torch.float64
        )
        self.objective = StackedObjective([r.objective for r in runs])
        self.obs = self.env.reset().float()
        self.prev_done = torch.zeros(batch, dtype=torch.bool)
        self.episode_return = torch.zeros(batch, dtype=torch.float64)
        self.global_step = 0
        self.results = [PPORun() for _ in runs]


def train_population(
    runs: Sequence[RunSpec],
    config: PPOConfig,
    total_steps: int | None = None,
    env_dtype: torch.dtype = torch.float64,
    on_update: UpdateCallback | None = None,
) -> list[PPORun]:
    """Train one fresh agent per run with PPO, all runs batched; returns each run's episodes.

    Args:
        runs: the population (variants of one environment: CartPole-v1 or Acrobot-v1).
        config: PPO settings shared by the runs (``lr`` unless a run has its own).
        total_steps: environment steps per run (default ``config.total_steps``).
        env_dtype: of the environments' physics (``float64`` is gymnasium's arithmetic; the
            agents always see ``float32`` observations, as on the gymnasium path).
        on_update: called after each update with the update index and per-run statistics
            ``[R]`` (``policy_loss``, ``value_loss``, ``entropy``, ``approx_kl``).

    Example:
        >>> from metaloss.rl.config import CartPoleConfig
        >>> from metaloss.rl.envs import EnvFamily
        >>> task = EnvFamily(CartPoleConfig()).default_task()
        >>> runs = [RunSpec(task, seed) for seed in range(3)]
        >>> results = train_population(runs, PPOConfig(), total_steps=2048)
    """
    if not runs:
        raise ValueError("runs: expected at least one training run")
    start = time.perf_counter()
    pop = _Population(runs, config, env_dtype)
    budget = total_steps or config.total_steps
    updates = max(1, budget // (config.num_envs * config.num_steps))
    with torch.enable_grad():  # callers such as ES evaluate candidates under no_grad
        for update in range(updates):
            lr = pop.base_lr * (1.0 - update / updates) if config.anneal_lr else pop.base_lr
            rollout = _collect(pop)
            stats = _update(pop, rollout, lr)
            if on_update is not None:
                on_update(update, stats)
    seconds = time.perf_counter() - start
    for result in pop.results:
        result.total_steps = pop.global_step
        result.seconds = seconds
    return pop.results


# ------------------------------------------------------------------------------ rollouts


@torch.no_grad()
def _collect(pop: _Population) -> PopulationRollout:
    T, (R, E) = pop.config.num_steps, pop.env.batch_shape
    dtype = pop.agent.flat.dtype  # float32 unless a test runs float64 agents
    uniforms = torch.stack(
        [torch.rand((T, E), generator=g, dtype=dtype) for g in pop.generators], dim=1
    )
    pop.obs = pop.obs.to(dtype)
    obs_buf = torch.zeros((T, R, E, pop.obs.shape[-1]), dtype=dtype)
    actions = torch.zeros((T, R, E), dtype=torch.long)
    logprobs, rewards, terminated, dones, valid, values = (
        torch.zeros((T, R, E), dtype=dtype) for _ in range(6)
    )
    finished = torch.zeros((T, R, E), dtype=torch.bool)
    returns = torch.zeros((T, R, E), dtype=torch.float64)
    for t in range(T):
        obs_buf[t] = pop.obs
        valid[t] = (~pop.prev_done).to(dtype)
        logp = pop.agent.log_probs(pop.obs)
        values[t] = pop.agent.value(pop.obs)
        cdf = logp.exp().cumsum(-1)
        action = (uniforms[t].unsqueeze(-1) > cdf).sum(-1).clamp(max=logp.shape[-1] - 1)
        actions[t] = action
        logprobs[t] = logp.gather(-1, action.unsqueeze(-1)).squeeze(-1)
        next_obs, reward, term, trunc = pop.env.step(action)
        done = term | trunc
        rewards[t], terminated[t], dones[t] = reward, term, done
        pop.episode_return += torch.where(pop.prev_done, 0.0, reward.double())
        finished[t], returns[t] = done, pop.episode_return
        pop.episode_return = torch.where(done, 0.0, pop.episode_return)
        pop.prev_done = done
        pop.obs = next_obs.to(dtype)
    _record_episodes(pop, finished, returns)
    return PopulationRollout(
        obs_buf, actions, logprobs, rewards, terminated, dones, valid, values, pop.obs
    )


def _record_episodes(pop: _Population, finished: Tensor, returns: Tensor) -> None:
    """Append each run's finished episodes (end step, return) in the single-run loop's order."""
    T, _, E = finished.shape
    where = finished.permute(1, 0, 2).nonzero().tolist()  # (run, t, env), sorted
    values = returns.permute(1, 0, 2)[finished.permute(1, 0, 2)].tolist()
    for (run, t, _env), value in zip(where, values, strict=True):
        pop.results[run].episode_steps.append(pop.global_step + (t + 1) * E)
        pop.results[run].episode_returns.append(value)
    pop.global_step += T * E


# ------------------------------------------------------------------------------ updates


def minibatch_orders(keep: Tensor, generators: Sequence[torch.Generator]) -> Tensor:
    """Each run's valid sample indices in a random order ``[R, N]`` (padded with 0): run ``r``
    draws ``torch.randperm(valid count)`` from its generator, like the single-run loop."""
    R, N = keep.shape
    orders = torch.zeros((R, N), dtype=torch.long)
    for r, g in enumerate(generators):
        valid = keep[r].nonzero().squeeze(1)
        orders[r, : valid.numel()] = valid[torch.randperm(valid.numel(), generator=g)]
    return orders


def _masked_mean(values: Tensor, mask: Tensor, count: Tensor) -> Tensor:
    return torch.where(mask, values, 0.0).sum(1) / count.clamp(min=1)


def _normalise(adv: Tensor, mask: Tensor, count: Tensor) -> Tensor:
    """Per-run masked ``(A − mean) / (std + 1e-8)`` (unbiased std; unchanged with one sample)."""
    mean = _masked_mean(adv, mask, count).unsqueeze(1)
    centred = torch.where(mask, adv - mean, 0.0)
    std = (centred.pow(2).sum(1) / (count - 1).clamp(min=1)).sqrt().unsqueeze(1)
    normalised = (adv - mean) / (std + 1e-8)
    return torch.where((count >= 2).unsqueeze(1), normalised, adv)


def _update(pop: _Population, r: PopulationRollout, lr: Tensor) -> dict[str, Tensor]:
    config = pop.config
    T, R, E = r.rewards.shape
    with torch.no_grad():
        next_values = torch.cat([r.values[1:], pop.agent.value(r.next_obs).unsqueeze(0)])
    advantages, returns = compute_gae(
        r.rewards, r.values, next_values, r.terminated, r.dones, config.gamma, config.gae_lambda
    )

    def per_run(x: Tensor) -> Tensor:  # [T, R, E, ...] -> [R, T*E, ...] in the loop's order
        return x.transpose(0, 1).flatten(1, 2)

    obs, actions, old_logp = per_run(r.obs), per_run(r.actions), per_run(r.logprobs)
    adv, ret, old_v = per_run(advantages), per_run(returns), per_run(r.values)
    keep = per_run(r.valid).bool()
    size = keep.sum(1)
    mb_size = (size + config.minibatches - 1).div(config.minibatches, rounding_mode="floor")
    mb_size = mb_size.clamp(min=1)
    batches = int((size + mb_size - 1).div(mb_size, rounding_mode="floor").max())
    # Every run's minibatch is padded to the size of a rollout without reset steps, not to the
    # population's largest: the masked sums then run over the same length whatever the other
    # runs did, so a run's rounding (and with PPO's chaos, its returns) cannot depend on them.
    width = -(-T * E // config.minibatches)
    lane = torch.arange(width)
    totals = {k: torch.zeros(R) for k in ("policy_loss", "value_loss", "entropy", "approx_kl")}
    counted = torch.zeros(R)
    for _ in range(config.epochs):
        orders = minibatch_orders(keep, pop.generators)
        for k in range(batches):
            position = k * mb_size.unsqueeze(1) + lane
            mask = (lane < mb_size.unsqueeze(1)) & (position < size.unsqueeze(1))
            idx = orders.gather(1, position.clamp(max=T * E - 1))
            stats, active = _minibatch_step(
                pop, lr, mask, obs, actions, old_logp, adv, ret, old_v, idx
            )
            for key, value in stats.items():
                totals[key] += torch.where(active, value.detach(), 0.0)
            counted += active.float()
    return {k: v / counted.clamp(min=1) for k, v in totals.items()}


def _minibatch_step(
    pop: _Population,
    lr: Tensor,
    mask: Tensor,
    obs: Tensor,
    actions: Tensor,
    old_logp: Tensor,
    adv: Tensor,
    ret: Tensor,
    old_v: Tensor,
    idx: Tensor,
) -> tuple[dict[str, Tensor], Tensor]:
    config = pop.config
    count = mask.sum(1)

    def take(x: Tensor) -> Tensor:
        if x.dim() == 2:
            return x.gather(1, idx)
        return x.gather(1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))

    params: Params = pop.agent.params
    logp_all = pop.agent.log_probs(take(obs), params)
    log_ratio = logp_all.gather(-1, take(actions).unsqueeze(-1)).squeeze(-1) - take(old_logp)
    mb_adv = _normalise(take(adv), mask, count) if config.norm_adv else take(adv)
    policy_loss = _masked_mean(pop.objective(log_ratio, mb_adv), mask, count)
    value = pop.agent.value(take(obs), params)
    value_loss = _value_loss(value, take(old_v), take(ret), mask, count, config)
    entropy = _masked_mean(-(logp_all.exp() * logp_all).sum(-1), mask, count)
    loss = policy_loss - config.ent_coef * entropy + config.vf_coef * value_loss
    finite = torch.isfinite(loss)
    active = finite & (count > 0)
    for run in (~finite & (count > 0)).nonzero().flatten().tolist():
        pop.results[run].skipped_updates += 1
    grads = torch.autograd.grad(torch.where(active, loss, 0.0).sum(), list(params.values()))
    clipped, _ = clip_grad_norms(pop.agent.flat_grad(grads), config.max_grad_norm)
    pop.optimizer.step(clipped, lr, active)
    with torch.no_grad():
        kl = _masked_mean((log_ratio.exp() - 1) - log_ratio, mask, count)
    stats = {
        "policy_loss": policy_loss,
        "value_loss": value_loss,
        "entropy": entropy,
        "approx_kl": kl,
    }
    return stats, active


def _value_loss(
    value: Tensor,
    old_value: Tensor,
    returns: Tensor,
    mask: Tensor,
    count: Tensor,
    config: PPOConfig,
) -> Tensor:
    if not config.clip_vloss:
        return 0.5 * _masked_mean((value - returns) ** 2, mask, count)
    clipped = old_value + torch.clamp(value - old_value, -config.clip_coef, config.clip_coef)
    worst = torch.maximum((value - returns) ** 2, (clipped - returns) ** 2)
    return 0.5 * _masked_mean(worst, mask, count)
