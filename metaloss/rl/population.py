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

``task.ppo.compile`` (:attr:`PPOConfig.compile`, off by default) runs the same algorithm through
``torch.compile``: chunks of up to 8 rollout steps (policy, sampling, environment step), GAE and
each minibatch update (loss, its gradient by ``torch.func.grad``, clipping, Adam) are compiled
once per process and shapes (:func:`compile_report` gives the seconds spent), with the random
numbers still drawn from the runs' generators outside the compiled code. The compiled kernels
round differently (and use ``tanh``'s sigmoid form without the custom backward), so its numbers
agree with the eager path's to float32 rounding, not bit for bit, and bit-for-bit independence
from the rest of the population is a property of the eager path only.

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
from typing import Any, NamedTuple

import torch
from torch import Tensor

from metaloss.inner.compiled import CompiledUnroll
from metaloss.rl.config import PPOConfig
from metaloss.rl.envs import EnvTask
from metaloss.rl.objectives import ClipObjective, RunObjective, StackedObjective
from metaloss.rl.ppo import Agent, PPORun, _Rollout, compute_gae
from metaloss.rl.stacked import (
    Params,
    StackedAdam,
    StackedAgent,
    adam_step,
    clip_grad_norms,
)
from metaloss.rl.torch_envs import TorchVectorEnv, make_torch_env, spaces

__all__ = [
    "PopulationRollout",
    "RunSpec",
    "compile_report",
    "minibatch_orders",
    "train_population",
]


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
        self.compiled = _compiled_steps() if config.compile else None


class _CompiledSteps:
    """``torch.compile`` of the rollout step and the minibatch update (``task.ppo.compile``),
    shared by every population of the process so that later populations of the same shapes reuse
    the compiled graphs."""

    def __init__(self) -> None:
        self.rollout = CompiledUnroll(
            _rollout_steps, label="task.ppo.compile (rollout)", eager_backward=False
        )
        self.gae = CompiledUnroll(compute_gae, label="task.ppo.compile (GAE)", eager_backward=False)
        self.update = CompiledUnroll(
            _minibatch_update, label="task.ppo.compile (update)", eager_backward=False
        )


_COMPILED: list[_CompiledSteps] = []


def _compiled_steps() -> _CompiledSteps:
    if not _COMPILED:
        _COMPILED.append(_CompiledSteps())
    return _COMPILED[0]


def compile_report() -> dict[str, float]:
    """What ``task.ppo.compile`` has cost this process so far: ``compile_seconds`` (wall time of
    the calls that compiled), ``graphs`` and ``recompiles`` over the rollout step and the update
    (zeros if nothing was compiled)."""
    if not _COMPILED:
        return {"compile_seconds": 0.0, "graphs": 0.0, "recompiles": 0.0}
    steps = _COMPILED[0]
    parts = [steps.rollout.report(), steps.gae.report(), steps.update.report()]
    return {key: sum(p[key] for p in parts) for key in parts[0]}


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


class _StepOut(NamedTuple):
    """What one rollout step gives (``[R, E]`` each; ``next_obs`` ``[R, E, d]``)."""

    action: Tensor
    logprob: Tensor
    value: Tensor
    reward: Tensor
    terminated: Tensor
    done: Tensor
    episode_return: Tensor  # the running return including this step's reward
    next_return: Tensor  # ... and reset to 0 where an episode ended
    next_obs: Tensor


_CHUNK = 8
"""Rollout steps per call of the compiled rollout (a divisor of ``num_steps`` at most this):
fewer calls, a larger graph to compile."""


@torch.no_grad()
def _collect(pop: _Population) -> PopulationRollout:
    T, E = pop.config.num_steps, pop.env.batch_shape[1]
    dtype = pop.agent.flat.dtype  # float32 unless a test runs float64 agents
    uniforms = torch.stack(
        [torch.rand((T, E), generator=g, dtype=dtype) for g in pop.generators], dim=1
    )
    fresh = torch.stack([pop.env.next_uniforms() for _ in range(T)])
    steps: Callable[..., Any] = _rollout_steps
    traced, chunk = False, T
    if pop.compiled is not None:
        steps, traced = pop.compiled.rollout, True
        chunk = max(k for k in range(1, _CHUNK + 1) if T % k == 0)
    carry = (pop.obs.to(dtype), (pop.env.state, pop.env.steps, pop.env.prev_done))
    loop = (pop.prev_done, pop.episode_return)
    seen, valid, outs = [], [], []
    for begin in range(0, T, chunk):
        window = slice(begin, begin + chunk)
        carry, loop, (obs, flags, out) = steps(
            pop.agent, pop.env, traced, uniforms[window], fresh[window], carry, loop
        )
        seen.append(obs)
        valid.append(flags)
        outs.append(out)
    pop.obs, (pop.env.state, pop.env.steps, pop.env.prev_done) = carry
    pop.prev_done, pop.episode_return = loop
    out = _StepOut(*(torch.cat(column) for column in zip(*outs, strict=True)))
    _record_episodes(pop, out.done, out.episode_return)
    return PopulationRollout(
        torch.cat(seen),
        out.action,
        out.logprob,
        out.reward.to(dtype),
        out.terminated.to(dtype),
        out.done.to(dtype),
        torch.cat(valid),
        out.value,
        pop.obs,
    )


_Carry = tuple[Tensor, tuple[Tensor, Tensor, Tensor]]
"""The agents' observations and the environments' ``(state, steps, prev_done)``."""


def _rollout_steps(
    agent: StackedAgent,
    env: TorchVectorEnv,
    traced: bool,
    uniforms: Tensor,
    fresh: Tensor,
    carry: _Carry,
    loop: tuple[Tensor, Tensor],
) -> tuple[_Carry, tuple[Tensor, Tensor], tuple[Tensor, Tensor, _StepOut]]:
    """``len(uniforms)`` rollout steps of every run (the action uniforms ``[K, R, E]`` and reset
    uniforms ``[K, R, E, state_dim]`` drawn beforehand; ``loop`` is ``(prev_done,
    episode_return)``): returns the new carry and loop state, and the steps' observations, valid
    flags and outputs stacked ``[K, ...]``. A function of its inputs, so it can be compiled."""
    obs, env_carry = carry
    prev_done, episode_return = loop
    seen, valid, outs = [], [], []
    for t in range(uniforms.shape[0]):
        seen.append(obs)
        valid.append((~prev_done).to(obs.dtype))
        env_carry, out = _rollout_step(
            agent, env, traced, obs, uniforms[t], fresh[t], env_carry, prev_done, episode_return
        )
        outs.append(out)
        obs, prev_done, episode_return = out.next_obs.to(obs.dtype), out.done, out.next_return
    stacked = _StepOut(*(torch.stack(column) for column in zip(*outs, strict=True)))
    return (
        (obs, env_carry),
        (prev_done, episode_return),
        (torch.stack(seen), torch.stack(valid), stacked),
    )


def _rollout_step(
    agent: StackedAgent,
    env: TorchVectorEnv,
    traced: bool,
    obs: Tensor,
    uniform: Tensor,
    fresh: Tensor,
    carry: tuple[Tensor, Tensor, Tensor],
    prev_done: Tensor,
    episode_return: Tensor,
) -> tuple[tuple[Tensor, Tensor, Tensor], _StepOut]:
    """One step of every run: act (inverse-CDF sampling with ``uniform``), step the environments
    (reset states from ``fresh``), accumulate episode returns. A function of its inputs (it draws
    nothing and changes no tensor), so it can be compiled."""
    logp = agent.log_probs(obs, None, traced)
    value = agent.value(obs, None, traced)
    cdf = logp.exp().cumsum(-1)
    action = (uniform.unsqueeze(-1) > cdf).sum(-1).clamp(max=logp.shape[-1] - 1)
    logprob = logp.gather(-1, action.unsqueeze(-1)).squeeze(-1)
    carry, (next_obs, reward, term, trunc) = env.transition(carry, action, fresh)
    done = term | trunc
    so_far = episode_return + torch.where(prev_done, 0.0, reward.double())
    after = torch.where(done, 0.0, so_far)
    return carry, _StepOut(action, logprob, value, reward, term, done, so_far, after, next_obs)


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
    return _orders([row.nonzero().squeeze(1) for row in keep], keep.shape[1], generators)


def _orders(valid: Sequence[Tensor], N: int, generators: Sequence[torch.Generator]) -> Tensor:
    orders = torch.zeros((len(valid), N), dtype=torch.long)
    for r, (indices, g) in enumerate(zip(valid, generators, strict=True)):
        orders[r, : indices.numel()] = indices[torch.randperm(indices.numel(), generator=g)]
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
    gae = compute_gae if pop.compiled is None else pop.compiled.gae
    advantages, returns = gae(
        r.rewards, r.values, next_values, r.terminated, r.dones, config.gamma, config.gae_lambda
    )

    def per_run(x: Tensor) -> Tensor:  # [T, R, E, ...] -> [R, T*E, ...] in the loop's order
        return x.transpose(0, 1).flatten(1, 2)

    obs, actions, old_logp = per_run(r.obs), per_run(r.actions), per_run(r.logprobs)
    adv, ret, old_v = per_run(advantages), per_run(returns), per_run(r.values)
    keep = per_run(r.valid).bool()
    valid = [row.nonzero().squeeze(1) for row in keep]  # the same in every epoch
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
        orders = _orders(valid, T * E, pop.generators)
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
    def take(x: Tensor) -> Tensor:
        if x.dim() == 2:
            return x.gather(1, idx)
        return x.gather(1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))

    batch = _Minibatch(mask, *(take(x) for x in (obs, actions, old_logp, adv, ret, old_v)))
    if pop.compiled is not None:
        return _compiled_minibatch_step(pop, lr, batch)
    params: Params = pop.agent.params
    loss, stats, log_ratio = _minibatch_loss(pop.agent, pop.objective, pop.config, params, batch)
    count = mask.sum(1)
    finite = torch.isfinite(loss)
    active = finite & (count > 0)
    _count_skipped(pop, finite, count)
    grads = torch.autograd.grad(torch.where(active, loss, 0.0).sum(), list(params.values()))
    clipped, _ = clip_grad_norms(pop.agent.flat_grad(grads), pop.config.max_grad_norm)
    pop.optimizer.step(clipped, lr, active)
    with torch.no_grad():
        stats["approx_kl"] = _approx_kl(log_ratio, mask, count)
    return stats, active


