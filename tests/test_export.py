"""The loss file and ``load_loss``: round trip through a fresh process, reductions, gradients,
``torch.compile``, and a clear one-line refusal of every kind of bad file (pickles unexecuted)."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import metaloss.export as export
import metaloss.zoo
from metaloss import LossFileError, load_loss, read_metadata, save_loss, zoo_names
from metaloss.cli import main
from metaloss.config import parse, to_dict
from metaloss.losses import LearnedLoss
from metaloss.outer.trainer import MetaTrainer

TINY = {
    "learner": {"hidden": [8]},
    "loss": {"hidden": [8, 8]},
    "inner": {"steps": 3},
    "outer": {"steps": 3, "meta_batch": 2, "val_every": 3, "val_tasks": 2},
}

# A subprocess that knows nothing of the test: load the file, evaluate every reduction (plain
# and, if a backend is named, through torch.compile) and write outputs and d/dpred to a file.
LOADER = textwrap.dedent(
    """
    import sys, torch
    from safetensors.torch import load_file, save_file
    from metaloss import load_loss
    loss_path, inputs_path, out_path, backend = sys.argv[1:5]
    inputs = load_file(inputs_path)
    results = {}
    for reduction in ("mean", "sum", "none"):
        criterion = load_loss(loss_path, reduction=reduction)
        runs = {"plain": criterion}
        if backend != "-":
            runs["compiled"] = torch.compile(criterion, backend=backend)
        for name, fn in runs.items():
            pred = inputs["pred"].clone().requires_grad_()
            value = fn(pred, inputs["target"])
            (grad,) = torch.autograd.grad(value.sum(), pred)
            results[f"{name}_{reduction}_value"] = value.detach().reshape(-1)
            results[f"{name}_{reduction}_grad"] = grad
    save_file(results, out_path)
    """
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[LearnedLoss, Path]:
    """A loss meta-trained for a few steps on sine, saved to a file."""
    config = parse(TINY)
    result = MetaTrainer(config).train()
    path = tmp_path_factory.mktemp("loss") / "loss.safetensors"
    save_loss(result.loss, path, to_dict(config), {"best_step": result.best_step})
    return result.loss, path


def _inputs(tmp_path: Path) -> tuple[dict[str, torch.Tensor], Path]:
    generator = torch.Generator().manual_seed(3)
    inputs = {
        "pred": 3 * torch.randn(7, 1, generator=generator),
        "target": 3 * torch.randn(7, 1, generator=generator),
    }
    path = tmp_path / "inputs.safetensors"
    save_file(inputs, str(path))
    return inputs, path


def _in_subprocess(loss_path: Path, tmp_path: Path, backend: str) -> dict[str, torch.Tensor]:
    _, inputs_path = _inputs(tmp_path)
    out = tmp_path / "outputs.safetensors"
    command = [sys.executable, "-c", LOADER, str(loss_path), str(inputs_path), str(out), backend]
    subprocess.run(command, check=True, cwd=tmp_path, timeout=600)
    return load_file(str(out))


def _reference(loss: LearnedLoss, tmp_path: Path) -> dict[str, torch.Tensor]:
    inputs, _ = _inputs(tmp_path)
    reference = {}
    for reduction in ("mean", "sum", "none"):
        pred = inputs["pred"].clone().requires_grad_()
        value = loss(pred, inputs["target"], reduction=reduction)
        (grad,) = torch.autograd.grad(value.sum(), pred)
        reference[f"{reduction}_value"] = value.detach().reshape(-1)
        reference[f"{reduction}_grad"] = grad
    return reference


def _assert_matches(
    results: dict[str, torch.Tensor], reference: dict[str, torch.Tensor], run: str, exact: bool
) -> None:
    for key, expected in reference.items():
        got = results[f"{run}_{key}"]
        if exact:
            assert torch.equal(got, expected), key
        else:
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
        if key.endswith("grad"):
            assert got.abs().sum() > 0, f"no gradient reaches pred ({key})"


def test_round_trip_in_a_fresh_process_with_torch_compile(
    trained: tuple[LearnedLoss, Path], tmp_path: Path
) -> None:
    loss, path = trained
    results = _in_subprocess(path, tmp_path, backend="aot_eager")
    reference = _reference(loss, tmp_path)
    _assert_matches(results, reference, "plain", exact=True)
    _assert_matches(results, reference, "compiled", exact=False)


@pytest.mark.slow
def test_round_trip_with_the_default_inductor_compiler(
    trained: tuple[LearnedLoss, Path], tmp_path: Path
) -> None:
    loss, path = trained
    results = _in_subprocess(path, tmp_path, backend="inductor")
    _assert_matches(results, _reference(loss, tmp_path), "compiled", exact=False)


def test_reductions_and_gradients(trained: tuple[LearnedLoss, Path]) -> None:
    _, path = trained
    pred = torch.randn(4, 3, requires_grad=True)
    target = torch.randn(4, 3)
    none = load_loss(path, reduction="none")(pred, target)
    assert none.shape == pred.shape
    torch.testing.assert_close(load_loss(path)(pred, target), none.mean())
    torch.testing.assert_close(load_loss(path, reduction="sum")(pred, target), none.sum())
    load_loss(path)(pred, target).backward()
    assert (
        pred.grad is not None
        and bool(torch.isfinite(pred.grad).all())
        and pred.grad.abs().sum() > 0
    )
    with pytest.raises(ValueError, match="reduction: expected"):
        load_loss(path, reduction="max")


def test_float64_losses_load_in_float64(tmp_path: Path) -> None:
    loss = LearnedLoss(hidden=(4,)).double()
    path = save_loss(loss, tmp_path / "f64.safetensors")
    loaded = load_loss(path)
    assert all(p.dtype == torch.float64 for p in loaded.parameters())
    pred, target = torch.randn(6, 1, dtype=torch.float64), torch.randn(6, 1, dtype=torch.float64)
    assert torch.equal(loaded(pred, target), loss(pred, target))


def test_metadata_describes_the_loss(trained: tuple[LearnedLoss, Path]) -> None:
    _, path = trained
    meta = read_metadata(path)
    assert meta["format_version"] == export.FORMAT_VERSION
    assert meta["architecture"] == "LearnedLoss"
    assert meta["features"] == ["residual", "abs_residual", "target"]
    assert meta["task_kind"] == "regression" and meta["output"] == "softplus"
    assert meta["config"]["outer"]["steps"] == 3
    assert meta["package_version"]


def test_zoo_names_load_by_name(
    trained: tuple[LearnedLoss, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, path = trained
    monkeypatch.setattr(metaloss.zoo, "ZOO_DIR", tmp_path)
    (tmp_path / "tiny-sine.safetensors").write_bytes(path.read_bytes())
    assert zoo_names() == ["tiny-sine"]
    pred, target = torch.randn(5, 1), torch.randn(5, 1)
    assert torch.equal(load_loss("tiny-sine")(pred, target), load_loss(path)(pred, target))
    with pytest.raises(LossFileError, match=r"neither a file nor a zoo name \(zoo: tiny-sine\)"):
        load_loss("no-such-loss")


# ------------------------------------------------------------------------------ refusals


def _rewrite(
    path: Path, out: Path, meta_change: dict | None = None, tensors_change: dict | None = None
) -> Path:
    """A copy of a loss file with some metadata fields or tensors replaced."""
    meta = read_metadata(path)
    meta.update(meta_change or {})
    tensors = {**load_file(str(path)), **(tensors_change or {})}
    save_file(
        {k: v for k, v in tensors.items() if v is not None},
        str(out),
        metadata={"metaloss": json.dumps(meta)},
    )
    return out


def _refused(path: Path, match: str) -> str:
    with pytest.raises(LossFileError, match=match) as info:
        load_loss(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


@pytest.mark.parametrize("low_byte", [0x80, 0x50])
def test_a_header_length_that_looks_like_pickle_magic_still_loads(
    tmp_path: Path, low_byte: int
) -> None:
    """Header lengths 0x..80 start with pickle's magic byte; 0x..50 0x4b with zip's 'PK'."""
    loss = LearnedLoss(hidden=(4,))
    for padding in range(600):
        path = save_loss(loss, tmp_path / "loss.safetensors", extra={"pad": "x" * padding})
        if path.read_bytes()[0] == low_byte:
            break
    else:
        pytest.fail("no padding gave the wanted header length")
    pred, target = torch.randn(3, 1), torch.randn(3, 1)
    assert torch.equal(load_loss(path)(pred, target), loss(pred, target))


def test_refuses_files_that_are_not_loss_files(tmp_path: Path) -> None:
    text = tmp_path / "notes.safetensors"
    text.write_text("this is a text file, not a loss file at all\n")
    _refused(text, "not a safetensors file")
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    _refused(empty, "truncated or empty")
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    _refused(plain, "without metaloss metadata")
    bad_header = tmp_path / "bad_header.safetensors"
    bad_header.write_bytes((4).to_bytes(8, "little") + b"[1] ")
    _refused(bad_header, "not a safetensors file")
    broken_json = tmp_path / "broken_json.safetensors"
    broken_json.write_bytes((4).to_bytes(8, "little") + b"{1: ")
    _refused(broken_json, "unreadable header")
    _refused(tmp_path, "is a folder")


def test_refuses_a_truncated_file(trained: tuple[LearnedLoss, Path], tmp_path: Path) -> None:
    _, path = trained
    data = path.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) - 16])
    _refused(cut, "truncated")
    header_cut = tmp_path / "header_cut.safetensors"
    header_cut.write_bytes(data[:40])
    _refused(header_cut, "not a safetensors file, or is truncated")
    for length in (0x280, 0x580):  # header lengths whose first byte is pickle's 0x80
        cut_80 = tmp_path / f"cut_{length}.safetensors"
        cut_80.write_bytes(length.to_bytes(8, "little") + b'{"__metadata__": {"metaloss"')
        _refused(cut_80, "not a safetensors file, or is truncated")


def test_refuses_newer_format_and_unknown_architecture(
    trained: tuple[LearnedLoss, Path], tmp_path: Path
) -> None:
    _, path = trained
    newer = _rewrite(
        path, tmp_path / "newer.safetensors", {"format_version": export.FORMAT_VERSION + 1}
    )
    _refused(newer, "newer format .* upgrade metaloss")
    unknown = _rewrite(path, tmp_path / "unknown.safetensors", {"architecture": "os.system"})
    _refused(unknown, "unknown architecture 'os.system'")
    no_version = _rewrite(path, tmp_path / "no_version.safetensors", {"format_version": "1"})
    _refused(no_version, "format_version: expected an integer")


def test_refuses_mismatched_shapes_names_and_values(
    trained: tuple[LearnedLoss, Path], tmp_path: Path
) -> None:
    _, path = trained
    name = "net.0.weight"
    shape = tuple(load_file(str(path))[name].shape)
    wrong = _rewrite(
        path,
        tmp_path / "shape.safetensors",
        tensors_change={name: torch.zeros(shape[0] + 1, shape[1])},
    )
    _refused(wrong, rf"tensor {name}: expected shape \({shape[0]}, {shape[1]}\)")
    missing = _rewrite(path, tmp_path / "missing.safetensors", tensors_change={name: None})
    _refused(missing, "do not match the architecture")
    nan = _rewrite(
        path, tmp_path / "nan.safetensors", tensors_change={name: torch.full(shape, float("nan"))}
    )
    _refused(nan, "NaN or Inf")
    arguments = {**read_metadata(path)["arguments"], "hidden": [10**6, 10**6]}  # ~4 TB if built
    huge = _rewrite(path, tmp_path / "huge.safetensors", {"arguments": arguments})
    _refused(huge, "expected shape")
    bad_args = _rewrite(
        path, tmp_path / "bad_args.safetensors", {"arguments": {**arguments, "features": ["nope"]}}
    )
    _refused(bad_args, "invalid architecture arguments")


class _CreatesFile:
    """Unpickling this object opens (creates) ``marker`` for writing: code execution."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_refuses_a_pickle_without_executing_it(tmp_path: Path, protocol: int) -> None:
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_CreatesFile(probe), protocol=protocol)).close()
    assert probe.exists(), "the payload must really create a file when unpickled"

    marker = tmp_path / "pwned"
    for name in ("evil.safetensors", "evil.pt", "evil.pkl"):
        evil = tmp_path / name
        evil.write_bytes(pickle.dumps(_CreatesFile(marker), protocol=protocol))
        _refused(evil, "pickle|not a safetensors file")
        with pytest.raises(LossFileError):
            read_metadata(evil)
    assert not marker.exists()


