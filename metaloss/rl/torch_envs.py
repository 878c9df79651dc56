"""CartPole-v1 and Acrobot-v1 in pure torch, batched, with physics parameters per environment.

Both reproduce gymnasium 1.x's environments step for step (the parity test
``tests/test_torch_envs.py`` steps them beside gymnasium's own from the same states and actions in
float64): CartPole's Euler integration (τ = 0.02 s, termination at |θ| > 12° or |x| > 2.4, reward
+1 on every step including the terminating one) and Acrobot's "book" dynamics integrated by one
RK4 step of dt = 0.2 s, angles wrapped to [−π, π], angular velocities bounded by 4π and 9π,
termination when the tip rises one link length above the pivot, reward −1 per step and 0 on the
terminating step. Both truncate at 500 steps (the ``TimeLimit`` of the registered v1
environments) and reset uniformly in ±0.05 (CartPole) or ±0.1 (Acrobot; the draw is rounded to
float32 like gymnasium's).

Every environment of the batch ``[*batch_shape]`` (e.g. ``[runs, envs]``) has its own physical
parameters (:data:`metaloss.rl.envs.PARAMETERS`; Acrobot's centres of mass stay at mid-link and
its moments of inertia at 1).

:class:`TorchVectorEnv` applies gymnasium 1.x's default ``NEXT_STEP`` autoreset: the step after a
terminated or truncated step resets that environment, ignores its action and returns reward 0,
``terminated = truncated = False`` and the new episode's first observation. The observation of a
truncated step is the true last observation (so PPO can bootstrap from it).

Randomness: each row of the leading batch dimension draws its reset states from its own
``torch.Generator``, so a row's numbers do not depend on the other rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import torch
from torch import Tensor

from metaloss.rl.envs import PARAMETERS, EnvTask

__all__ = [
    "AcrobotPhysics",
    "CartPolePhysics",
    "Physics",
    "TorchVectorEnv",
    "make_physics",
    "make_torch_env",
    "spaces",
    "task_parameters",
]

MAX_EPISODE_STEPS = 500
"""The time limit of gymnasium's registered CartPole-v1 and Acrobot-v1."""


class Physics(Protocol):
    """The dynamics of one batched environment type (no episode bookkeeping)."""

    state_dim: int
    obs_dim: int
    n_actions: int

    def initial(self, uniform: Tensor) -> Tensor:
        """Initial states ``[*B, state_dim]`` from uniforms in [0, 1) of the same shape."""
        ...

    def step(self, state: Tensor, action: Tensor) -> Tensor:
        """The next state ``[*B, state_dim]`` after integer actions ``[*B]``."""
        ...

    def terminal(self, state: Tensor) -> Tensor:
        """Whether each state ends its episode ``[*B]`` (bool)."""
        ...

    def reward(self, terminated: Tensor) -> Tensor:
        """The reward of a step that reached a state with this ``terminated`` flag."""
        ...

    def observe(self, state: Tensor) -> Tensor:
        """Observations ``[*B, obs_dim]``."""
        ...


