"""Configs: validation errors are one line that names the field and what was expected."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from metaloss.config import ConfigError, apply_overrides, load_config, parse, to_dict


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"outer": {"steps": -3}}, "outer.steps: expected an integer >= 1, got -3"),
        ({"outer": {"steps": "many"}}, "outer.steps: expected an integer >= 1, got 'many'"),
        ({"inner": {"lr": 0}}, "inner.lr: expected a number > 0, got 0.0"),
        (
            {"inner": {"optimizer": "rmsprop"}},
            "inner.optimizer: expected one of 'sgd', 'adam', got 'rmsprop'",
        ),
        ({"inner": {"stepz": 3}}, "inner.stepz: expected a known setting"),
        ({"task": {"family": "nope"}}, "task.family: expected one of"),
        ({"task": {"amplitude": [1.0]}}, "task.amplitude: expected a list of 2 values"),
        ({"learner": {"hidden": [40, 0]}}, "learner.hidden[1]: expected an integer >= 1, got 0"),
        (
            {"outer": {"estimator": "truncated_grad", "truncation": 10}},
            "outer.truncation: expected fewer than",
        ),
        ({"outer": 5}, "outer: expected a mapping of settings, got 5"),
    ],
)
def test_bad_values_give_one_line_naming_the_field(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(data)
    text = str(info.value)
    assert message in text
    assert "\n" not in text


def test_defaults_round_trip_through_a_plain_mapping() -> None:
    config = parse({})
    assert parse(to_dict(config)) == config


def test_overrides_are_parsed_as_yaml_values() -> None:
    data = apply_overrides(
        {"outer": {"steps": 5}}, ["outer.steps=50", "inner.lr=0.01", "loss.hidden=[8,8]"]
    )
    config = parse(data)
    assert (config.outer.steps, config.inner.lr, config.loss.hidden) == (50, 0.01, (8, 8))
    with pytest.raises(ConfigError, match="expected key=value"):
        apply_overrides({}, ["outer.steps"])


def _missing(written: object, loaded: object, path: str = "") -> list[str]:
    """Settings of ``written`` (a YAML file's data) absent from, or different in, ``loaded``."""
    if isinstance(written, dict):
        if not isinstance(loaded, dict):
            return [path]
        return [m for k, v in written.items() for m in _missing(v, loaded.get(k), f"{path}.{k}")]
    if isinstance(written, list):
        if not isinstance(loaded, list) or len(loaded) != len(written):
            return [path]
        pairs = enumerate(zip(written, loaded, strict=True))
        return [m for i, (w, g) in pairs for m in _missing(w, g, f"{path}[{i}]")]
    return [] if written == loaded else [f"{path}: {written!r} in the file, {loaded!r} loaded"]


def test_shipped_configs_load(tmp_path: Path) -> None:
    import yaml

    paths = sorted(Path("configs").glob("*.yaml"))
    assert len(paths) >= 5
    for path in paths:
        loaded = to_dict(load_config(path))  # every setting the file writes is the one loaded
        assert _missing(yaml.safe_load(path.read_text()), loaded) == [], path
    bad = tmp_path / "bad.yaml"
    bad.write_text("outer: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.yaml")


def test_cli_reports_a_bad_override_in_one_line_without_a_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "metaloss",
            "train",
            "configs/sine.yaml",
            "--out",
            str(tmp_path / "r"),
            "--set",
            "outer.steps=0",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "metaloss: config error: outer.steps: expected an integer >= 1, got 0"
    )
    assert not (tmp_path / "r").exists()
