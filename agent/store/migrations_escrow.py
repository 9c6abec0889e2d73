"""The escrow slice's schema history (agent/store/migrations.py keeps the list of slices; the
escrow tables themselves were created by base migration 4).  Append only: a released
migration is never edited."""

from __future__ import annotations

ESCROW: list[str] = [
    # 1: what the payee found when it checked a held ticket's ecash at the mint (checks.py):
    # NULL not yet, 'ok', or the refusal ("TICKET_INVALID: …"); when
    """
    ALTER TABLE escrow_tickets ADD COLUMN checked TEXT;
    ALTER TABLE escrow_tickets ADD COLUMN checked_at INTEGER;
    """,
]
