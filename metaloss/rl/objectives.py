"""Policy objectives that plug into the PPO loop: PPO's clip, DPO's drift and a learned drift.

Every objective maps per-sample ``log_ratio = log π_new(a|s) − log π_old(a|s)`` and (normalised)
``advantages`` to a per-sample loss to *minimise*. In the mirror-learning view of Kuba et al.
(2022), each is ``−(r·A − drift(r, A))`` with ``r = exp(log_ratio)``: PPO's clip is the drift
``relu((r − clip(r, 1−ε, 1+ε))·A)``, DPO's a closed form, and LPO's a small network.

The learned drift is a :class:`~metaloss.losses.module.LossModule` of kind ``"policy"`` (its
``pred`` is the log-ratio and its ``target`` the advantage), so it saves and loads with the same
:func:`~metaloss.export.save_loss` / :func:`~metaloss.export.load_loss` as every learned loss.
This module registers the ``policy`` kind and its features.

References:
    Schulman et al., "Proximal Policy Optimization Algorithms", 2017.
    Lu et al., "Discovered Policy Optimisation", NeurIPS 2022 (DPO and LPO).
    Kuba et al., "Mirror Learning: A Unifying Framework of Policy Optimisation", ICML 2022.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.func import functional_call, vmap

from metaloss.learners import MLP
from metaloss.losses.baselines import BASELINES
from metaloss.losses.features import (
    FEATURES,
    check_features,
    compute_features,
    feature_width,
    register_feature,
)
from metaloss.losses.kinds import KindSpec, register_kind
from metaloss.losses.module import LossModule, register_architecture
from metaloss.typing import Reduction

__all__ = [
    "LPO_FEATURES",
    "ClipObjective",
    "DPOObjective",
    "LearnedDrift",
    "PolicyObjective",
    "RunObjective",
    "StackedObjective",
    "dpo_drift",
    "dpo_objective",
    "make_objective",
    "ppo_clip_objective",
]

PolicyObjective = Callable[[Tensor, Tensor], Tensor]
"""``objective(log_ratio, advantages) -> per-sample loss`` (to minimise)."""

LPO_FEATURES = (
    "ratio_m1",
    "ratio_m1_sq",
    "log_ratio",
    "log_ratio_sq",
    "ratio_m1_adv",
    "ratio_m1_sq_adv",
    "log_ratio_adv",
    "log_ratio_sq_adv",
)
"""LPO's inputs: ``r − 1``, ``(r − 1)²``, ``log r``, ``(log r)²`` and each of them times ``A``."""


def _register_policy_features() -> None:
    if "policy" in FEATURES and "log_ratio" in FEATURES["policy"]:
        return
    base: dict[str, Callable[[Tensor], Tensor]] = {
        "ratio_m1": lambda lr: torch.exp(lr) - 1,
        "ratio_m1_sq": lambda lr: (torch.exp(lr) - 1) ** 2,
        "log_ratio": lambda lr: lr,
        "log_ratio_sq": lambda lr: lr**2,
    }
    for name, fn in base.items():
        register_feature("policy", name, _of_ratio(fn))
        register_feature("policy", f"{name}_adv", _times_advantage(fn))
    register_feature("policy", "advantage", lambda lr, adv: adv)


def _of_ratio(fn: Callable[[Tensor], Tensor]) -> Callable[[Tensor, Tensor], Tensor]:
    return lambda log_ratio, adv: fn(log_ratio)


def _times_advantage(fn: Callable[[Tensor], Tensor]) -> Callable[[Tensor, Tensor], Tensor]:
    return lambda log_ratio, adv: fn(log_ratio) * adv


_register_policy_features()


def ppo_clip_objective(log_ratio: Tensor, advantages: Tensor, clip_coef: float = 0.2) -> Tensor:
    """PPO's clipped surrogate, negated: ``max(−A·r, −A·clip(r, 1−ε, 1+ε))`` (Schulman et al., 2017)."""
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1 - clip_coef, 1 + clip_coef)
    return torch.maximum(unclipped, clipped)


def dpo_drift(
    log_ratio: Tensor, advantages: Tensor, alpha: float = 2.0, beta: float = 0.6
) -> Tensor:
    """DPO's closed-form drift (Lu et al., 2022, α = 2, β = 0.6 as published):
    ``relu((r−1)A − α tanh((r−1)A/α))`` for ``A ≥ 0`` and ``relu(log(r)A − β tanh(log(r)A/β))``
    for ``A < 0``."""
    ratio = torch.exp(log_ratio)
    positive = torch.relu(
        (ratio - 1) * advantages - alpha * torch.tanh((ratio - 1) * advantages / alpha)
    )
    negative = torch.relu(log_ratio * advantages - beta * torch.tanh(log_ratio * advantages / beta))
    return torch.where(advantages >= 0, positive, negative)


