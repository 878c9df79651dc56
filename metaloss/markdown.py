"""Markdown tables, as every report, model card and TensorBoard text panel writes them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["markdown_table", "table_head", "table_row"]


def table_row(cells: Iterable[str]) -> str:
    """One row of a Markdown table: ``| a | b |``."""
    return "| " + " | ".join(cells) + " |"


def table_head(columns: Sequence[str]) -> list[str]:
    """A Markdown table's heading row and the separator row under it."""
    return [table_row(columns), "|" + "---|" * len(columns)]


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A whole Markdown table (as TensorBoard's Text tab renders it)."""
    return "\n".join([*table_head(header), *(table_row(row) for row in rows)])
