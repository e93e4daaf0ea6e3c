"""Plain-text tables for the command line (info, calibrate, eval, compare, demo)."""

from __future__ import annotations

from collections.abc import Container, Iterable, Sequence


def text_table(head: Sequence[object], rows: Iterable[Sequence[object]], left_columns: Container[int] = (0,)) -> str:
    """Columns padded to their widest cell, a dashed rule under the header; columns whose
    index is in `left_columns` are left-aligned, the rest (numbers) right-aligned."""
    lines = [tuple(str(c) for c in head)] + [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = []
    for k, line in enumerate(lines):
        out.append(
            "  ".join(
                c.ljust(w) if i in left_columns else c.rjust(w)
                for i, (c, w) in enumerate(zip(line, widths, strict=False))
            ).rstrip()
        )
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)