class CartPolePhysics:
    """Barto, Sutton & Anderson's cart-pole (1983) as in gymnasium's ``CartPoleEnv``.

    Args:
        params: ``gravity``, ``masscart``, ``masspole``, ``length`` (half the pole) and
            ``force_mag``, each a tensor of the batch shape (or broadcastable to it).

    Example:
        >>> physics = CartPolePhysics(task_parameters([_default("CartPole-v1")], (1, 2)))
        >>> physics.step(torch.zeros(1, 2, 4, dtype=torch.float64), torch.ones(1, 2)).shape
        torch.Size([1, 2, 4])
    """

    state_dim = 4
    obs_dim = 4
    n_actions = 2
    tau = 0.02
    theta_threshold = 12 * 2 * math.pi / 360
    x_threshold = 2.4

    def __init__(self, params: dict[str, Tensor]) -> None:
        self.gravity = params["gravity"]
        self.masscart = params["masscart"]
        self.masspole = params["masspole"]
        self.length = params["length"]
        self.force_mag = params["force_mag"]
        self.total_mass = self.masspole + self.masscart
        self.polemass_length = self.masspole * self.length

    def initial(self, uniform: Tensor) -> Tensor:
        return -0.05 + 0.1 * uniform

    def step(self, state: Tensor, action: Tensor) -> Tensor:
        x, x_dot, theta, theta_dot = state.unbind(-1)
        force = torch.where(action == 1, self.force_mag, -self.force_mag)
        costheta, sintheta = torch.cos(theta), torch.sin(theta)
        temp = (force + self.polemass_length * theta_dot**2 * sintheta) / self.total_mass
        thetaacc = (self.gravity * sintheta - costheta * temp) / (
            self.length * (4.0 / 3.0 - self.masspole * costheta**2 / self.total_mass)
        )
        xacc = temp - self.polemass_length * thetaacc * costheta / self.total_mass
        return torch.stack(
            (
                x + self.tau * x_dot,
                x_dot + self.tau * xacc,
                theta + self.tau * theta_dot,
                theta_dot + self.tau * thetaacc,
            ),
            dim=-1,
        )

    def terminal(self, state: Tensor) -> Tensor:
        x, theta = state[..., 0], state[..., 2]
        return (
            (x < -self.x_threshold)
            | (x > self.x_threshold)
            | (theta < -self.theta_threshold)
            | (theta > self.theta_threshold)
        )

    def reward(self, terminated: Tensor) -> Tensor:
        return torch.ones(terminated.shape, dtype=self.gravity.dtype)

    def observe(self, state: Tensor) -> Tensor:
        return state


class AcrobotPhysics:
    """Sutton's acrobot (NeurIPS 1996; the "book" dynamics of Sutton & Barto) as in gymnasium's
    ``AcrobotEnv``: one RK4 step of dt = 0.2 s per action, torque −1, 0 or +1.

    Args:
        params: ``LINK_LENGTH_1``, ``LINK_LENGTH_2``, ``LINK_MASS_1`` and ``LINK_MASS_2``, each a
            tensor of the batch shape; centres of mass at mid-link, moments of inertia 1.
    """

    state_dim = 4
    obs_dim = 6
    n_actions = 3
    dt = 0.2
    max_vel_1 = 4 * math.pi
    max_vel_2 = 9 * math.pi
    moment_of_inertia = 1.0
    g = 9.8

    def __init__(self, params: dict[str, Tensor]) -> None:
        self.l1 = params["LINK_LENGTH_1"]
        self.m1 = params["LINK_MASS_1"]
        self.m2 = params["LINK_MASS_2"]
        self.lc1 = 0.5 * params["LINK_LENGTH_1"]
        self.lc2 = 0.5 * params["LINK_LENGTH_2"]

    def initial(self, uniform: Tensor) -> Tensor:
        return (-0.1 + 0.2 * uniform).to(torch.float32).to(uniform.dtype)

    def _derivatives(self, s: Tensor, torque: Tensor) -> Tensor:
        theta1, theta2, dtheta1, dtheta2 = s.unbind(-1)
        m1, m2, l1, lc1, lc2 = self.m1, self.m2, self.l1, self.lc1, self.lc2
        inertia, g = self.moment_of_inertia, self.g
        cos2, sin2 = torch.cos(theta2), torch.sin(theta2)
        d1 = m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * cos2) + inertia + inertia
        d2 = m2 * (lc2**2 + l1 * lc2 * cos2) + inertia
        phi2 = m2 * lc2 * g * torch.cos(theta1 + theta2 - math.pi / 2.0)
        phi1 = (
            -m2 * l1 * lc2 * dtheta2**2 * sin2
            - 2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * sin2
            + (m1 * lc1 + m2 * l1) * g * torch.cos(theta1 - math.pi / 2)
            + phi2
        )
        ddtheta2 = (torque + d2 / d1 * phi1 - m2 * l1 * lc2 * dtheta1**2 * sin2 - phi2) / (
            m2 * lc2**2 + inertia - d2**2 / d1
        )
        ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
        return torch.stack((dtheta1, dtheta2, ddtheta1, ddtheta2), dim=-1)

    def step(self, state: Tensor, action: Tensor) -> Tensor:
        torque = (action - 1).to(state.dtype)
        half = self.dt / 2.0
        k1 = self._derivatives(state, torque)
        k2 = self._derivatives(state + half * k1, torque)
        k3 = self._derivatives(state + half * k2, torque)
        k4 = self._derivatives(state + self.dt * k3, torque)
        new = state + self.dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        theta1, theta2, dtheta1, dtheta2 = new.unbind(-1)
        return torch.stack(
            (
                _wrap(theta1),
                _wrap(theta2),
                dtheta1.clamp(-self.max_vel_1, self.max_vel_1),
                dtheta2.clamp(-self.max_vel_2, self.max_vel_2),
            ),
            dim=-1,
        )

    def terminal(self, state: Tensor) -> Tensor:
        theta1, theta2 = state[..., 0], state[..., 1]
        return -torch.cos(theta1) - torch.cos(theta2 + theta1) > 1.0

    def reward(self, terminated: Tensor) -> Tensor:
        return torch.where(terminated, 0.0, -1.0).to(self.l1.dtype)

    def observe(self, state: Tensor) -> Tensor:
        theta1, theta2, dtheta1, dtheta2 = state.unbind(-1)
        return torch.stack(
            (
                torch.cos(theta1),
                torch.sin(theta1),
                torch.cos(theta2),
                torch.sin(theta2),
                dtheta1,
                dtheta2,
            ),
            dim=-1,
        )


