"""Hostile loss files: pipes, devices, huge headers, many tensors and malformed metadata are
refused in one line (a LossFileError from the library), in bounded work; ``inspect`` prints no
escapes from a file; a zoo name is never shadowed by a local file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from _hostile import REPO, assert_one_line, cli, make_workdir, refused, snapshot
from safetensors.torch import load_file, save_file

from metaloss import LossFileError, load_loss, read_metadata, save_loss, zoo_names
from metaloss.losses import LearnedLoss
from metaloss.zoo import ZOO_RULE

pytestmark = pytest.mark.timeout(120)
workdir = pytest.fixture(make_workdir)


@pytest.fixture
def good(workdir: Path) -> Path:
    torch.manual_seed(0)
    loss = LearnedLoss(("residual", "abs_residual", "target"), hidden=(4,))
    config = {"name": "tiny", "task": {"family": "sine"}}
    extra = {"best_step": 3, "best_valid_objective": 0.5}
    return save_loss(loss, workdir / "good.safetensors", config, extra)


def _meta(path: Path) -> dict[str, Any]:
    return read_metadata(path)


def _write(path: Path, tensors: dict[str, torch.Tensor], meta_json: str) -> Path:
    save_file(tensors, str(path), metadata={"metaloss": meta_json})
    return path


def _raw_file(path: Path, header: bytes, data: bytes = b"") -> Path:
    path.write_bytes(len(header).to_bytes(8, "little") + header + data)
    return path


def _refused_everywhere(
    path: Path | str, match: str, capsys: pytest.CaptureFixture[str], root: Path
) -> None:
    """``load_loss`` raises LossFileError naming the file; ``inspect`` refuses in one line."""
    with pytest.raises(LossFileError) as info:
        load_loss(path)
    message = str(info.value)
    assert "\n" not in message and len(message) < 500 and match in message, message
    refused(["inspect", str(path)], capsys, root, match, code=1)


# --------------------------------------------------------------------------------------------
# Not regular files.


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this system")
def test_a_named_pipe_does_not_hang_load_loss_or_inspect(workdir: Path) -> None:
    """In a fresh process (a regression would block in open()): inspect of the pipe and of a
    link to it, and load_loss, each refused in one line."""
    os.mkfifo(workdir / "pipe.safetensors")
    os.symlink("pipe.safetensors", workdir / "link.safetensors")
    code = (
        "import contextlib, io, sys\n"
        "from metaloss.cli import main\n"
        "from metaloss import load_loss, LossFileError\n"
        "for name in ('pipe.safetensors', 'link.safetensors'):\n"
        "    err = io.StringIO()\n"
        "    with contextlib.redirect_stderr(err):\n"
        "        status = main(['inspect', name])\n"
        "    print(status, err.getvalue(), end='')\n"
        "try:\n"
        "    load_loss('pipe.safetensors')\n"
        "except LossFileError as error:\n"
        "    print('LossFileError', error)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
    )
    pipe, link, loaded = result.stdout.splitlines()
    assert pipe.startswith("1 metaloss: error: loss file: pipe.safetensors is not a regular file")
    assert link.startswith("1 metaloss: error: loss file: link.safetensors is not a regular file")
    assert loaded.startswith("LossFileError loss file: pipe.safetensors is not a regular file")
    assert result.stderr == "" and result.returncode == 0


@pytest.mark.parametrize(
    ("source", "match"),
    [
        ("/dev/zero", "/dev/zero is not a regular file"),
        ("/dev/null", "/dev/null is not a regular file"),
        (".", "is a folder, expected a .safetensors file"),
        ("missing.safetensors", "is neither a file nor a zoo name"),
    ],
)
def test_devices_folders_and_missing_files(
    source: str, match: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _refused_everywhere(source, match, capsys, workdir)


# --------------------------------------------------------------------------------------------
# Bounded work before parsing.


def test_a_header_larger_than_the_limit_is_refused_before_parsing(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _raw_file(workdir / "big.safetensors", b"{" + b" " * (2 << 20) + b"}")
    _refused_everywhere(path, "-byte header, more than the limit of 1 MiB", capsys, workdir)


def test_a_huge_hidden_list_is_refused_fast_with_a_short_message(
    good: Path, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    meta = _meta(good)
    meta["arguments"]["hidden"] = [1] * 200_000
    path = _write(workdir / "wide.safetensors", load_file(str(good)), json.dumps(meta))
    assert path.stat().st_size > 600_000  # the 0.6 MB header of the report
    _refused_everywhere(
        path,
        "arguments.hidden: expected a list of at most 64 items, got '200000 items'",
        capsys,
        workdir,
    )


def test_too_many_tensors_are_refused_before_any_tensor_is_read(
    good: Path, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tensors = {f"t{i}": torch.zeros(1) for i in range(1500)}
    path = _write(workdir / "many.safetensors", tensors, json.dumps(_meta(good)))
    _refused_everywhere(path, "lists 1500 tensors, more than the limit of 1024", capsys, workdir)


@pytest.mark.parametrize(
    ("header", "match"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "not a safetensors file"),
        (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "unreadable header"),
        (b'{"__metadata__": {"metaloss": "' + b"[" * 50_000 + b'"}}', "corrupt metaloss metadata"),
        (b'{"__metadata__": {"metaloss": 5}}', "metadata: expected a JSON string"),
        (b'{"__metadata__": 7}', "without metaloss metadata"),
        (b"{\xff\xfe}", "unreadable header"),
    ],
)
def test_malformed_headers(
    header: bytes, match: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _raw_file(workdir / "bad.safetensors", header)
    _refused_everywhere(path, match, capsys, workdir)


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        (
            {"dtype": "F32", "shape": [4, 3], "data_offsets": [0, 10**12]},
            "expected dtype, shape and data_offsets",
        ),
        ({"dtype": "F32", "shape": [4, 3], "data_offsets": [0, 4000]}, "is truncated"),
        ({"dtype": "EVIL", "shape": [4, 3], "data_offsets": [0, 48]}, "expected dtype, shape"),
        ({"dtype": "F32", "shape": [-4, 3], "data_offsets": [0, 48]}, "expected dtype, shape"),
        ({"dtype": "F32", "shape": [1] * 20, "data_offsets": [0, 4]}, "expected dtype, shape"),
        ({"dtype": "F32", "shape": [4, 3], "data_offsets": [48, 0]}, "expected dtype, shape"),
        ([1, 2], "expected dtype, shape"),
    ],
)
def test_malformed_tensor_entries(
    entry: Any, match: str, good: Path, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    meta = json.dumps(_meta(good))
    header = json.dumps({"__metadata__": {"metaloss": meta}, "net.0.weight": entry}).encode()
    path = _raw_file(workdir / "entry.safetensors", header, b"\0" * 48)
    _refused_everywhere(path, match, capsys, workdir)


# --------------------------------------------------------------------------------------------
# Every malformed metadata value is a LossFileError (never KeyError, TypeError, RuntimeError,
# RecursionError), and inspect says so in one line.

DEEP = "DEEP"
VALUES: list[Any] = [
    None,
    -1,
    0,
    2**40,
    1.5,
    "x",
    "\x1b[31mred\nline",
    "",
    [],
    [1],
    ["a"],
    [[1]],
    {},
    {"a": 1},
    True,
    "y" * 100_000,
    [1] * 5_000,
    DEEP,
]
FIELDS = [
    "format_version", "architecture", "arguments", "task_kind", "features", "output", "config",
    "package_version", "extra", "arguments.features", "arguments.hidden", "arguments.activation",
    "arguments.output", "arguments.zero_at_target", "arguments.kind", "arguments.num_classes",
    "arguments.form", "arguments.reduction", "arguments.bogus", "config.name", "config.task",
    "config.task.family", "extra.best_valid_objective", "extra.best_step",
]  # fmt: skip


def _set(meta: dict[str, Any], field: str, value: Any) -> None:
    node = meta
    *parents, last = field.split(".")
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[last] = value


@pytest.mark.parametrize("field", FIELDS)
def test_every_malformed_metadata_value_is_a_loss_file_error(
    field: str, good: Path, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tensors = load_file(str(good))
    tried = 0
    for value in VALUES:
        meta = _meta(good)
        _set(meta, field, value)
        text = json.dumps(meta).replace(f'"{DEEP}"', "[" * 3000 + "]" * 3000)
        path = _write(workdir / "case.safetensors", tensors, text)
        before = snapshot(workdir)
        try:
            load_loss(path)
            loaded = True
        except LossFileError as error:
            assert "\n" not in str(error) and len(str(error)) < 500, str(error)
            loaded = False
        code, out, err = cli(["inspect", str(path)], capsys)
        assert "\x1b" not in out + err and "internal error" not in err, (field, value, err)
        if loaded:  # a value the loss accepts (e.g. the same one): inspect works
            assert code == 0 and err == "", (field, value, err)
        else:
            assert code == 1 and assert_one_line(err).startswith("metaloss: error: loss file:")
        assert snapshot(workdir) == before
        tried += 1
    assert tried == len(VALUES)


# --------------------------------------------------------------------------------------------
# What inspect prints from a file is sanitised.


def test_inspect_prints_no_escapes_or_newlines_from_the_metadata(
    good: Path, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    meta = _meta(good)
    meta["config"]["name"] = "\x1b[2J\x1b[31mowned\nfake line\rback"
    meta["package_version"] = "1\x07\x1b]0;title\x07"
    name = workdir / "esc\x1b[31m.safetensors"
    _write(name, load_file(str(good)), json.dumps(meta))
    code, out, err = cli(["inspect", str(name)], capsys)
    assert code == 0 and err == ""
    assert "\x1b" not in out and "\r" not in out and "\x07" not in out
    assert "trained on: \\x1b[2J\\x1b[31mowned\\x0afake line\\x0dback" in out
    lines = out.splitlines()
    assert not any(line.startswith("fake line") for line in lines)


# --------------------------------------------------------------------------------------------
# Zoo names against paths: a bare zoo name is always the zoo entry.


@pytest.mark.skipif("robust-regression" not in zoo_names(), reason="zoo loss not installed")
def test_a_local_file_or_folder_named_like_a_zoo_loss_does_not_shadow_the_zoo(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "robust-regression").write_bytes(b"a local file, not the zoo loss")
    (workdir / "noisy-labels").mkdir()
    code, out, err = cli(["inspect", "robust-regression"], capsys)
    assert code == 0 and out.startswith("robust-regression:") and err == ""
    assert load_loss("noisy-labels").kind == "classification"
    _refused_everywhere("./robust-regression", "is not a safetensors file", capsys, workdir)
    _refused_everywhere("./noisy-labels", "is a folder", capsys, workdir)


def test_an_unknown_name_repeats_the_rule(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = refused(
        ["inspect", "robust-regresion"], capsys, workdir, "neither a file nor a zoo name", 1
    )
    assert ZOO_RULE in line


def test_a_local_file_with_a_name_the_zoo_lacks_is_a_path(
    good: Path, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    os.rename(good, workdir / "mine")
    code, out, _ = cli(["inspect", "mine"], capsys)
    assert code == 0 and out.startswith("mine:")
