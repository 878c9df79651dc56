"""``metaloss config``: every setting of a config with its value, default, range and meaning.

    metaloss config outliers                  # a shipped config, by name
    metaloss config runs/sine/config.yaml     # any config file
    metaloss config                           # the default job (the shipped sine config)
    metaloss config outliers --set inner.steps=20 --changed
    metaloss config --list                    # the shipped configs

Each setting is printed as ``KEY = VALUE  (default DEFAULT; accepts RANGE)`` with its
documentation below it; ``*`` marks a value that differs from the default. Any of them can be
overridden on the command line of ``train``, ``benchmark`` and ``tune`` with ``--set KEY=VALUE``.
"""

from __future__ import annotations

import argparse
from typing import Any

from metaloss.commands.arguments import (
    PREVIEW_OVERRIDES,
    Command,
    config_argument,
    config_epilog,
    switch,
)

__all__ = ["config_epilog", "format_rows", "register", "run"]


def _show(value: Any) -> str:
    """A value as it would be written in YAML or after --set (flow style, one line)."""
    import yaml

    text: str = yaml.safe_dump(value, default_flow_style=True, width=10**9, sort_keys=False)
    text = text.strip()
    return text[: -len("...")].strip() if text.endswith("...") else text


def format_rows(rows: list[Any], family: str, families: dict[str, type]) -> list[str]:
    """The lines ``metaloss config`` prints for :func:`metaloss.config_docs.setting_rows` of a
    config whose ``task.family`` is ``family``."""
    from metaloss.config_docs import section_docs

    docs = dict(section_docs())
    lines: list[str] = []
    section = None
    for row in rows:
        if row.section != section:
            section = row.section
            if section:
                lines += ["", f"[{section}] {docs.get(section, '')}".rstrip()]
                if section == "task":
                    lines.append(_task_line(family, families))
        indent = "  " if row.section else ""
        if row.entry_field:
            field = row.key.rsplit("[].", 1)[1]
            lines.append(
                f"{indent}      entry field {field} (default {_show(row.default)}; "
                f"{row.expected}): {row.doc}"
            )
            continue
        mark = " *" if row.changed else ""
        lines.append(
            f"{indent}{row.key} = {_show(row.value)}{mark}   "
            f"(default {_show(row.default)}; {row.expected})"
        )
        if row.doc:
            lines.append(f"{indent}    {row.doc}")
    return lines


def _task_line(family: str, families: dict[str, type]) -> str:
    cls = families.get(family)
    others = ", ".join(name for name in families if name != family)
    name = cls.__name__ if cls is not None else "?"
    return (
        f"  (task.family picks the options below: family {family!r} uses {name}; "
        f"other families: {others})"
    )


def _summary(text: str, limit: int = 96) -> str:
    """The first sentence of a config file's opening comment, shortened to ``limit``."""
    block = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        block.append(line.lstrip("#").strip())
    sentence = " ".join(block).split(". ")[0].split(": ")[0].strip()
    return sentence if len(sentence) <= limit else sentence[: limit - 1].rstrip() + "…"


def _list_configs() -> int:
    from metaloss.named_configs import CONFIG_DIR, config_names

    print(f"shipped configs (in {CONFIG_DIR}; use the name wherever a config file is expected):")
    width = max((len(n) for n in config_names()), default=0)
    for name in config_names():
        print(f"  {name.ljust(width)}  {_summary((CONFIG_DIR / f'{name}.yaml').read_text())}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.list:
        return _list_configs()
    from metaloss.config import load_config
    from metaloss.config_docs import setting_rows, task_families
    from metaloss.named_configs import resolve_config

    config = load_config(args.config, args.overrides)
    where = str(resolve_config(args.config))
    rows = setting_rows(config)
    if args.changed:
        rows = [r for r in rows if r.changed]
    print(f"config {config.name!r} ({where}); * = differs from the default")
    print("each setting: KEY = VALUE (default DEFAULT; accepts), then what it does;")
    print("override any of them with --set KEY=VALUE on train, benchmark or tune")
    for line in format_rows(rows, config.task.family, task_families()):
        print(line)
    return 0


register = Command(
    "config",
    "list every setting of a config: value, default, range, documentation",
    __doc__,
    run,
    (
        config_argument("config file or shipped name (default: sine, the default job)", True),
        PREVIEW_OVERRIDES,
        switch("--changed", "only the settings that differ from the defaults"),
        switch("--list", "list the shipped configs and exit"),
    ),
    layout="raw",
).register
