"""Noisy-label classification task families: N-way digits tasks and Gaussian mixtures.

Each task is an N-way classification problem whose *inner-training* labels are corrupted by
symmetric or pair-flip noise (Patrini et al., CVPR 2017; Han et al., NeurIPS 2018), while the
meta-objective (``outer_valid``, a small clean meta-set as in Meta-Weight-Net) and the ``test``
split keep their clean labels. Every batch carries, in ``Batch.extras``:

- ``clean_y``: the clean labels (equal to ``y`` outside ``train``);
- ``noise_mask``: which labels were flipped (all ``False`` outside ``train``), and its
  complement ``clean``;
- ``classes``: the original class of each of the task's N labels (digits only: ids 0-9);
- ``true_probs``: the true p(y|x), ``[n, N]`` (Gaussian mixtures only).

Families:
    ``digits``: scikit-learn's bundled 8x8 digits (1,797 images). Meta-train and meta-test tasks
    draw their classes from disjoint sets (default 0-4 vs 5-9); meta-validation tasks use the
    meta-train classes but a reserved, disjoint set of images.
    ``gaussian_mixture``: N isotropic Gaussian classes with random means per task, so that
    p(y|x) is known exactly (used by :mod:`metaloss.evaluation.decomposition`).

Noise is injected into exactly ``round(rate * n)`` inner-training labels, chosen uniformly, so
the noise rate of a task is what it claims; the rate is drawn per task from ``noise_rate``
(give ``[r, r]`` for a fixed rate). ``noise_type: mixed`` draws the type per task, pair-flip with
probability ``pair_fraction``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any, Literal, Protocol

import torch
from torch import Tensor

from metaloss.config import ConfigError, TaskConfig, setting
from metaloss.tasks.base import Batch, ConfiguredFamily, Split, Task
from metaloss.tasks.classification_metrics import classification_metrics
from metaloss.tasks.oracles import CLEAN_LABELS_ORACLE, label_cross_entropy
from metaloss.tasks.registry import FamilySpec, register_family

__all__ = [
    "DigitsConfig",
    "DigitsFamily",
    "GaussianMixtureConfig",
    "GaussianMixtureFamily",
    "LabelNoise",
    "NoisyLabelConfig",
    "NoisyLabelFamily",
    "check_noise_rate",
    "draw_noise",
    "flip_count",
    "flip_labels",
    "noise_rate_setting",
    "noise_type_setting",
    "pair_fraction_setting",
]

NoiseType = Literal["symmetric", "pair"]


def noise_type_setting() -> Any:
    """The ``noise_type`` setting of a classification family's config."""
    return setting(
        "symmetric",
        "label noise: 'symmetric' (uniform over other classes), 'pair' (class c -> c+1) or 'mixed' (either, per task)",
    )


def noise_rate_setting() -> Any:
    """The ``noise_rate`` setting of a classification family's config."""
    return setting(
        (0.0, 0.6),
        "range of the per-task label-noise rate on inner-training labels (give [r, r] to fix it)",
        ge=0,
        le=0.9,
    )


def pair_fraction_setting() -> Any:
    """The ``pair_fraction`` setting of a classification family's config."""
    return setting(
        0.5,
        "noise_type 'mixed': probability that a task gets pair-flip rather than symmetric noise "
        "(ignored by the other noise types)",
        ge=0,
        le=1,
    )


class LabelNoise(Protocol):
    """The label-noise settings a family's config carries (see :func:`draw_noise`)."""

    @property
    def noise_type(self) -> Literal["symmetric", "pair", "mixed"]: ...
    @property
    def noise_rate(self) -> tuple[float, float]: ...
    @property
    def pair_fraction(self) -> float: ...


def check_noise_rate(config: LabelNoise) -> None:
    """Refuse ``noise_rate`` ranges with ``low > high`` (one line naming the field)."""
    low, high = config.noise_rate
    if low > high:
        raise ConfigError(
            f"task.noise_rate: expected [low, high] with low <= high, got {list(config.noise_rate)}"
        )


