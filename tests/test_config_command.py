"""``metaloss config`` and configs by name: every setting printed with its value, default, range
and documentation; shipped configs resolved by name, also outside the clone; every command's
``--help`` naming the config sections."""

from __future__ import annotations

import dataclasses
import fnmatch
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from metaloss.cli import main
from metaloss.config import ConfigError, load_config, to_dict
from metaloss.config_docs import expected_text, setting_rows
from metaloss.named_configs import CONFIG_DIR, config_names, resolve_config

ROOT = Path(__file__).parents[1]


def _leaf_keys(data: dict, prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for key, value in data.items():
        if isinstance(value, dict):
            keys |= _leaf_keys(value, f"{prefix}{key}.")
        else:
            keys.add(f"{prefix}{key}")
    return keys


@pytest.mark.parametrize("name", ["outliers", "cartpole", "noisy_labels"])
def test_every_setting_of_the_config_has_a_row(name: str) -> None:
    config = load_config(name)
    rows = [r for r in setting_rows(config) if not r.entry_field]
    assert {r.key for r in rows} == _leaf_keys(to_dict(config))
    assert all(r.doc for r in rows), [r.key for r in rows if not r.doc]


def test_config_prints_value_default_range_and_documentation(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["config", "outliers", "--set", "inner.lr=0.02"]) == 0
    lines = capsys.readouterr().out.splitlines()
    at = lines.index("  inner.steps = 50 *   (default 10; integer >= 1 and <= 10000)")
    assert lines[at + 1].strip() == "inner optimisation steps K"
    assert "  inner.lr = 0.02 *   (default 0.01; number > 0)" in lines
    assert "  inner.optimizer = adam *   (default sgd; one of 'sgd' | 'adam')" in lines
    assert "  outer.meta_batch = 16   (default 16; integer >= 1 and <= 65536)" in lines  # no star
    # the task section is the outlier family's own class, and says so
    assert any(line.startswith("  task.epsilon = [0.0, 0.5] *") for line in lines)
    assert any("family 'outliers' uses OutliersConfig" in line for line in lines)
    # entries of a list of structured settings are documented field by field
    assert any(line.strip().startswith("entry field param (default ''; string)") for line in lines)


def test_nested_task_sections_and_changed_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "cartpole", "--changed"]) == 0
    out = capsys.readouterr().out
    assert "  task.ppo.num_steps = 64 *   (default 128; integer >= 1)" in out
    settings = [line for line in out.splitlines() if re.match(r"^ *[a-z_.]+ = ", line)]
    assert settings and all(" *   (" in line for line in settings)


def test_sine_has_no_outlier_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert "sine.yaml" in out and "task.amplitude" in out  # the default job's shipped config
    assert "loss.form = weight" in out
    assert "task.epsilon" not in out


def test_expected_text() -> None:
    assert expected_text(tuple[int, ...], {"ge": 1}) == "list of integers >= 1"
    assert expected_text(tuple[float, float], {"gt": 0}) == "list of 2 numbers > 0"
    assert expected_text(float, {"ge": 0, "lt": 1}) == "number >= 0 and < 1"
    assert expected_text(bool) == "true | false"


def test_list_shows_every_shipped_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--list"]) == 0
    out = capsys.readouterr().out
    for name in config_names():
        assert f"  {name} " in out


# ------------------------------------------------------------------------------ by name


def test_names_resolve_to_the_same_config_as_the_clone_paths() -> None:
    assert {"sine", "outliers", "noisy_labels", "multitask", "cartpole"} <= set(config_names())
    for name in config_names():
        assert resolve_config(name) == CONFIG_DIR / f"{name}.yaml"
        assert resolve_config(f"{name}.yaml") == CONFIG_DIR / f"{name}.yaml"
        assert load_config(name) == load_config(ROOT / "configs" / f"{name}.yaml")


def test_the_clone_configs_folder_is_the_package_folder() -> None:
    """One location: the clone's configs/ is a link to metaloss/configs/ (what the wheel ships)."""
    assert (ROOT / "configs").resolve() == CONFIG_DIR.resolve()


def test_an_existing_file_wins_over_a_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("outliers").write_text("name: mine\n")
    assert load_config("outliers").name == "mine"
    assert load_config("outliers.yaml").name == "outliers"


def test_unknown_names_and_missing_paths_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # outside the clone: no configs/ folder
    with pytest.raises(
        ConfigError, match="no such file 'outlierz', nor a shipped config of that name"
    ) as info:
        load_config("outlierz")
    assert "outliers" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="the shipped config of that name is 'outliers'"):
        load_config("configs/outliers.yaml")


def test_train_accepts_a_name_outside_the_clone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    tiny = [
        "--set",
        "outer.steps=1",
        "--set",
        "inner.steps=2",
        "--set",
        "outer.val_tasks=2",
        "--set",
        "outer.meta_batch=2",
        "--no-eval",
    ]
    assert main(["train", "sine", "--out", "runs/x", *tiny]) == 0
    assert load_config(tmp_path / "runs" / "x" / "config.yaml").name == "sine"


@pytest.mark.parametrize("command", ["train", "benchmark", "tune", "rl-train", "rl-benchmark"])
def test_help_lists_the_config_sections(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "config sections: task (task family), learner, loss (learned loss)" in out
    assert "metaloss config CONFIG_OR_NAME" in out


# ------------------------------------------------------------------------------ packaging


def test_package_data_declares_every_shipped_config() -> None:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = project["tool"]["setuptools"]["package-data"]["metaloss"]
    for path in CONFIG_DIR.glob("*.yaml"):
        relative = path.relative_to(CONFIG_DIR.parent).as_posix()
        assert any(fnmatch.fnmatch(relative, p) for p in patterns), relative


@pytest.mark.slow
def test_the_wheel_ships_the_configs(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a copy: building in the clone would leave build/ there
    shutil.copytree(ROOT / "metaloss", source / "metaloss", symlinks=False)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-w", str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = tmp_path.glob("metaloss-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in config_names():
        assert f"metaloss/configs/{name}.yaml" in names


def test_rows_are_dataclass_fields() -> None:
    """A row's default is the field's declared default (not the config's value)."""
    config = load_config("outliers")
    row = next(r for r in setting_rows(config) if r.key == "task.clean_fraction")
    cls = type(config.task)
    field = next(f for f in dataclasses.fields(cls) if f.name == "clean_fraction")
    assert row.default == field.default and row.value == config.task.clean_fraction  # type: ignore[attr-defined]
