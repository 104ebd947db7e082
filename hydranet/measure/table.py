"""Rows of strings as an aligned text table: the header, a rule, the rows."""

from __future__ import annotations

from typing import Sequence

__all__ = ["aligned_rows"]


def aligned_rows(rows: Sequence[Sequence[str]], left: int = 1, indent: str = "") -> list[str]:
    """``rows[0]`` is the header; the first ``left`` columns are left-aligned (names), the others
    right-aligned (numbers); columns two spaces apart, a dashed rule under the header.

    >>> aligned_rows([("name", "ms"), ("default", "4.5"), ("baseline", "12.0")])
    ['name        ms', '--------  ----', 'default    4.5', 'baseline  12.0']
    """
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for i, row in enumerate(rows):
        cells = (c.ljust(widths[j]) if j < left else c.rjust(widths[j]) for j, c in enumerate(row))
        lines.append((indent + "  ".join(cells)).rstrip())
        if i == 0:
            lines.append(indent + "  ".join("-" * w for w in widths))
    return lines
