"""The advisory slice's schema history (agent/store/migrations.py keeps the list of slices).
Append only: a released migration is never edited."""

from __future__ import annotations

ADVISORY: list[str] = [
    # 1: per receipt, the node state its command changed: `{"channel.field": [old, new]}`
    # (agent/advisory/effects.py `diff` of the touched state before and after), written in the
    # receipt's own transaction when the command ran; NULL when nothing was recorded (a
    # queued, refused or failed command, a dry run, a receipt sealed before this migration)
    """
    ALTER TABLE receipts ADD COLUMN state_diff TEXT;
    """,
]
