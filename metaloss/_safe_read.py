"""Bounded, code-free reading of untrusted loss files (the read path of :mod:`metaloss.export`).

A loss file may come from anyone, so reading one does bounded work and fails in one line:

- only a regular file is opened (checked with ``os.stat`` before opening, and again on the open
  descriptor; opened non-blocking), so a named pipe or a device never hangs the reader;
- the file is read once, at most :data:`MAX_FILE_BYTES`; the header length is checked against
  :data:`MAX_HEADER_BYTES` before the header is parsed, the number of tensors against
  :data:`MAX_TENSORS` before any tensor is read;
- every metadata value is checked for its type and size (lists of at most :data:`MAX_ITEMS`
  items, strings of at most :data:`MAX_TEXT` characters, integers below 2**31), so a malformed
  value is a :class:`~metaloss.errors.LossFileError`, never a ``KeyError``, ``TypeError``,
  ``RuntimeError`` or ``RecursionError``, and no message quotes more than a few dozen
  characters of the file.
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metaloss.errors import LossFileError, elide, printable

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_HEADER_BYTES",
    "MAX_ITEMS",
    "MAX_TENSORS",
    "MAX_TEXT",
    "LossFileContents",
    "parse_loss_file",
    "read_regular_file",
]

MAX_FILE_BYTES = 256 << 20
"""Largest loss file read (256 MiB; the zoo's files are a few KiB)."""
MAX_HEADER_BYTES = 1 << 20
"""Largest safetensors header (1 MiB; the zoo's headers are about 3 KiB)."""
MAX_TENSORS = 1024
"""Most tensors in a loss file (a loss network has a few per layer)."""
MAX_ITEMS = 64
"""Longest list in the architecture arguments (hidden widths, feature names)."""
MAX_TEXT = 256
"""Longest string in the architecture arguments and in the descriptive metadata fields."""
MAX_INT = 2**31 - 1
_DTYPES = {"F16", "BF16", "F32", "F64", "I8", "I16", "I32", "I64", "U8", "BOOL"}
_PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")  # pickle protocol >= 2, torch.save zip archives


def _name(path: Path) -> str:
    return printable(str(path), 200)


def read_regular_file(path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``limit`` bytes.

    Raises:
        LossFileError: a folder, pipe, socket or device; too large; unreadable.
    """
    name = _name(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise LossFileError(f"loss file: {name} does not exist") from None
    except OSError as error:
        raise LossFileError(f"loss file: cannot read {name} ({error.strerror})") from None
    _check_kind(name, info)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as error:
        raise LossFileError(f"loss file: cannot open {name} ({error.strerror})") from None
    with os.fdopen(fd, "rb") as handle:
        _check_kind(name, os.fstat(fd))  # the path may have been swapped since the stat
        if os.fstat(fd).st_size > limit:
            raise LossFileError(
                f"loss file: {name} is {os.fstat(fd).st_size} bytes, more than the limit of "
                f"{limit >> 20} MiB for a loss file"
            )
        try:
            data = handle.read(limit + 1)
        except OSError as error:
            raise LossFileError(f"loss file: cannot read {name} ({error.strerror})") from None
    if len(data) > limit:
        raise LossFileError(f"loss file: {name} is larger than {limit >> 20} MiB")
    return data


def _check_kind(name: str, info: os.stat_result) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise LossFileError(f"loss file: {name} is a folder, expected a .safetensors file")
    if not stat.S_ISREG(info.st_mode):
        raise LossFileError(
            f"loss file: {name} is not a regular file (a pipe, socket or device), expected a "
            ".safetensors file"
        )


@dataclass(frozen=True)
class LossFileContents:
    """A checked loss file: its metaloss metadata and safetensors header (tensors unread)."""

    meta: dict[str, Any]
    header: dict[str, Any]


def parse_loss_file(
    path: Path, data: bytes, architectures: Collection[str], format_version: int
) -> LossFileContents:
    """Check a loss file's bytes and return its metadata (no tensor is built).

    Args:
        path: where the bytes came from (for messages).
        data: the whole file (:func:`read_regular_file`).
        architectures: the architecture names this metaloss can build.
        format_version: the newest file format this metaloss reads.
    """
    name = _name(path)
    header = _header(name, data)
    metadata = header.get("__metadata__")
    raw = metadata.get("metaloss") if isinstance(metadata, dict) else None
    if raw is None:
        raise LossFileError(
            f"loss file: {name} is a safetensors file without metaloss metadata (not a loss file)"
        )
    if not isinstance(raw, str):
        raise LossFileError(f"loss file: {name} metadata: expected a JSON string")
    try:
        meta = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        raise LossFileError(f"loss file: {name} has corrupt metaloss metadata") from None
    check_metadata(name, meta, architectures, format_version)
    _check_tensor_entries(name, header, len(data) - 8 - int.from_bytes(data[:8], "little"))
    return LossFileContents(meta, header)


def _header(name: str, data: bytes) -> dict[str, Any]:
    head = data[:9]
    header_len = int.from_bytes(head[:8], "little")
    shaped = head[8:9] == b"{"  # a header length, then a JSON object: safetensors, maybe cut
    plausible = shaped and 0 < header_len <= len(data) - 8
    # A safetensors header length can begin with the byte 0x80 too (e.g. 640 = 80 02 00 ..),
    # so the pickle magic only decides for files that are not shaped like safetensors (whole
    # or truncated: a pickle or zip archive never has "{" at byte 8).
    if not shaped and head.startswith(_PICKLE_MAGIC):
        raise LossFileError(
            f"loss file: {name} is a pickle/torch.save file; refusing to load it (it could run code)"
        )
    if len(head) < 8:
        raise LossFileError(f"loss file: {name} is truncated or empty (not a safetensors file)")
    if not plausible:
        raise LossFileError(f"loss file: {name} is not a safetensors file, or is truncated")
    if header_len > MAX_HEADER_BYTES:
        raise LossFileError(
            f"loss file: {name} has a {header_len}-byte header, more than the limit of "
            f"{MAX_HEADER_BYTES >> 20} MiB (a loss file's header is a few KiB)"
        )
    try:
        header = json.loads(data[8 : 8 + header_len])
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise LossFileError(
            f"loss file: {name} has an unreadable header (not a safetensors file)"
        ) from None
    if not isinstance(header, dict):
        raise LossFileError(
            f"loss file: {name} has a header that is not a JSON object (not a safetensors file)"
        )
    if len(header) > MAX_TENSORS + 1:
        raise LossFileError(
            f"loss file: {name} lists {len(header) - 1} tensors, more than the limit of {MAX_TENSORS}"
        )
    return header


# --------------------------------------------------------------------------------------------
# Metadata values.


def _bad(name: str, field: str, expected: str, value: Any) -> LossFileError:
    return LossFileError(
        f"loss file: {name} metadata {field}: expected {expected}, got {elide(value, 60)}"
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_value(name: str, field: str, value: Any, depth: int = 0) -> None:
    """An architecture argument: a bounded scalar or a short list of bounded scalars."""
    if value is None or isinstance(value, bool):
        return
    if _is_int(value):
        if abs(value) > MAX_INT:
            raise _bad(name, field, f"an integer of magnitude at most {MAX_INT}", value)
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _bad(name, field, "a finite number", value)
        return
    if isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise _bad(
                name,
                field,
                f"a string of at most {MAX_TEXT} characters",
                f"{len(value)} characters",
            )
        return
    if isinstance(value, list) and depth == 0:
        if len(value) > MAX_ITEMS:
            raise _bad(name, field, f"a list of at most {MAX_ITEMS} items", f"{len(value)} items")
        for i, item in enumerate(value):
            _check_value(name, f"{field}[{i}]", item, depth + 1)
        return
    raise _bad(name, field, "a number, string, true/false or a list of them", value)


def _text(name: str, meta: dict[str, Any], field: str, container: str = "") -> None:
    value = meta.get(field)
    if value is not None and (not isinstance(value, str) or len(value) > MAX_TEXT):
        raise _bad(name, container + field, f"a string of at most {MAX_TEXT} characters", value)


def check_metadata(
    name: str, meta: Any, architectures: Collection[str], format_version: int
) -> None:
    """Every field ``metaloss inspect`` and ``load_loss`` read must have its type and a bounded
    size; anything else is a :class:`LossFileError` naming the field."""
    if not isinstance(meta, dict):
        raise LossFileError(f"loss file: {name} metadata: expected a JSON object")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise LossFileError(
            f"loss file: {name} metadata format_version: expected an integer >= 1, got {elide(version, 40)}"
        )
    if version > format_version:
        raise LossFileError(
            f"loss file: {name} was written by a newer format (version {elide(version, 20)}; this "
            f"metaloss reads up to {format_version}); upgrade metaloss"
        )
    architecture = meta.get("architecture")
    if not isinstance(architecture, str) or architecture not in architectures:
        raise LossFileError(
            f"loss file: {name} names an unknown architecture {elide(architecture, 60)} "
            f"(known: {', '.join(architectures)})"
        )
    arguments = meta.get("arguments")
    if not isinstance(arguments, dict):
        raise LossFileError(f"loss file: {name} metadata arguments: expected a JSON object")
    if len(arguments) > MAX_ITEMS:
        raise _bad(name, "arguments", f"at most {MAX_ITEMS} settings", f"{len(arguments)} settings")
    for key, value in arguments.items():
        if len(key) > MAX_TEXT or not key.isidentifier():
            raise _bad(name, "arguments", "argument names that are identifiers", key)
        _check_value(name, f"arguments.{key}", value)
    for field in ("task_kind", "output", "package_version"):
        _text(name, meta, field)
    features = meta.get("features")
    if "features" in meta:
        if not isinstance(features, list) or len(features) > MAX_ITEMS:
            raise _bad(name, "features", f"a list of at most {MAX_ITEMS} names", features)
        for i, feature in enumerate(features):
            if not isinstance(feature, str) or len(feature) > MAX_TEXT:
                raise _bad(name, f"features[{i}]", "a feature name", feature)
    _check_descriptions(name, meta)


def _check_descriptions(name: str, meta: dict[str, Any]) -> None:
    """``config`` and ``extra``: free-form objects, but the parts a summary prints are typed."""
    for field in ("config", "extra"):
        if meta.get(field) is not None and not isinstance(meta[field], dict):
            raise _bad(name, field, "a JSON object", meta[field])
    config = meta.get("config") or {}
    _text(name, config, "name", "config.")
    task = config.get("task")
    if task is not None:
        if not isinstance(task, dict):
            raise _bad(name, "config.task", "a JSON object", task)
        _text(name, task, "family", "config.task.")
    extra = meta.get("extra") or {}
    for field in ("best_valid_objective", "best_valid_return"):
        value = extra.get(field)
        if field in extra and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise _bad(name, f"extra.{field}", "a number", value)
    step = extra.get("best_step")
    if step is not None and (not _is_int(step) or abs(step) > MAX_INT):
        raise _bad(name, "extra.best_step", "an integer", step)


# --------------------------------------------------------------------------------------------
# Tensor entries of the header.


def _check_tensor_entries(name: str, header: dict[str, Any], data_size: int) -> None:
    ends = [_data_end(name, key, entry) for key, entry in header.items() if key != "__metadata__"]
    if ends and max(ends) > data_size:
        raise LossFileError(
            f"loss file: {name} is truncated (tensor data ends past the end of the file)"
        )


def _data_end(name: str, key: str, entry: Any) -> int:
    """Where tensor ``key``'s bytes end, after checking its header entry is well formed."""
    offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
    shape = entry.get("shape") if isinstance(entry, dict) else None
    well_formed = (
        isinstance(entry, dict)
        and entry.get("dtype") in _DTYPES
        and isinstance(shape, list)
        and len(shape) <= 8
        and all(_is_int(d) and 0 <= d <= MAX_INT for d in shape)
        and isinstance(offsets, list)
        and len(offsets) == 2
        and all(_is_int(o) and 0 <= o <= MAX_FILE_BYTES for o in offsets)
        and offsets[0] <= offsets[1]
    )
    if not well_formed:
        raise LossFileError(
            f"loss file: {name} tensor {elide(key, 60)}: expected dtype, shape and data_offsets "
            "in the header"
        )
    return int(offsets[1])  # type: ignore[index]