def test_refuses_a_torch_save_file_without_executing_it(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.safetensors"
    torch.save({"net.0.weight": _CreatesFile(marker)}, evil)
    _refused(evil, "pickle/torch.save file; refusing")
    assert not marker.exists()


def test_cli_refusal_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(pickle.dumps(_CreatesFile(tmp_path / "pwned"), protocol=2))
    assert main(["inspect", str(evil)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("metaloss: error: loss file:")
    assert not (tmp_path / "pwned").exists()


def test_plain_pytorch_example_runs_with_a_loss_file(trained: tuple[LearnedLoss, Path]) -> None:
    _, path = trained
    script = Path(__file__).parents[1] / "experiments" / "zoo_loss_in_plain_pytorch.py"
    tiny = ["--loss", str(path), "--seeds", "1", "--epochs", "2", "--lr-grid", "0.01"]
    done = subprocess.run(
        [sys.executable, str(script), *tiny], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    table = [line for line in done.stdout.splitlines()[2:] if not line.startswith("note:")]
    rows = {line.split("  ")[0].strip(): line for line in table}
    assert set(rows) == {f"learned ({path})", "nn.MSELoss", "nn.HuberLoss(delta=1)"}
    missing = subprocess.run(
        [sys.executable, str(script), "--loss", "no-such-zoo-loss"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert "neither a file nor a zoo name" in missing.stderr


def test_plain_pytorch_example_selects_the_scale_and_the_huber_delta() -> None:
    if "robust-regression-transfer" not in zoo_names():
        pytest.skip("zoo loss not installed")
    script = Path(__file__).parents[1] / "experiments" / "zoo_loss_in_plain_pytorch.py"
    tiny = ["--seeds", "1", "--epochs", "1", "--lr-grid", "0.01", "--huber-deltas", "0.3,1"]
    args = [sys.executable, str(script), "--loss", "robust-regression-transfer", *tiny]
    done = subprocess.run([*args, "--scales", "1,4"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    rows = {line.split("  ")[0].strip(): line for line in done.stdout.splitlines()[2:]}
    learned = rows["learned (robust-regression-transfer) (scale selected)"]
    assert "c=1 lr=0.01" in learned or "c=4 lr=0.01" in learned
    assert "delta=" in rows["nn.HuberLoss (delta selected)"]
    bad = subprocess.run([*args, "--scales", "0"], capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "scale" in bad.stderr
