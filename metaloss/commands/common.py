"""Output folders of the sub-commands that write (their arguments: :mod:`.arguments`).

Every command that writes checks its output folder before any work and before anything is
written (:func:`plan_folder`), then creates it (:func:`create_folder`):

- without ``--out`` it picks a new folder ``runs/{config name}__{command}__{seed}__{time}``
  (like CleanRL's ``runs/{env}__{exp}__{seed}__{time}``; never an existing one) and says where;
- an explicit ``--out`` must be a new or empty folder, or a folder this command wrote before:
  a run folder only with ``--resume`` (and only if the run's config matches), a tuning folder
  (``metaloss tune`` shares one between targets and workers). A folder holding anything else --
  the user's own ``config.yaml``, another command's run -- is refused, never written into.

Folders written by metaloss carry ``metaloss-run.json`` (which command, config name, time).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from metaloss.atomic import write_text_atomic
from metaloss.config import RunConfig, to_dict
from metaloss.errors import RunFolderError, elide, printable
from metaloss.outer.checkpoint import CHECKPOINT_NAME

__all__ = [
    "CHECKPOINT_NAME",
    "MARKER_NAME",
    "RUNS_DIR",
    "FolderPlan",
    "Staged",
    "create_folder",
    "figure_path",
    "plan_folder",
    "prepare_run_folder",
    "staged_folder",
    "staged_target",
    "write_marker",
]

RUNS_DIR = Path("runs")
"""Where folders are created when ``--out`` is not given (relative to the current folder)."""
MARKER_NAME = "metaloss-run.json"
"""The file that marks a folder as written by a metaloss command."""
JOURNAL_NAME = "study.journal"  # metaloss tune's embedded study (tuning/storage.py)
_MAX_MARKER_BYTES = 65_536
_FIGURE_FORMATS = ("png", "pdf", "svg", "jpg", "jpeg", "eps", "ps", "tif", "tiff", "webp")


# --------------------------------------------------------------------------------------------
# What a folder holds.


def _show(path: Path) -> str:
    return printable(str(path), 200)


def _read_marker(folder: Path) -> dict[str, Any] | None:
    path = folder / MARKER_NAME
    try:
        info = path.lstat()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise RunFolderError(f"--out: cannot read {_show(path)} ({error.strerror})") from None
    if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_MARKER_BYTES:
        raise RunFolderError(f"--out: {_show(path)} is not a metaloss marker file")
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise RunFolderError(f"--out: {_show(path)} is not a readable metaloss marker") from None
    if not isinstance(marker, dict) or not isinstance(marker.get("command"), str):
        raise RunFolderError(f"--out: {_show(path)} is not a metaloss marker")
    return marker


_IN_PROGRESS = re.compile(r"\..+\.(tmp|partial)-\d+")
"""Names of files metaloss is writing right now (an atomic write's temporary file, a staged
report): another worker starting on the same folder does not count them as content."""


def _entries(folder: Path) -> list[str]:
    try:
        with os.scandir(folder) as it:
            return sorted(e.name for e in it if not _IN_PROGRESS.fullmatch(e.name))
    except OSError as error:
        raise RunFolderError(f"--out: cannot list {_show(folder)} ({error.strerror})") from None


def _some(names: list[str]) -> str:
    shown = ", ".join(printable(n, 40) for n in names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _writable_ancestor(path: Path) -> None:
    """The nearest existing ancestor of ``path`` must be a folder we may write in."""
    for parent in [path, *path.parents]:
        try:
            info = parent.stat()
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as error:
            raise RunFolderError(f"--out: cannot use {_show(parent)} ({error.strerror})") from None
        if not stat.S_ISDIR(info.st_mode):
            raise RunFolderError(f"--out: {_show(parent)} is a file, expected a folder")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise RunFolderError(
                f"--out: cannot write in {_show(parent)} (read-only or no permission); choose "
                "another folder"
            )
        return


# --------------------------------------------------------------------------------------------
# Planning (checks only) and creating.


@dataclass(frozen=True)
class FolderPlan:
    """Where a command will write, decided before any side effect.

    ``path`` is ``None`` when a new folder is to be picked under :data:`RUNS_DIR`; ``existing``
    says the folder exists and holds this command's earlier work (a run to resume, a tuning
    folder to share)."""

    path: Path | None
    command: str
    name: str
    seed: int
    existing: bool = False
    shared: bool = False


def plan_folder(
    out: Path | None,
    config: RunConfig,
    command: str,
    resume: bool = False,
    shared: bool = False,
    resumable: bool = True,
) -> FolderPlan:
    """Check the output folder of ``command`` without touching the disk.

    Args:
        out: ``--out`` (``None``: a new folder under ``runs/``).
        config: the validated config (its name and seed name a new folder; a resumed run's
            checkpoint must have been written with it, except ``outer.steps``).
        command: the command writing, e.g. ``train`` (recorded in ``metaloss-run.json``).
        resume: ``--resume``: the folder must hold a run of ``command``.
        shared: the folder may already hold work of ``command`` (``metaloss tune``).
        resumable: ``command`` has ``--resume`` (else an earlier report is refused as such).

    Raises:
        RunFolderError: in one line, naming the folder and what was expected.
    """
    plan = FolderPlan(out, command, config.name, config.seed, shared=shared)
    if out is None:
        if resume:
            raise RunFolderError("--resume: expected --out DIR, the folder of the run to continue")
        return plan
    try:
        info = out.lstat()
    except (FileNotFoundError, NotADirectoryError):
        info = None
    except OSError as error:
        raise RunFolderError(f"--out: cannot use {_show(out)} ({error.strerror})") from None
    if info is None:
        if resume:
            raise RunFolderError(f"--resume: {_show(out)} does not exist (no run to continue)")
        _writable_ancestor(out)
        return plan
    if stat.S_ISLNK(info.st_mode) and not out.is_dir():
        raise RunFolderError(f"--out: {_show(out)} is a link to something that is not a folder")
    if not out.is_dir():
        raise RunFolderError(f"--out: {_show(out)} is a file, expected a folder")
    marker = _read_marker(out)
    names = _entries(out)
    # Folders written before metaloss-run.json existed: a checkpoint, or a study journal.
    legacy = "train" if CHECKPOINT_NAME in names else "tune" if JOURNAL_NAME in names else None
    wrote = marker["command"] if marker is not None else legacy
    if not names:
        if resume:
            raise RunFolderError(f"--resume: {_show(out)} is empty (no run to continue)")
        _writable_ancestor(out)
        return plan
    if wrote is None:
        raise RunFolderError(
            f"--out: {_show(out)} holds files that are not a metaloss run ({_some(names)}); "
            "refusing to write into it: choose a new or empty folder"
        )
    if wrote != command and not (legacy == "train" and command == "rl-train"):
        raise RunFolderError(
            f"--out: {_show(out)} holds a `metaloss {printable(str(wrote), 40)}` run, not a "
            f"`metaloss {command}` one; choose a new folder"
        )
    if shared:
        _writable_ancestor(out)
        return FolderPlan(out, command, config.name, config.seed, True, shared)
    if not resumable:
        raise RunFolderError(
            f"--out: {_show(out)} already holds a `metaloss {command}` report; choose a new "
            "folder (or omit --out for a new one): reports are never overwritten"
        )
    if not resume:
        raise RunFolderError(
            f"--out: {_show(out)} already holds a run; pass --resume to continue it, or choose "
            "another folder (or omit --out for a new one)"
        )
    _check_resumable(out, config)
    _writable_ancestor(out)
    return FolderPlan(out, command, config.name, config.seed, True, shared)


def _check_resumable(folder: Path, config: RunConfig) -> None:
    """A resumed run's checkpoint must have been written with this config (but ``outer.steps``)."""
    from metaloss.outer.checkpoint import load_checkpoint

    path = folder / CHECKPOINT_NAME
    if not path.exists():
        return  # killed before its first checkpoint: the run starts again at step 0
    if not path.is_file():
        raise RunFolderError(f"--resume: {_show(path)} is not a checkpoint file")
    try:
        state = load_checkpoint(path)
        saved = json.loads(state["config"])
    except (ValueError, KeyError, TypeError, RecursionError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise RunFolderError(f"--resume: {printable(reason, 200)}") from None
    current = to_dict(config)
    if not isinstance(saved, dict) or not isinstance(saved.get("outer"), dict):
        raise RunFolderError(f"--resume: {_show(path)} holds no readable config")
    saved = {**saved, "outer": {k: v for k, v in saved["outer"].items() if k != "steps"}}
    current = {**current, "outer": {k: v for k, v in current["outer"].items() if k != "steps"}}
    if saved != current:
        raise RunFolderError(
            f"--resume: the checkpoint in {_show(folder)} was written with a different config "
            f"({_difference(saved, current)}); nothing was changed"
        )


def _difference(a: Any, b: Any, path: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if a.get(key) != b.get(key):
                return _difference(a.get(key), b.get(key), f"{path}.{key}" if path else str(key))
    return f"{path}: {elide(a, 40)} in the checkpoint, {elide(b, 40)} now"


def _folder_name(plan: FolderPlan) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", plan.name)[:64].strip("._") or "run"
    return f"{name}__{plan.command}__{plan.seed}__{time.strftime('%Y%m%d-%H%M%S')}"


def _new_folder(plan: FolderPlan) -> Path:
    """A folder under ``runs/`` that did not exist (created here, so two processes never share)."""
    base = RUNS_DIR / _folder_name(plan)
    RUNS_DIR.mkdir(parents=True, exist_ok=True)
    for i in range(1, 1000):
        folder = base if i == 1 else base.with_name(f"{base.name}-{i}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder
    raise RunFolderError(f"--out: no free folder name like {_show(base)}; pass --out")


def write_marker(folder: Path, plan: FolderPlan, exclusive: bool = False) -> Path:
    """Write ``metaloss-run.json``: which command wrote ``folder``, for which config, when.

    With ``exclusive`` the marker must not exist yet (published with a hard link, which fails if
    it does), so two runs started at once on the same new folder cannot both take it."""
    from metaloss import __version__

    marker = {
        "command": plan.command,
        "name": plan.name,
        "seed": plan.seed,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "metaloss": __version__,
    }
    text = json.dumps(marker, indent=2) + "\n"
    if not exclusive:
        return write_text_atomic(folder / MARKER_NAME, text)
    tmp = folder / f".{MARKER_NAME}.tmp-{os.getpid()}"
    try:
        tmp.write_text(text, encoding="utf-8")
        os.link(tmp, folder / MARKER_NAME)
    except FileExistsError:
        raise RunFolderError(
            f"--out: another `metaloss {plan.command}` started in {_show(folder)} at the same "
            "moment; choose another folder"
        ) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return folder / MARKER_NAME


def create_folder(plan: FolderPlan, config: RunConfig | None = None) -> Path:
    """Create the planned folder (a new one under ``runs/`` if ``plan.path`` is ``None``) with
    ``metaloss-run.json`` and, with ``config``, the resolved ``config.yaml`` (both atomic)."""
    folder = plan.path if plan.path is not None else _new_folder(plan)
    folder.mkdir(parents=True, exist_ok=True)
    if not plan.existing:
        write_marker(folder, plan, exclusive=not plan.shared)
    elif not (folder / MARKER_NAME).exists():
        write_marker(folder, plan)
    if config is not None:
        text = yaml.safe_dump(to_dict(config), sort_keys=False)
        write_text_atomic(folder / "config.yaml", text)
    return folder


def prepare_run_folder(
    out: Path | None, config: RunConfig, resume: bool, command: str = "train"
) -> Path:
    """:func:`plan_folder` then :func:`create_folder` with ``config.yaml`` (for callers that have
    nothing to check in between, e.g. rank 0 of ``metaloss train --distributed``)."""
    return create_folder(plan_folder(out, config, command, resume), config)


@dataclass
class Staged:
    """A report being written: into ``staging`` (hidden, next to the target), moved to ``final``
    when complete."""

    staging: Path
    target: Path
    final: Path | None = None


def staged_target(plan: FolderPlan) -> Path:
    """The folder a staged report will become (picked now when ``--out`` was not given)."""
    return plan.path if plan.path is not None else RUNS_DIR / _folder_name(plan)


@contextlib.contextmanager
def staged_folder(plan: FolderPlan, target: Path | None = None) -> Iterator[Staged]:
    """Write a report into a hidden staging folder that becomes the planned folder only when the
    block succeeds; on any failure (a full disk, an interrupt) it is removed, so a report is
    complete or absent, never half-written. The folder it became is ``staged.final``."""
    target = target or staged_target(plan)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    staged = Staged(staging, target)
    try:
        yield staged
        staged.final = _commit(staging, target, explicit=plan.path is not None)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _commit(staging: Path, target: Path, explicit: bool) -> Path:
    if target.is_dir() and not _entries(target):
        target.rmdir()  # an empty folder named by --out
    candidates = (
        [target]
        if explicit
        else [target, *(target.with_name(f"{target.name}-{i}") for i in range(2, 1000))]
    )
    for final in candidates:
        if final.exists():
            continue
        os.rename(staging, final)
        return final
    raise RunFolderError(
        f"--out: {_show(target)} was created by someone else while the report was written; "
        "nothing was replaced"
    )


# --------------------------------------------------------------------------------------------
# Figures.


def figure_path(out: Path) -> Path:
    """The file a figure named ``--out`` is written to: ``.png`` is appended to a name without a
    suffix (and the path printed is the one written); a folder, or a suffix that is not an image
    format (``loss.safetensors``, ``config.yaml``), is refused."""
    if not str(out).strip():
        raise RunFolderError("--out: expected a figure file such as loss.png, got an empty path")
    if out.is_dir():
        raise RunFolderError(
            f"--out: {_show(out)} is a folder; expected a figure file such as {_show(out / 'loss.png')}"
        )
    suffix = out.suffix.lower().lstrip(".")
    if not suffix:
        out = out.with_name(out.name + ".png")
    elif suffix not in _FIGURE_FORMATS:
        raise RunFolderError(
            f"--out: {_show(out)}: expected a figure file ending in .{', .'.join(_FIGURE_FORMATS[:3])} "
            f"(or another image format), got .{printable(suffix, 20)}"
        )
    _writable_ancestor(out.parent)
    return out
