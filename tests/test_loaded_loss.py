"""A loaded loss behaves like torch's own: eval mode, frozen weights, outputs that cross process
boundaries; it carries its metadata (repr, model card, the command that made it); it can be
traced and exported (TorchScript scripting is refused with one clear line); and it round-trips
through the Hugging Face layout."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from metaloss import load_loss, read_metadata, save_loss
from metaloss.cli import main
from metaloss.hub import CONFIG_NAME, README_NAME, WEIGHTS_NAME, save_pretrained
from metaloss.losses import LearnedLoss

TINY = [
    "--set",
    "outer.steps=2",
    "--set",
    "inner.steps=2",
    "--set",
    "outer.meta_batch=2",
    "--set",
    "outer.val_tasks=2",
    "--set",
    "learner.hidden=[8]",
    "--set",
    "loss.hidden=[8]",
    "--no-eval",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A loss made by ``metaloss train`` on a tiny budget, and the argv that made it."""
    out = tmp_path_factory.mktemp("run") / "sine-run"
    argv = ["train", "sine", "--out", str(out), *TINY]
    assert main(argv) == 0
    return out / "loss.safetensors", ["metaloss", *argv]


def _batch(n: int = 12, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, generator=generator), torch.randn(n, 1, generator=generator)


# ------------------------------------------------------------------------------ like torch's


def test_loaded_loss_is_in_eval_mode_with_frozen_weights(trained: tuple[Path, list[str]]) -> None:
    loss = load_loss(trained[0])
    assert not loss.training and all(not m.training for m in loss.modules())
    assert all(not p.requires_grad for p in loss.parameters())
    pred, target = _batch()
    assert not loss(pred, target).requires_grad  # like nn.MSELoss on plain tensors
    leaf = pred.clone().requires_grad_()
    loss(leaf, target).backward()
    assert leaf.grad is not None and leaf.grad.abs().sum() > 0  # gradients still reach pred


def test_no_grad_accumulates_on_the_loss_across_a_users_training_loop(
    trained: tuple[Path, list[str]],
) -> None:
    criterion = load_loss(trained[0])
    model = torch.nn.Linear(1, 1)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = _batch()
    for _ in range(3):
        optimiser.zero_grad()
        criterion(model(x), y).backward()
        optimiser.step()
    assert all(p.grad is None for p in criterion.parameters())
    assert all(p.grad is not None for p in model.parameters())


def test_trainable_opts_in(trained: tuple[Path, list[str]]) -> None:
    loss = load_loss(trained[0], trainable=True)
    assert loss.training and all(p.requires_grad for p in loss.parameters())
    pred, target = _batch()
    loss(pred, target).backward()
    assert all(p.grad is not None for p in loss.parameters())


def _value_in_worker(path: str) -> torch.Tensor:
    """Run in a spawned process: the loss of a fixed batch, returned to the parent."""
    pred, target = _batch()
    return load_loss(path, reduction="none")(pred, target)


def test_its_output_can_be_returned_from_a_spawn_pool(trained: tuple[Path, list[str]]) -> None:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        (value,) = pool.map(_value_in_worker, [str(trained[0])])
    pred, target = _batch()
    torch.testing.assert_close(value, load_loss(trained[0], reduction="none")(pred, target))


# ------------------------------------------------------------------------------ metadata


def test_train_records_the_command_and_the_repr_names_it(trained: tuple[Path, list[str]]) -> None:
    path, argv = trained
    meta = read_metadata(path)
    assert meta["extra"]["argv"] == argv
    loss = load_loss(path)
    assert loss.metadata == meta
    text = repr(loss)
    assert text.startswith("LearnedLoss(\n  # trained on: sine (task family sine); metaloss ")
    assert "# best meta-validation objective " in text and " at step " in text
    assert f"# made by: metaloss train sine --out {path.parent} --set outer.steps=2" in text
    assert "(net): MLP(" in text  # the usual module repr is still there


def test_a_loss_that_was_not_loaded_has_the_plain_repr() -> None:
    loss = LearnedLoss(hidden=(4,))
    assert "#" not in repr(loss) and loss.metadata == {}


def test_model_card_says_what_and_how(trained: tuple[Path, list[str]]) -> None:
    path, _ = trained
    card = load_loss(path).model_card(source=str(path))
    assert card.startswith("# sine: a learned regression loss (metaloss)")
    assert f"criterion = load_loss({str(path)!r})" in card
    assert "- inner loop: 2 steps of sgd" in card
    assert f"- made by: `metaloss train sine --out {path.parent}" in card
    assert "## Shape (`metaloss inspect`)" in card and "growth at large residuals" in card


