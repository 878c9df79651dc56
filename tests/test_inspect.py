"""``metaloss inspect``: the figure, the text summary, and the shape description it rests on."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor

import metaloss.zoo
from metaloss import save_loss
from metaloss.cli import main
from metaloss.losses import LearnedLoss, baseline
from metaloss.losses.regression import evaluate_in_batch, regression_curves
from metaloss.plots.base import titled
from metaloss.plots.regression import REGRESSION_VIEW, describe_regression, growth_exponent


@pytest.fixture
def loss_file(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    loss = LearnedLoss(("residual", "abs_residual", "target"), hidden=(8,))
    return save_loss(
        loss, tmp_path / "loss.safetensors", {"name": "tiny", "task": {"family": "sine"}}
    )


def test_inspect_writes_a_png_and_prints_a_summary(
    loss_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "figs" / "loss.png"
    assert main(["inspect", str(loss_file), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000
    text = capsys.readouterr().out
    assert "input features: residual, abs_residual, target" in text
    assert "trained on: tiny (task family sine)" in text
    assert text.count("growth at large residuals") == 2
    assert "symmetry in the residual" in text
    assert "value at zero residual (targets -2, 0, 2): 0, 0, 0" in text  # zero_at_target


def test_inspect_accepts_a_zoo_name(
    loss_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (zoo / "demo.safetensors").write_bytes(loss_file.read_bytes())
    monkeypatch.setattr(metaloss.zoo, "ZOO_DIR", zoo)
    assert main(["inspect", "demo"]) == 0
    assert capsys.readouterr().out.startswith("demo:")


def test_inspect_unknown_name_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", "no-such-loss-anywhere"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "neither a file nor a zoo name" in err


@pytest.mark.parametrize(
    ("name", "word", "slope"),
    [("mse", "quadratic", 2.0), ("l1", "linear", 1.0), ("huber", "linear", 7 / 6)],
)
def test_growth_of_the_hand_designed_losses(name: str, word: str, slope: float) -> None:
    loss = baseline(name)
    assert growth_exponent(loss) == pytest.approx(slope, rel=0.02)
    assert growth_exponent(loss, sign=-1.0) == pytest.approx(slope, rel=0.02)
    lines = describe_regression(loss)
    assert f"pred > target, |r| 2.5 -> 5): {word} " in lines[0]
    assert "symmetric (" in _line(lines, "symmetry")
    assert "not redescending" in _line(lines, "influence")


def _line(lines: list[str], start: str) -> str:
    return next(line for line in lines if line.startswith(start))


def _bounded(pred: Tensor, target: Tensor) -> Tensor:
    return 1 - torch.exp(-((pred - target) ** 2))


def _lopsided(pred: Tensor, target: Tensor) -> Tensor:
    r = pred - target
    return torch.where(r > 0, r**2, r.abs())


def test_describes_bounded_and_asymmetric_losses() -> None:
    bounded = describe_regression(_bounded)
    assert ": bounded " in bounded[0] and ": bounded " in bounded[1]
    lopsided = describe_regression(_lopsided)
    assert ": quadratic " in lopsided[0] and ": linear " in lopsided[1]
    assert "asymmetric (" in _line(lopsided, "symmetry")
    assert "; redescending" in _line(bounded, "influence")


def test_batch_level_features_are_evaluated_in_a_fixed_reference_batch() -> None:
    scaled = LearnedLoss(("scaled_residual", "residual_scale"), hidden=(8,))
    curves = regression_curves(scaled)
    assert curves["batch_dependent"].item() == 1.0
    assert regression_curves(baseline("mse"))["batch_dependent"].item() == 0.0
    # the value at one probe equals the loss of that probe inside an explicit batch of scale 1
    probe = torch.tensor([[3.0]])
    value, _ = evaluate_in_batch(scaled, probe, torch.zeros(1, 1))
    batch = torch.cat([probe, torch.tensor([[1.0], [-1.0], [1.0]])])
    assert value.item() == pytest.approx(
        scaled.per_sample(batch, torch.zeros(4, 1))[0].item(), rel=1e-6
    )
    column = int(torch.argmin((curves["residual"] - 3.0).abs()))
    assert curves["value"][1, column].item() == pytest.approx(value.item(), rel=1e-4)
    assert "depends on the batch" in describe_regression(scaled)[-1]


def test_a_weight_form_loss_is_drawn_as_the_loss_it_descends() -> None:
    loss = LearnedLoss(("abs_scaled_residual",), hidden=(4,), output="sigmoid", form="weight")
    with torch.no_grad():
        for parameter in loss.parameters():
            parameter.zero_()  # w = sigmoid(0) = 0.5 everywhere: half of MSE
    curves = regression_curves(loss)
    r = curves["residual"]
    assert curves["weight_form"].item() == 1.0
    # scaled to w(0) = 1, a constant weight is exactly MSE: r^2 and 2 r
    torch.testing.assert_close(curves["grad"][1], 2 * r)
    torch.testing.assert_close(curves["value"][1], r**2, atol=1e-5, rtol=1e-5)
    lines = describe_regression(loss)
    assert ": quadratic " in lines[0] and ": quadratic " in lines[1]
    assert "form 'weight'" in lines[-1]


def test_a_target_dependent_weight_keeps_its_relative_weights_in_the_curves() -> None:
    torch.manual_seed(0)
    loss = LearnedLoss(("target",), hidden=(3,), output="softplus", form="weight").double()
    curves = regression_curves(loss)
    r, targets = curves["residual"], curves["target"]
    with torch.no_grad():  # the weight of each target's samples (the only feature is the target)
        weights = torch.nn.functional.softplus(loss.net(targets[:, None, None]).flatten())
    assert float(weights.max() / weights.min()) > 1.05  # the targets are weighted differently
    slopes = curves["grad"] / (2 * r)  # 2 w r / (2 r): each row's weight, once scaled
    near = int(torch.argmin(r.abs())) + 1
    # one factor for all targets: the rows keep the ratios of the weights, and their mean is 1
    torch.testing.assert_close(slopes[:, near], weights / weights.mean())
    torch.testing.assert_close(curves["value"][:, -1], (weights / weights.mean()) * r[-1] ** 2)


def _shifted(pred: Tensor, target: Tensor) -> Tensor:
    """A target-dependent loss: for target -2 its minimum is -9 at residual +1.7 (like the sine
    loss in issue 16), for target 0 at 0, for target 2 it is 0 at residual -1.7."""
    r = pred - target
    return (r + 0.85 * target) ** 2 - 9.0 * (target < 0).to(pred.dtype)


def test_the_minimum_per_target_and_target_dependence_are_reported() -> None:
    lines = describe_regression(_shifted)
    minimum = _line(lines, "minimum per target")
    assert "target -2: -9 at residual +1.7" in minimum
    assert "target 0: 0 at residual 0" in minimum and "target 2: 0 at residual -1.7" in minimum
    assert "away from zero residual for target(s) -2, 2" in _line(lines, "the minimum is away")
    assert "the shape depends on the target" in _line(lines, "dependence on the target")
    mse = describe_regression(baseline("mse"))
    assert not any(line.startswith("the minimum is away") for line in mse)
    assert "none to speak of" in _line(mse, "dependence on the target")


def test_a_text_only_kind_with_out_writes_no_figure_and_still_summarises(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x.png"
    assert main(["inspect", "multitask", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "input features:" in text and "trained on: multitask" in text
    assert text.rstrip().endswith(
        "figure: none written (loss kind 'multitask' has no shape view: text summary only)"
    )
    assert not out.exists()


def test_figures_are_titled_high_resolution_and_readable(loss_file: Path, tmp_path: Path) -> None:
    from PIL import Image

    out = tmp_path / "loss.png"
    assert main(["inspect", str(loss_file), "--out", str(out)]) == 0
    with Image.open(out) as image:
        assert image.info["dpi"][0] >= 119.9 and image.width >= 1000
    figure = REGRESSION_VIEW.figure(regression_curves(LearnedLoss(hidden=(4,))))
    titled(figure, "loss.safetensors (trained on tiny)")
    assert figure._suptitle is not None
    assert figure._suptitle.get_text() == "loss.safetensors (trained on tiny)"
    legend = figure.axes[0].get_legend()
    assert legend is not None and min(t.get_fontsize() for t in legend.get_texts()) >= 9
