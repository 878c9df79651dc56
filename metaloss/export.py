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
import os
from pathlib import Path
from typing import Any

import torch

from metaloss.losses.module import ARCHITECTURES, LossModule
from metaloss.zoo import LossFileError, resolve, zoo_names

__all__ = [
    "FORMAT_VERSION",
    "LossFileError",
    "load_loss",
    "read_metadata",
    "save_loss",
    "zoo_names",
]

FORMAT_VERSION = 1
_PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")  # pickle protocol >= 2, torch.save zip archives


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
    from safetensors.torch import save_file

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
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"metaloss": json.dumps(meta, sort_keys=True)})
    os.replace(tmp, path)
    return path


def read_metadata(source: str | Path) -> dict[str, Any]:
    """The JSON metadata of a loss file or zoo name, validated (no weights are built)."""
    path = resolve(source)
    if path.is_dir():
        raise LossFileError(f"loss file: {path} is a folder, expected a .safetensors file")
    with open(path, "rb") as handle:
        head = handle.read(9)
    header_len = int.from_bytes(head[:8], "little")
    size = path.stat().st_size
    plausible = 0 < header_len <= min(size - 8, 100_000_000) and head[8:9] == b"{"
    # A safetensors header length can begin with the byte 0x80 too (e.g. 640 = 80 02 00 ..),
    # so the pickle magic only decides for files that are not plausibly safetensors.
    if not plausible and head.startswith(_PICKLE_MAGIC):
        raise LossFileError(
            f"loss file: {path} is a pickle/torch.save file; refusing to load it (it could run code)"
        )
    if len(head) < 8:
        raise LossFileError(f"loss file: {path} is truncated or empty (not a safetensors file)")
    if not plausible:
        raise LossFileError(f"loss file: {path} is not a safetensors file, or is truncated")
    with open(path, "rb") as handle:
        handle.seek(8)
        try:
            header = json.loads(handle.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise LossFileError(
                f"loss file: {path} has an unreadable header (not a safetensors file)"
            ) from None
    if not isinstance(header, dict):
        raise LossFileError(
            f"loss file: {path} has a header that is not a JSON object (not a safetensors file)"
        )
    metadata = header.get("__metadata__")
    raw = metadata.get("metaloss") if isinstance(metadata, dict) else None
    if raw is None:
        raise LossFileError(
            f"loss file: {path} is a safetensors file without metaloss metadata (not a loss file)"
        )
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError:
        raise LossFileError(f"loss file: {path} has corrupt metaloss metadata") from None
    _check_metadata(path, meta, header, size - 8 - header_len)
    return meta  # type: ignore[no-any-return]


def _check_metadata(path: Path, meta: Any, header: dict[str, Any], data_size: int) -> None:
    if not isinstance(meta, dict):
        raise LossFileError(f"loss file: {path} metadata: expected a JSON object")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise LossFileError(
            f"loss file: {path} metadata format_version: expected an integer >= 1, got {version!r}"
        )
    if version > FORMAT_VERSION:
        raise LossFileError(
            f"loss file: {path} was written by a newer format (version {version}; this metaloss "
            f"reads up to {FORMAT_VERSION}); upgrade metaloss"
        )
    if meta.get("architecture") not in ARCHITECTURES:
        raise LossFileError(
            f"loss file: {path} names an unknown architecture {meta.get('architecture')!r} "
            f"(known: {', '.join(ARCHITECTURES)})"
        )
    if not isinstance(meta.get("arguments"), dict):
        raise LossFileError(f"loss file: {path} metadata arguments: expected a JSON object")
    ends = [
        _data_end(path, name, entry) for name, entry in header.items() if name != "__metadata__"
    ]
    if ends and max(ends) > data_size:
        raise LossFileError(
            f"loss file: {path} is truncated (tensor data ends past the end of the file)"
        )


def _data_end(path: Path, name: str, entry: Any) -> int:
    """Where tensor ``name``'s bytes end, after checking its header entry is well formed."""
    offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
    shape = entry.get("shape") if isinstance(entry, dict) else None
    well_formed = (
        isinstance(entry, dict)
        and isinstance(entry.get("dtype"), str)
        and isinstance(shape, list)
        and all(isinstance(d, int) and d >= 0 for d in shape)
        and isinstance(offsets, list)
        and len(offsets) == 2
        and all(isinstance(o, int) and o >= 0 for o in offsets)
        and offsets[0] <= offsets[1]
    )
    if not well_formed:
        raise LossFileError(
            f"loss file: {path} tensor {name!r}: expected dtype, shape and data_offsets in the header"
        )
    return int(offsets[1])  # type: ignore[index]


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

    Example:
        >>> from metaloss import load_loss
        >>> criterion = load_loss("loss.safetensors")  # doctest: +SKIP
        >>> loss = criterion(pred, target)             # doctest: +SKIP
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction: expected 'mean', 'sum' or 'none', got {reduction!r}")
    meta = read_metadata(source)
    path = resolve(source)
    cls = ARCHITECTURES[meta["architecture"]]
    arguments = {**meta["arguments"], "reduction": reduction}
    with torch.device("meta"):  # shapes only: a file cannot make us allocate huge layers
        expected = _build(path, cls, arguments).state_dict()
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise LossFileError(
            f"loss file: {path} could not be read ({str(error).splitlines()[0]})"
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
    except (TypeError, ValueError) as error:
        raise LossFileError(
            f"loss file: {path} has invalid architecture arguments ({error})"
        ) from None


def _check_tensors(
    path: Path, tensors: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]
) -> None:
    """Names, shapes and dtypes of the stored weights must match the architecture; all finite."""
    if set(tensors) != set(expected):
        missing = sorted(set(expected) - set(tensors))
        unexpected = sorted(set(tensors) - set(expected))
        raise LossFileError(
            f"loss file: {path} tensors do not match the architecture (missing {missing}, unexpected {unexpected})"
        )
    for name, tensor in tensors.items():
        if tensor.shape != expected[name].shape:
            raise LossFileError(
                f"loss file: {path} tensor {name}: expected shape {tuple(expected[name].shape)}, got {tuple(tensor.shape)}"
            )
        if not tensor.is_floating_point():
            raise LossFileError(
                f"loss file: {path} tensor {name}: expected floating point, got {tensor.dtype}"
            )
        if not bool(torch.isfinite(tensor).all()):
            raise LossFileError(f"loss file: {path} tensor {name}: contains NaN or Inf")
