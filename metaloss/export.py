"""Save and load a learned loss as one self-describing, pickle-free file.

Format (``format_version`` 1): a safetensors file whose tensors are the loss network's weights
and whose metadata holds one JSON document under the key ``"metaloss"``: the format version, the
architecture (a name from a fixed registry of known loss classes) and its constructor
arguments, the task kind, the input-feature names and output transform, the config it was
trained with, and the package version. Loading parses JSON and raw tensors only: no code from
the file is ever executed. Like nanoGPT's checkpoints, the file rebuilds the module without the
trainer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from metaloss._safe_read import parse_loss_file, read_regular_file
from metaloss.atomic import atomic_path
from metaloss.errors import LossFileError, elide, printable
from metaloss.losses.module import ARCHITECTURES, LossModule
from metaloss.zoo import resolve, zoo_names

__all__ = [
    "FORMAT_VERSION",
    "LossFileError",
    "load_loss",
    "read_metadata",
    "save_loss",
    "zoo_names",
]

FORMAT_VERSION = 1


def _package_version() -> str:
    from metaloss import __version__

    return __version__


def save_loss(
    loss: LossModule,
    path: str | Path,
    config: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``loss`` to ``path`` (atomically) with its architecture and training config."""
    from safetensors.torch import save

    path = Path(path)
    architecture = type(loss).__name__
    if architecture not in ARCHITECTURES:
        raise LossFileError(
            f"save_loss: expected one of {', '.join(ARCHITECTURES)}, got {architecture}"
        )
    meta = {
        "format_version": FORMAT_VERSION,
        "architecture": architecture,
        "arguments": loss.architecture(),
        "task_kind": loss.kind,
        "features": list(loss.features),
        "output": loss.architecture().get("output", "identity"),
        "config": config or {},
        "package_version": _package_version(),
        "extra": extra or {},
    }
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in loss.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    data = save(tensors, metadata={"metaloss": json.dumps(meta, sort_keys=True)})
    with atomic_path(path) as tmp:  # a full disk leaves no half-written loss file
        tmp.write_bytes(data)
    return path


def _read(source: str | Path) -> tuple[Path, bytes, dict[str, Any]]:
    """The file, its bytes (read once, bounded) and its checked metadata."""
    path = resolve(source)
    data = read_regular_file(path)
    contents = parse_loss_file(path, data, tuple(ARCHITECTURES), FORMAT_VERSION)
    return path, data, contents.meta


def read_metadata(source: str | Path) -> dict[str, Any]:
    """The JSON metadata of a loss file or zoo name, validated (no weights are built)."""
    return _read(source)[2]


def load_loss(
    source: str | Path,
    reduction: str = "mean",
    map_location: str | torch.device = "cpu",
    trainable: bool = False,
) -> LossModule:
    """Load a learned loss from a file, a Hugging Face-layout folder (:mod:`metaloss.hub`) or a
    zoo name as a plain ``torch.nn.Module``.

    Like torch's own losses it is in eval mode with no trainable parameters: its outputs
    require grad only when the inputs do, and no ``.grad`` accumulates on it across backward
    passes. ``trainable=True`` returns it in train mode with ``requires_grad`` parameters (to
    fine-tune it). Its ``metadata`` is the file's; its repr and :meth:`~LossModule.model_card`
    say what it was trained on and with which command.

    A string without a folder and without the ``.safetensors`` suffix that is a zoo entry is
    the zoo entry (``./NAME`` is the file ``NAME``). The file is read once, in bounded work, and
    never executes code (see :mod:`metaloss._safe_read`).

    Example:
        >>> from metaloss import load_loss
        >>> criterion = load_loss("loss.safetensors")  # doctest: +SKIP
        >>> loss = criterion(pred, target)             # doctest: +SKIP
    """
    from safetensors import SafetensorError
    from safetensors.torch import load as load_tensors

    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction: expected 'mean', 'sum' or 'none', got {elide(reduction)}")
    path, data, meta = _read(source)
    cls = ARCHITECTURES[meta["architecture"]]
    arguments = {**meta["arguments"], "reduction": reduction}
    with torch.device("meta"):  # shapes only: a file cannot make us allocate huge layers
        expected = _build(path, cls, arguments).state_dict()
    try:
        tensors = load_tensors(data)
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        reason = printable(str(error).splitlines()[0] if str(error) else type(error).__name__, 120)
        raise LossFileError(
            f"loss file: {printable(str(path), 200)} could not be read ({reason})"
        ) from None
    _check_tensors(path, tensors, expected)
    module = _build(path, cls, arguments)
    dtypes = {t.dtype for t in tensors.values()}
    if len(dtypes) == 1:  # keep the precision the loss was trained in (e.g. float64)
        module = module.to(dtypes.pop())
    module.load_state_dict(tensors)
    module.metadata = meta
    module.train(trainable)
    module.requires_grad_(trainable)
    return module.to(map_location)


def _build(path: Path, cls: type[LossModule], arguments: dict[str, Any]) -> LossModule:
    try:
        return cls(**arguments)
    except Exception as error:  # any failure to build from the file's arguments is the file's
        reason = printable(str(error).splitlines()[0] if str(error) else type(error).__name__, 120)
        raise LossFileError(
            f"loss file: {printable(str(path), 200)} has invalid architecture arguments ({reason})"
        ) from None


def _check_tensors(
    path: Path, tensors: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]
) -> None:
    """Names, shapes and dtypes of the stored weights must match the architecture; all finite."""
    where = printable(str(path), 200)
    if set(tensors) != set(expected):
        missing = sorted(set(expected) - set(tensors))
        unexpected = sorted(set(tensors) - set(expected))
        raise LossFileError(
            f"loss file: {where} tensors do not match the architecture (missing "
            f"{elide(missing, 100)}, unexpected {elide(unexpected, 100)})"
        )
    for name, tensor in tensors.items():
        if tensor.shape != expected[name].shape:
            raise LossFileError(
                f"loss file: {where} tensor {name}: expected shape "
                f"{tuple(expected[name].shape)}, got {elide(tuple(tensor.shape), 60)}"
            )
        if not tensor.is_floating_point():
            raise LossFileError(
                f"loss file: {where} tensor {name}: expected floating point, got {tensor.dtype}"
            )
        if not bool(torch.isfinite(tensor).all()):
            raise LossFileError(f"loss file: {where} tensor {name}: contains NaN or Inf")
