"""The ``device`` setting: where the library's tensors live.

Random draws are always made on CPU generators (``torch.Generator()``) and the results moved to
the device, so the same seed gives the same tasks, initialisations and noise on every device;
only the arithmetic that follows runs on the device (GPU kernels may round differently from the
CPU's, so meta-training on another device reaches nearby, not bitwise equal, numbers). A
checkpoint records the setting's name, not the resolved device: an ``auto`` run resumed on
another machine continues on that machine's device.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import torch
from torch import Tensor

__all__ = ["DEVICE_CHOICES", "check_device_name", "resolve_device", "to_device"]

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"
_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")

T = TypeVar("T")


def check_device_name(name: str) -> None:
    """Raise ``ValueError`` (one line, naming the ``device`` setting) for a malformed name."""
    if not isinstance(name, str) or not _PATTERN.fullmatch(name):
        raise ValueError(f"device: expected {DEVICE_CHOICES}, got {name!r}")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str) -> torch.device:
    """The ``torch.device`` that ``name`` asks for on this machine.

    ``auto`` is the first CUDA device if there is one, else MPS if available, else the CPU. An
    explicit device that this machine does not have is refused in one line.
    """
    check_device_name(name)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device: {name!r} is not available here (torch.cuda.is_available() is False); "
                "use device=auto or cpu"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(f"device: {name!r} does not exist here ({count} CUDA devices)")
    if device.type == "mps" and not _mps_available():
        raise ValueError(f"device: {name!r} is not available here; use device=auto or cpu")
    return device


def to_device(value: T, device: torch.device | str) -> T:
    """``value`` with every tensor moved to ``device`` (tensors, dicts, tuples, named tuples)."""
    return _move(value, torch.device(device))  # type: ignore[no-any-return]


def _move(value: Any, device: torch.device) -> Any:
    if isinstance(value, Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _move(v, device) for k, v in value.items()}
    if isinstance(value, tuple):
        items = [_move(v, device) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    if isinstance(value, list):
        return [_move(v, device) for v in value]
    return value
