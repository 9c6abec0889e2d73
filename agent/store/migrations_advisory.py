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
    # 2: a credential's used nonces keyed by their primary key alone (WITHOUT ROWID): each was
    # written twice, into the table and into the index of its key, for every command
    """
    CREATE TABLE nonces_new (
        credential_id TEXT NOT NULL,
        nonce   TEXT NOT NULL,
        seen_at INTEGER NOT NULL,
        PRIMARY KEY (credential_id, nonce)
    ) WITHOUT ROWID;
    INSERT INTO nonces_new SELECT credential_id, nonce, seen_at FROM nonces;
    DROP TABLE nonces;
    ALTER TABLE nonces_new RENAME TO nonces;
    """,
]