def dpo_objective(
    log_ratio: Tensor, advantages: Tensor, alpha: float = 2.0, beta: float = 0.6
) -> Tensor:
    """DPO's objective, negated: ``−(r·A − drift(r, A))`` (Lu et al., 2022)."""
    return -(torch.exp(log_ratio) * advantages - dpo_drift(log_ratio, advantages, alpha, beta))


@register_architecture
class LearnedDrift(LossModule):
    """LPO's learned drift: ``loss = −(r·A − relu(g(x) − g(x₀)))``, with ``g`` an MLP of
    per-sample features ``x`` of the log-ratio and advantage and ``x₀`` the features at ``r = 1``.

    The drift is non-negative and zero at ``r = 1`` for every advantage (two of mirror learning's
    conditions; the zero-gradient condition at ``r = 1`` is not enforced), so the network only
    shapes how far the policy may move from the rollout policy. Called as ``objective(log_ratio,
    advantages)`` (``reduction="none"`` gives one value per sample).

    Args:
        features: names from :data:`LPO_FEATURES` (and ``"advantage"``).
        hidden: hidden widths of ``g``.
        activation: hidden activation of ``g``.
        output, zero_at_target: accepted and ignored (files of metaloss 0.1 record them).
        kind: ``"policy"``.
        reduction: default reduction.

    References:
        Lu et al., "Discovered Policy Optimisation", NeurIPS 2022.

    Example:
        >>> drift = LearnedDrift(hidden=(8,))
        >>> drift(torch.zeros(5), torch.randn(5), reduction="none").shape
        torch.Size([5])
    """

    default_kind = "policy"

    def __init__(
        self,
        features: tuple[str, ...] = LPO_FEATURES,
        hidden: tuple[int, ...] = (16,),
        activation: str = "tanh",
        output: str = "identity",
        zero_at_target: bool = True,
        kind: str = "policy",
        reduction: Reduction = "mean",
    ) -> None:
        if kind != "policy":
            raise ValueError(f"LearnedDrift kind: expected 'policy', got {kind!r}")
        super().__init__()
        check_features(kind, tuple(features))
        self.keep_network_settings(features, hidden, activation, kind, reduction)
        self.net = MLP(feature_width(kind, self.features), self.hidden, 1, activation)

    def architecture(self) -> dict[str, Any]:
        """The constructor arguments: enough to rebuild this drift without its trainer."""
        return self.network_architecture()

    def _raw(self, log_ratio: Tensor, advantages: Tensor) -> Tensor:
        features = compute_features(self.kind, self.features, log_ratio, advantages)
        return self.net(features).squeeze(-1)

    def drift(self, log_ratio: Tensor, advantages: Tensor) -> Tensor:
        """The learned drift ``relu(g(x) − g(x₀)) ≥ 0`` per sample."""
        at_one = torch.zeros_like(log_ratio)
        return torch.relu(self._raw(log_ratio, advantages) - self._raw(at_one, advantages))

    def per_sample(self, pred: Tensor, target: Tensor) -> Tensor:
        """The per-sample loss ``−(r·A − drift)`` for ``pred = log_ratio``, ``target = advantages``."""
        if pred.shape != target.shape:
            raise ValueError(
                f"advantages: expected shape {tuple(pred.shape)} like log_ratio, got {tuple(target.shape)}"
            )
        return -(torch.exp(pred) * target - self.drift(pred, target))

    def extra_repr(self) -> str:
        return f"kind={self.kind}, features={self.features}, reduction={self.reduction}"


def make_objective(name: str, **options: Any) -> PolicyObjective:
    """A policy objective by name: ``ppo_clip`` (option ``clip_coef``) or ``dpo`` (``alpha``,
    ``beta``). Learned drifts are modules: pass them to the PPO loop directly."""
    if name == "ppo_clip":
        clip = float(options.get("clip_coef", 0.2))
        return lambda lr, adv: ppo_clip_objective(lr, adv, clip)
    if name == "dpo":
        alpha, beta = float(options.get("alpha", 2.0)), float(options.get("beta", 0.6))
        return lambda lr, adv: dpo_objective(lr, adv, alpha, beta)
    raise ValueError(f"objective: expected 'ppo_clip', 'dpo' or a learned drift file, got {name!r}")


@dataclass(frozen=True)
class ClipObjective:
    """PPO's clip with its own ε, as one run's objective in a :class:`StackedObjective`."""

    clip_coef: float = 0.2


@dataclass(frozen=True)
class DPOObjective:
    """DPO's objective with its own α and β, as one run's objective in a :class:`StackedObjective`."""

    alpha: float = 2.0
    beta: float = 0.6


RunObjective = ClipObjective | DPOObjective | LearnedDrift
"""The policy objective of one run of a population."""


def _architecture_key(drift: LearnedDrift) -> str:
    return json.dumps(drift.architecture(), sort_keys=True)


