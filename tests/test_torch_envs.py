"""The torch CartPole-v1 and Acrobot-v1 against gymnasium's own environments (float64 parity)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from metaloss.rl.config import AcrobotConfig, CartPoleConfig, RLTaskConfig
from metaloss.rl.envs import EnvFamily, EnvTask, make_vec_env
from metaloss.rl.torch_envs import AcrobotPhysics, _wrap, make_torch_env, task_parameters
from metaloss.tasks.base import Split

ENVS = 3  # sub-environments per variant
TOL = {"rtol": 1e-13, "atol": 1e-13}  # one step differs by a few ulps (cos, sin)


def _variants(config: RLTaskConfig) -> list[EnvTask]:
    family = EnvFamily(config)
    return [
        family.default_task(),
        *family.tasks(Split.META_TRAIN, 2),
        *family.tasks(Split.META_TEST, 2),
    ]


def _gym_states(env: Any, env_id: str) -> np.ndarray:
    """The gymnasium vector environment's states ``[envs, 4]`` (float64)."""
    if env_id == "CartPole-v1":
        return np.asarray(env.unwrapped.state, dtype=np.float64).T.copy()
    return np.stack([np.asarray(sub.unwrapped.state, dtype=np.float64) for sub in env.envs])


def _set_gym_state(env: Any, env_id: str, i: int, state: np.ndarray) -> None:
    if env_id == "CartPole-v1":
        env.unwrapped.state[:, i] = state
    else:
        env.envs[i].unwrapped.state = state.astype(np.float32)  # gymnasium's reset dtype


