"""The settlement slice's schema history (agent/store/migrations.py keeps the list of slices).
Append only: a released migration is never edited."""

from __future__ import annotations

SETTLEMENT: list[str] = [
    # 1: weekly settlement — the one proposal per period (its plan as proposed, the frame
    # kept verbatim), every member's latest vote on it, this node's own payments (recorded
    # before each is attempted), the invoices it issued to payers, and the payments reported
    # executed (with their preimages)
    """
    CREATE TABLE settlement_periods (
        period       TEXT PRIMARY KEY,      -- ISO week, YYYY-WW
        plan_hash    TEXT NOT NULL,
        data_hash    TEXT NOT NULL,
        proposer     TEXT NOT NULL,
        total_sat    INTEGER NOT NULL,
        inputs       TEXT NOT NULL,         -- JSON: every member's input, as proposed
        state        TEXT NOT NULL,         -- proposed, agreed, executed
        frame        BLOB NOT NULL,         -- the PROPOSE frame, verbatim
        created_at   INTEGER NOT NULL,
        agreed_at    INTEGER,
        broadcast_at INTEGER NOT NULL       -- our PROPOSE/READY were last (re)sent then
    );
    CREATE TABLE settlement_votes (
        period        TEXT NOT NULL,
        voter         TEXT NOT NULL,
        plan_hash     TEXT NOT NULL,        -- the proposal answered
        agree         INTEGER NOT NULL,
        code          TEXT NOT NULL,        -- why not
        own_plan_hash TEXT NOT NULL,        -- what the voter computed ('' when agreeing)
        ts            INTEGER NOT NULL,     -- the READY frame's timestamp (the latest counts)
        PRIMARY KEY (period, voter)
    );
    CREATE TABLE settlement_pays (
        period       TEXT NOT NULL,
        receiver     TEXT NOT NULL,
        plan_hash    TEXT NOT NULL,
        amount_sat   INTEGER NOT NULL,
        state        TEXT NOT NULL,         -- new, requested, invoiced, attempting, paid, failed
        bolt11       TEXT NOT NULL,
        payment_hash TEXT NOT NULL,
        preimage     TEXT NOT NULL,
        fee_msat     INTEGER NOT NULL,
        attempts     INTEGER NOT NULL,
        next_at      INTEGER NOT NULL,
        error        TEXT NOT NULL,
        updated_at   INTEGER NOT NULL,
        PRIMARY KEY (period, receiver)
    );
    CREATE TABLE settlement_invoices (
        period       TEXT NOT NULL,
        payer        TEXT NOT NULL,
        plan_hash    TEXT NOT NULL,
        amount_sat   INTEGER NOT NULL,
        bolt11       TEXT NOT NULL,
        payment_hash TEXT NOT NULL,
        state        TEXT NOT NULL,         -- issued, paid (a verified preimage came)
        created_at   INTEGER NOT NULL,
        PRIMARY KEY (period, payer)
    );
    CREATE TABLE settlement_executed (
        period    TEXT NOT NULL,
        payer     TEXT NOT NULL,
        plan_hash TEXT NOT NULL,
        payments  TEXT NOT NULL,            -- JSON: receiver, amount, payment hash, preimage
        ts        INTEGER NOT NULL,
        PRIMARY KEY (period, payer)
    );
    """,
]