class StackedObjective:
    """One policy objective per run, evaluated on ``[R, N]`` log-ratios and advantages at once.

    Runs are grouped by kind: PPO's clip (a tensor of ε, one per run), DPO, and learned drifts
    of one architecture (their weights stacked and evaluated with ``torch.func.vmap`` over
    ``functional_call``). Row ``r`` of the result depends only on row ``r`` of the inputs and
    on run ``r``'s objective.

    Example:
        >>> stacked = StackedObjective([ClipObjective(0.1), DPOObjective(), LearnedDrift(hidden=(4,))])
        >>> stacked(torch.zeros(3, 5), torch.randn(3, 5)).shape
        torch.Size([3, 5])
    """

    def __init__(self, objectives: Sequence[RunObjective]) -> None:
        if not objectives:
            raise ValueError("objectives: expected one per run, got none")
        self.runs = len(objectives)
        self.groups: list[tuple[Tensor, Callable[[Tensor, Tensor], Tensor]]] = []
        clips = [i for i, o in enumerate(objectives) if isinstance(o, ClipObjective)]
        if clips:
            eps = torch.tensor([objectives[i].clip_coef for i in clips], dtype=torch.float64)  # type: ignore[union-attr]
            self.groups.append((torch.tensor(clips), _clip_group(eps)))
        dpo: dict[tuple[float, float], list[int]] = {}
        learned: dict[str, list[int]] = {}
        for i, o in enumerate(objectives):
            if isinstance(o, DPOObjective):
                dpo.setdefault((o.alpha, o.beta), []).append(i)
            elif isinstance(o, LearnedDrift):
                learned.setdefault(_architecture_key(o), []).append(i)
            elif not isinstance(o, ClipObjective):
                raise TypeError(
                    f"objectives[{i}]: expected a run objective, got {type(o).__name__}"
                )
        for (alpha, beta), rows in dpo.items():
            self.groups.append((torch.tensor(rows), _dpo_group(alpha, beta)))
        for rows in learned.values():
            drifts = [objectives[i] for i in rows]
            self.groups.append((torch.tensor(rows), _learned_group(drifts)))  # type: ignore[arg-type]
        order = torch.cat([rows for rows, _ in self.groups])
        self.inverse = torch.empty_like(order)
        self.inverse[order] = torch.arange(order.numel())

    def __call__(self, log_ratio: Tensor, advantages: Tensor) -> Tensor:
        """Per-sample losses ``[R, N]``."""
        if len(self.groups) == 1:
            return self.groups[0][1](log_ratio, advantages)
        parts = [fn(log_ratio[rows], advantages[rows]) for rows, fn in self.groups]
        return torch.cat(parts).index_select(0, self.inverse)


def _clip_group(eps: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
    def evaluate(log_ratio: Tensor, advantages: Tensor) -> Tensor:
        clip = eps.to(log_ratio.dtype).unsqueeze(-1)
        ratio = torch.exp(log_ratio)
        clipped = -advantages * torch.clamp(ratio, 1 - clip, 1 + clip)
        return torch.maximum(-advantages * ratio, clipped)

    return evaluate


def _dpo_group(alpha: float, beta: float) -> Callable[[Tensor, Tensor], Tensor]:
    return lambda log_ratio, advantages: dpo_objective(log_ratio, advantages, alpha, beta)


def _learned_group(drifts: Sequence[LearnedDrift]) -> Callable[[Tensor, Tensor], Tensor]:
    template = drifts[0]
    weights = {
        name: torch.stack([d.get_parameter(name).detach() for d in drifts])
        for name, _ in template.named_parameters()
    }

    def one(w: dict[str, Tensor], log_ratio: Tensor, advantages: Tensor) -> Tensor:
        return functional_call(template, w, (log_ratio, advantages), {"reduction": "none"})

    batched = vmap(one)
    # vmap over a single run takes other kernels than over several (values differ in the last
    # bit), so a lone drift is evaluated as a pair with itself: a run's numbers then do not
    # depend on how many learned runs share its population.
    pair = len(drifts) == 1

    def evaluate(log_ratio: Tensor, advantages: Tensor) -> Tensor:
        w = {k: v.to(log_ratio.dtype) for k, v in weights.items()}
        if not pair:
            return batched(w, log_ratio, advantages)
        w = {k: torch.cat([v, v]) for k, v in w.items()}
        both = batched(w, torch.cat([log_ratio, log_ratio]), torch.cat([advantages, advantages]))
        return both[:1]

    return evaluate


register_kind(KindSpec("policy", LearnedDrift, shape_view="metaloss.rl.shape:POLICY_VIEW"))
BASELINES["ppo_clip"] = ppo_clip_objective  # targets of metaloss tune on RL configs
BASELINES["dpo"] = dpo_objective
