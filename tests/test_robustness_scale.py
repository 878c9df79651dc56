"""The robustness scale of a learned regression loss (``LearnedLoss.with_scale``,
``benchmark.learned_scale``): every batch scale estimate the features divide by is multiplied by
``c``, ratios of scales are not, and a benchmark selects ``c`` like a baseline's parameter."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from _families import ConstantTargets

from metaloss.config import ConfigError, parse
from metaloss.evaluation import eval_set
from metaloss.evaluation.benchmark import Row, contenders_from_config, select
from metaloss.export import load_loss, save_loss
from metaloss.losses import LearnedLoss
from metaloss.losses.features import FEATURES, SCALED
from metaloss.losses.scale import spread_scales
from metaloss.tasks import Split

SCALED_NAMES = sorted(SCALED["regression"])
RATIO_NAMES = ["residual_tail_ratio", "residual_skewness", "fit_progress"]


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    target = torch.randn(40, 1, generator=generator, dtype=torch.float64) * 2 + 1
    pred = target + torch.randn(40, 1, generator=generator, dtype=torch.float64)
    pred[:4] += 12.0  # a few gross residuals
    return pred, target


def _by_hand(name: str, pred: torch.Tensor, target: torch.Tensor, c: float) -> torch.Tensor:
    """Each scaled feature written out with torch.quantile and the scale times ``c``."""
    r = pred - target
    if name in ("residual_scale", "scaled_residual", "abs_scaled_residual", "outlier_fraction"):
        m = c * r.abs().median()
        return {
            "residual_scale": m.expand(r.shape),
            "scaled_residual": r / (m + 1e-6),
            "abs_scaled_residual": (r / (m + 1e-6)).abs(),
            "outlier_fraction": (r.abs() > 3 * m).double().mean().expand(r.shape),
        }[name]
    if "target" in name:
        t = target.flatten()
        s = c * (t - t.median()).abs().median()
        return {
            "target_scale": s.expand(r.shape),
            "target_scaled_residual": r / (s + 1e-6),
            "abs_target_scaled_residual": (r / (s + 1e-6)).abs(),
        }[name]
    centre = torch.quantile(r.flatten(), 0.5)
    deviations = (r.flatten() - centre).abs()
    s50 = 1.4826 * torch.quantile(deviations, 0.5)
    s90 = torch.quantile(deviations, 0.9) / 1.645
    u = (r - centre) / (c * s50)
    return {
        "mad_scaled_residual": u.clamp(-50, 50),
        "log_mad_scaled_residual": torch.log1p(u.clamp(-50, 50).abs()),
        "log_tail_scaled_residual": torch.log1p((r - centre).abs() / (c * s90)),
    }[name]


def test_the_scaled_features_are_the_ones_that_divide_by_a_batch_scale() -> None:
    assert (
        sorted(
            [
                "residual_scale",
                "scaled_residual",
                "abs_scaled_residual",
                "outlier_fraction",
                "target_scale",
                "target_scaled_residual",
                "abs_target_scaled_residual",
                "mad_scaled_residual",
                "log_mad_scaled_residual",
                "log_tail_scaled_residual",
            ]
        )
        == SCALED_NAMES
    )
    assert not set(RATIO_NAMES) & SCALED["regression"]
    assert not {"residual", "abs_residual", "target"} & SCALED["regression"]


@pytest.mark.parametrize("name", SCALED_NAMES)
@pytest.mark.parametrize("c", [0.5, 1.0, 3.0])
def test_scale_multiplies_the_batch_scale_estimate(name: str, c: float) -> None:
    pred, target = _batch()
    feature = FEATURES["regression"][name]
    got = feature(pred, target, scale=c) if c != 1.0 else feature(pred, target)  # type: ignore[call-arg]
    torch.testing.assert_close(got, _by_hand(name, pred, target, c), rtol=1e-12, atol=1e-12)


def test_spread_scales_are_those_of_torch_quantile() -> None:
    pred, target = _batch()
    centre, s50, _ = spread_scales(pred - target)
    r = (pred - target).flatten()
    assert float(centre) == pytest.approx(float(torch.quantile(r, 0.5)), rel=1e-12)
    expected = 1.4826 * float(torch.quantile((r - centre).abs(), 0.5))
    assert float(s50) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("name", RATIO_NAMES)
def test_ratios_of_scales_ignore_the_scale(name: str) -> None:
    pred, target = _batch()
    loss = LearnedLoss(
        (name, "mad_scaled_residual"), hidden=(4,), form="weight", output="sigmoid"
    ).double()
    scaled = loss.with_scale(4.0)
    # the ratio feature is the first input: perturbing only the scaled one shows which is which
    net_inputs = []
    loss.net.register_forward_pre_hook(lambda _m, args: net_inputs.append(args[0]))
    loss.per_sample(pred, target)
    scaled.per_sample(pred, target)
    torch.testing.assert_close(net_inputs[0][..., 0], net_inputs[1][..., 0])
    torch.testing.assert_close(net_inputs[0][..., 1] / 4.0, net_inputs[1][..., 1])


def _weight_loss() -> LearnedLoss:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        loss = LearnedLoss(
            ("mad_scaled_residual", "log_mad_scaled_residual", "residual_tail_ratio"),
            hidden=(8,),
            form="weight",
            output="sigmoid",
        )
    return loss.double()


def test_with_scale_shares_the_network_and_changes_only_the_features() -> None:
    pred, target = _batch()
    loss = _weight_loss()
    assert loss.scale == 1.0 and loss.with_scale(1.0)(pred, target) == loss(pred, target)
    scaled = loss.with_scale(2.0)
    assert scaled.net is loss.net and scaled.scale == 2.0 and loss.scale == 1.0
    assert not torch.equal(scaled(pred, target), loss(pred, target))
    scaled(pred, target).backward()
    assert loss.net[0].weight.grad is not None  # training the copy trains the original
    assert ", scale=2," in repr(scaled) and ", scale=" not in repr(loss)


def test_a_large_scale_makes_a_weight_form_loss_the_squared_loss() -> None:
    pred, target = _batch()
    loss = _weight_loss()
    loss.requires_grad_(False)
    weights = loss.with_scale(1e6).per_sample(pred, target) / (pred - target) ** 2
    assert float(weights.max() / weights.min()) < 1 + 1e-4  # one weight for every sample
    robust = loss.per_sample(pred, target) / (pred - target) ** 2
    assert float(robust.max() / robust.min()) > 1.01  # at scale 1 the gross residuals differ


def test_the_scale_survives_the_loss_file(tmp_path: Path) -> None:
    pred, target = _batch()
    scaled = _weight_loss().with_scale(2.5)
    path = save_loss(scaled, tmp_path / "scaled.safetensors")
    loaded = load_loss(path).double()
    assert loaded.scale == 2.5  # type: ignore[attr-defined]
    torch.testing.assert_close(loaded(pred, target), scaled(pred, target))
    assert "scale" not in _weight_loss().architecture()  # files of scale 1 are unchanged


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf, True, "2"])
def test_a_scale_must_be_a_positive_finite_number(bad: object) -> None:
    with pytest.raises(ValueError, match=r"^scale: expected a positive"):
        _weight_loss().with_scale(bad)  # type: ignore[arg-type]


def test_a_loss_without_scaled_features_takes_only_scale_one() -> None:
    plain = LearnedLoss(("residual", "abs_residual"), hidden=(4,))
    assert plain.with_scale(1.0).scale == 1.0
    with pytest.raises(
        ValueError, match=r"^scale: none of the features \(residual, abs_residual\)"
    ):
        plain.with_scale(2.0)


# ------------------------------------------------------------------------------ selection


def _config(**benchmark: object):  # type: ignore[no-untyped-def]
    return parse(
        {
            "dtype": "float64",
            "learner": {"hidden": []},
            "inner": {"steps": 1, "optimizer": "sgd", "lr": 0.1},
            "evaluation": {"grid_tasks": 6, "lr_grid": [1.0, 2.0]},
            "benchmark": {"baselines": [{"name": "mse"}], **benchmark},
        }
    )


def _abs_scaled_loss() -> LearnedLoss:
    """``L = |r| / (c * median|r| + 1e-6)``: a linear network over ``abs_scaled_residual``."""
    loss = LearnedLoss(("abs_scaled_residual",), hidden=(), output="identity").double()
    with torch.no_grad():
        loss.net[0].weight.fill_(1.0)
        loss.net[0].bias.fill_(0.0)
    return loss


def test_selection_picks_the_known_best_scale() -> None:
    # ConstantTargets: every sample of a task has the same residual e, so median|r| = |e| and the
    # gradient of L w.r.t. the prediction is sign(e) / (c |e| + 1e-6) (the scale is detached);
    # one SGD step of the linear learner moves w and b by it: |e| -> | |e| - 2 lr / (c |e| + 1e-6) |.
    config = _config(learned_scale=[1.0, 3.0])
    family = ConstantTargets()
    [_, scaled, _] = contenders_from_config(config, {"learned": _abs_scaled_loss()}, family)
    assert scaled.name == "learned (scale)" and scaled.values == (1.0, 3.0)
    data = eval_set(family, config, Split.META_TRAIN, 6)
    e = torch.stack(
        [
            data.inits["0.weight"][i].sum()
            + data.inits["0.bias"][i].sum()
            - data.tasks.train.y[i, 0, 0]
            for i in range(data.runs)
        ]
    ).abs()
    expected = {
        (c, lr): float(((e - 2 * lr / (c * e + 1e-6)) ** 2).mean())
        for c in (1.0, 3.0)
        for lr in (1.0, 2.0)
    }
    chosen = select(scaled, Row("r", family, config), data)
    for (c, lr), score in expected.items():
        assert chosen.scores[f"scale={c:g} lr={lr:g}"] == pytest.approx(score, rel=1e-9)
    assert (chosen.value, chosen.lr) == min(expected, key=expected.__getitem__)


def test_learned_scale_is_refused_for_a_loss_without_scaled_features() -> None:
    plain = LearnedLoss(("residual", "abs_residual"), hidden=(4,))
    with pytest.raises(
        ConfigError,
        match=r"^benchmark\.learned_scale: plain is neither a learned classification loss nor has",
    ):
        contenders_from_config(_config(learned_scale=[2.0]), {"plain": plain})
    with pytest.raises(ConfigError, match=r"benchmark\.learned_scale"):
        _config(learned_scale=[0.0])


def test_the_zoo_transfer_loss_takes_a_scale_in_plain_torch() -> None:
    from metaloss import zoo_names

    if "robust-regression-transfer" not in zoo_names():
        pytest.skip("zoo loss not installed")
    pred, target = _batch()
    base = load_loss("robust-regression-transfer", reduction="none").double()
    lenient, strict = base.with_scale(16.0), base.with_scale(0.25)  # type: ignore[attr-defined]
    gross = slice(0, 4)  # the batch's gross residuals get less weight the smaller the scale
    weight = {
        c: (m(pred, target) / (pred - target) ** 2) for c, m in [(16, lenient), (0.25, strict)]
    }
    assert bool((weight[0.25][gross] < weight[16][gross]).all())
