"""Reinforcement learning: GAE, the policy objectives, ES, autoreset handling, meta-training."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from metaloss.config import ConfigError, load_config, parse
from metaloss.outer.estimators import AntitheticES
from metaloss.outer.problem import MetaObjective
from metaloss.rl.config import CartPoleConfig, PPOConfig
from metaloss.rl.envs import PARAMETERS, EnvFamily, make_vec_env
from metaloss.rl.meta import RLMetaTrainer
from metaloss.rl.objectives import (
    LearnedDrift,
    dpo_drift,
    dpo_objective,
    make_objective,
    ppo_clip_objective,
)
from metaloss.rl.ppo import Agent, PPORun, _collect, _LoopState, compute_gae, train_ppo
from metaloss.tasks.base import Split

CONFIG = Path(__file__).parent.parent / "configs" / "cartpole.yaml"


# ---------------------------------------------------------------------------- GAE


def test_gae_matches_a_hand_computed_example() -> None:
    rewards = torch.tensor([[1.0], [1.0], [1.0]])
    values = torch.tensor([[0.5], [0.4], [0.3]])
    next_values = torch.tensor([[0.4], [0.3], [0.2]])
    terminated = torch.tensor([[0.0], [1.0], [0.0]])
    adv, ret = compute_gae(
        rewards, values, next_values, terminated, terminated, gamma=0.9, gae_lambda=0.8
    )
    # t=2: 1 + .9*.2 - .3 = .88; t=1 (terminal): 1 - .4 = .6; t=0: (1 + .9*.4 - .5) + .72*.6 = 1.292
    torch.testing.assert_close(adv.squeeze(1), torch.tensor([1.292, 0.6, 0.88]))
    torch.testing.assert_close(ret, adv + values)


def test_gae_bootstraps_through_truncation_but_cuts_the_lambda_chain() -> None:
    rewards = torch.ones(3, 1)
    values = torch.tensor([[0.5], [0.4], [0.3]])
    next_values = torch.tensor([[0.4], [0.3], [0.2]])
    terminated = torch.zeros(3, 1)
    truncated_done = torch.tensor([[0.0], [1.0], [0.0]])
    adv, _ = compute_gae(
        rewards, values, next_values, terminated, truncated_done, gamma=0.9, gae_lambda=0.8
    )
    # t=1 (truncated): 1 + .9*.3 - .4 = .87 (bootstrapped, chain cut); t=0: .86 + .72*.87 = 1.4864
    torch.testing.assert_close(adv.squeeze(1), torch.tensor([1.4864, 0.87, 0.88]))


# ---------------------------------------------------------------------------- objectives


def test_ppo_clip_objective_matches_its_formula() -> None:
    eps = 0.2
    for r, a in [(1.5, 1.0), (1.5, -1.0), (0.5, 1.0), (0.5, -1.0), (1.1, 2.0), (0.9, -3.0)]:
        expected = -min(r * a, min(max(r, 1 - eps), 1 + eps) * a)
        got = ppo_clip_objective(torch.tensor([math.log(r)]), torch.tensor([a]), eps)
        assert float(got) == pytest.approx(expected, rel=1e-6)
    # the named objective uses the given epsilon
    named = make_objective("ppo_clip", clip_coef=0.1)(
        torch.tensor([math.log(1.5)]), torch.tensor([1.0])
    )
    assert float(named) == pytest.approx(-1.1, rel=1e-6)


def test_dpo_drift_matches_its_formula() -> None:
    alpha, beta = 2.0, 0.6
    for r, a in [(1.5, 1.0), (3.0, 2.0), (0.5, 1.0), (1.5, -1.0), (0.4, -2.0), (1.0, 1.0)]:
        if a >= 0:
            x = (r - 1) * a
            expected = max(0.0, x - alpha * math.tanh(x / alpha))
        else:
            x = math.log(r) * a
            expected = max(0.0, x - beta * math.tanh(x / beta))
        lr, adv = (
            torch.tensor([math.log(r)], dtype=torch.float64),
            torch.tensor([a], dtype=torch.float64),
        )
        assert float(dpo_drift(lr, adv)) == pytest.approx(expected, abs=1e-12)
        assert float(dpo_objective(lr, adv)) == pytest.approx(-(r * a - expected), abs=1e-12)
    assert (
        float(dpo_drift(torch.tensor([math.log(3.0)]), torch.tensor([2.0]))) > 0
    )  # actually penalises


def test_learned_drift_is_non_negative_and_zero_at_ratio_one() -> None:
    torch.manual_seed(0)
    drift = LearnedDrift(hidden=(8,))
    log_ratio, adv = torch.randn(256) * 0.5, torch.randn(256)
    assert bool((drift.drift(log_ratio, adv) >= 0).all())
    torch.testing.assert_close(drift.drift(torch.zeros(256), adv), torch.zeros(256))
    loss = drift(log_ratio, adv, reduction="none")
    torch.testing.assert_close(loss, -(log_ratio.exp() * adv) + drift.drift(log_ratio, adv))


def test_learned_drift_round_trips_through_the_loss_file(tmp_path: Path) -> None:
    from metaloss.export import load_loss, save_loss

    drift = LearnedDrift(hidden=(8,))
    path = save_loss(drift, tmp_path / "drift.safetensors")
    loaded = load_loss(path, reduction="none")
    assert isinstance(loaded, LearnedDrift)
    log_ratio, adv = torch.randn(16) * 0.3, torch.randn(16)
    torch.testing.assert_close(loaded(log_ratio, adv), drift(log_ratio, adv, reduction="none"))


# ---------------------------------------------------------------------------- ES


def test_antithetic_es_estimates_a_quadratic_gradient() -> None:
    scale = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    theta = {"w": torch.tensor([0.5, -1.0, 0.25], dtype=torch.float64)}

    def objective(params: dict[str, torch.Tensor], _: int | None) -> torch.Tensor:
        return (scale * params["w"] ** 2).sum()[None]

    es = AntitheticES(population=4000, sigma=0.01, rank_shaping=False)
    out = es.estimate(theta, MetaObjective(objective), torch.Generator().manual_seed(0))
    torch.testing.assert_close(out.grads["w"], 2 * scale * theta["w"], atol=0.1, rtol=0.05)
    # a population evaluator sees the same candidates in the same order
    population = MetaObjective(objective, lambda cs: torch.stack([objective(c, None) for c in cs]))
    batched = es.estimate(theta, population, torch.Generator().manual_seed(0))
    torch.testing.assert_close(batched.grads["w"], out.grads["w"])


# ---------------------------------------------------------------------------- environments


def test_variants_use_disjoint_ranges_and_the_default_env_is_unmodified() -> None:
    family = EnvFamily(CartPoleConfig())
    assert family.default_task().params == PARAMETERS["CartPole-v1"]
    for task in family.tasks(Split.META_TRAIN, 20):
        assert all(0.75 <= m <= 1.33 for m in task.multipliers().values())
    for task in family.tasks(Split.META_TEST, 20):
        assert all(0.6 <= m < 0.75 or 1.33 < m <= 1.67 for m in task.multipliers().values())
    env, _ = make_vec_env(family.task(Split.META_TEST, 0), 2, seed=0)
    assert env.unwrapped.length == pytest.approx(family.task(Split.META_TEST, 0).params["length"])
    env.close()


def test_next_step_autoreset_steps_are_masked_and_not_counted() -> None:
    task = EnvFamily(CartPoleConfig()).default_task()
    config = PPOConfig(num_envs=3, num_steps=200)
    env, obs = make_vec_env(task, config.num_envs, seed=0)
    g = torch.Generator().manual_seed(0)
    state, run = _LoopState(torch.as_tensor(obs), config.num_envs), PPORun()
    rollout = _collect(env, Agent(4, 2, (8,), g), state, config, g, run)
    env.close()
    dones, valid = rollout.dones, rollout.valid
    assert dones.sum() > 3  # a random policy ends many episodes in 200 steps
    # the step after every episode end is a reset step: masked, reward 0, and it reports no end
    after = dones[:-1].bool()
    assert bool((valid[1:][after] == 0).all())
    assert bool((rollout.rewards[1:][after] == 0).all()) and bool((dones[1:][after] == 0).all())
    assert bool((valid[1:][~after] == 1).all())
    # its observation is still the terminal one (pole past 12 degrees or cart out of bounds)
    terminal_obs = rollout.obs[1:][after & rollout.terminated[:-1].bool()]
    assert bool(((terminal_obs[:, 2].abs() > 0.2094) | (terminal_obs[:, 0].abs() > 2.4)).all())
    # CartPole pays 1 per real step: recorded returns are the episodes' lengths in valid steps
    lengths = []
    for i in range(config.num_envs):
        count = 0
        for t in range(config.num_steps):
            count += int(valid[t, i])
            if dones[t, i]:
                lengths.append(count)
                count = 0
    assert sorted(run.episode_returns) == sorted(float(n) for n in lengths)


def test_ppo_runs_and_is_deterministic_for_a_seed() -> None:
    task = EnvFamily(CartPoleConfig()).default_task()
    config = PPOConfig(num_envs=2, num_steps=32, hidden=(16,))
    a = train_ppo(task, config, make_objective("dpo"), seed=3, total_steps=256)
    b = train_ppo(task, config, make_objective("dpo"), seed=3, total_steps=256)
    assert a.total_steps == 256 and a.episode_returns == b.episode_returns and a.episode_returns


def test_run_metrics() -> None:
    run = PPORun([10, 20, 30, 40], [5.0, 10.0, 20.0, 30.0], total_steps=40)
    assert run.final_return(0.5) == pytest.approx(25.0)
    assert run.steps_to_threshold(15.0, window=2) == 30
    assert run.steps_to_threshold(100.0, window=2) is None


# ---------------------------------------------------------------------------- config and meta-training


def test_rl_config_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"task\.test_scale"):
        parse({"task": {"family": "cartpole", "test_scale": [0.8, 1.2]}})
    with pytest.raises(ConfigError, match=r"task\.ppo\.num_envs"):
        parse({"task": {"family": "acrobot", "ppo": {"num_envs": 0}}})
    config = load_config(CONFIG, ["loss.features=[residual]"])
    with pytest.raises(ConfigError, match=r"loss\.features"):
        RLMetaTrainer(config)


TINY = [
    "outer.steps=2",
    "outer.es_population=1",
    "outer.meta_batch=1",
    "outer.val_every=2",
    "outer.val_tasks=1",
    "task.meta_total_steps=128",
    "task.workers=1",
    "task.drift_init=zero",
    "task.ppo.num_envs=2",
    "task.ppo.num_steps=32",
    "task.ppo.hidden=[8]",
    "loss.hidden=[4]",
]


def test_tiny_meta_training_run_checkpoints_and_resumes_exactly(tmp_path: Path) -> None:
    full = RLMetaTrainer(load_config(CONFIG, TINY), tmp_path / "full").train()
    assert len(full.steps) == 2 and (tmp_path / "full" / "checkpoint.pt").exists()
    assert all(math.isfinite(r.centre_return) and math.isfinite(r.grad_norm) for r in full.steps)
    RLMetaTrainer(load_config(CONFIG, [*TINY, "outer.steps=1"]), tmp_path / "part").train()
    resumed = RLMetaTrainer(load_config(CONFIG, TINY), tmp_path / "part").train(resume=True)
    assert [r.centre_return for r in resumed.steps] == [r.centre_return for r in full.steps]
    for name, a in full.objective.state_dict().items():
        b = resumed.objective.state_dict()[name]
        torch.testing.assert_close(a, b, msg=name)
    assert np.isfinite(resumed.best_value)


# ---------------------------------------------------------------------------- benchmark and figures

BENCH_TINY = [
    "task.workers=1",
    "task.bench_total_steps=256",
    "task.bench_variants=1",
    "task.bench_seeds=2",
    "task.clip_grid=[0.1,0.2]",
    "task.tune_tasks=1",
    "evaluation.lr_grid=[0.001]",
    "task.threshold=15",
    "task.ppo.num_envs=2",
    "task.ppo.num_steps=32",
    "task.ppo.hidden=[8]",
]


def test_metaloss_benchmark_runs_an_rl_config_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from metaloss.cli import main
    from metaloss.export import save_loss

    loss = save_loss(LearnedDrift(hidden=(4,)), tmp_path / "drift.safetensors")
    argv = ["benchmark", str(CONFIG), "--loss", str(loss), "--out", str(tmp_path / "report")]
    assert main([*argv, *(f"--set={o}" for o in BENCH_TINY)]) == 0
    table = (tmp_path / "report" / "results.md").read_text()
    for name in ("ppo_clip", "dpo", "learned", "default", "meta_test-0"):
        assert name in table
    data = json.loads((tmp_path / "report" / "results.json").read_text())
    assert len(data["rows"]) == 3 * 2 and all(len(r["finals"]) == 2 for r in data["rows"])
    assert set(data["selection"]["ppo_clip"]) == {"lr=0.001 ε=0.1", "lr=0.001 ε=0.2"}
    assert (tmp_path / "report" / "shape_learned.png").exists()


def test_benchmark_rejects_a_non_policy_loss_file(tmp_path: Path) -> None:
    from metaloss.commands.rl_benchmark import load_drifts
    from metaloss.export import save_loss
    from metaloss.losses import LearnedLoss

    path = save_loss(LearnedLoss(hidden=(4,)), tmp_path / "regression.safetensors")
    with pytest.raises(ValueError, match="expected a learned policy objective"):
        load_drifts([str(path)])
    a = save_loss(LearnedDrift(hidden=(4,)), tmp_path / "a" / "loss.safetensors")
    b = save_loss(LearnedDrift(hidden=(4,)), tmp_path / "b" / "loss.safetensors")
    assert list(load_drifts([str(a), str(b), str(a)])) == ["learned:a", "learned:b", "learned:a-2"]


def test_policy_curves_put_the_learned_objective_beside_ppo_and_dpo() -> None:
    from metaloss.rl.shape import policy_curves, policy_figure

    curves = policy_curves(make_objective("dpo"), points=11)
    assert curves["learned"].shape == curves["ppo_clip"].shape == (2, 11)
    torch.testing.assert_close(curves["learned"], curves["dpo"])
    assert len(policy_figure(curves).axes) == 2


def test_acrobot_config_builds_variants_with_scaled_links() -> None:
    config = load_config(Path(__file__).parent.parent / "configs" / "acrobot.yaml")
    family = EnvFamily(config.task)  # type: ignore[arg-type]
    task = family.task(Split.META_TEST, 3)
    env, obs = make_vec_env(task, 2, seed=0)
    sub = env.unwrapped.envs[0].unwrapped
    expected_mass, expected_com = task.params["LINK_MASS_1"], 0.5 * sub.LINK_LENGTH_2
    assert abs(sub.LINK_MASS_1 - expected_mass) < 1e-12
    assert abs(sub.LINK_COM_POS_2 - expected_com) < 1e-12
    assert obs.shape == (2, 6)
    env.close()


def test_metaloss_train_on_an_rl_config_meta_trains_and_saves_a_loadable_objective(
    tmp_path: Path,
) -> None:
    from metaloss.cli import main
    from metaloss.export import load_loss

    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                str(CONFIG),
                "--out",
                str(out),
                *(f"--set={o}" for o in [*TINY, "outer.steps=1"]),
            ]
        )
        == 0
    )
    assert isinstance(load_loss(out / "loss.safetensors"), LearnedDrift)
    assert list(out.glob("events.out.tfevents.*"))
    assert (
        main(["train", str(CONFIG), "--out", str(out), *(f"--set={o}" for o in TINY)]) == 1
    )  # exists, no --resume
