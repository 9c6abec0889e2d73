"""The escrow slice's schema history (agent/store/migrations.py keeps the list of slices; the
escrow tables themselves were created by base migration 4).  Append only: a released
migration is never edited."""

from __future__ import annotations

ESCROW: list[str] = [
    # 1: what the payee found when it checked a held ticket's ecash at the mint (checks.py):
    # NULL not yet, 'ok', 'legacy' (held before these checks: its proofs carry no DLEQ
    # proof, so they are taken as they were), or the refusal ("TICKET_INVALID: …"); when.
    # The tickets still to check are found through a partial index.
    """
    ALTER TABLE escrow_tickets ADD COLUMN checked TEXT;
    ALTER TABLE escrow_tickets ADD COLUMN checked_at INTEGER;
    UPDATE escrow_tickets SET checked = 'legacy' WHERE role = 'payee';
    CREATE INDEX escrow_tickets_unchecked ON escrow_tickets (created_at, ticket_id)
        WHERE role = 'payee' AND checked IS NULL;
    """,
]
