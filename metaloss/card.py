"""What a learned loss is, in words: the lines its repr adds and its model card, both read from
the metadata of the file it was loaded from (:func:`metaloss.export.read_metadata`).

The model card follows the spirit of Mitchell et al., "Model Cards for Model Reporting" (FAT*
2019): what the loss is, how to use it, what it was trained on and with which command, how well
it did on meta-validation, and what is not known about it. Nothing here reads weights or prints.
"""

from __future__ import annotations

import shlex
from typing import Any

__all__ = ["command_text", "model_card", "origin_lines"]


def command_text(meta: dict[str, Any]) -> str | None:
    """The command that made the loss (``extra.argv``, recorded by ``metaloss train``), as a
    shell line; ``None`` if the file does not record it."""
    argv = (meta.get("extra") or {}).get("argv")
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        return None
    return shlex.join(argv)


def _best(meta: dict[str, Any]) -> str | None:
    extra = meta.get("extra") or {}
    for key, label in (
        ("best_valid_objective", "best meta-validation objective"),
        ("best_valid_return", "best meta-validation return"),
    ):
        value = extra.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return f"{label} {value:.4g} at step {extra.get('best_step', '?')}"
    return None


def _trained_on(meta: dict[str, Any]) -> str:
    config = meta.get("config") or {}
    family = (config.get("task") or {}).get("family", "?")
    return f"{config.get('name', '?')} (task family {family})"


def origin_lines(meta: dict[str, Any]) -> list[str]:
    """Short lines naming where a loaded loss comes from: what it was trained on, the metaloss
    version, its best meta-validation objective and the command that made it (empty for a loss
    that was not loaded from a file)."""
    if not meta:
        return []
    lines = [
        f"trained on: {_trained_on(meta)}; metaloss {meta.get('package_version', '?')}, "
        f"file format {meta.get('format_version', '?')}"
    ]
    best = _best(meta)
    if best is not None:
        lines.append(best)
    lines.append(f"made by: {command_text(meta) or 'not recorded in the file'}")
    return lines


def _settings(config: dict[str, Any], section: str) -> str:
    values = config.get(section) or {}
    return ", ".join(f"{k}={v}" for k, v in values.items() if not isinstance(v, (dict, list)) or v)


def model_card(
    meta: dict[str, Any], source: str = "loss.safetensors", shape: list[str] | None = None
) -> str:
    """A Markdown model card for the loss file whose metadata is ``meta``.

    Args:
        meta: the file's metadata.
        source: how a user names the file in ``load_loss`` (a path, folder or zoo name).
        shape: lines describing the loss's shape (``metaloss inspect``'s summary), if known.
    """
    arguments = meta.get("arguments") or {}
    config = meta.get("config") or {}
    outer = config.get("outer") or {}
    inner = config.get("inner") or {}
    kind = meta.get("task_kind", arguments.get("kind", "?"))
    name = config.get("name", "learned loss")
    lines = [
        f"# {name}: a learned {kind} loss (metaloss)",
        "",
        f"A per-sample loss network (`{meta.get('architecture', '?')}`, kind `{kind}`) meta-learned "
        "with metaloss: a learner is trained with it for a few differentiable steps and its error on "
        "held-out data of the same task is back-propagated into the loss (Bechtle et al., ML3, 2020).",
        "",
        "## Use",
        "",
        "```python",
        "from metaloss import load_loss",
        "",
        f"criterion = load_loss({source!r})  # an eval-mode torch.nn.Module, frozen weights",
        "loss = criterion(pred, target)       # reduction='mean'; 'sum' and 'none' too",
        "```",
        "",
        "Loading reads safetensors and JSON only (no pickle, no code from the file).",
        "",
        "## The loss",
        "",
        f"- input features: {', '.join(meta.get('features', arguments.get('features', [])))}",
        f"- network: hidden {arguments.get('hidden')}, activation {arguments.get('activation')}, "
        f"output transform {meta.get('output', arguments.get('output'))}, form "
        f"{arguments.get('form', 'loss')}",
        "",
        "## Training",
        "",
        f"- trained on: {_trained_on(meta)}",
        f"- task settings: {_settings(config, 'task') or 'not recorded'}",
        f"- inner loop: {inner.get('steps', '?')} steps of {inner.get('optimizer', '?')} at lr "
        f"{inner.get('lr', '?')}; learner hidden {(config.get('learner') or {}).get('hidden', '?')}",
        f"- meta-training: {outer.get('steps', '?')} steps, estimator "
        f"{outer.get('estimator', '?')}, meta-batch {outer.get('meta_batch', '?')}, meta lr "
        f"{outer.get('lr', '?')}",
        f"- result: {_best(meta) or 'not recorded'}",
        f"- made by: `{command_text(meta) or 'not recorded in the file'}`",
        f"- metaloss {meta.get('package_version', '?')}, file format {meta.get('format_version')}",
    ]
    if shape:
        lines += ["", "## Shape (`metaloss inspect`)", "", *[f"- {line}" for line in shape]]
    lines += [
        "",
        "## Limitations",
        "",
        "The figures above are meta-validation objectives on tasks of the family it was trained "
        "on. How it compares with tuned hand-designed losses on held-out tasks, and outside that "
        "family, is measured by `metaloss benchmark` and reported in the project's docs; a loss "
        "with batch-level features depends on the batch it is called with.",
        "",
    ]
    return "\n".join(lines)