def _actions(env_id: str, obs: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Random actions in some environments; in the others mostly a rule, so that CartPole's
    episodes also end by truncation at 500 steps and Acrobot's also by termination."""
    shape = obs.shape[:-1]
    if env_id == "Acrobot-v1":  # the rule pumps energy: torque along the second joint's motion
        random = torch.as_tensor(rng.integers(0, 3, shape))
        rule = torch.where(obs[..., 5] > 0, 2, 0)
    else:  # the rule balances the pole
        random = torch.as_tensor(rng.integers(0, 2, shape))
        rule = (obs[..., 2] + 0.5 * obs[..., 3] + 0.01 * obs[..., 0] + 0.1 * obs[..., 1] > 0).long()
    explore = torch.as_tensor(rng.random(shape) < 0.1)
    rule = torch.where(explore, random, rule)
    use_rule = torch.zeros(shape, dtype=torch.bool)
    use_rule[:, : ENVS // 2 + 1] = True
    return torch.where(use_rule, rule, random)


@pytest.mark.parametrize(
    ("config", "steps"),
    [(CartPoleConfig(), 1100), (AcrobotConfig(), 700)],
    ids=["cartpole", "acrobot"],
)
def test_torch_env_matches_gymnasium_step_for_step(config: RLTaskConfig, steps: int) -> None:
    """From the same states and actions, the torch environments give gymnasium's observations,
    rewards, terminations and truncations (several physics variants at once), and reset exactly
    when gymnasium's NEXT_STEP autoreset does."""
    env_id = config.env
    tasks = _variants(config)
    generators = [torch.Generator().manual_seed(10 + i) for i in range(len(tasks))]
    torch_env = make_torch_env(tasks, (len(tasks), ENVS), generators, torch.float64)
    gym_envs = [make_vec_env(task, ENVS, seed=i)[0] for i, task in enumerate(tasks)]
    rng = np.random.default_rng(0)
    obs = torch_env.reset()
    for v, env in enumerate(gym_envs):
        for i in range(ENVS):
            _set_gym_state(env, env_id, i, torch_env.state[v, i].numpy())
    torch_env.state = torch.as_tensor(np.stack([_gym_states(e, env_id) for e in gym_envs]))
    counts = {"terminated": 0, "truncated": 0, "reset": 0}
    try:
        for _ in range(steps):
            action = _actions(env_id, obs, rng)
            resetting = torch_env.prev_done.clone()
            obs, reward, terminated, truncated = torch_env.step(action)
            for v, env in enumerate(gym_envs):
                g_obs, g_reward, g_term, g_trunc, _ = env.step(action[v].numpy())
                np.testing.assert_array_equal(terminated[v].numpy(), g_term)
                np.testing.assert_array_equal(truncated[v].numpy(), g_trunc)
                np.testing.assert_array_equal(reward[v].numpy(), g_reward)
                for i in np.flatnonzero(resetting[v].numpy()):
                    # gymnasium reset from its own generator: give it the torch reset state
                    _set_gym_state(env, env_id, i, torch_env.state[v, i].numpy())
                    g_obs[i] = torch_env.physics.observe(
                        torch.as_tensor(_gym_states(env, env_id)[i])
                    ).numpy()
                np.testing.assert_allclose(
                    torch_env.state[v].numpy(), _gym_states(env, env_id), **TOL
                )
                np.testing.assert_allclose(obs[v].numpy(), g_obs, rtol=1e-6, atol=1e-6)
            # the next step starts from gymnasium's states (one-step parity; chaotic dynamics
            # would amplify last-bit differences of cos/sin between numpy and torch)
            torch_env.state = torch.as_tensor(np.stack([_gym_states(e, env_id) for e in gym_envs]))
            counts["terminated"] += int(terminated.sum())
            counts["truncated"] += int(truncated.sum())
            counts["reset"] += int(resetting.sum())
    finally:
        for env in gym_envs:
            env.close()
    # the run covered every kind of step
    assert counts["terminated"] > 10 and counts["truncated"] >= 2 and counts["reset"] > 10


def test_observations_are_float64_functions_of_the_state() -> None:
    """In float64 the observation equals gymnasium's observation function before its float32
    cast (Acrobot: cos/sin of both angles and the two velocities)."""
    task = EnvFamily(AcrobotConfig()).default_task()
    env = make_torch_env([task], (1, 4), [torch.Generator().manual_seed(0)])
    env.reset()
    for _ in range(30):
        obs, *_ = env.step(torch.randint(0, 3, (1, 4), generator=torch.Generator().manual_seed(1)))
    s = env.state.numpy()
    expected = np.stack(
        [
            np.cos(s[..., 0]),
            np.sin(s[..., 0]),
            np.cos(s[..., 1]),
            np.sin(s[..., 1]),
            s[..., 2],
            s[..., 3],
        ],
        axis=-1,
    )
    np.testing.assert_allclose(obs.numpy(), expected, rtol=1e-14, atol=1e-14)


def test_reset_distributions_and_generators() -> None:
    """Resets are uniform in ±0.05 (CartPole) and ±0.1 rounded to float32 (Acrobot); each row
    draws from its own generator, so one row's states do not depend on the other rows."""
    cart = EnvFamily(CartPoleConfig()).default_task()
    acro = EnvFamily(AcrobotConfig()).default_task()
    env = make_torch_env([cart], (2, 500), [torch.Generator().manual_seed(s) for s in (1, 2)])
    first = env.reset()
    assert float(first.abs().max()) <= 0.05 and float(first.abs().max()) > 0.049
    assert abs(float(first.mean())) < 0.005
    alone = make_torch_env([cart], (1, 500), [torch.Generator().manual_seed(2)]).reset()
    torch.testing.assert_close(alone[0], first[1], rtol=0, atol=0)
    a = make_torch_env([acro], (1, 500), [torch.Generator().manual_seed(3)])
    a.reset()
    assert float(a.state.abs().max()) <= 0.1 and float(a.state.abs().max()) > 0.099
    torch.testing.assert_close(a.state, a.state.float().double(), rtol=0, atol=0)


def test_wrap_matches_repeated_whole_turns() -> None:
    """Gymnasium's ``wrap`` adds or subtracts whole turns until the angle lies in [−π, π]."""
    x = torch.tensor([-10.0, -3.5, -np.pi, 0.3, np.pi, 3.5, 7.0, 12.0], dtype=torch.float64)

    def reference(value: float) -> float:
        while value > np.pi:
            value -= 2 * np.pi
        while value < -np.pi:
            value += 2 * np.pi
        return value

    torch.testing.assert_close(
        _wrap(x), torch.tensor([reference(float(v)) for v in x], dtype=torch.float64)
    )


def test_each_environment_uses_its_own_physics() -> None:
    """Two rows with different pole lengths and link masses diverge from the same state and
    actions; rows with the same parameters do not."""
    family = EnvFamily(AcrobotConfig())
    tasks = [family.default_task(), family.task(Split.META_TEST, 0), family.default_task()]
    params = task_parameters(tasks, (3, 2))
    physics = AcrobotPhysics(params)
    state = torch.full((3, 2, 4), 0.05, dtype=torch.float64)
    after = physics.step(state, torch.full((3, 2), 2))
    assert not torch.allclose(after[0], after[1])
    torch.testing.assert_close(after[0], after[2], rtol=0, atol=0)
