"""Hostile and careless configs and overrides: each is refused in one line naming the field or
file, before anything is written, in bounded time and memory; numbers YAML 1.1 misreads are read
as numbers."""

from __future__ import annotations

import os
import resource
from pathlib import Path
from typing import Any, Literal

import pytest
from _hostile import SINE, assert_one_line, make_workdir, refused, run_subprocess

from metaloss.config import ConfigError, _describe, load_config, parse

pytestmark = pytest.mark.timeout(120)
workdir = pytest.fixture(make_workdir)

BOMB = (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    + "".join(
        f"{b}: &{b} [{', '.join(['*' + a] * 9)}]\n"
        for a, b in zip("abcdefgh", "bcdefghi", strict=True)
    )
    + "name: *i\n"
)


# --------------------------------------------------------------------------------------------
# Numbers in scientific notation (PyYAML reads 1e-3 as a string).


@pytest.mark.parametrize(
    ("text", "value"), [("1e-3", 1e-3), ("1E-3", 1e-3), (".5e2", 50.0), ("2.5e+1", 25.0)]
)
def test_scientific_notation_is_a_number_in_overrides_and_files(
    text: str, value: float, tmp_path: Path
) -> None:
    assert load_config(None, [f"inner.lr={text}"]).inner.lr == value
    path = tmp_path / "c.yaml"
    path.write_text(f"inner:\n  lr: {text}\nevaluation:\n  lr_grid: [{text}, {text}]\n")
    config = load_config(path)
    assert config.inner.lr == value and config.evaluation.lr_grid == (value, value)


def test_negative_scientific_notation_where_negatives_are_allowed() -> None:
    space = "tune.space=[{param: inner.lr, low: -1e-3, high: 1E-1}]"
    (entry,) = load_config(None, [space]).tune.space
    assert (entry.low, entry.high) == (-1e-3, 0.1)
    with pytest.raises(ConfigError, match=r"inner.lr: expected a number > 0, got -0.001"):
        load_config(None, ["inner.lr=-1e-3"])


def test_strings_stay_strings_where_a_string_is_expected(tmp_path: Path) -> None:
    assert load_config(None, ["name=1e-3"]).name == "1e-3"
    path = tmp_path / "c.yaml"
    path.write_text("name: 1E-3\nbenchmark:\n  losses: [1e-3]\n")
    config = load_config(path)
    assert config.name == "1E-3" and config.benchmark.losses == ("1e-3",)
    with pytest.raises(ConfigError, match=r"outer\.steps: expected an integer"):
        load_config(None, ["outer.steps=1e3"])  # an integer setting takes integers only


# --------------------------------------------------------------------------------------------
# Refusals through the command line: exit 2, one line, nothing created.

BIG = str(10**30)
OVERRIDES = [
    (f"outer.meta_batch={BIG}", "outer.meta_batch: expected an integer <= 65536, got 1000"),
    (f"seed={BIG}", "seed: expected an integer <= 4294967295"),
    ("seed=-1", "seed: expected an integer >= 0, got -1"),
    (f"learner.hidden=[{10**12}]", "learner.hidden[0]: expected an integer <= 4096"),
    (
        f"loss.hidden=[{','.join(['8'] * 40)}]",
        "loss.hidden: expected a list of integers with at most 32 items",
    ),
    (f"tune.seed={2**32}", "tune.seed: expected an integer <= 4294967295"),
    (f"task.n_train={BIG}", "task.n_train: expected an integer <= 2147483647"),
    (
        "evaluation.lr_grid=[]",
        "evaluation.lr_grid: expected a list of numbers with at least 1 item",
    ),
    ("loss.features=[]", "loss.features: expected a list of strings with at least 1 item"),
    ("inner.lr=.nan", "inner.lr: expected a finite number"),
    ("inner.lr=.inf", "inner.lr: expected a finite number"),
    (f"inner.lr={10**400}", "inner.lr: expected a finite number"),
    ("inner.lr=1e400", "inner.lr: expected a finite number"),
    ("outer.steps=many", "outer.steps: expected an integer >= 1"),
    ("outer.steps", "expected key=value"),
    ("=5", "expected key=value"),
    ("outer..steps=1", "expected a dotted key"),
    ("outer=5", "outer: expected a mapping of settings, got 5"),
    ("outer.steps.x=1", "'steps' is a value, not a group of settings"),
    ("task.family=[1]", "task.family: expected one of"),
    ("inner.optimizer=[sgd]", "inner.optimizer: expected one of 'sgd', 'adam'"),
    ("x" * 5000 + "=1", "expected a known setting"),
    ("\x1b[31mred=1", "\\x1b[31mred: expected a known setting"),
    (f"name={'n' * 20000}", "name: expected a string of at most 10000 characters"),
    ("name=&a [*a]", "a YAML alias refers to itself"),
    ("learner.hidden=" + "[" * 2000 + "]" * 2000, "nested too deeply"),
    ("outer={estimator: truncated_grad, truncation: 10}", "outer.truncation: expected fewer than"),
]


