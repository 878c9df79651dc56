"""A broader noisy-label task distribution for meta-training losses that should transfer:
each task is, at random, a few-shot digits task (nearly separable classes) or a Gaussian-mixture
task of the same shape whose class separation is drawn per task (from well separated to heavily
overlapping classes, where even clean labels are ambiguous and a calibrated learner must keep
its predictions soft).

A loss meta-trained on digits alone learns to push every labelled logit up (a clean digits
label is almost never ambiguous), which is what makes it overconfident on real data whose
classes overlap (docs/transfer_classification.md); mixing in overlapping classes, under the
clean-label cross-entropy meta-objective, rewards keeping ambiguous predictions soft while still
discounting flipped labels.

Meta-validation and meta-test tasks draw from the same mixture (digits tasks from the families'
disjoint class and image pools). Batches carry ``clean_y``, ``noise_mask`` and ``clean``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from metaloss.config import ConfigError, setting
from metaloss.tasks.base import ConfiguredFamily, Split, Task
from metaloss.tasks.classification import (
    DigitsConfig,
    DigitsFamily,
    GaussianMixtureConfig,
    GaussianMixtureFamily,
    classification_metrics,
)
from metaloss.tasks.oracles import CLEAN_LABELS_ORACLE
from metaloss.tasks.registry import FamilySpec, register_family

__all__ = ["NoisyMixConfig", "NoisyMixFamily"]

_SHARED_EXTRAS = ("clean_y", "noise_mask", "clean")


@dataclass(frozen=True)
class NoisyMixConfig(DigitsConfig):
    """Options of the digits / Gaussian-mixture task mixture (the digits options, plus)."""

    family: str = setting("noisy_mix", "name of the task family")

    gaussian_fraction: float = setting(
        0.4, "probability that a task is a Gaussian mixture rather than digits", ge=0, le=1
    )
    separation: tuple[float, float] = setting(
        (0.05, 0.4),
        "range of the Gaussian tasks' class-mean std (log-uniform; 64 input dimensions)",
        gt=0,
    )

    gaussian_dim: int = setting(
        64,
        "input dimension of the Gaussian tasks (below 64 the inputs are padded with zeros to the "
        "digits' 64, so the shapes stack)",
        ge=1,
        le=64,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.separation[0] > self.separation[1]:
            raise ConfigError(f"task.separation: expected low <= high, got {list(self.separation)}")


class NoisyMixFamily(ConfiguredFamily[NoisyMixConfig]):
    """Digits tasks and Gaussian-mixture tasks (``gaussian_dim`` inputs padded to 64, sampled
    separation), one per draw."""

    kind = "classification"

    def __init__(self, config: NoisyMixConfig) -> None:
        super().__init__(config)
        self.digits = DigitsFamily(config)
        self.in_features = DigitsFamily.in_features
        self.out_features = config.n_way
        self.objective = self.digits.objective  # type: ignore[method-assign]

    def gaussian(self, separation: float) -> GaussianMixtureFamily:
        """The Gaussian-mixture family of this mixture's shape at ``separation``."""
        c = self.config
        return GaussianMixtureFamily(
            GaussianMixtureConfig(
                seed=c.seed,
                n_way=c.n_way,
                k_shot=c.k_shot,
                n_outer_valid=c.n_outer_valid,
                n_test=c.n_test,
                noise_type=c.noise_type,
                noise_rate=c.noise_rate,
                pair_fraction=c.pair_fraction,
                dim=c.gaussian_dim,
                separation=separation,
            )
        )

    def make_task(self, generator: torch.Generator, split: Split) -> Task:
        c = self.config
        if float(torch.rand((), generator=generator)) < c.gaussian_fraction:
            low, high = math.log(c.separation[0]), math.log(c.separation[1])
            u = float(torch.rand((), generator=generator, dtype=torch.float64))
            task = self.gaussian(math.exp(low + (high - low) * u)).make_task(generator, split)
            task = Task(*(batch._replace(x=self._pad(batch.x)) for batch in task))
        else:
            task = self.digits.make_task(generator, split)
        return Task(
            *(batch._replace(extras={k: batch.extras[k] for k in _SHARED_EXTRAS}) for batch in task)
        )

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        missing = self.in_features - x.shape[-1]
        return x if missing == 0 else torch.cat([x, x.new_zeros(*x.shape[:-1], missing)], -1)


register_family(
    FamilySpec(
        "noisy_mix",
        NoisyMixConfig,
        NoisyMixFamily,
        kind="classification",
        metric="test cross-entropy",
        zoo_loss="noisy-labels",
        oracle=CLEAN_LABELS_ORACLE,
        metrics=classification_metrics,
    )
)