@dataclass(frozen=True)
class NoisyLabelConfig(TaskConfig):
    """Options shared by the few-shot noisy-label classification families."""

    n_way: int = setting(5, "classes per task (N-way)", ge=2)
    k_shot: int = setting(20, "inner-training samples per class (K-shot)", ge=1)
    n_outer_valid: int = setting(
        5, "clean meta-set samples per class (the meta-objective's data)", ge=1
    )
    n_test: int = setting(20, "clean test samples per class", ge=1)
    noise_type: Literal["symmetric", "pair", "mixed"] = noise_type_setting()
    noise_rate: tuple[float, float] = noise_rate_setting()
    pair_fraction: float = pair_fraction_setting()

    def __post_init__(self) -> None:
        check_noise_rate(self)


@dataclass(frozen=True)
class DigitsConfig(NoisyLabelConfig):
    """Options of the digits family (scikit-learn's 8x8 digits)."""

    family: str = setting("digits", "name of the task family")

    meta_train_classes: tuple[int, ...] = setting(
        (0, 1, 2, 3, 4), "digit classes of meta-train and meta-validation tasks", ge=0, le=9
    )
    meta_test_classes: tuple[int, ...] = setting(
        (5, 6, 7, 8, 9), "digit classes of meta-test tasks (disjoint from meta-train)", ge=0, le=9
    )
    valid_images: int = setting(
        50, "images per meta-train class reserved for meta-validation tasks", ge=1
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        shared = sorted(set(self.meta_train_classes) & set(self.meta_test_classes))
        if shared:
            raise ConfigError(
                f"task.meta_test_classes: expected classes disjoint from meta_train_classes, both hold {shared}"
            )
        for name in ("meta_train_classes", "meta_test_classes"):
            classes = getattr(self, name)
            if len(set(classes)) < self.n_way:
                raise ConfigError(
                    f"task.{name}: expected at least n_way={self.n_way} distinct classes, got {list(classes)}"
                )


@dataclass(frozen=True)
class GaussianMixtureConfig(NoisyLabelConfig):
    """Options of the Gaussian-mixture family (known p(y|x))."""

    family: str = setting("gaussian_mixture", "name of the task family")

    dim: int = setting(8, "input dimension", ge=1)
    separation: float = setting(
        1.0, "std of the class means around the origin (the class std is 1)", gt=0
    )


@lru_cache(maxsize=1)
def _load_digits() -> tuple[Tensor, Tensor]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.as_tensor(bunch.data, dtype=torch.float32) / 8.0 - 1.0
    return images, torch.as_tensor(bunch.target, dtype=torch.long)


def flip_count(rate: float, n: int) -> int:
    """Number of labels flipped at ``rate`` among ``n``: ``round(rate * n)``."""
    return round(rate * n)


def flip_labels(
    labels: Tensor, n_way: int, rate: float, noise_type: NoiseType, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Corrupt exactly ``round(rate * n)`` labels, chosen uniformly without replacement.

    ``symmetric``: a flipped label becomes one of the other ``n_way - 1`` classes uniformly.
    ``pair``: class ``c`` becomes ``(c + 1) mod n_way`` (Han et al., 2018).

    Returns:
        the noisy labels and the boolean mask of flipped samples.
    """
    n = labels.numel()
    flipped = torch.randperm(n, generator=generator)[: flip_count(rate, n)]
    mask = torch.zeros(n, dtype=torch.bool)
    mask[flipped] = True
    if noise_type == "pair":
        shift = torch.ones(n, dtype=labels.dtype)
    else:
        shift = torch.randint(1, n_way, (n,), generator=generator, dtype=labels.dtype)
    noisy = torch.where(mask, (labels + shift) % n_way, labels)
    return noisy, mask


def draw_noise(config: LabelNoise, generator: torch.Generator) -> tuple[float, NoiseType]:
    """A task's noise rate (uniform in ``config.noise_rate``) and type (``mixed``: pair-flip with
    probability ``config.pair_fraction``), drawn from ``generator``."""
    low, high = config.noise_rate
    rate = low + (high - low) * float(torch.rand((), generator=generator, dtype=torch.float64))
    noise_type: NoiseType = "symmetric" if config.noise_type == "symmetric" else "pair"
    if config.noise_type == "mixed":
        draw = float(torch.rand((), generator=generator))
        noise_type = "symmetric" if draw < 1.0 - config.pair_fraction else "pair"
    return rate, noise_type


class NoisyLabelFamily(ConfiguredFamily[NoisyLabelConfig]):
    """Base of the classification families: per-class sampling, label noise, clean meta-set.

    Subclasses provide :meth:`draw`, which returns inputs ``[N, m, d]`` (``m`` per class, in class
    order), optional true probabilities ``[N, m, N]`` and the task's class ids ``[N]``.
    """

    kind = "classification"

    def __init__(self, config: NoisyLabelConfig) -> None:
        super().__init__(config)
        self.out_features = config.n_way

    @staticmethod
    def objective(pred: Tensor, target: Tensor) -> Tensor:
        """Per-sample cross-entropy: the meta-objective and the test metric."""
        return label_cross_entropy(pred, target)

    @property
    def per_class(self) -> int:
        """Samples drawn per class: inner-training + meta-set + test."""
        c = self.config
        return c.k_shot + c.n_outer_valid + c.n_test

    def draw(
        self, generator: torch.Generator, split: Split
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        """Inputs ``[N, per_class, d]`` in class order, true ``p(y|x)`` ``[N, per_class, N]`` or
        ``None``, and the task's class ids ``[N]``."""
        raise NotImplementedError

    def make_task(self, generator: torch.Generator, split: Split) -> Task:
        return self.assemble(generator, *self.draw(generator, split))

    def assemble(
        self, generator: torch.Generator, x: Tensor, probs: Tensor | None, classes: Tensor
    ) -> Task:
        """Split per-class draws ``x`` ``[N, m, d]`` into shuffled train (noisy), outer_valid and
        test batches."""
        c = self.config
        labels = torch.arange(c.n_way).unsqueeze(1).expand(c.n_way, self.per_class)
        bounds = (0, c.k_shot, c.k_shot + c.n_outer_valid, self.per_class)
        rate, noise_type = draw_noise(c, generator)

        def batch(start: int, stop: int, noisy: bool) -> Batch:
            bx = x[:, start:stop].reshape(-1, x.shape[-1])
            by = labels[:, start:stop].reshape(-1)
            order = torch.randperm(by.numel(), generator=generator)
            bx, by = bx[order], by[order]
            if noisy:
                y, mask = flip_labels(by, c.n_way, rate, noise_type, generator)
            else:
                y, mask = by, torch.zeros(by.numel(), dtype=torch.bool)
            extras = {"clean_y": by, "noise_mask": mask, "clean": ~mask, "classes": classes}
            if probs is not None:
                extras["true_probs"] = probs[:, start:stop].reshape(-1, c.n_way)[order]
            return Batch(bx, y, extras)

        return Task(
            batch(bounds[0], bounds[1], True),
            batch(bounds[1], bounds[2], False),
            batch(bounds[2], bounds[3], False),
        )


class DigitsFamily(NoisyLabelFamily):
    """N-way tasks on scikit-learn's 8x8 digits, with disjoint meta-train/meta-test classes.

    Pixels are scaled to [-1, 1]. Each task picks ``n_way`` classes of its split in random order
    (label ``i`` is class ``classes[i]``) and draws its samples per class without replacement.

    Example:
        >>> family = DigitsFamily(DigitsConfig(noise_rate=(0.4, 0.4)))
        >>> task = family.task(Split.META_TEST, 0)
        >>> task.train.x.shape, bool(task.train.extras["noise_mask"].float().mean() == 0.4)
        (torch.Size([100, 64]), True)
    """

    in_features = 64

    def __init__(self, config: DigitsConfig) -> None:
        super().__init__(config)
        self.digits = config
        for split in Split:
            smallest = min(len(p) for p in self.pools(split).values())
            if smallest < self.per_class:
                raise ConfigError(
                    f"task: a {split.name.lower()} task needs k_shot + n_outer_valid + n_test = "
                    f"{self.per_class} images per class, but a class has only {smallest} (lower them, or valid_images)"
                )

    @property
    def data(self) -> tuple[Tensor, Tensor]:
        """All 1,797 images ``[n, 64]`` scaled to [-1, 1], and their digit classes ``[n]``."""
        return _load_digits()

    @cached_property
    def _pools(self) -> dict[Split, dict[int, Tensor]]:
        _, targets = self.data
        generator = torch.Generator().manual_seed(self.config.seed)
        pools: dict[Split, dict[int, Tensor]] = {s: {} for s in Split}
        for cls in self.digits.meta_train_classes:
            index = (targets == cls).nonzero().squeeze(1)
            index = index[torch.randperm(len(index), generator=generator)]
            pools[Split.META_VALID][cls] = index[: self.digits.valid_images]
            pools[Split.META_TRAIN][cls] = index[self.digits.valid_images :]
        for cls in self.digits.meta_test_classes:
            pools[Split.META_TEST][cls] = (targets == cls).nonzero().squeeze(1)
        return pools

    def pools(self, split: Split) -> dict[int, Tensor]:
        """Image indices per class available to tasks of ``split``."""
        return self._pools[split]

    def draw(
        self, generator: torch.Generator, split: Split
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        images, _ = self.data
        pools = self.pools(split)
        ids = sorted(pools)
        chosen = [
            ids[i] for i in torch.randperm(len(ids), generator=generator)[: self.config.n_way]
        ]
        picks = [
            pools[k][torch.randperm(len(pools[k]), generator=generator)[: self.per_class]]
            for k in chosen
        ]
        return images[torch.stack(picks)], None, torch.tensor(chosen)


class GaussianMixtureFamily(NoisyLabelFamily):
    """N isotropic unit-variance Gaussian classes with equal priors and means ``~ N(0, s^2 I)``.

    The true posterior is ``p(y|x) = softmax_k(mu_k . x - |mu_k|^2 / 2)``; it is stored per sample
    in ``extras["true_probs"]``. Clean labels are the mixture components the samples came from,
    so even clean labels carry the irreducible (Bayes) noise that the decomposition measures.
    Meta-train and meta-test tasks differ only by their (disjoint) seeds.
    """

    def __init__(self, config: GaussianMixtureConfig) -> None:
        super().__init__(config)
        self.gmm = config
        self.in_features = config.dim

    def draw(
        self, generator: torch.Generator, split: Split
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        c = self.gmm
        means = c.separation * torch.randn((c.n_way, c.dim), generator=generator)
        x = means[:, None, :] + torch.randn((c.n_way, self.per_class, c.dim), generator=generator)
        logits = x @ means.T - 0.5 * (means * means).sum(-1)
        return x, torch.softmax(logits, dim=-1), torch.arange(c.n_way)


def _spec(name: str, config: type[NoisyLabelConfig], factory: type[NoisyLabelFamily]) -> FamilySpec:
    return FamilySpec(
        name,
        config,
        factory,
        kind="classification",
        metric="test cross-entropy",
        zoo_loss="noisy-labels",
        oracle=CLEAN_LABELS_ORACLE,
        metrics=classification_metrics,
    )


register_family(_spec("digits", DigitsConfig, DigitsFamily))
register_family(_spec("gaussian_mixture", GaussianMixtureConfig, GaussianMixtureFamily))
