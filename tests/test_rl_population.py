"""Population PPO: one batched update equals the single-run loop's, runs are independent and
reproducible, reset steps are masked, and the batched objectives equal their single-run forms."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from _rollouts import episode_lengths
from torch import Tensor

from metaloss.rl.config import CartPoleConfig, PPOConfig
from metaloss.rl.envs import EnvFamily
from metaloss.rl.objectives import (
    ClipObjective,
    DPOObjective,
    LearnedDrift,
    RunObjective,
    StackedObjective,
    dpo_objective,
    make_objective,
    ppo_clip_objective,
)
from metaloss.rl.population import (
    PopulationRollout,
    RunSpec,
    _collect,
    _Population,
    _update,
    compile_report,
    train_population,
)
from metaloss.rl.ppo import Agent, PPORun, _LoopState, _Rollout
from metaloss.rl.ppo import _update as single_update
from metaloss.rl.stacked import StackedAdam, StackedAgent, clip_grad_norms
from metaloss.tasks.base import Split

CARTPOLE = EnvFamily(CartPoleConfig()).default_task()


def _drift(seed: int) -> LearnedDrift:
    torch.manual_seed(seed)
    drift = LearnedDrift(hidden=(8,), reduction="none")
    with torch.no_grad():
        for p in drift.parameters():
            p.mul_(3.0)  # a drift that actually bends the objective
    return drift


def test_stacked_objective_equals_each_runs_own_objective() -> None:
    drifts = [_drift(0), _drift(1)]
    objectives: list[RunObjective] = [
        ClipObjective(0.1),
        drifts[0],
        DPOObjective(),
        drifts[1],
        ClipObjective(0.3),
        DPOObjective(1.0, 0.5),
    ]
    g = torch.Generator().manual_seed(0)
    log_ratio = torch.randn(6, 50, generator=g, dtype=torch.float64) * 0.4
    adv = torch.randn(6, 50, generator=g, dtype=torch.float64)
    got = StackedObjective(objectives)(log_ratio, adv)
    expected = [
        ppo_clip_objective(log_ratio[0], adv[0], 0.1),
        drifts[0].double()(log_ratio[1], adv[1]),
        dpo_objective(log_ratio[2], adv[2]),
        drifts[1].double()(log_ratio[3], adv[3]),
        ppo_clip_objective(log_ratio[4], adv[4], 0.3),
        dpo_objective(log_ratio[5], adv[5], 1.0, 0.5),
    ]
    torch.testing.assert_close(got, torch.stack(expected), rtol=1e-12, atol=1e-12)


def test_stacked_adam_and_clipping_follow_torch_per_run() -> None:
    """Each row follows torch.optim.Adam after clip_grad_norm_, with its own learning rate; an
    inactive row keeps its parameters and moments."""
    g = torch.Generator().manual_seed(0)
    flat = torch.randn(3, 7, generator=g, dtype=torch.float64)
    references = [torch.nn.Parameter(row.clone()) for row in flat]
    lrs = torch.tensor([1e-2, 3e-3, 5e-2], dtype=torch.float64)
    optimisers = [
        torch.optim.Adam([p], lr=float(lr), eps=1e-5) for p, lr in zip(references, lrs, strict=True)
    ]
    adam = StackedAdam(flat, eps=1e-5)
    for step in range(6):
        grad = torch.randn(3, 7, generator=g, dtype=torch.float64) * (step + 1)
        active = torch.tensor([True, step % 2 == 0, True])
        clipped, norms = clip_grad_norms(grad, 0.5)
        adam.step(clipped, lrs, active)
        for i, (p, opt) in enumerate(zip(references, optimisers, strict=True)):
            if not active[i]:
                continue
            p.grad = grad[i].clone()
            norm = torch.nn.utils.clip_grad_norm_([p], 0.5)
            torch.testing.assert_close(norms[i], norm)
            opt.step()
    torch.testing.assert_close(flat, torch.stack([p.detach() for p in references]))


def _rollout(agent: Agent, config: PPOConfig, seed: int) -> tuple[_Rollout, torch.Tensor]:
    """A float64 CartPole rollout of ``agent`` with NEXT_STEP reset steps, and the next obs."""
    runs = [RunSpec(CARTPOLE, seed)]
    pop = _Population(runs, config, torch.float64)
    pop.agent = StackedAgent([agent])
    rollout = _collect(pop)
    fields = {k: v.double() if v.is_floating_point() else v for k, v in vars(rollout).items()}
    next_obs = fields.pop("next_obs")[0]
    return _Rollout(*(v[:, 0] for v in fields.values())), next_obs


@pytest.mark.parametrize(
    "objective",
    [ClipObjective(0.2), ClipObjective(0.1), DPOObjective(), _drift(3)],
    ids=["clip0.2", "clip0.1", "dpo", "learned"],
)
def test_one_population_update_equals_the_single_run_update(objective: RunObjective) -> None:
    """Run 0 of a population of two (the other run has another agent, rollout and objective) ends
    the update with exactly the weights ppo.py's update gives the same agent, rollout and
    generator (float64; the valid-sample minibatches have unequal sizes across runs)."""
    config = PPOConfig(num_envs=3, num_steps=40, minibatches=3, epochs=2, hidden=(8, 8), lr=3e-3)
    agents = [Agent(4, 2, (8, 8), torch.Generator().manual_seed(s)).double() for s in (0, 1)]
    rollouts = [_rollout(a, config, seed=s) for s, a in zip((5, 8), agents, strict=True)]
    assert rollouts[0][0].valid.sum() != rollouts[1][0].valid.sum()  # unequal minibatches
    # the single-run loop
    reference = copy.deepcopy(agents[0])
    optimiser = torch.optim.Adam(reference.parameters(), lr=config.lr, eps=1e-5)
    state = _LoopState(rollouts[0][1], config.num_envs)
    if isinstance(objective, ClipObjective):
        single = make_objective("ppo_clip", clip_coef=objective.clip_coef)
    elif isinstance(objective, DPOObjective):
        single = make_objective("dpo")
    else:
        single = copy.deepcopy(objective).double()
    generator = torch.Generator().manual_seed(42)
    single_update(reference, optimiser, rollouts[0][0], state, config, single, generator, PPORun())
    # the population
    other = ClipObjective(0.3)
    pop = _Population(
        [RunSpec(CARTPOLE, 0, objective), RunSpec(CARTPOLE, 1, other)], config, torch.float64
    )
    pop.agent = StackedAgent(agents)
    pop.optimizer = StackedAdam(pop.agent.flat, eps=1e-5)
    pop.objective = StackedObjective(
        [
            copy.deepcopy(objective).double() if isinstance(objective, LearnedDrift) else objective,
            other,
        ]
    )
    pop.generators = [torch.Generator().manual_seed(42), torch.Generator().manual_seed(7)]
    stacked = PopulationRollout(
        *(
            torch.stack([getattr(r[0], k) for r in rollouts], dim=1)
            for k in (
                "obs",
                "actions",
                "logprobs",
                "rewards",
                "terminated",
                "dones",
                "valid",
                "values",
            )
        ),
        torch.stack([r[1] for r in rollouts]),
    )
    _update(pop, stacked, torch.tensor([config.lr, config.lr], dtype=torch.float64))
    got = pop.agent.agent(0, agents[0])
    for (name, expected), value in zip(
        reference.state_dict().items(), got.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(value, expected, rtol=1e-10, atol=1e-12, msg=name)
    assert not torch.allclose(got.actor[0].weight, agents[0].actor[0].weight)  # it moved


def test_a_runs_numbers_do_not_depend_on_the_rest_of_the_population() -> None:
    config = PPOConfig(num_envs=4, num_steps=32, hidden=(16, 16))
    family = EnvFamily(CartPoleConfig())
    target = RunSpec(family.task(Split.META_TRAIN, 0), 11, _drift(2), lr=2e-3)
    others = [
        RunSpec(family.task(Split.META_TRAIN, 1), 3, ClipObjective(0.1)),
        RunSpec(family.default_task(), 4, DPOObjective(), lr=5e-3),
        RunSpec(family.task(Split.META_TEST, 0), 11, _drift(5)),
    ]
    alone = train_population([target], config, total_steps=640)[0]
    inside = train_population([others[0], target, *others[1:]], config, total_steps=640)[1]
    again = train_population([target], config, total_steps=640)[0]
    assert len(alone.episode_returns) > 10
    assert inside.episode_returns == alone.episode_returns == again.episode_returns
    assert inside.episode_steps == alone.episode_steps


def _update_stats(runs: list[RunSpec], config: PPOConfig, run: int, steps: int) -> list[Tensor]:
    stats: list[Tensor] = []

    def record(update: int, values: dict[str, Tensor]) -> None:
        stats.append(torch.stack([values[k][run] for k in sorted(values)]))

    train_population(runs, config, total_steps=steps, on_update=record)
    return stats


def test_a_runs_every_update_is_bit_for_bit_the_same_alone_and_in_any_population() -> None:
    """Not only the episodes (which a last-bit difference changes only much later): every
    update's losses, KL and entropy, to the bit. Three population effects are pinned: a batch of
    one run takes other matmul kernels (the critic's 1-wide layer, the learned drift under vmap),
    minibatches padded to the population's largest change the length of the masked sums, and a
    run that sits out a step must not change how the others' Adam step rounds."""
    config = PPOConfig(num_envs=4, num_steps=32, hidden=(16, 16))
    family = EnvFamily(CartPoleConfig())
    torch.manual_seed(2)
    drift, clip = LearnedDrift(hidden=(16,), reduction="none"), ClipObjective(0.2)
    for objective in (drift, clip):
        target = RunSpec(family.task(Split.META_TRAIN, 0), 11, objective, lr=2e-3)
        others = [
            RunSpec(family.task(Split.META_TRAIN, 1), 3, drift),
            RunSpec(family.default_task(), 4, clip, lr=5e-3),
            RunSpec(family.task(Split.META_TEST, 0), 5, DPOObjective()),
        ]
        alone = _update_stats([target], config, 0, 512)
        for population in ([others[0], target], [*others, target]):
            inside = _update_stats(population, config, len(population) - 1, 512)
            assert len(inside) == len(alone) == 4
            for a, b in zip(alone, inside, strict=True):
                assert torch.equal(a, b), (type(objective).__name__, len(population), a - b)


def test_reset_steps_are_masked_and_not_counted() -> None:
    config = PPOConfig(num_envs=3, num_steps=200, hidden=(8,))
    pop = _Population([RunSpec(CARTPOLE, 0), RunSpec(CARTPOLE, 1)], config, torch.float64)
    rollout = _collect(pop)
    for run in range(2):
        dones, valid = rollout.dones[:, run], rollout.valid[:, run]
        assert dones.sum() > 3
        after = dones[:-1].bool()
        assert bool((valid[1:][after] == 0).all()) and bool((valid[1:][~after] == 1).all())
        assert bool((rollout.rewards[:, run][1:][after] == 0).all())
        assert bool((dones[1:][after] == 0).all())
        assert sorted(pop.results[run].episode_returns) == sorted(episode_lengths(dones, valid))
        # an episode's end step counts every environment's steps up to and including it
        ends = [(t + 1) * config.num_envs for t, _ in dones.nonzero().tolist()]
        assert pop.results[run].episode_steps == ends


def test_a_non_finite_objective_skips_only_its_own_run() -> None:
    config = PPOConfig(num_envs=2, num_steps=32, hidden=(8,))
    broken = _drift(0)
    with torch.no_grad():
        broken.net[0].bias.fill_(float("nan"))  # type: ignore[operator]
    healthy = RunSpec(CARTPOLE, 2, DPOObjective())
    results = train_population([RunSpec(CARTPOLE, 1, broken), healthy], config, total_steps=128)
    alone = train_population([healthy], config, total_steps=128)[0]
    assert results[0].skipped_updates == config.epochs * config.minibatches * 2
    assert results[1].skipped_updates == 0
    assert results[1].episode_returns == alone.episode_returns
    # to the bit: the broken run sitting out every step changes nothing in the healthy run's Adam
    runs = [RunSpec(CARTPOLE, 1, broken), healthy]
    for a, b in zip(
        _update_stats([healthy], config, 0, 128), _update_stats(runs, config, 1, 128), strict=True
    ):
        assert torch.equal(a, b)


def test_population_ppo_learns_cartpole() -> None:
    config = PPOConfig(num_envs=8, num_steps=64, lr=1e-3)
    results = train_population([RunSpec(CARTPOLE, s) for s in range(2)], config, total_steps=20480)
    for run in results:
        first = sum(run.episode_returns[:20]) / 20
        assert first < 40  # a random policy averages about 22
        assert run.final_return(0.2) > 150, (first, run.final_return(0.2))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_compiled_population_agrees_with_eager() -> None:
    """task.ppo.compile: the same episodes and, to float32 rounding, the same update statistics
    as the eager path on a tiny run (every objective kind, so the learned drift's vmap compiles
    inside the update's torch.func.grad); the compile is counted and not repeated for a second
    population of the same shapes."""
    eager = PPOConfig(num_envs=2, num_steps=16, minibatches=2, epochs=2, hidden=(8, 8))
    compiled = dataclasses.replace(eager, compile=True)
    family = EnvFamily(CartPoleConfig())
    runs = [
        RunSpec(family.task(Split.META_TRAIN, 0), 1, ClipObjective(0.2)),
        RunSpec(family.task(Split.META_TRAIN, 1), 2, DPOObjective(), lr=1e-3),
        RunSpec(family.default_task(), 3, _drift(4)),
    ]
    stats = {}
    results = {}
    for name, config in (("eager", eager), ("compiled", compiled)):
        recorded: list[Tensor] = []

        def record(update: int, values: dict[str, Tensor], into: list[Tensor] = recorded) -> None:
            into.append(torch.stack([values[k] for k in sorted(values)]))

        results[name] = train_population(runs, config, total_steps=96, on_update=record)
        stats[name] = torch.stack(recorded)
    assert stats["eager"].shape == (3, 4, 3)  # updates × statistics × runs
    for a, b in zip(results["eager"], results["compiled"], strict=True):
        assert a.episode_returns == b.episode_returns
        assert a.episode_steps == b.episode_steps
    torch.testing.assert_close(stats["compiled"], stats["eager"], rtol=1e-4, atol=1e-5)
    report = compile_report()
    assert report["graphs"] >= 3 and report["compile_seconds"] > 0
    train_population(runs, compiled, total_steps=96)
    assert compile_report() == report  # the graphs were reused
