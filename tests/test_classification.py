"""Noisy-label classification: task families, label noise, losses, decomposition, adapter."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch.func import grad, vmap

from metaloss.config import ConfigError, parse
from metaloss.evaluation.compare import compare_with_mse
from metaloss.evaluation.decomposition import decompose, summarise
from metaloss.export import load_loss, save_loss
from metaloss.losses import LearnedLoss, baseline
from metaloss.losses.learned import cross_entropy
from metaloss.outer.trainer import MetaTrainer
from metaloss.tasks import Split, make_family
from metaloss.tasks.classification import NoisyLabelConfig, flip_labels
from metaloss.tasks.learn2learn_adapter import SampledTaskFamily, import_learn2learn


def digits(**task: object):  # type: ignore[no-untyped-def]
    return make_family(parse({"task": {"family": "digits", **task}}).task)


# ------------------------------------------------------------------------------ label noise


@pytest.mark.parametrize("rate", [0.0, 0.2, 0.4, 0.6])
@pytest.mark.parametrize("noise_type", ["symmetric", "pair"])
def test_noise_rate_is_what_it_claims_and_only_on_inner_training(
    rate: float, noise_type: str
) -> None:
    family = digits(noise_rate=[rate, rate], noise_type=noise_type)
    tasks = family.tasks(Split.META_TRAIN, 20)
    train = tasks.train
    flipped = train.y != train.extras["clean_y"]
    torch.testing.assert_close(flipped, train.extras["noise_mask"])
    n = train.y.shape[1]
    assert (flipped.sum(1) == round(rate * n)).all()  # exactly round(rate * n) per task
    if noise_type == "pair":
        shifted = (train.extras["clean_y"] + 1) % 5
        assert (train.y[flipped] == shifted[flipped]).all()
    for batch in (tasks.outer_valid, tasks.test):  # the meta-set and the test split stay clean
        assert (
            torch.equal(batch.y, batch.extras["clean_y"]) and not batch.extras["noise_mask"].any()
        )


def test_symmetric_noise_is_uniform_over_the_other_classes() -> None:
    generator = torch.Generator().manual_seed(0)
    labels = torch.zeros(60_000, dtype=torch.long)
    noisy, mask = flip_labels(labels, 5, 0.5, "symmetric", generator)
    assert mask.float().mean() == 0.5
    counts = torch.bincount(noisy[mask], minlength=5).float() / mask.sum()
    assert counts[0] == 0
    torch.testing.assert_close(counts[1:], torch.full((4,), 0.25), atol=0.01, rtol=0)


def test_noise_rate_range_is_drawn_per_task() -> None:
    rates = (
        digits(noise_rate=[0.0, 0.6])
        .tasks(Split.META_TRAIN, 40)
        .train.extras["noise_mask"]
        .float()
        .mean(1)
    )
    assert rates.min() < 0.15 and rates.max() > 0.45 and rates.max() <= 0.6


def test_mixed_noise_uses_both_types() -> None:
    tasks = digits(noise_rate=[0.4, 0.4], noise_type="mixed").tasks(Split.META_TRAIN, 30).train
    mask = tasks.extras["noise_mask"]
    pair = [
        bool(((tasks.extras["clean_y"][i] + 1) % 5 == tasks.y[i])[mask[i]].all()) for i in range(30)
    ]
    assert 0 < sum(pair) < 30


def pair_flipped_tasks(pair_fraction: float, n: int = 40) -> int:
    """How many of ``n`` mixed-noise meta-train tasks at rate 0.4 got pair-flip noise."""
    tasks = (
        digits(noise_rate=[0.4, 0.4], noise_type="mixed", pair_fraction=pair_fraction)
        .tasks(Split.META_TRAIN, n)
        .train
    )
    mask, clean = tasks.extras["noise_mask"], tasks.extras["clean_y"]
    return sum(bool(((clean[i] + 1) % 5 == tasks.y[i])[mask[i]].all()) for i in range(n))


def test_pair_fraction_sets_the_share_of_pair_flip_tasks() -> None:
    assert pair_flipped_tasks(0.0) == 0
    assert pair_flipped_tasks(1.0) == 40
    assert 24 <= pair_flipped_tasks(0.8) <= 38
    with pytest.raises(ConfigError, match=r"task\.pair_fraction"):
        digits(noise_type="mixed", pair_fraction=1.5)


# ------------------------------------------------------------------------------ families


def test_meta_train_and_meta_test_classes_are_disjoint() -> None:
    family = digits()
    seen = {
        split: set(family.tasks(split, 30).train.extras["classes"].flatten().tolist())
        for split in Split
    }
    assert seen[Split.META_TRAIN] <= {0, 1, 2, 3, 4} and seen[Split.META_VALID] <= {0, 1, 2, 3, 4}
    assert seen[Split.META_TEST] == {5, 6, 7, 8, 9}
    valid_images = torch.cat(list(family.pools(Split.META_VALID).values()))
    train_images = torch.cat(list(family.pools(Split.META_TRAIN).values()))
    assert not set(valid_images.tolist()) & set(train_images.tolist())
    with pytest.raises(ConfigError, match="meta_test_classes"):
        parse({"task": {"family": "digits", "meta_test_classes": [4, 5, 6, 7, 8]}})


def test_digits_task_shapes_labels_and_determinism() -> None:
    family = digits(k_shot=4, n_outer_valid=2, n_test=3, n_way=3)
    task = family.task(Split.META_TEST, 7)
    assert (
        task.train.x.shape == (12, 64)
        and task.outer_valid.x.shape == (6, 64)
        and task.test.x.shape == (9, 64)
    )
    assert torch.equal(torch.bincount(task.test.y), torch.tensor([3, 3, 3]))
    assert torch.equal(task.train.x, family.task(Split.META_TEST, 7).train.x)
    assert task.train.x.min() >= -1 and task.train.x.max() <= 1
    with pytest.raises(ConfigError, match="images per class"):
        digits(k_shot=150)


def test_gaussian_mixture_true_probabilities_match_the_labels() -> None:
    family = make_family(
        parse({"task": {"family": "gaussian_mixture", "n_test": 400, "noise_rate": [0, 0]}}).task
    )
    test = family.task(Split.META_TEST, 0).test
    probs = test.extras["true_probs"]
    torch.testing.assert_close(probs.sum(-1), torch.ones(len(probs)))
    # Labels are drawn from the mixture: the Bayes classifier's accuracy matches E[max p].
    bayes_accuracy = (probs.argmax(-1) == test.y).float().mean()
    assert abs(float(bayes_accuracy - probs.max(-1).values.mean())) < 0.05


# ------------------------------------------------------------------------------ losses


def test_baselines_reduce_to_known_cases() -> None:
    generator = torch.Generator().manual_seed(1)
    logits, labels = (
        torch.randn(50, 4, generator=generator),
        torch.randint(0, 4, (50,), generator=generator),
    )
    ce = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    p = torch.softmax(logits, -1)[torch.arange(50), labels]
    torch.testing.assert_close(baseline("ce")(logits, labels), ce)
    torch.testing.assert_close(baseline("label_smoothing", epsilon=0.0)(logits, labels), ce)
    smoothed = torch.nn.functional.cross_entropy(
        logits, labels, reduction="none", label_smoothing=0.2
    )
    torch.testing.assert_close(baseline("label_smoothing", epsilon=0.2)(logits, labels), smoothed)
    torch.testing.assert_close(baseline("gce", q=1.0)(logits, labels), 1 - p)
    torch.testing.assert_close(baseline("gce", q=1e-4)(logits, labels), ce, atol=1e-2, rtol=1e-2)
    torch.testing.assert_close(
        baseline("sce", alpha=0.1, beta=1.0)(logits, labels), 0.1 * ce + 4 * (1 - p)
    )
    with pytest.raises(ValueError, match="q"):
        baseline("gce", q=1.5)(logits, labels)


def test_learned_classification_loss_with_vector_features_under_vmap() -> None:
    loss = LearnedLoss(
        ("label_prob", "margin", "entropy", "sorted_probs", "ce_quantile"),
        kind="classification",
        num_classes=5,
        reduction="none",
    )
    assert loss.net[0].in_features == 4 + 5
    logits, labels = torch.randn(3, 7, 5), torch.randint(0, 5, (3, 7))
    assert loss(logits, labels).shape == (3, 7)
    grads = vmap(grad(lambda z, y: loss(z, y).mean()))(logits, labels)
    assert grads.shape == (3, 7, 5) and torch.isfinite(grads).all()
    with pytest.raises(ValueError, match="labels of shape"):
        loss(logits, labels[:, :3])


def test_weight_form_is_a_per_sample_weight_times_cross_entropy() -> None:
    loss = LearnedLoss(
        ("ce",),
        hidden=(8,),
        output="sigmoid",
        kind="classification",
        form="weight",
        reduction="none",
    )
    logits = torch.randn(6, 3, requires_grad=True)
    labels = torch.randint(0, 3, (6,))
    ce = cross_entropy(logits, labels)
    weights = torch.sigmoid(loss.net(ce.detach().unsqueeze(-1)).squeeze(-1))
    torch.testing.assert_close(loss(logits, labels), weights * ce)
    (g,) = torch.autograd.grad(loss(logits, labels).sum(), logits)
    (g_ce,) = torch.autograd.grad((weights.detach() * cross_entropy(logits, labels)).sum(), logits)
    torch.testing.assert_close(g, g_ce)  # as in Meta-Weight-Net, the weight is not differentiated


def test_classification_loss_file_round_trip(tmp_path: Path) -> None:
    loss = LearnedLoss(
        ("label_prob", "sorted_probs"), kind="classification", num_classes=4, form="loss"
    )
    path = save_loss(loss, tmp_path / "loss.safetensors")
    loaded = load_loss(path, reduction="none")
    logits, labels = torch.randn(9, 4), torch.randint(0, 4, (9,))
    torch.testing.assert_close(loaded(logits, labels), loss(logits, labels, reduction="none"))


# ------------------------------------------------------------------------------ decomposition


def test_decomposition_sums_to_the_cross_entropy() -> None:
    generator = torch.Generator().manual_seed(2)
    logits = 3 * torch.randn(10, 40, 6, generator=generator, dtype=torch.float64)
    p = torch.distributions.Dirichlet(torch.full((6,), 0.5, dtype=torch.float64)).sample((10, 40))
    p[0, 0] = torch.tensor([1.0, 0, 0, 0, 0, 0])  # zero probabilities are handled (0 log 0 = 0)
    parts = decompose(logits, p)
    torch.testing.assert_close(parts.entropy + parts.kl, parts.cross_entropy)
    assert (parts.kl >= -1e-12).all() and (parts.entropy >= 0).all()
    exact = decompose(torch.log(p.clamp_min(1e-300)), p)
    torch.testing.assert_close(exact.kl, torch.zeros_like(exact.kl), atol=1e-9, rtol=0)
    summary = summarise(parts)
    assert abs(summary.entropy.mean + summary.kl.mean - summary.cross_entropy.mean) < 1e-9


def test_decomposition_on_gaussian_mixture_tasks_matches_sampled_labels() -> None:
    family = make_family(parse({"task": {"family": "gaussian_mixture", "n_test": 2000}}).task)
    test = family.task(Split.META_TEST, 1).test
    logits = torch.zeros(len(test.y), 5)  # uniform prediction: CE = log 5 for every label
    parts = decompose(logits, test.extras["true_probs"])
    torch.testing.assert_close(
        parts.cross_entropy,
        torch.full_like(parts.cross_entropy, float(torch.log(torch.tensor(5.0)))),
    )
    # Against the Bayes posterior itself, the expected CE equals the sampled-label CE on average.
    bayes = torch.log(test.extras["true_probs"])
    sampled = cross_entropy(bayes, test.y).mean()
    assert (
        abs(float(sampled - decompose(bayes, test.extras["true_probs"]).cross_entropy.mean()))
        < 0.05
    )


# ------------------------------------------------------------------------------ learn2learn adapter


class FakeTaskDataset:
    """Stands in for ``l2l.data.TaskDataset``: ``sample()`` returns [data, labels] of one task."""

    def __init__(self, classes: list[int], seed: int) -> None:
        self.classes = classes
        self.generator = torch.Generator().manual_seed(seed)
        self.calls = 0

    def sample(self) -> list[torch.Tensor]:
        self.calls += 1
        labels = torch.tensor(self.classes).repeat_interleave(30)
        images = (
            torch.randn(len(labels), 1, 3, 3, generator=self.generator)
            + labels[:, None, None, None]
        )
        return [images, labels]


def test_learn2learn_style_source_feeds_a_noisy_label_family() -> None:
    config = NoisyLabelConfig(n_way=3, k_shot=10, n_outer_valid=5, n_test=10, noise_rate=(0.3, 0.3))
    sources = {
        Split.META_TRAIN: FakeTaskDataset([0, 1, 2, 3], 0),
        Split.META_TEST: FakeTaskDataset([7, 8, 9], 1),
    }
    family = SampledTaskFamily(sources, config)
    assert family.in_features == 9 and family.out_features == 3
    test = family.task(Split.META_TEST, 4)
    assert test.train.x.shape == (30, 9) and set(test.train.extras["classes"].tolist()) == {7, 8, 9}
    assert torch.equal(
        test.test.x, family.task(Split.META_TEST, 4).test.x
    )  # cached: a fixed test set
    assert test.train.extras["noise_mask"].sum() == 9
    train = family.sample(Split.META_TRAIN, 2, torch.Generator().manual_seed(0))
    assert set(train.train.extras["classes"].flatten().tolist()) <= {0, 1, 2, 3}
    with pytest.raises(ValueError, match=r"class \d has 30 samples"):
        SampledTaskFamily(sources[Split.META_TEST], NoisyLabelConfig(n_way=3, k_shot=30))
    with pytest.raises(TypeError, match="sample"):
        SampledTaskFamily(object(), config)  # type: ignore[arg-type]


def test_missing_learn2learn_gives_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "learn2learn", None)  # import fails even if it is installed
    with pytest.raises(ImportError, match=r"needs the learn2learn package.*\.sample\(\)") as error:
        import_learn2learn()
    assert "\n" not in str(error.value)
    with pytest.raises(ImportError, match="learn2learn"):
        make_family(parse({"task": {"family": "learn2learn"}}).task)


def test_learn2learn_is_not_imported_unless_asked_for() -> None:
    digits()
    assert "learn2learn" not in sys.modules or sys.modules["learn2learn"] is None


# ------------------------------------------------------------------------------ end to end


@pytest.mark.parametrize("form", ["loss", "weight"])
def test_tiny_meta_training_on_classification_tasks(tmp_path: Path, form: str) -> None:
    loss = {"features": ["label_prob", "margin", "sorted_probs"], "hidden": [8], "form": form}
    if form == "weight":
        loss = {"features": ["ce"], "hidden": [8], "form": "weight", "output": "sigmoid"}
    config = parse(
        {
            "task": {
                "family": "digits",
                "k_shot": 4,
                "n_outer_valid": 2,
                "n_test": 2,
                "n_way": 3,
                "noise_rate": [0.4, 0.4],
            },
            "learner": {"hidden": [8]},
            "loss": loss,
            "inner": {"steps": 3, "lr": 0.3},
            "outer": {
                "steps": 3,
                "meta_batch": 2,
                "val_every": 3,
                "val_tasks": 2,
                "checkpoint_every": 3,
            },
            "evaluation": {"test_tasks": 2, "grid_tasks": 2, "lr_grid": [0.1, 0.3]},
        }
    )
    trainer = MetaTrainer(config, tmp_path)
    result = trainer.train()
    assert (
        not result.degeneracy.collapsed and result.degeneracy.reason == ""
    )  # checked, not skipped
    assert len(result.steps) == 3 and all(r.grad_norm > 0 and not r.skipped for r in result.steps)
    assert result.best_value < float("inf")
    path = save_loss(result.loss, tmp_path / "loss.safetensors")
    logits, labels = torch.randn(5, 3), torch.randint(0, 3, (5,))
    torch.testing.assert_close(load_loss(path)(logits, labels), result.loss(logits, labels))
    comparison = compare_with_mse(
        result.loss.per_sample, trainer.problem.family, config
    )  # `metaloss train` prints it
    assert [r.name for r in comparison.rows][1::2] == ["ce", "ce (tuned lr)"]
    assert "test cross-entropy" in comparison.markdown()


# ------------------------------------------------------------------------------ benchmark harness


def test_benchmark_reports_accuracy_decomposition_and_the_clean_label_oracle(
    tmp_path: Path,
) -> None:
    from metaloss.evaluation.benchmark import (
        contenders_from_config,
        rows_from_config,
        run_benchmark,
    )
    from metaloss.evaluation.report import to_json, write_report

    config = parse(
        {
            "task": {
                "family": "gaussian_mixture",
                "k_shot": 6,
                "n_outer_valid": 3,
                "n_test": 10,
                "dim": 4,
            },
            "learner": {"hidden": [8]},
            "inner": {"steps": 4, "lr": 0.3},
            "evaluation": {"test_tasks": 6, "grid_tasks": 3, "lr_grid": [0.1, 0.3]},
            "benchmark": {
                "baselines": [{"name": "ce"}, {"name": "gce", "param": "q", "values": [0.5, 0.9]}],
                "oracle": True,
                "rows": [
                    {"name": "sym 0.4", "task": ["noise_rate=[0.4, 0.4]"]},
                    {
                        "name": "digits",
                        "task": ["family=digits", "k_shot=3", "n_outer_valid=2", "n_test=3"],
                    },
                ],
            },
        }
    )
    rows = rows_from_config(config)
    learned = LearnedLoss(("label_prob", "margin"), hidden=(4,), kind="classification")
    weights = LearnedLoss(
        ("ce",), hidden=(4,), kind="classification", form="weight", output="sigmoid"
    )
    contenders = contenders_from_config(
        config, {"learned": learned.per_sample}, rows[0].family, {"mwn": weights.per_sample}
    )
    assert [c.role for c in contenders] == ["learned", "baseline", "baseline", "baseline", "oracle"]
    result = run_benchmark(rows, contenders)
    assert result.metric == "test cross-entropy"
    assert result.metrics == {
        "accuracy": True,
        "ece": False,
        "expected_cross_entropy": False,
        "entropy": False,
        "kl": False,
    }
    for entry in result.entries:
        m = entry.metrics
        assert ((m["accuracy"] >= 0) & (m["accuracy"] <= 1)).all()
        assert ((m["ece"] >= 0) & (m["ece"] <= 1)).all()
        assert ("kl" in m) == (entry.row == "sym 0.4")  # only Gaussian mixtures know p(y|x)
        if "kl" in m:
            torch.testing.assert_close(m["entropy"] + m["kl"], m["expected_cross_entropy"])
    oracle = result.entry("sym 0.4", "oracle (ce on clean labels)")
    ce = result.entry("sym 0.4", "ce")
    assert oracle.per_task.shape == (6,)
    # Selection picks the best-scoring candidate of its own scores, for every contender.
    for entry in result.entries:
        scores = entry.selection.scores
        assert set(scores) == (
            {f"lr={lr:g}" for lr in (0.1, 0.3)}
            if not entry.param
            else {f"q={q:g} lr={lr:g}" for q in (0.5, 0.9) for lr in (0.1, 0.3)}
        )
        prefix = f"{entry.param}={entry.selection.value:g} " if entry.param else ""
        assert scores[f"{prefix}lr={entry.selection.lr:g}"] == min(scores.values())
    assert ce.selection.scores["lr=0.1"] != ce.selection.scores["lr=0.3"]  # not a tie
    report = to_json(result)
    assert set(report["gap_closed_from_each_baseline"]["sym 0.4"]["learned"]) == {
        "mwn",
        "ce",
        "gce",
    }
    paths = write_report(result, tmp_path)
    table = (tmp_path / "results.md").read_text()
    assert (
        "## test accuracy" in table
        and "## test ece" in table
        and "## test kl" in table
        and len(paths) == 4
    )
    kl_table = table.split("## test kl")[1].split("##")[0]
    assert "| — |" in kl_table  # digits tasks have no known p(y|x)
    assert "digits" in report["gap_closed_from_each_baseline"]


# ------------------------------------------------------------------------------ shape and degeneracy


def test_classification_shape_view_and_degeneracy_check() -> None:
    from metaloss.losses.collapse import check_degenerate
    from metaloss.plots import figure_to_array, shape_view

    view = shape_view("classification")
    curves = view.curves(baseline("ce"))
    p = curves["prob"]
    torch.testing.assert_close(curves["value"][0], -torch.log(p))  # CE = -log p_y
    torch.testing.assert_close(curves["grad"][0], p - 1)  # d CE / d z_y = p_y - 1
    assert curves["batch_dependent"].item() == 0
    assert figure_to_array(view.figure(curves)).ndim == 3
    adaptive = LearnedLoss(("label_prob", "batch_label_prob"), hidden=(4,), kind="classification")
    assert shape_view("classification").curves(adaptive)["batch_dependent"].item() == 1
    assert view.describe is not None and len(view.describe(adaptive)) == 4
    healthy = check_degenerate(baseline("ce"), kind="classification")
    assert not healthy.collapsed and healthy.descent_fraction == 1.0
    flat = LearnedLoss(("label_prob",), hidden=(4,), kind="classification")
    last = flat.net[-1]
    assert isinstance(last, torch.nn.Linear)
    torch.nn.init.zeros_(last.weight)
    report = check_degenerate(flat)
    assert report.collapsed and "constant" in report.reason


# ------------------------------------------------------------------------------ any number of classes


def _pad_classes(logits: torch.Tensor, classes: int) -> torch.Tensor:
    """The same predictions with extra classes of probability 0 (a logit 1e4 below the rest):
    probabilities, margin, entropy and CE of every sample are unchanged."""
    low = logits.amin(-1, keepdim=True) - 1e4
    return torch.cat([logits, low.expand(*logits.shape[:-1], classes - logits.shape[-1])], -1)


@pytest.mark.parametrize("classes", [3, 10])
def test_zoo_noisy_labels_loss_accepts_any_number_of_classes(classes: int) -> None:
    loss = load_loss("noisy-labels", reduction="none").double()
    generator = torch.Generator().manual_seed(classes)
    logits = 3 * torch.randn(4, 16, classes, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, classes, (4, 16), generator=generator)
    values = loss(logits, labels)
    grads = vmap(grad(lambda z, y: loss(z, y).sum()))(logits, labels)
    assert values.shape == (4, 16) and torch.isfinite(values).all()
    assert torch.isfinite(grads).all() and grads.abs().sum() > 0
    # Where the features coincide, the value is the one of the equivalent 5-class computation.
    if classes < 5:  # 3-class logits against the same predictions padded to 5 classes
        few, five = logits, _pad_classes(logits, 5)
        torch.testing.assert_close(loss(few, labels), loss(five, labels))
    else:  # 5-class logits against the same predictions padded to 10 classes
        five, labels = logits[..., :5], labels % 5
        torch.testing.assert_close(loss(_pad_classes(five, classes), labels), loss(five, labels))


def test_learned_loss_of_scalar_features_from_config_keeps_no_class_count() -> None:
    config = parse({"task": {"family": "digits"}, "loss": {"features": ["label_prob", "margin"]}})
    loss = LearnedLoss.from_config(config.loss, "classification", num_classes=5)
    assert "num_classes" not in loss.architecture()
    logits, labels = torch.randn(6, 7), torch.randint(0, 7, (6,))
    assert torch.isfinite(loss(logits, labels))


def test_vector_feature_of_class_width_refuses_another_class_count_in_one_line() -> None:
    loss = LearnedLoss(("label_prob", "sorted_probs"), kind="classification", num_classes=5)
    with pytest.raises(ValueError, match=r"expected 5 classes .*'sorted_probs'.* got 3$"):
        loss(torch.randn(4, 3), torch.randint(0, 3, (4,)))


@pytest.mark.parametrize("classes", [3, 10])
def test_zoo_broad_loss_takes_any_class_count_and_its_gradient_vanishes_at_large_margins(
    classes: int,
) -> None:
    loss = load_loss("noisy-labels-broad", reduction="none").double()
    generator = torch.Generator().manual_seed(classes)
    logits = 3 * torch.randn(2, 16, classes, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, classes, (2, 16), generator=generator)
    grads = vmap(grad(lambda z, y: loss(z, y).sum()))(logits, labels)
    assert torch.isfinite(loss(logits, labels)).all() and torch.isfinite(grads).all()
    for margin, bound in ((20.0, 1e-7), (100.0, 1e-30)):
        z = torch.zeros(8, classes, dtype=torch.float64)
        z[:, 0] = margin
        z.requires_grad_()
        (g,) = torch.autograd.grad(loss(z, torch.zeros(8, dtype=torch.long)).sum(), z)
        assert g[:, 0].abs().max() < bound  # weight form: w * (p_y - 1), like cross-entropy
    zoo = load_loss("noisy-labels", reduction="none").double()
    z = torch.zeros(1, classes, dtype=torch.float64)
    z[0, 0] = 20.0
    z.requires_grad_()
    (g,) = torch.autograd.grad(zoo(z, torch.zeros(1, dtype=torch.long)).sum(), z)
    assert g[0, 0].abs() > 1e-4  # the loss-form zoo loss keeps pushing (issue 12)