def _wrap(x: Tensor) -> Tensor:
    """Wrap angles into [−π, π] by whole turns, like gymnasium's ``wrap``."""
    turn = 2 * math.pi
    above = torch.ceil((x - math.pi) / turn).clamp(min=0)
    below = torch.ceil((-math.pi - x) / turn).clamp(min=0)
    return x - above * turn + below * turn


_PHYSICS: dict[str, type[CartPolePhysics] | type[AcrobotPhysics]] = {
    "CartPole-v1": CartPolePhysics,
    "Acrobot-v1": AcrobotPhysics,
}


def _default(env_id: str) -> EnvTask:
    return EnvTask(env_id, dict(PARAMETERS[env_id]), "default")


def task_parameters(
    tasks: Sequence[EnvTask], batch_shape: tuple[int, ...], dtype: torch.dtype = torch.float64
) -> dict[str, Tensor]:
    """Per-environment parameter tensors of shape ``batch_shape``: task ``i`` fills row ``i`` of
    the leading dimension (one task per row, or a single task for every row)."""
    env_ids = {t.env_id for t in tasks}
    if len(env_ids) != 1:
        raise ValueError(f"tasks: expected variants of one environment, got {sorted(env_ids)}")
    rows = batch_shape[0]
    if len(tasks) not in (1, rows):
        raise ValueError(f"tasks: expected 1 or {rows} (one per row), got {len(tasks)}")
    names = PARAMETERS[tasks[0].env_id]
    out = {}
    for name in names:
        values = torch.tensor([t.params[name] for t in tasks], dtype=dtype)
        values = values.expand(rows) if len(tasks) == 1 else values
        out[name] = values.view(rows, *([1] * (len(batch_shape) - 1))).expand(batch_shape)
    return out


def spaces(env_id: str) -> tuple[int, int]:
    """The observation width and the number of actions of ``env_id``."""
    if env_id not in _PHYSICS:
        raise ValueError(f"env: expected one of {', '.join(_PHYSICS)}, got {env_id!r}")
    return _PHYSICS[env_id].obs_dim, _PHYSICS[env_id].n_actions


def make_physics(env_id: str, params: dict[str, Tensor]) -> CartPolePhysics | AcrobotPhysics:
    """The physics of ``env_id`` with per-environment ``params``."""
    if env_id not in _PHYSICS:
        raise ValueError(f"env: expected one of {', '.join(_PHYSICS)}, got {env_id!r}")
    return _PHYSICS[env_id](params)


