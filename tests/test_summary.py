"""TensorBoard output of a tiny meta-training run, read back from the event files."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from tbparse import SummaryReader
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.hparams import plugin_data_pb2
from tensorboard.util import tensor_util

from metaloss.config import load_config, parse
from metaloss.evaluation.compare import compare_with_mse
from metaloss.losses import LearnedLoss, baseline
from metaloss.losses.kinds import KINDS, KindSpec, register_kind
from metaloss.losses.regression import regression_curves
from metaloss.outer.trainer import MetaTrainer
from metaloss.plots import figure_to_array, shape_view
from metaloss.plots.regression import REGRESSION_VIEW
from metaloss.summary import SummaryCallback
from metaloss.summary_layout import HPARAM_KEYS, METRIC_TAGS, TEST_DELTA_TAG
from metaloss.tasks import make_family

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
        if tag.startswith("losses/weight"):  # |d loss / d pred|: never negative, not all zero
            assert histogram.min >= 0 and histogram.max > 0
        else:  # the loss values of different samples differ
            assert np.isfinite([histogram.min, histogram.max]).all()
            assert histogram.max > histogram.min


def test_config_text_and_hparams_in_the_run_folder(run_dir: Path) -> None:
    reader = SummaryReader(str(run_dir))
    assert "config" in set(reader.text.tag)
    hparams = dict(zip(reader.hparams.tag, reader.hparams.value, strict=True))
    assert set(hparams) == set(HPARAM_KEYS)  # a dozen settings, not the whole config
    assert not any(key.startswith("benchmark.") for key in hparams)
    assert hparams["inner.steps"] == INNER_STEPS and hparams["loss.hidden"] == "8"
    assert all(
        Path(d).resolve() == run_dir.resolve()
        for d in {p.parent for p in run_dir.rglob("events.out.tfevents.*")}
    )


def test_no_single_point_metric_cards_and_metrics_are_series(
    run_dir: Path, events: EventAccumulator
) -> None:
    scalars = SummaryReader(str(run_dir)).scalars
    assert not any(tag.startswith("hparam/") for tag in set(scalars.tag))
    content = events.PluginTagToContent("hparams")["_hparams_/experiment"]
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content).experiment
    metrics = [m.name.tag for m in experiment.metric_infos]
    assert metrics == list(METRIC_TAGS)
    for tag in metrics:
        if tag != TEST_DELTA_TAG:  # written by metaloss train's comparison
            assert (scalars.tag == tag).sum() > 1, tag
    best = scalars[scalars.tag == "meta/best_valid_objective"].sort_values("step").value
    valid = scalars[scalars.tag == "meta/valid_objective"].sort_values("step").value
    assert list(best) == list(np.minimum.accumulate(valid.to_numpy()))


def test_custom_scalars_put_learned_and_reference_curves_on_one_chart(
    run_dir: Path, events: EventAccumulator
) -> None:
    (event,) = events.Tensors("custom_scalars__config__")
    layout = layout_pb2.Layout.FromString(tensor_util.make_ndarray(event.tensor_proto).item())
    charts = {chart.title: chart for category in layout.category for chart in category.chart}
    (title,) = [t for t in charts if t.startswith("inner training")]
    assert title.endswith("vs MSE")
    tags = set(SummaryReader(str(run_dir)).scalars.tag)
    patterns = list(charts[title].multiline.tag)
    for curve in ("inner/start_curve", "inner/end_curve", "inner/objective_curve"):
        assert curve in tags
        assert sum(bool(re.search(p, curve)) for p in patterns) == 1, curve


def test_shape_numbers_are_readable_as_text_tables(events: EventAccumulator) -> None:
    tables = events.Tensors("shape/table/text_summary")
    assert [e.step for e in tables] == [0, 2, 4]
    text = tensor_util.make_ndarray(tables[-1].tensor_proto).item().decode()
    values = tensor_util.make_ndarray(events.Tensors("shape/value")[-1].tensor_proto)
    residual = tensor_util.make_ndarray(events.Tensors("shape/residual")[0].tensor_proto)
    at = int(np.argmin(np.abs(residual - 1.0)))
    row = next(line for line in text.splitlines() if line.startswith("| +1 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert float(cells[1]) == pytest.approx(float(values[0, at]), rel=1e-3, abs=1e-4)
    assert events.Tensors("best/shape_table/text_summary")


def test_the_meta_test_comparison_is_written_as_text_and_a_metric(tmp_path: Path) -> None:
    config = parse(
        {
            "learner": {"hidden": [8]},
            "inner": {"steps": 2},
            "evaluation": {"test_tasks": 4, "grid_tasks": 2, "lr_grid": [0.01, 0.03]},
        }
    )
    loss = LearnedLoss(hidden=(4,))
    comparison = compare_with_mse(loss.per_sample, make_family(config.task), config)
    summary = SummaryCallback(tmp_path)
    summary.close()
    summary.log_comparison(comparison)
    reader = SummaryReader(str(tmp_path))
    scalars = reader.scalars
    (delta,) = scalars[scalars.tag == TEST_DELTA_TAG].value
    learned = next(r for r in comparison.rows if r.name == "learned (tuned lr)")
    assert learned.vs_tuned is not None
    assert delta == pytest.approx(learned.vs_tuned.difference.mean, rel=1e-6)
    text = reader.text[reader.text.tag == "test/results"].value.iloc[0]
    assert "learned (tuned lr)" in text


def test_histograms_and_curves_use_the_validation_condition(tmp_path: Path) -> None:
    """The first meta-validation condition may have another learner than the run's."""
    config = parse(
        {
            "learner": {"hidden": [8]},
            "loss": {"hidden": [8]},
            "inner": {"steps": 2},
            "outer": {
                "steps": 1,
                "meta_batch": 2,
                "val_tasks": 2,
                "shape_every": 1,
                "valid_variants": [{"name": "wide", "set": ["learner.hidden=[5, 5]"]}],
            },
        }
    )
    summary = SummaryCallback(tmp_path)
    try:
        MetaTrainer(config, None, callbacks=[summary]).train()
    finally:
        summary.close()
    scalars = SummaryReader(str(tmp_path)).scalars
    assert (scalars.tag == "inner/end_curve").sum() == 3


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


def test_the_first_group_holds_the_inner_curves_figure(events: EventAccumulator) -> None:
    """``best/`` sorts first in TensorBoard: its images are what a run opens on."""
    tags = events.Tags()
    groups = sorted({t.split("/")[0] for kind in ("images", "scalars") for t in tags[kind]})
    assert groups[0] == "best"
    (image,) = events.Images("best/inner_curves")
    assert image.step == META_STEPS and image.width >= 600