# ------------------------------------------------------------------------------ TorchScript


def test_torch_jit_script_is_refused_in_one_clear_line(trained: tuple[Path, list[str]]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated in 2.13
        with pytest.raises(TypeError, match=r"use torch.jit.trace\(loss, \(pred, target\)\)"):
            torch.jit.script(load_loss(trained[0]))


TRACED_LOADER = textwrap.dedent(
    """
    import sys, torch
    from safetensors.torch import load_file, save_file
    traced = torch.jit.load(sys.argv[1])          # no metaloss import needed
    batch = load_file(sys.argv[2])
    save_file({"value": traced(batch["pred"], batch["target"])}, sys.argv[3])
    """
)


def test_torch_jit_trace_gives_a_file_that_runs_without_metaloss(
    trained: tuple[Path, list[str]], tmp_path: Path
) -> None:
    loss = load_loss(trained[0], reduction="none")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation and the constant shape check
        traced = torch.jit.trace(loss, _batch(8))
    saved = tmp_path / "loss.pt"
    traced.save(str(saved))
    pred, target = _batch(30, seed=1)  # another batch size than the trace's
    save_file({"pred": pred, "target": target}, str(tmp_path / "batch.safetensors"))
    out = tmp_path / "out.safetensors"
    command = [sys.executable, "-c", TRACED_LOADER, str(saved), str(tmp_path / "batch.safetensors")]
    subprocess.run([*command, str(out)], check=True, timeout=600, cwd=tmp_path)
    torch.testing.assert_close(load_file(str(out))["value"], loss(pred, target))


def test_torch_export_with_a_dynamic_batch(trained: tuple[Path, list[str]]) -> None:
    loss = load_loss(trained[0])
    batch = torch.export.Dim("batch", min=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(loss, _batch(8), dynamic_shapes=({0: batch}, {0: batch}))
    pred, target = _batch(30, seed=2)
    torch.testing.assert_close(program.module()(pred, target), loss(pred, target))


# ------------------------------------------------------------------------------ Hugging Face


def test_hugging_face_layout_round_trip(trained: tuple[Path, list[str]], tmp_path: Path) -> None:
    path, argv = trained
    folder = save_pretrained(path, tmp_path / "hub" / "sine-loss")
    assert sorted(p.name for p in folder.iterdir()) == [README_NAME, CONFIG_NAME, WEIGHTS_NAME]
    assert (folder / WEIGHTS_NAME).read_bytes() == path.read_bytes()
    config = json.loads((folder / CONFIG_NAME).read_text())
    assert config["library_name"] == "metaloss" and config["architecture"] == "LearnedLoss"
    assert config["extra"]["argv"] == argv
    readme = (folder / README_NAME).read_text()
    assert readme.startswith("---\nlibrary_name: metaloss\n") and "# sine: a learned" in readme
    loaded = load_loss(folder)
    pred, target = _batch()
    assert torch.equal(loaded(pred, target), load_loss(path)(pred, target))
    assert not loaded.training and loaded.metadata["extra"]["argv"] == argv


def test_hugging_face_export_of_a_module_and_refusals(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = LearnedLoss(hidden=(4,))
    folder = save_pretrained(module, tmp_path / "fresh")
    pred, target = _batch()
    assert torch.equal(load_loss(folder)(pred, target), module(pred, target))
    with pytest.raises(FileExistsError, match="already exists"):
        save_pretrained(module, folder)
    bare = tmp_path / "not-a-loss"
    bare.mkdir()
    save_file({"w": torch.zeros(1)}, str(bare / "other.safetensors"))
    with pytest.raises(ValueError, match="is a folder"):
        load_loss(bare)
    assert not list(tmp_path.glob(".fresh.*"))  # no staging folder left behind


def test_export_command(
    trained: tuple[Path, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "exported"
    assert main(["export", str(trained[0]), "--out", str(out)]) == 0
    assert f"load_loss({str(out)!r})" in capsys.readouterr().out
    assert main(["export", str(trained[0]), "--out", str(out)]) == 1
    assert capsys.readouterr().err.count("\n") == 1
    save_loss(load_loss(out), tmp_path / "again.safetensors")  # a loaded loss saves again