class TorchVectorEnv:
    """A batch of environments with gymnasium 1.x's ``NEXT_STEP`` autoreset and a time limit.

    Args:
        physics: the dynamics, with parameters of shape ``batch_shape``.
        batch_shape: e.g. ``(runs, envs)``.
        generators: one per row of the leading dimension; row ``i``'s reset states are drawn
            from ``generators[i]`` only (in blocks of ``block`` steps).
        dtype: of states, observations and rewards (``float64`` reproduces gymnasium's
            arithmetic; the parameters should have the same dtype).
        max_episode_steps: truncation.

    Example:
        >>> tasks = [_default("CartPole-v1")]
        >>> env = make_torch_env(tasks, (1, 3), [torch.Generator().manual_seed(0)])
        >>> obs = env.reset()
        >>> obs, reward, terminated, truncated = env.step(torch.ones(1, 3, dtype=torch.long))
        >>> reward.tolist()
        [[1.0, 1.0, 1.0]]
    """

    def __init__(
        self,
        physics: CartPolePhysics | AcrobotPhysics,
        batch_shape: tuple[int, ...],
        generators: Sequence[torch.Generator],
        dtype: torch.dtype = torch.float64,
        max_episode_steps: int = MAX_EPISODE_STEPS,
        block: int = 64,
    ) -> None:
        if len(generators) != batch_shape[0]:
            raise ValueError(
                f"generators: expected one per row ({batch_shape[0]}), got {len(generators)}"
            )
        self.physics = physics
        self.batch_shape = batch_shape
        self.generators = list(generators)
        self.dtype = dtype
        self.max_episode_steps = max_episode_steps
        self.block = block
        self.state = torch.zeros((*batch_shape, physics.state_dim), dtype=dtype)
        self.steps = torch.zeros(batch_shape, dtype=torch.long)
        self.prev_done = torch.zeros(batch_shape, dtype=torch.bool)
        self._noise = torch.zeros((0,))
        self._used = block

    def next_uniforms(self) -> Tensor:
        """Reset uniforms ``[*batch_shape, state_dim]`` for one step (:meth:`transition`), row
        ``i`` from its own generator."""
        if self._used == self.block:
            shape = (self.block, *self.batch_shape[1:], self.physics.state_dim)
            draws = [torch.rand(shape, generator=g, dtype=self.dtype) for g in self.generators]
            self._noise = torch.stack(draws, dim=1)  # [block, rows, ...]
            self._used = 0
        out = self._noise[self._used]
        self._used += 1
        return out

    def reset(self) -> Tensor:
        """Start every environment's first episode; returns the observations."""
        self.state = self.physics.initial(self.next_uniforms())
        self.steps.zero_()
        self.prev_done.zero_()
        return self.physics.observe(self.state)

    def step(self, action: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Advance every environment by one action; returns ``(obs, reward, terminated,
        truncated)`` with gymnasium's ``NEXT_STEP`` autoreset for the ones that had ended."""
        (self.state, self.steps, self.prev_done), out = self.transition(
            (self.state, self.steps, self.prev_done), action, self.next_uniforms()
        )
        return out

    def transition(
        self, carry: tuple[Tensor, Tensor, Tensor], action: Tensor, uniforms: Tensor
    ) -> tuple[tuple[Tensor, Tensor, Tensor], tuple[Tensor, Tensor, Tensor, Tensor]]:
        """:meth:`step` as a function of ``carry = (state, steps, prev_done)`` and the reset
        uniforms (no tensor changed, no generator drawn: it can be compiled); returns the new
        carry and ``(obs, reward, terminated, truncated)``."""
        previous, steps, reset = carry
        state = self.physics.step(previous, action)
        terminated = self.physics.terminal(state)
        steps = steps + 1
        truncated = steps >= self.max_episode_steps
        reward = self.physics.reward(terminated)
        fresh = self.physics.initial(uniforms)
        state = torch.where(reset.unsqueeze(-1), fresh, state)
        steps = torch.where(reset, 0, steps)
        reward = torch.where(reset, 0.0, reward).to(self.dtype)
        terminated = terminated & ~reset
        truncated = truncated & ~reset
        done = terminated | truncated
        return (state, steps, done), (self.physics.observe(state), reward, terminated, truncated)


def make_torch_env(
    tasks: Sequence[EnvTask],
    batch_shape: tuple[int, ...],
    generators: Sequence[torch.Generator],
    dtype: torch.dtype = torch.float64,
) -> TorchVectorEnv:
    """A :class:`TorchVectorEnv` of ``tasks`` (one per row of the leading dimension, or one for
    all rows), not yet reset."""
    params = task_parameters(tasks, batch_shape, dtype)
    return TorchVectorEnv(make_physics(tasks[0].env_id, params), batch_shape, generators, dtype)
