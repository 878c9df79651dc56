"""Reinforcement learning: GAE, the policy objectives, ES, autoreset handling, meta-training."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from _rollouts import episode_lengths

from metaloss.config import ConfigError, load_config, parse
from metaloss.outer.estimators import AntitheticES
from metaloss.outer.problem import MetaObjective
from metaloss.outer.trainer import MetaTrainer
from metaloss.rl.config import CartPoleConfig, PPOConfig
from metaloss.rl.envs import PARAMETERS, EnvFamily, make_vec_env
from metaloss.rl.objectives import (
    LearnedDrift,
    dpo_drift,
    dpo_objective,
    make_objective,
    ppo_clip_objective,
)
from metaloss.rl.ppo import Agent, PPORun, _collect, _LoopState, compute_gae, train_ppo
from metaloss.rl.problem import RLProblem
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
    assert sorted(run.episode_returns) == sorted(episode_lengths(dones, valid))


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
        MetaTrainer(config)


def test_an_accelerator_device_is_refused() -> None:
    """RL trains on the CPU: a device the machine has (here forced past the availability check)
    is refused rather than ignored."""
    from metaloss.rl.config import check_rl_settings

    config = load_config(CONFIG)
    check_rl_settings(config)
    object.__setattr__(config, "device", "cuda:0")
    with pytest.raises(ConfigError, match=r"^device: RL runs on the CPU"):
        check_rl_settings(config)


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("outer.estimator=full_grad", r"outer\.estimator: expected one of antithetic_es"),
        ("outer.estimator=truncated_grad", r"outer\.estimator"),
        ("inner.steps=20", r"inner: not used by the cartpole family"),
        ("learner.hidden=[8]", r"learner: not used"),
        ("outer.inner_lr_scale=[0.5,2.0]", r"outer\.inner_lr_scale: not used"),
        ("dtype=float64", r"dtype: RL runs in float32"),
        ("outer.prefetch=false", r"outer\.prefetch: not used"),
        ("loss.output=square", r"loss\.output: not used"),
        ("outer.objective_transform=log", r"outer\.objective_transform: not used"),
        ("benchmark.oracle=true", r"benchmark\.oracle: not used"),
    ],
)
def test_settings_rl_does_not_use_are_refused_in_one_line(
    override: str, field: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from metaloss.cli import main

    with pytest.raises(ConfigError, match=field) as error:
        MetaTrainer(load_config(CONFIG, [override]))
    assert "\n" not in str(error.value)
    assert main(["train", str(CONFIG), f"--set={override}", "--out", str(tmp_path / "x")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1  # one line, no traceback
    assert not (tmp_path / "x").exists()  # refused before the run folder is written


TINY = [
    "outer.steps=2",
    "outer.es_population=1",
    "outer.meta_batch=1",
    "outer.val_every=2",
    "outer.val_tasks=1",
    "task.meta_total_steps=128",
    "task.drift_init=zero",
    "task.ppo.num_envs=2",
    "task.ppo.num_steps=32",
    "task.ppo.hidden=[8]",
    "loss.hidden=[4]",
]


def test_tiny_meta_training_run_checkpoints_and_resumes_exactly(tmp_path: Path) -> None:
    full = MetaTrainer(load_config(CONFIG, TINY), tmp_path / "full").train()
    assert isinstance(full.loss, LearnedDrift)
    assert len(full.steps) == 2 and (tmp_path / "full" / "checkpoint.pt").exists()
    assert all(math.isfinite(r.meta_loss) and math.isfinite(r.grad_norm) for r in full.steps)
    assert all("population_mean" in r.extra for r in full.steps)
    MetaTrainer(load_config(CONFIG, [*TINY, "outer.steps=1"]), tmp_path / "part").train()
    resumed = MetaTrainer(load_config(CONFIG, TINY), tmp_path / "part").train(resume=True)
    assert [r.meta_loss for r in resumed.steps] == [r.meta_loss for r in full.steps]
    for name, a in full.loss.state_dict().items():
        b = resumed.loss.state_dict()[name]
        torch.testing.assert_close(a, b, msg=name)
    assert np.isfinite(resumed.best_value)


def test_rl_meta_problem_fitness_is_minus_the_return_of_each_candidate() -> None:
    """The ES population's meta-losses are minus the final returns of one population-PPO run
    per (candidate, variant); the same candidate alone gets the same numbers."""
    config = load_config(CONFIG, [*TINY, "outer.meta_batch=2"])
    problem = RLProblem(config)
    generator = torch.Generator().manual_seed(0)
    drift = problem.make_loss(generator)
    batch = problem.sample(generator)
    params = {k: v.detach() for k, v in drift.named_parameters()}
    other = {k: v + 0.5 for k, v in params.items()}
    objective = problem.objective(drift, batch)
    both = objective.many([params, other])
    assert both.shape == (2, 2) and bool(torch.isfinite(both).all())
    torch.testing.assert_close(objective(other), both[1], rtol=0, atol=0)
    assert bool((both < 0).all())  # CartPole returns are positive


def test_early_stopping_and_the_non_finite_guard_apply_to_rl(tmp_path: Path) -> None:
    from metaloss.outer.trainer import NonFiniteError

    config = load_config(CONFIG, [*TINY, "outer.steps=50", "outer.val_every=1", "outer.patience=1"])
    result = MetaTrainer(config).train()
    assert result.stopped_early and len(result.steps) < 50

    class Broken(RLProblem):
        def returns(self, template, candidates, batch):  # type: ignore[no-untyped-def]
            return torch.full((len(candidates), len(batch.tasks)), float("nan"))

    config = load_config(CONFIG, [*TINY, "outer.max_nonfinite=1", "outer.steps=5"])
    with pytest.raises(NonFiniteError):
        MetaTrainer(config, problem=Broken(config)).train()


# ---------------------------------------------------------------------------- benchmark and figures

BENCH_TINY = [
    "task.bench_total_steps=256",
    "evaluation.test_tasks=1",
    "evaluation.seeds=2",
    "evaluation.grid_tasks=1",
    "benchmark.baselines=[{name: ppo_clip, param: clip_coef, values: [0.1, 0.2]}, {name: dpo}]",
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
    for name in (
        "ppo_clip",
        "dpo",
        "learned",
        "default",
        "meta_test-0",
        "Pooled paired",
        "Wilcoxon",
    ):
        assert name in table
    assert "Training-curve diagnoses" not in table  # return curves are not loss curves
    data = json.loads((tmp_path / "report" / "results.json").read_text())
    assert all(e["diagnoses"] == {} for e in data["entries"])
    assert len(data["entries"]) == 3 * 2 and all(len(e["per_task"]) == 2 for e in data["entries"])
    clip = next(e for e in data["entries"] if e["loss"] == "ppo_clip")
    assert set(clip["selection_scores_outer_valid"]) == {
        "clip_coef=0.1 lr=0.001",
        "clip_coef=0.2 lr=0.001",
    }
    assert data["pooled"] and data["pooled"][0]["n"] == 2
    for name in ("shape_learned.png", "learning_curves.png", "results.csv"):
        assert (tmp_path / "report" / name).exists()


def test_rl_benchmark_refuses_a_supervised_baseline(tmp_path: Path) -> None:
    from metaloss.cli import main
    from metaloss.export import save_loss

    loss = save_loss(LearnedDrift(hidden=(4,)), tmp_path / "drift.safetensors")
    argv = ["benchmark", str(CONFIG), "--loss", str(loss), "--out", str(tmp_path / "report")]
    assert main([*argv, "--set=benchmark.baselines=[{name: mse}]"]) == 2
    assert not (tmp_path / "report").exists()


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


class _ScriptedEvaluator:
    """Returns a known final return per (objective, lr) and records what it trained."""

    def __init__(self) -> None:
        self.calls: list[list] = []

    @staticmethod
    def score(objective: object, lr: float) -> float:
        from metaloss.rl.objectives import ClipObjective

        bonus = (
            {0.1: 0.0, 0.2: 30.0, 0.3: 10.0}[objective.clip_coef]
            if isinstance(objective, ClipObjective)
            else 0.0
        )
        return {0.001: 100.0, 0.002: 160.0, 0.004: 40.0}[lr] + bonus

    def __call__(self, runs, ppo, total_steps):  # type: ignore[no-untyped-def]
        self.calls.append(list(runs))
        return [
            PPORun([total_steps], [self.score(r.objective, r.lr)], total_steps=total_steps)
            for r in runs
        ]

    def close(self) -> None:
        return None


def test_rl_selection_picks_the_best_setting_and_tests_with_it() -> None:
    """Selection keeps the (clip ε, lr) with the highest meta-train return (not the worst, not
    the first) and the held-out rows are trained with exactly that setting."""
    from metaloss.rl.benchmark import run_rl_benchmark

    config = load_config(
        CONFIG,
        [
            "evaluation.lr_grid=[0.001, 0.002, 0.004]",
            "evaluation.grid_tasks=2",
            "evaluation.test_tasks=1",
            "evaluation.seeds=2",
        ],
    )
    evaluator = _ScriptedEvaluator()
    result = run_rl_benchmark(config, {"learned": LearnedDrift(hidden=(4,))}, evaluator)
    clip = result.entry("default", "ppo_clip")
    assert (clip.selection.value, clip.selection.lr) == (0.2, 0.002)
    assert result.entry("default", "dpo").selection.lr == 0.002
    assert clip.selection.scores["clip_coef=0.2 lr=0.002"] == 190.0
    tested = [r for r in evaluator.calls[1] if not isinstance(r.objective, LearnedDrift)]
    assert {(getattr(r.objective, "clip_coef", None), r.lr) for r in tested} == {
        (0.2, 0.002),
        (None, 0.002),
    }
    # selection never trains on a held-out row; testing never on a meta-train variant
    assert all(r.task.name.startswith("meta_train") for r in evaluator.calls[0])
    assert all(not r.task.name.startswith("meta_train") for r in evaluator.calls[1])
    assert float(clip.per_task.mean()) == 190.0


def test_metaloss_tune_runs_on_an_rl_config(tmp_path: Path) -> None:
    """PPO's learning rate and clip ε are tuned on meta-validation variants; best.yaml is a
    loadable RL config carrying the best learning rate."""
    from metaloss.cli import main

    small = ["task.ppo.num_envs=2", "task.ppo.num_steps=32", "task.ppo.hidden=[8]"]
    argv = ["tune", str(CONFIG), "--target", "ppo_clip", "--trials", "2", "--out", str(tmp_path)]
    sets = [*small, "task.bench_total_steps=256", "outer.val_tasks=1"]
    assert main([*argv, *(f"--set={o}" for o in sets)]) == 0
    best = json.loads((tmp_path / "ppo_clip" / "best.json").read_text())
    assert {"task.ppo.lr", "ppo_clip.clip_coef"} <= set(best["params"])
    assert best["baseline_params"]["clip_coef"] == best["params"]["ppo_clip.clip_coef"]
    tuned = load_config(tmp_path / "ppo_clip" / "best.yaml")
    assert tuned.task.ppo.lr == best["params"]["task.ppo.lr"]  # type: ignore[attr-defined]
    assert (
        main(["tune", str(CONFIG), "--target", "mse", "--trials", "1", "--out", str(tmp_path)]) == 2
    )


def test_the_gymnasium_path_refuses_the_compile_setting() -> None:
    task = EnvFamily(CartPoleConfig()).default_task()
    with pytest.raises(ValueError, match=r"^task\.ppo\.compile: the gymnasium path"):
        train_ppo(task, PPOConfig(compile=True), make_objective("ppo_clip"), seed=0, total_steps=8)
