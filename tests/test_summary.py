"""TensorBoard output of a tiny meta-training run, read back from the event files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tbparse import SummaryReader
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util import tensor_util

from metaloss.config import load_config, parse
from metaloss.losses import LearnedLoss, baseline
from metaloss.losses.kinds import KINDS, KindSpec, register_kind
from metaloss.losses.regression import regression_curves
from metaloss.outer.trainer import MetaTrainer
from metaloss.plots import figure_to_array, shape_view
from metaloss.plots.regression import REGRESSION_VIEW
from metaloss.summary import SummaryCallback

INNER_STEPS = 3
META_STEPS = 4
SHAPE_EVERY = 2

# tbparse 0.0.9 calls a pandas method pandas now deprecates; not our code.
pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("summary_run")
    config = parse(
        {
            "learner": {"hidden": [8]},
            "loss": {"hidden": [8]},
            "inner": {"steps": INNER_STEPS},
            "outer": {
                "steps": META_STEPS,
                "meta_batch": 2,
                "val_every": 2,
                "val_tasks": 3,
                "shape_every": SHAPE_EVERY,
            },
        }
    )
    summary = SummaryCallback(out)
    try:
        MetaTrainer(config, None, callbacks=[summary]).train()
    finally:
        summary.close()
    return out


@pytest.fixture(scope="module")
def events(run_dir: Path) -> EventAccumulator:
    accumulator = EventAccumulator(
        str(run_dir), size_guidance={"images": 0, "tensors": 0, "histograms": 0}
    )
    accumulator.Reload()
    return accumulator


def test_meta_scalars_are_logged_every_step(run_dir: Path) -> None:
    scalars = SummaryReader(str(run_dir)).scalars
    for tag in (
        "meta/train_objective",
        "meta/grad_norm",
        "meta/skipped_steps",
        "time/summary_seconds",
    ):
        steps = sorted(scalars[scalars.tag == tag].step)
        assert steps == list(range(1, META_STEPS + 1)), tag
    valid = scalars[scalars.tag == "meta/valid_objective"]
    assert sorted(valid.step) == [0, 2, 4]


def test_inner_curves_run_over_the_inner_steps(run_dir: Path) -> None:
    scalars = SummaryReader(str(run_dir)).scalars
    for tag in ("inner/start_curve", "inner/end_curve", "inner/objective_curve"):
        curve = scalars[scalars.tag == tag].sort_values("step")
        assert list(curve.step) == list(range(INNER_STEPS + 1)), tag
        assert np.isfinite(curve.value).all()
    start = scalars[scalars.tag == "inner/start_curve"].sort_values("step").value.to_numpy()
    end = scalars[scalars.tag == "inner/end_curve"].sort_values("step").value.to_numpy()
    assert start[0] == pytest.approx(end[0])  # same tasks and initialisations before any step


def test_shape_figure_is_an_image_every_n_steps(events: EventAccumulator) -> None:
    images = events.Images("shape/figure")
    assert [im.step for im in images] == [0, 2, 4]
    assert images[0].width > 100 and images[0].height > 100
    assert events.Images("best/shape_figure")


def test_shape_tensors_read_back_as_the_curves(events: EventAccumulator) -> None:
    values = [tensor_util.make_ndarray(e.tensor_proto) for e in events.Tensors("shape/value")]
    grads = [tensor_util.make_ndarray(e.tensor_proto) for e in events.Tensors("shape/grad")]
    residual = tensor_util.make_ndarray(events.Tensors("shape/residual")[0].tensor_proto)
    assert [e.step for e in events.Tensors("shape/value")] == [0, 2, 4]
    assert values[0].shape == grads[0].shape == (3, residual.shape[0])
    zero = int(np.argmin(np.abs(residual)))
    assert np.allclose(values[0][:, zero], 0.0, atol=1e-5)  # zero_at_target
    assert not np.allclose(values[0], values[-1])  # the loss changed during meta-training


def test_per_sample_histograms(events: EventAccumulator) -> None:
    tags = events.Tags()["histograms"]
    for tag in (
        "losses/value_inner_start",
        "losses/weight_inner_start",
        "losses/value_inner_end",
        "losses/weight_inner_end",
    ):
        assert tag in tags
        histogram = events.Histograms(tag)[0].histogram_value
        assert histogram.num == 3 * 10  # 3 validation tasks x 10 inner-training samples
        assert histogram.min >= 0 if tag.startswith("losses/weight") else True


def test_config_text_and_hparams_in_the_run_folder(run_dir: Path) -> None:
    reader = SummaryReader(str(run_dir))
    assert "config" in set(reader.text.tag)
    hparams = dict(zip(reader.hparams.tag, reader.hparams.value, strict=True))
    assert hparams["outer.shape_every"] == SHAPE_EVERY
    scalars = reader.scalars
    assert "hparam/best_valid_objective" in set(scalars.tag)
    assert all(
        Path(d).resolve() == run_dir.resolve()
        for d in {p.parent for p in run_dir.rglob("events.out.tfevents.*")}
    )


def test_regression_curves_match_a_known_loss() -> None:
    curves = regression_curves(baseline("mse"))
    r = curves["residual"]
    assert torch.allclose(curves["value"], (r**2).expand_as(curves["value"]), atol=1e-5)
    assert torch.allclose(curves["grad"], (2 * r).expand_as(curves["grad"]), atol=1e-4)


def test_shape_views_dispatch_on_kind_and_can_be_extended() -> None:
    assert shape_view("regression") is REGRESSION_VIEW
    with pytest.raises(ValueError, match="no shape view for 'toy'"):
        shape_view("toy")
    try:
        register_kind(
            KindSpec("toy", LearnedLoss, shape_view="metaloss.plots.regression:REGRESSION_VIEW")
        )
        view = shape_view("toy")
        image = figure_to_array(view.figure(view.curves(LearnedLoss(("residual",), hidden=(4,)))))
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
    finally:
        KINDS.pop("toy", None)


def test_clean_and_corrupted_weights_are_split_for_outlier_tasks(tmp_path: Path) -> None:
    config = load_config(
        Path(__file__).parents[1] / "configs" / "outliers.yaml",
        [
            "learner.hidden=[8]",
            "loss.hidden=[8]",
            "inner.steps=2",
            "outer.steps=1",
            "outer.meta_batch=2",
            "outer.val_tasks=2",
            "outer.val_every=1",
        ],
    )
    summary = SummaryCallback(tmp_path, shape_every=1)
    try:
        MetaTrainer(config, None, callbacks=[summary]).train()
    finally:
        summary.close()
    accumulator = EventAccumulator(str(tmp_path), size_guidance={"histograms": 0})
    accumulator.Reload()
    clean = accumulator.Histograms("losses/weight_inner_end_clean")[0].histogram_value
    corrupted = accumulator.Histograms("losses/weight_inner_end_corrupted")[0].histogram_value
    everything = accumulator.Histograms("losses/weight_inner_end")[0].histogram_value
    assert corrupted.num > 0 and clean.num > 0
    assert clean.num + corrupted.num == everything.num == 2 * config.task.n_train  # type: ignore[attr-defined]
