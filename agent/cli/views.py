"""How text views show things a person reads: times in local ISO form, ages, and tables
(every command's human output uses these; `--json` keeps epoch integers and raw values)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any


def when(ts: int | float | None) -> str:
    """An epoch second as local ISO time with its offset ("2026-12-04T12:03:05+00:00"); "-"
    for none."""
    if ts is None or ts <= 0:
        return "-"
    return datetime.fromtimestamp(int(ts)).astimezone().isoformat(timespec="seconds")


def ago(seconds: float) -> str:
    """A duration as a person says it: "4 s", "12 min", "3 h", "2 d"."""
    s = max(0, int(seconds))
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    if s < 172800:
        return f"{s // 3600} h"
    return f"{s // 86400} d"


def since(ts: int | float | None, now: float | None = None) -> str:
    """Local ISO time and how long ago ("2026-… (3 min ago)"); "-" for none."""
    if ts is None or ts <= 0:
        return "-"
    now = time.time() if now is None else now
    delta = now - ts
    rel = f"in {ago(-delta)}" if delta < 0 else f"{ago(delta)} ago"
    return f"{when(ts)} ({rel})"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Rows under headers in left-aligned columns (numbers right-aligned); "(none)" when
    there are no rows."""
    if not rows:
        return "(none)"
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [all(r[i] is None or _is_number(r[i]) for r in rows) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        parts = [
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(row, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    return "\n".join(line(r) for r in cells)


def pairs(items: Sequence[tuple[str, Any]]) -> str:
    """`key  value` lines, keys aligned."""
    if not items:
        return "(none)"
    width = max(len(k) for k, _ in items)
    return "\n".join(f"{k.ljust(width)}  {'-' if v is None else v}" for k, v in items)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