class _Minibatch(NamedTuple):
    """One minibatch of every run ``[R, W, ...]``: which lanes are samples, and the samples."""

    mask: Tensor
    obs: Tensor
    actions: Tensor
    old_logp: Tensor
    adv: Tensor
    ret: Tensor
    old_v: Tensor


def _count_skipped(pop: _Population, finite: Tensor, count: Tensor) -> None:
    for run in (~finite & (count > 0)).nonzero().flatten().tolist():
        pop.results[run].skipped_updates += 1


def _minibatch_loss(
    agent: StackedAgent,
    objective: StackedObjective,
    config: PPOConfig,
    params: Params,
    b: _Minibatch,
    traced: bool = False,
) -> tuple[Tensor, dict[str, Tensor], Tensor]:
    """Every run's PPO loss on its minibatch ``[R]``, the loss terms, and the log-ratios."""
    count = b.mask.sum(1)
    logp_all = agent.log_probs(b.obs, params, traced)
    log_ratio = logp_all.gather(-1, b.actions.unsqueeze(-1)).squeeze(-1) - b.old_logp
    mb_adv = _normalise(b.adv, b.mask, count) if config.norm_adv else b.adv
    policy_loss = _masked_mean(objective(log_ratio, mb_adv), b.mask, count)
    value = agent.value(b.obs, params, traced)
    value_loss = _value_loss(value, b.old_v, b.ret, b.mask, count, config)
    entropy = _masked_mean(-(logp_all.exp() * logp_all).sum(-1), b.mask, count)
    loss = policy_loss - config.ent_coef * entropy + config.vf_coef * value_loss
    stats = {"policy_loss": policy_loss, "value_loss": value_loss, "entropy": entropy}
    return loss, stats, log_ratio