@pytest.mark.parametrize(
    ("tp", "words"),
    [
        (int, "an integer"),
        (tuple[int, ...], "a list of integers"),
        (tuple[float, ...], "a list of numbers"),
        (tuple[str, ...], "a list of strings"),
        (tuple[bool, ...], "a list of true/false values"),
        (int | None, "an integer or null"),
        (tuple[int | None, ...], "a list of integers or nulls"),
        (tuple[float, float], "a list of 2 values (a number, a number)"),
        (tuple[tuple[float, float], ...], "a list of lists of 2 values (a number, a number)"),
        (tuple[Literal["sgd", "adam"], ...], "a list of values, each one of 'sgd', 'adam'"),
    ],
)
def test_expected_types_are_named_with_the_right_article_and_plural(tp: Any, words: str) -> None:
    assert _describe(tp) == words


def test_a_list_setting_is_described_in_plural_in_its_error() -> None:
    with pytest.raises(ConfigError) as error:
        parse({"learner": {"hidden": [8] * 100}})
    assert "learner.hidden: expected a list of integers with at most" in str(error.value)
    assert " of an " not in str(error.value) and " of a " not in str(error.value)


@pytest.mark.parametrize(("override", "message"), OVERRIDES, ids=[o[:30] for o, _ in OVERRIDES])
def test_bad_overrides_are_refused_in_one_line_before_any_side_effect(
    override: str, message: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = refused(["train", str(SINE), "--set", override], capsys, workdir, message, code=2)
    assert line.startswith("metaloss: config error: ") and len(line) < 500


def _bomb_memory_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


CONFIG_FILES = [
    ("bomb.yaml", BOMB.encode(), "YAML values with aliases expanded"),
    ("recursive.yaml", b"name: &a [*a]\n", "a YAML alias refers to itself"),
    ("deep.yaml", b"name: " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested too deeply"),
    ("dup.yaml", b"outer:\n  steps: 5\nouter:\n  lr: 0.1\n", "duplicate key 'outer' (line 3)"),
    ("dupinner.yaml", b"inner:\n  lr: 0.1\n  lr: 0.2\n", "duplicate key 'lr' (line 3)"),
    (
        "tag.yaml",
        b"name: !!python/object/apply:os.system [echo pwned]\n",
        "not valid YAML (line 1)",
    ),
    ("latin1.yaml", "name: caf\xe9\n".encode("latin-1"), "is not UTF-8 text"),
    ("list.yaml", b"- 1\n- 2\n", "expected a mapping of settings"),
    ("broken.yaml", b"outer: [1, 2\n", "not valid YAML"),
    ("huge.yaml", b"# " + b"x" * (2 << 20) + b"\n", "expected a YAML file of at most 1 MiB"),
    ("many.yaml", b"name: [" + b"1," * 150_000 + b"1]\n", "expected at most 10000 YAML values"),
    (
        "escape.yaml",
        b"\x1b[2J: 1\n",
        "escape.yaml: not valid YAML: special characters are not allowed",
    ),
    ("docs.yaml", b"name: a\n---\nname: b\n", "not valid YAML"),
    (
        "bigint.yaml",
        f"outer:\n  meta_batch: {10**30}\n".encode(),
        "outer.meta_batch: expected an integer <= 65536",
    ),
    (
        "emptygrid.yaml",
        b"evaluation:\n  lr_grid: []\n",
        "evaluation.lr_grid: expected a list of numbers with at least 1 item",
    ),
]


@pytest.mark.parametrize(
    ("name", "content", "message"), CONFIG_FILES, ids=[c[0] for c in CONFIG_FILES]
)
def test_bad_config_files_are_refused_in_one_line(
    name: str, content: bytes, message: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = workdir / name
    path.write_bytes(content)
    before = _bomb_memory_kib()
    line = refused(["train", name], capsys, workdir, message, code=2)
    assert _bomb_memory_kib() - before < 200_000, "bounded memory (peak RSS grew by > 200 MB)"
    assert line.startswith("metaloss: config error: ") and len(line) < 500


def test_the_alias_bomb_is_small_and_would_expand_to_a_billion_values() -> None:
    assert len(BOMB) < 600 and BOMB.count("*") == 73


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("/proc/self/mem", "config: cannot read /proc/self/mem"),
        ("/dev/zero", "is not a regular file"),
        ("/dev/null", "is not a regular file"),
        (".", "is a folder, expected a YAML file"),
        ("missing.yaml", "config: no such file 'missing.yaml'"),
    ],
)
def test_files_that_are_not_configs_are_refused(
    source: str, message: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    refused(["train", source], capsys, workdir, message, code=2)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this system")
def test_a_named_pipe_as_the_config_does_not_hang(workdir: Path) -> None:
    os.mkfifo(workdir / "pipe.yaml")
    result = run_subprocess(["train", "pipe.yaml"], workdir, timeout=90)
    assert result.returncode == 2
    assert_one_line(result.stderr, "config: pipe.yaml is not a regular file")
    assert sorted(p.name for p in workdir.iterdir()) == ["pipe.yaml"]


def test_an_empty_config_file_is_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_config(path) == parse({})


@pytest.mark.parametrize(
    ("args", "message", "env"),
    [
        (["--threads", "0", "train"], "--threads: expected an integer from 1 to 1024, got 0", {}),
        (["--threads", "x", "train"], "argument --threads: invalid int value: 'x'", {}),
        (
            ["train"],
            "$METALOSS_THREADS: expected an integer >= 1, got 'many'",
            {"METALOSS_THREADS": "many"},
        ),
        (["train", "--bogus"], "metaloss: error: unrecognized arguments: --bogus", {}),
        (["trian"], "invalid choice: 'trian'", {}),
        (["train", "a.yaml", "b.yaml"], "unrecognized arguments: b.yaml", {}),
    ],
)
def test_command_line_mistakes_are_one_line(
    args: list[str],
    message: str,
    env: dict[str, str],
    workdir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    refused(args, capsys, workdir, message, code=2)


# --------------------------------------------------------------------------------------------
# A baseline parameter the baseline does not take, or a value it refuses: a config error before
# the benchmark starts (it used to end mid-run, or as an "internal error" for an unknown name).

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
BASELINE_VALUES = [
    ("noisy_labels", "{name: gce, param: qq, values: [0.5]}", "baselines[0].param: gce takes q, got 'qq'"),
    ("noisy_labels", "{name: gce, param: q, values: [0.5, 2]}", "baselines[0].values[1]: gce refuses q=2"),
    ("noisy_labels", "{name: ce_temperature, param: temperature, values: [0]}", "baselines[0].values[0]: ce_temperature refuses temperature=0"),
    ("noisy_labels", "{name: label_smoothing, param: epsilon, values: [1.5]}", "baselines[0].values[0]: label_smoothing refuses epsilon=1.5"),
    ("noisy_labels", "{name: sce, param: alpha, values: [-1]}", "baselines[0].values[0]: sce refuses alpha=-1"),
    ("noisy_labels", "{name: ce, param: q, values: [1]}", "baselines[0].param: ce takes no parameter, got 'q'"),
    ("outliers", "{name: huber, param: delta, values: [1, -1]}", "baselines[0].values[1]: huber refuses delta=-1"),
    ("outliers", "{name: tukey, param: c, values: [0]}", "baselines[0].values[0]: tukey refuses c=0"),
    ("outliers", "{name: barron, param: scale_init, values: [-1]}", "baselines[0].values[0]: barron refuses scale_init=-1"),
    ("cartpole", "{name: ppo_clip, param: clip_coef, values: [0.2, -1]}", "baselines[0].values[1]: expected a clip epsilon 0 < clip_coef < 1, got -1"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("config", "spec", "message"), BASELINE_VALUES, ids=[m for *_, m in BASELINE_VALUES]
)
def test_a_baseline_parameter_it_refuses_is_a_config_error_before_the_benchmark(
    config: str, spec: str, message: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "benchmark",
        str(CONFIGS / f"{config}.yaml"),
        "--set",
        f"benchmark.baselines=[{spec}]",
        "--out",
        "report",
    ]
    line = refused(argv, capsys, workdir, f"benchmark.{message}", code=2)
    assert line.startswith("metaloss: config error: ") and len(line) < 500


TUNE_RANGES = [
    ("outliers", "huber", "{param: huber.delta, low: -5, high: 5}", "tune.space[0].low: huber refuses delta=-5"),
    ("noisy_labels", "gce", "{param: gce.q, choices: [0.5, 3]}", "tune.space[0].choices: gce refuses q=3"),
    ("noisy_labels", "label_smoothing", "{param: label_smoothing.epsilon, low: 0.1, high: 2}", "tune.space[0].high: label_smoothing refuses epsilon=2"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("config", "target", "entry", "message"), TUNE_RANGES, ids=[m for *_, m in TUNE_RANGES]
)
def test_a_tuning_range_reaching_values_the_baseline_refuses_is_a_config_error(
    config: str,
    target: str,
    entry: str,
    message: str,
    workdir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["tune", str(CONFIGS / f"{config}.yaml"), "--target", target, "--trials", "2"]
    line = refused(
        [*argv, "--set", f"tune.space=[{entry}]", "--out", "t"], capsys, workdir, message, code=2
    )
    assert line.startswith("metaloss: config error: ")
