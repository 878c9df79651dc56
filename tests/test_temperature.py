"""The temperature of a learned classification loss (``LearnedLoss.with_scale`` for kind
``classification``, ``benchmark.learned_scale``) and the ``ce_temperature`` baseline it is
checked against: the loss at scale ``c`` is the loss as meta-trained read on ``logits / c``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from metaloss.config import ConfigError, parse
from metaloss.evaluation.benchmark import contenders_from_config
from metaloss.export import load_loss, save_loss
from metaloss.losses import LearnedLoss, baseline
from metaloss.losses.classification import tempered_cross_entropy

FEATURES = ("label_prob", "margin", "normalized_entropy", "batch_label_prob")


def _logits(classes: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(5)
    logits = 3 * torch.randn(12, classes, generator=generator, dtype=torch.float64)
    labels = torch.randint(classes, (12,), generator=generator)
    return logits.requires_grad_(), labels


def _loss(form: str) -> LearnedLoss:
    torch.manual_seed(0)
    output = "sigmoid" if form == "weight" else "softplus"
    return LearnedLoss(
        FEATURES, hidden=(8,), output=output, kind="classification", form=form, reduction="none"
    ).double()


@pytest.mark.parametrize("form", ["weight", "loss"])
@pytest.mark.parametrize("c", [0.25, 3.0])
def test_the_loss_at_scale_c_is_the_loss_read_on_logits_over_c(form: str, c: float) -> None:
    loss, (logits, labels) = _loss(form), _logits()
    scaled = loss.with_scale(c)
    got = scaled(logits, labels)
    want = loss(logits / c, labels)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    (g_got,) = torch.autograd.grad(got.sum(), logits)
    (g_want,) = torch.autograd.grad(want.sum(), logits)
    torch.testing.assert_close(g_got, g_want, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(got, loss(logits, labels))  # the temperature changes the loss
    assert scaled.net is loss.net and loss.scale == 1.0  # a view sharing the network


def test_the_weight_form_gradient_at_scale_c_by_hand() -> None:
    # d/dz [w(f(z/c)) CE(z/c)] with w detached = w (softmax(z/c) - onehot) / c
    c = 0.5
    loss, (logits, labels) = _loss("weight"), _logits(classes=3)
    (grad,) = torch.autograd.grad(loss.with_scale(c)(logits, labels).sum(), logits)
    z = (logits / c).detach()
    with torch.no_grad():
        w = loss.with_scale(c)(logits, labels) / F.cross_entropy(z, labels, reduction="none")
    by_hand = w.unsqueeze(-1) * (torch.softmax(z, -1) - F.one_hot(labels, 3)) / c
    torch.testing.assert_close(grad, by_hand, rtol=1e-10, atol=1e-12)


def test_a_tempered_loss_accepts_any_class_count_and_keeps_its_scale_in_the_file(
    tmp_path: Path,
) -> None:
    loss = _loss("weight").with_scale(0.5)
    for classes in (3, 10):
        logits, labels = _logits(classes)
        assert loss(logits, labels).shape == (12,)
    path = save_loss(loss, tmp_path / "t.safetensors")
    again = load_loss(path)
    assert isinstance(again, LearnedLoss) and again.scale == 0.5
    logits, labels = _logits()
    torch.testing.assert_close(again.double().per_sample(logits, labels), loss(logits, labels))


@pytest.mark.parametrize("bad", [0.0, -1.0, float("inf")])
def test_a_temperature_must_be_positive_and_finite(bad: float) -> None:
    with pytest.raises(ValueError, match=r"^scale: expected a positive finite number"):
        _loss("weight").with_scale(bad)
    with pytest.raises(ValueError, match=r"^temperature: expected a positive finite number"):
        tempered_cross_entropy(*_logits(), temperature=bad)


def test_the_ce_temperature_baseline_is_ce_of_the_scaled_logits() -> None:
    logits, labels = _logits()
    for t in (0.3, 1.0, 2.0):
        got = baseline("ce_temperature", temperature=t)(logits, labels)
        torch.testing.assert_close(got, F.cross_entropy(logits / t, labels, reduction="none"))
    torch.testing.assert_close(
        tempered_cross_entropy(logits, labels), F.cross_entropy(logits, labels, reduction="none")
    )


def _config(**benchmark: object):  # type: ignore[no-untyped-def]
    return parse(
        {
            "task": {"family": "digits", "n_way": 3, "k_shot": 4},
            "loss": {"features": list(FEATURES), "form": "weight", "output": "sigmoid"},
            "benchmark": {"baselines": [{"name": "ce"}], **benchmark},
        }
    )


def test_learned_scale_enters_a_classification_loss_at_each_temperature() -> None:
    config = _config(learned_scale=[0.5, 2.0])
    loss = _loss("weight")
    _, scaled, _ = contenders_from_config(config, {"learned": loss})
    assert (scaled.name, scaled.param, scaled.values) == ("learned (scale)", "scale", (0.5, 2.0))
    made = scaled.make(0.5)
    assert isinstance(made, LearnedLoss) and made.scale == 0.5 and made.net is loss.net


def test_learned_scale_is_refused_for_a_loss_that_is_not_a_learned_loss() -> None:
    config = _config(learned_scale=[0.5])
    with pytest.raises(ConfigError, match=r"^benchmark\.learned_scale: ce is neither"):
        contenders_from_config(config, {"ce": baseline("ce")})
