"""Use any few-shot task sampler as a noisy-label task family, e.g. a learn2learn ``TaskDataset``.

A *task source* is any object whose ``.sample()`` returns ``(inputs, labels)`` for one N-way task
(learn2learn's ``TaskDataset.sample()`` returns ``[data, labels]``). :class:`SampledTaskFamily`
splits each draw per class into inner-training, clean meta-set and clean test samples, flips
inner-training labels like the built-in families, and flattens inputs for the MLP learner.

learn2learn itself is optional and imported only when asked for by name
(``task.family: learn2learn``, or :func:`learn2learn_sources`); nothing else here needs it.

Reference: Arnold et al., "learn2learn: A Library for Meta-Learning Research", 2020.

Example:
    >>> class Source:  # anything with .sample()
    ...     def sample(self):
    ...         return torch.randn(5 * 45, 3), torch.arange(5).repeat_interleave(45)
    >>> family = SampledTaskFamily(Source(), NoisyLabelConfig(noise_rate=(0.2, 0.2)))
    >>> family.task(Split.META_TEST, 0).train.x.shape
    torch.Size([100, 3])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from metaloss.config import TaskConfig, setting
from metaloss.tasks.base import Split, Task, task_generator
from metaloss.tasks.classification import NoisyLabelConfig, NoisyLabelFamily, classification_metrics
from metaloss.tasks.registry import FamilySpec, register_family

__all__ = [
    "Learn2LearnConfig",
    "SampledTaskFamily",
    "TaskSource",
    "import_learn2learn",
    "learn2learn_sources",
]


class TaskSource(Protocol):
    """Anything that draws one N-way task: ``sample() -> (inputs, labels)``."""

    def sample(self) -> Any: ...


class SampledTaskFamily(NoisyLabelFamily):
    """A noisy-label family whose tasks come from task sources (one per split, or one for all).

    Each ``sample()`` must hold ``n_way`` classes with at least ``k_shot + n_outer_valid +
    n_test`` samples each. Meta-validation and meta-test tasks are cached by index, so they stay
    fixed for a whole run; meta-train tasks are fresh draws (reproducible only if the source is).
    Give separate sources with disjoint classes (learn2learn's train/validation/test task sets)
    to keep meta-test classes unseen.

    Args:
        sources: one source, or a mapping from :class:`~metaloss.tasks.Split` to sources
            (a missing split falls back to the meta-train source).
        config: task sizes and label noise (:class:`NoisyLabelConfig`).
    """

    def __init__(
        self, sources: TaskSource | Mapping[Split, TaskSource], config: NoisyLabelConfig
    ) -> None:
        super().__init__(config)
        if isinstance(sources, Mapping):
            if Split.META_TRAIN not in sources:
                raise ValueError("sources: expected a source for Split.META_TRAIN")
            self.sources = {s: sources.get(s, sources[Split.META_TRAIN]) for s in Split}
        else:
            self.sources = dict.fromkeys(Split, sources)
        for split, source in self.sources.items():
            if not callable(getattr(source, "sample", None)):
                raise TypeError(
                    f"sources[{split.name}]: expected an object with .sample(), got {type(source).__name__}"
                )
        self._cache: dict[tuple[Split, int], tuple[Tensor, Tensor]] = {}
        self.in_features = self._draw_raw(Split.META_TEST, 0)[0].shape[-1]
        self.task(Split.META_TEST, 0)  # fails now, with a clear message, if the sizes do not fit

    def _draw_raw(self, split: Split, index: int | None) -> tuple[Tensor, Tensor]:
        key = (split, index) if index is not None and split is not Split.META_TRAIN else None
        if key is not None and key in self._cache:
            return self._cache[key]
        drawn = self.sources[split].sample()
        if not isinstance(drawn, Sequence) or len(drawn) != 2:
            raise ValueError(
                f"sources[{split.name}].sample(): expected (inputs, labels), got {type(drawn).__name__}"
            )
        x = torch.as_tensor(drawn[0]).float().flatten(1)
        y = torch.as_tensor(drawn[1]).long().flatten()
        if x.shape[0] != y.shape[0]:
            raise ValueError(
                f"sources[{split.name}].sample(): expected as many labels as inputs, got {y.shape[0]} and {x.shape[0]}"
            )
        if key is not None:
            self._cache[key] = (x, y)
        return x, y

    def task(self, split: Split, index: int) -> Task:
        """Task ``index`` of ``split``; the source draw is cached for meta-validation/test."""
        generator = task_generator(split, index)
        return self.assemble(generator, *self._pick(self._draw_raw(split, index), generator, split))

    def draw(
        self, generator: torch.Generator, split: Split
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        """A fresh draw of ``split``'s source (not cached)."""
        return self._pick(self._draw_raw(split, None), generator, split)

    def _pick(
        self, raw: tuple[Tensor, Tensor], generator: torch.Generator, split: Split
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        x, y = raw
        classes = torch.unique(y)
        if len(classes) < self.config.n_way:
            raise ValueError(
                f"sources[{split.name}].sample(): expected at least n_way={self.config.n_way} classes, got {len(classes)}"
            )
        chosen = classes[torch.randperm(len(classes), generator=generator)[: self.config.n_way]]
        picks = []
        for cls in chosen.tolist():
            members = (y == cls).nonzero().squeeze(1)
            if len(members) < self.per_class:
                raise ValueError(
                    f"sources[{split.name}].sample(): class {cls} has {len(members)} samples, expected at least "
                    f"k_shot + n_outer_valid + n_test = {self.per_class}"
                )
            picks.append(
                members[torch.randperm(len(members), generator=generator)[: self.per_class]]
            )
        return x[torch.stack(picks)], None, chosen


def import_learn2learn() -> Any:
    """Import learn2learn, or raise ``ImportError`` with a one-line explanation."""
    try:
        import learn2learn
    except ImportError:
        raise ImportError(
            "task.family: 'learn2learn' needs the learn2learn package, which is not installed "
            "(pip install learn2learn); or pass any object with .sample() to SampledTaskFamily"
        ) from None
    return learn2learn


@dataclass(frozen=True)
class Learn2LearnConfig(NoisyLabelConfig):
    """A learn2learn vision benchmark (``l2l.vision.benchmarks.get_tasksets``) as task source."""

    family: str = setting("learn2learn", "name of the task family")

    benchmark: str = setting("omniglot", "learn2learn benchmark name, e.g. omniglot, mini-imagenet")
    root: str = setting("~/data", "folder where learn2learn stores (and downloads) the data set")


def learn2learn_sources(config: Learn2LearnConfig) -> dict[Split, TaskSource]:
    """learn2learn's train/validation/test task sets (disjoint classes) for ``config``."""
    l2l = import_learn2learn()
    samples = config.k_shot + config.n_outer_valid + config.n_test
    tasksets = l2l.vision.benchmarks.get_tasksets(
        config.benchmark,
        train_ways=config.n_way,
        train_samples=samples,
        test_ways=config.n_way,
        test_samples=samples,
        root=config.root,
    )
    return {
        Split.META_TRAIN: tasksets.train,
        Split.META_VALID: tasksets.validation,
        Split.META_TEST: tasksets.test,
    }


def _learn2learn_family(config: TaskConfig) -> SampledTaskFamily:
    assert isinstance(config, Learn2LearnConfig)
    return SampledTaskFamily(learn2learn_sources(config), config)


register_family(
    FamilySpec(
        "learn2learn",
        Learn2LearnConfig,
        _learn2learn_family,
        kind="classification",
        metric="test cross-entropy",
        zoo_loss="noisy-labels",
        metrics=classification_metrics,
    )
)