def _compiled_minibatch_step(
    pop: _Population, lr: Tensor, batch: _Minibatch
) -> tuple[dict[str, Tensor], Tensor]:
    assert pop.compiled is not None
    opt = pop.optimizer
    with torch.no_grad():
        flat = pop.agent.flat.detach()
    new, stats, finite, active = pop.compiled.update(
        pop.agent, pop.objective, pop.config, opt.betas, opt.eps,
        (flat, opt.exp_avg, opt.exp_avg_sq, opt.steps), lr, batch,
    )  # fmt: skip
    _count_skipped(pop, finite, batch.mask.sum(1))
    with torch.no_grad():
        pop.agent.flat.copy_(new[0])
    opt.exp_avg, opt.exp_avg_sq, opt.steps = new[1:]
    return stats, active


def _minibatch_update(
    agent: StackedAgent,
    objective: StackedObjective,
    config: PPOConfig,
    betas: tuple[float, float],
    eps: float,
    state: tuple[Tensor, Tensor, Tensor, Tensor],
    lr: Tensor,
    batch: _Minibatch,
) -> tuple[tuple[Tensor, Tensor, Tensor, Tensor], dict[str, Tensor], Tensor, Tensor]:
    """One PPO minibatch step of every run as a function (what ``task.ppo.compile`` compiles):
    the loss, its gradient with ``torch.func.grad``, per-run clipping and Adam. ``state`` is
    ``(parameters [R, P], Adam's moments, its step counts)``; returns the new state, the loss
    terms and KL, which runs' losses were finite, and which runs took the step."""
    flat = state[0]
    count = batch.mask.sum(1)

    def total(flat: Tensor) -> tuple[Tensor, tuple[Tensor, dict[str, Tensor], Tensor, Tensor]]:
        params = agent.unflatten(flat)
        loss, stats, log_ratio = _minibatch_loss(
            agent, objective, config, params, batch, traced=True
        )
        active = torch.isfinite(loss) & (count > 0)
        return torch.where(active, loss, 0.0).sum(), (loss, stats, log_ratio, active)

    grad, (loss, stats, log_ratio, active) = torch.func.grad(total, has_aux=True)(flat)
    clipped, _ = clip_grad_norms(grad, config.max_grad_norm)
    new = adam_step(*state, clipped, lr, active, betas, eps)
    stats["approx_kl"] = _approx_kl(log_ratio, batch.mask, count)
    return new, stats, torch.isfinite(loss), active


def _approx_kl(log_ratio: Tensor, mask: Tensor, count: Tensor) -> Tensor:
    """Each run's mean ``(r - 1) - log r`` over its minibatch (the "k3" KL estimate, as in
    :mod:`metaloss.rl.ppo`)."""
    return _masked_mean((log_ratio.exp() - 1) - log_ratio, mask, count)


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
