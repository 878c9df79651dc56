"""Every setting of a run config, with its value, default, allowed range and documentation,
read from the dataclass fields' :func:`metaloss.config.setting` metadata (``metaloss config``
prints these rows; nothing here prints).

Sections are walked recursively (``task.ppo.lr``); the ``task`` section is a tagged union, so
its rows are those of the class that ``task.family`` selects. A list of structured entries
(``benchmark.baselines``, ``tune.space``, ``outer.variants``, ...) gives one row for the list
and one row per entry field (``benchmark.baselines[].name``) documenting what an entry holds.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

from metaloss.config import RunConfig, TaskConfig, to_dict

__all__ = ["SettingRow", "expected_text", "section_docs", "setting_rows", "task_families"]

_MISSING = object()


@dataclass(frozen=True)
class SettingRow:
    """One setting: its dotted ``key``, its ``value`` in the config (``None`` for an entry
    field ``a.b[].c``), its ``default``, what it accepts (``expected``) and its ``doc``."""

    key: str
    value: Any
    default: Any
    expected: str
    doc: str
    section: str

    @property
    def entry_field(self) -> bool:
        """Whether this row documents a field of the entries of a list (``a.b[].c``)."""
        return "[]." in self.key

    @property
    def changed(self) -> bool:
        """Whether the config's value differs from the default."""
        return not self.entry_field and self.value != self.default


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _noun(tp: Any, plural: bool = False) -> str:
    """A short noun for a type: ``integer``, ``number``, ``'relu' or 'tanh'``, ..."""
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_noun(a, plural) for a in get_args(tp))
    if tp is type(None):
        return "null"
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return f"{tp.__name__} entr{'ies' if plural else 'y'}"
    names = {int: "integer", float: "number", bool: "boolean", str: "string"}
    noun = names.get(tp, getattr(tp, "__name__", str(tp)))
    return noun + ("s" if plural else "")


def _bounds(meta: Mapping[str, Any]) -> str:
    signs = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    parts = [f"{signs[k]} {meta[k]:g}" for k in signs if meta.get(k) is not None]
    return " and ".join(parts)


def expected_text(tp: Any, meta: Mapping[str, Any] | None = None) -> str:
    """What a setting of type ``tp`` with bounds ``meta`` accepts, e.g. ``integer >= 1``,
    ``list of numbers > 0``, ``one of 'sgd' | 'adam'``."""
    meta = meta or {}
    bounds = _bounds(meta)
    origin = get_origin(tp)
    if origin is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            text = f"list of {_noun(args[0], plural=True)}"
        else:
            text = f"list of {len(args)} {_noun(args[0], plural=True)}"
        return f"{text} {bounds}" if bounds else text
    if origin is Literal:
        return f"one of {_noun(tp)}"
    if tp is bool:
        return "true | false"
    text = _noun(tp)
    return f"{text} {bounds}" if bounds else text


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_dict(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return _plain(f.default)
    if f.default_factory is not dataclasses.MISSING:
        return _plain(f.default_factory())
    return _MISSING


def _entry_class(tp: Any) -> type | None:
    """The dataclass of a list-of-entries setting (``tuple[BaselineSpec, ...]``), if any."""
    if get_origin(tp) is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            item = args[0]
            if isinstance(item, type) and dataclasses.is_dataclass(item):
                return item
    return None


def _walk(obj: Any, cls: type, prefix: str, section: str) -> list[SettingRow]:
    rows: list[SettingRow] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        key = f"{prefix}{f.name}"
        value = getattr(obj, f.name) if obj is not None else None
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            sub_cls = type(value) if value is not None else tp
            rows += _walk(value, sub_cls, f"{key}.", section or f.name)
            continue
        doc = str(f.metadata.get("doc", ""))
        plain = _plain(value) if obj is not None else None
        rows.append(
            SettingRow(key, plain, _default(f), expected_text(tp, f.metadata), doc, section)
        )
        entry = _entry_class(tp)
        if entry is not None:
            rows += _walk(None, entry, f"{key}[].", section)
    return rows


def setting_rows(config: RunConfig) -> list[SettingRow]:
    """One row per setting of ``config`` (sections walked in declaration order)."""
    return _walk(config, RunConfig, "", "")


def section_docs() -> list[tuple[str, str]]:
    """The sections of a run config with their one-line documentation (``inner``: inner
    loop, ...), in declaration order; top-level single settings are left out."""
    hints = typing.get_type_hints(RunConfig)
    return [
        (f.name, str(f.metadata.get("doc", "")))
        for f in dataclasses.fields(RunConfig)
        if isinstance(hints[f.name], type) and dataclasses.is_dataclass(hints[f.name])
    ]


def task_families() -> dict[str, type[TaskConfig]]:
    """The option class of every registered task family (``task.family`` picks one)."""
    from metaloss.tasks.registry import FAMILIES

    return {name: FAMILIES[name].config for name in sorted(FAMILIES)}
