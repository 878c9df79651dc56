"""Finished benchmark rows kept on disk, so a benchmark that is killed or fails continues with
the rows it had finished when the same command runs again.

Rows are independent (a row's tasks, initialisations and selections do not depend on which
other rows run), so a row's entries are final once the row is done. :class:`RowStore` writes
each finished row to ``row-<index>.safetensors`` (the tensors of its entries; everything else as
JSON in the file's metadata; no pickle) atomically, under a fingerprint of the whole run: the
resolved config, every contender and the weights of every learned loss. A store whose
fingerprint differs belongs to another run and is emptied before use; a row file that cannot be
read (truncated, edited, larger than :data:`MAX_ROW_BYTES`) is computed again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from metaloss.atomic import atomic_path, write_text_atomic
from metaloss.evaluation.benchmark import Contender, Entry, Selection

__all__ = ["MAX_ROW_BYTES", "RowStore", "run_fingerprint"]

MAX_ROW_BYTES = 256 * 2**20
_FINGERPRINT = "fingerprint.txt"


class RowStore:
    """The finished rows of one benchmark run in ``folder`` (created on first use)."""

    def __init__(self, folder: Path, fingerprint: str) -> None:
        self.folder = folder
        self.fingerprint = fingerprint
        self.kept = 0  # rows read back from an earlier run
        if folder.is_dir() and _read_text(folder / _FINGERPRINT) != fingerprint:
            self._clear()  # another run's rows (or none that can be trusted)

    def load(self, index: int, row: str) -> list[Entry] | None:
        """The entries of row ``index`` named ``row`` if an earlier run of this same benchmark
        finished it, else ``None``."""
        path = self._path(index)
        try:
            if not path.is_file() or path.stat().st_size > MAX_ROW_BYTES:
                return None
            entries = _read_row(path)
        except (OSError, ValueError, KeyError, TypeError):
            return None  # unreadable: the row runs again
        if entries is None or any(e.row != row for e in entries):
            return None
        self.kept += 1
        return entries

    def save(self, index: int, entries: list[Entry]) -> None:
        """Keep row ``index``'s entries (atomically: the file is complete or absent)."""
        from safetensors.torch import save_file

        self.folder.mkdir(parents=True, exist_ok=True)
        recorded = self.folder / _FINGERPRINT
        if not recorded.exists():
            write_text_atomic(recorded, self.fingerprint)
        tensors, described = _flatten(entries)
        with atomic_path(self._path(index)) as partial:
            save_file(tensors, str(partial), metadata={"entries": json.dumps(described)})

    def rows(self) -> int:
        """How many finished rows the store holds."""
        return len(list(self.folder.glob("row-*.safetensors"))) if self.folder.is_dir() else 0

    def remove(self) -> None:
        """Drop the store (the report that used it is complete); a file the store did not write
        stays, and so does the folder then."""
        self._clear()
        with contextlib.suppress(OSError):
            self.folder.rmdir()

    def _clear(self) -> None:
        for path in self.folder.iterdir():
            if path.is_file() and _is_own(path.name):
                path.unlink(missing_ok=True)

    def _path(self, index: int) -> Path:
        return self.folder / f"row-{index}.safetensors"


_OWN = re.compile(r"\.?(row-\d+\.safetensors|fingerprint\.txt)(\.tmp-\d+)?")  # see atomic_path


def _is_own(name: str) -> bool:
    return _OWN.fullmatch(name) is not None


def run_fingerprint(
    config: dict[str, Any], contenders: Sequence[Contender], modules: dict[str, object]
) -> str:
    """A hash of everything a benchmark's entries depend on: the resolved config (every row
    included), each contender's name, role, parameter grid and learning rates, the weights and
    settings of every learned loss (``modules``), and the metaloss version."""
    from metaloss import __version__

    digest = hashlib.sha256()
    digest.update(json.dumps({"config": config, "version": __version__}, sort_keys=True).encode())
    for c in contenders:
        described = [c.name, c.role, c.param, list(c.values), list(c.lr_grid), c.fit is None]
        digest.update(json.dumps([*described, c.free_outputs]).encode())
    for name, module in sorted(modules.items()):
        shown = repr(module) if isinstance(module, torch.nn.Module) else type(module).__name__
        digest.update(f"{name}:{shown}".encode())
        if isinstance(module, torch.nn.Module):
            for key, value in module.state_dict().items():
                digest.update(key.encode())
                digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _flatten(entries: list[Entry]) -> tuple[dict[str, Tensor], list[dict[str, Any]]]:
    tensors: dict[str, Tensor] = {}
    described = []
    for i, e in enumerate(entries):
        tensors[f"{i}.per_task"] = e.per_task.detach().cpu().contiguous()
        tensors[f"{i}.curve"] = e.curve.detach().cpu().contiguous()
        for name, value in e.metrics.items():
            tensors[f"{i}.metric.{name}"] = value.detach().cpu().contiguous()
        described.append(
            {
                "row": e.row,
                "name": e.name,
                "role": e.role,
                "lr": e.selection.lr,
                "value": e.selection.value,
                "scores": e.selection.scores,
                "param": e.param,
                "diagnoses": e.diagnoses,
                "diverged": e.diverged,
                "metrics": sorted(e.metrics),
            }
        )
    return tensors, described


def _read_row(path: Path) -> list[Entry] | None:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as opened:
            metadata = opened.metadata() or {}
            tensors = {k: opened.get_tensor(k) for k in opened.keys()}  # noqa: SIM118
    except SafetensorError:
        return None
    described = json.loads(metadata["entries"])
    entries = []
    for i, d in enumerate(described):
        selection = Selection(float(d["lr"]), d["value"], dict(d["scores"]))
        metrics = {name: tensors[f"{i}.metric.{name}"] for name in d["metrics"]}
        entries.append(
            Entry(
                str(d["row"]),
                str(d["name"]),
                d["role"],
                selection,
                str(d["param"]),
                tensors[f"{i}.per_task"],
                tensors[f"{i}.curve"],
                {str(k): int(v) for k, v in d["diagnoses"].items()},
                int(d["diverged"]),
                metrics,
            )
        )
    return entries


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text()[:200]
    except (OSError, UnicodeDecodeError):
        return None
