"""Bundled classification data sets, their noisy-label family, bootstrapping and calibration."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from metaloss.config import ConfigError, parse
from metaloss.datasets.classification import CLASSIFICATION_DATASETS, load_classification
from metaloss.evaluation.decomposition import calibration_error, classification_metrics
from metaloss.losses import baseline
from metaloss.losses.learned import cross_entropy
from metaloss.tasks import Split, make_family

SIZES = {"digits": (1797, 64, 10), "anes96": (944, 9, 7), "fair": (6366, 8, 2)}


def family(dataset: str, **task: object):  # type: ignore[no-untyped-def]
    config = {"family": "classification_data", "dataset": dataset, **task}
    return make_family(parse({"task": config}).task)


@pytest.mark.parametrize("name", sorted(CLASSIFICATION_DATASETS))
def test_bundled_data_sets_load_with_labels_in_range(name: str) -> None:
    x, y = load_classification(name)
    assert x.dtype == torch.float32 and y.dtype == torch.long and len(x) == len(y)
    assert torch.isfinite(x).all() and int(y.min()) == 0
    assert torch.equal(y.unique(), torch.arange(int(y.max()) + 1))  # every class present
    if name in SIZES:
        assert (len(x), x.shape[1], int(y.max()) + 1) == SIZES[name]


def test_generated_data_set_is_the_same_on_every_call() -> None:
    from metaloss.datasets.classification import _make_classification

    first, second = _make_classification(), _make_classification()
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert first[0].shape == (2000, 20) and int(first[1].max()) == 3


def test_unknown_data_set_is_refused_in_one_line() -> None:
    with pytest.raises(ValueError, match="dataset: expected one of digits"):
        load_classification("cifar")
    with pytest.raises(ConfigError, match=r"task\.dataset"):
        parse({"task": {"family": "classification_data", "dataset": "cifar"}})


@pytest.mark.parametrize("noise_type", ["symmetric", "pair"])
@pytest.mark.parametrize("dataset", ["anes96", "fair"])
def test_noise_only_on_training_labels_at_the_claimed_rate(dataset: str, noise_type: str) -> None:
    fam = family(dataset, noise_type=noise_type, noise_rate=[0.3, 0.3])
    classes = fam.out_features
    tasks = fam.tasks(Split.META_TRAIN, 5)
    flipped = tasks.train.y != tasks.train.extras["clean_y"]
    assert torch.equal(flipped, tasks.train.extras["noise_mask"])
    assert (flipped.sum(1) == round(0.3 * fam.config.n_train)).all()
    if noise_type == "pair":
        shifted = (tasks.train.extras["clean_y"] + 1) % classes
        assert torch.equal(tasks.train.y[flipped], shifted[flipped])
    for batch in (tasks.outer_valid, tasks.test):
        assert (
            torch.equal(batch.y, batch.extras["clean_y"]) and not batch.extras["noise_mask"].any()
        )


def test_meta_test_rows_are_never_seen_by_tasks_that_select() -> None:
    fam = family("anes96")
    x, _ = load_classification("anes96")
    standardised = fam.x
    held = {tuple(r) for r in standardised[fam.held].tolist()}
    for split in (Split.META_TRAIN, Split.META_VALID):
        tasks = fam.tasks(split, 8)
        for batch in tasks:
            rows = {tuple(r) for r in batch.x.flatten(0, 1).tolist()}
            assert not rows & held
    test = fam.tasks(Split.META_TEST, 3)
    assert {tuple(r) for r in test.test.x[0].tolist()} == held  # the test split is the held set
    assert not {tuple(r) for r in test.train.x.flatten(0, 1).tolist()} & held
    counts = torch.bincount(fam.y[fam.held], minlength=7).float()
    torch.testing.assert_close(
        counts / counts.sum(), torch.bincount(fam.y).float() / len(x), atol=0.01, rtol=0
    )


def test_tasks_are_reproducible_and_features_standardised_on_the_pool() -> None:
    a, b = family("digits"), family("digits")
    torch.testing.assert_close(
        a.task(Split.META_TEST, 4).train.x, b.task(Split.META_TEST, 4).train.x
    )
    pool = a.x[a.pool]
    varying = pool.std(0) > 0
    torch.testing.assert_close(pool.mean(0), torch.zeros(64), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        pool.std(0)[varying], torch.ones(int(varying.sum())), atol=1e-4, rtol=0
    )


def test_a_family_asking_for_more_rows_than_the_pool_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match=r"task\.n_train: anes96 has"):
        family("anes96", n_train=600)


# ------------------------------------------------------------------------------ bootstrapping


def test_bootstrapping_known_answers() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = 2 * torch.randn(40, 6, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 6, (40,), generator=generator)
    ce = cross_entropy(logits, labels)
    for name in ("bootstrap_soft", "bootstrap_hard"):
        torch.testing.assert_close(baseline(name, beta=1.0)(logits, labels), ce)
        with pytest.raises(ValueError, match="beta"):
            baseline(name, beta=1.5)(logits, labels)
    # Soft: the cross-entropy against the mixed target beta * one_hot + (1 - beta) * q.
    q = torch.softmax(logits, -1)
    target = 0.7 * torch.nn.functional.one_hot(labels, 6) + 0.3 * q
    soft = -(target * torch.log_softmax(logits, -1)).sum(-1)
    torch.testing.assert_close(baseline("bootstrap_soft", beta=0.7)(logits, labels), soft)
    # Hard, beta = 0: CE against the learner's own arg-max; where it agrees with the label, CE.
    hard = baseline("bootstrap_hard", beta=0.0)(logits, labels)
    torch.testing.assert_close(hard, cross_entropy(logits, logits.argmax(-1)))
    agree = logits.argmax(-1) == labels
    torch.testing.assert_close(
        baseline("bootstrap_hard", beta=0.4)(logits, labels)[agree], ce[agree]
    )


# ------------------------------------------------------------------------------ calibration


def test_ece_of_a_calibrated_predictor_is_near_zero_and_of_an_overconfident_one_is_its_gap() -> (
    None
):
    generator = torch.Generator().manual_seed(3)
    logits = 2 * torch.randn(4, 50_000, 5, generator=generator, dtype=torch.float64)
    labels = torch.multinomial(torch.softmax(logits, -1).flatten(0, 1), 1, generator=generator)
    labels = labels.reshape(4, 50_000)  # drawn from the predicted probabilities: calibrated
    ece = calibration_error(logits, labels)
    assert ece.shape == (4,) and (ece < 0.01).all()
    # Confidence ~1 on the predicted class, right 70% of the time: ECE = 1 - 0.7.
    sure = torch.zeros(1000, 3, dtype=torch.float64)
    sure[:, 0] = 50.0
    right = torch.zeros(1000, dtype=torch.long)
    right[700:] = 2
    torch.testing.assert_close(float(calibration_error(sure, right)), 0.3, atol=1e-9, rtol=0)


def test_ece_equals_the_binned_definition() -> None:
    generator = torch.Generator().manual_seed(4)
    logits = torch.randn(300, 4, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 4, (300,), generator=generator)
    conf, pred = torch.softmax(logits, -1).max(-1)
    correct = (pred == labels).double()
    expected = 0.0
    for b in range(15):
        inside = (conf > b / 15) & (conf <= (b + 1) / 15)
        if inside.any():
            expected += float(inside.double().mean()) * abs(
                float(correct[inside].mean() - conf[inside].mean())
            )
    assert abs(float(calibration_error(logits, labels)) - expected) < 1e-12


def test_classification_families_report_accuracy_and_ece() -> None:
    metrics = classification_metrics(family("fair"))
    assert set(metrics) == {"accuracy", "ece"}
    assert metrics["accuracy"].higher_is_better and not metrics["ece"].higher_is_better


# ------------------------------------------------------------------------------ broad meta-training


def test_noisy_mix_draws_digits_and_overlapping_gaussian_tasks_of_one_shape() -> None:
    config = parse({"task": {"family": "noisy_mix", "gaussian_fraction": 0.5}}).task
    fam = make_family(config)
    tasks = fam.tasks(Split.META_TRAIN, 40)
    assert tasks.train.x.shape == (40, 100, 64) and set(tasks.train.extras) == {
        "clean_y",
        "noise_mask",
        "clean",
    }
    # Digits pixels are scaled to [-1, 1]; Gaussian inputs are unbounded: both kinds occur.
    gaussian = tasks.train.x.abs().flatten(1).amax(1) > 1.0
    assert 5 < int(gaussian.sum()) < 35
    with pytest.raises(ConfigError, match="separation"):
        parse({"task": {"family": "noisy_mix", "separation": [0.5, 0.1]}})


def test_normalized_entropy_is_in_unit_range_for_any_class_count() -> None:
    from metaloss.losses.features import FEATURES

    feature = FEATURES["classification"]["normalized_entropy"]
    for classes in (2, 7, 10):
        uniform = torch.zeros(3, classes)
        torch.testing.assert_close(
            feature(uniform, torch.zeros(3, dtype=torch.long)), torch.ones(3)
        )
        sure = torch.zeros(3, classes)
        sure[:, 0] = 60.0
        assert float(feature(sure, torch.zeros(3, dtype=torch.long)).max()) < 1e-6


# ------------------------------------------------------------------------------ experiment scripts

EXPERIMENTS = Path(__file__).parents[1] / "experiments"


def test_plain_pytorch_noisy_label_script_runs_on_a_tiny_budget() -> None:
    script = EXPERIMENTS / "noisy_labels_in_plain_pytorch.py"
    tiny = ["--datasets", "anes96", "--seeds", "1", "--epochs", "1", "--lr-grid", "0.01"]
    done = subprocess.run(
        [sys.executable, str(script), *tiny, "--noise", "0.2"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    names = [line[21:49].strip() for line in done.stdout.splitlines()[2:6]]
    assert names == ["learned (noisy-labels)", "CE", "GCE (q=0.7)", "SCE (a=0.1, b=1)"]
    gradients = dict(
        line.split()[0:2] for line in done.stdout.splitlines() if line.startswith("  CE")
    )
    assert float(gradients["CE"]) == 0.0  # CE's gradient vanishes at margin 20


def test_ce_mix_is_ce_at_zero_and_the_learned_loss_at_one() -> None:
    sys.path.insert(0, str(EXPERIMENTS))
    try:
        from noisy_labels_ce_mix_benchmark import mixed
    finally:
        sys.path.remove(str(EXPERIMENTS))
    from metaloss.export import load_loss

    learned = load_loss("noisy-labels", reduction="none")
    logits, labels = torch.randn(9, 3), torch.randint(0, 3, (9,))
    torch.testing.assert_close(
        mixed(learned)(mix=0.0)(logits, labels), cross_entropy(logits, labels)
    )
    torch.testing.assert_close(mixed(learned)(mix=1.0)(logits, labels), learned(logits, labels))
    half = 0.5 * cross_entropy(logits, labels) + 0.5 * learned(logits, labels)
    torch.testing.assert_close(mixed(learned)(mix=0.5)(logits, labels), half)
