"""The contribution ledger's schema history (agent/store/migrations.py keeps the list of
slices).  Append only: a released migration is never edited."""

from __future__ import annotations

CONTRIBUTION: list[str] = [
    # 1: the ledger — hash-chained rows (one per settled forward touching a member or not, per
    # rebalance, and one rollup per day for what went past the per-day bound), the forward keys
    # seen lately (a replayed forward is counted once), the per-day totals per member (and the
    # node's own, member ''), the members' period reports (settlement inputs), the anti-leech
    # state per member, the leech notices heard, the disputes found, and counters
    """
    CREATE TABLE contribution_chain (
        seq   INTEGER PRIMARY KEY,
        day   INTEGER NOT NULL,             -- UTC day: unix time // 86400
        kind  TEXT NOT NULL,                -- forward | rebalance | rollup
        ref   TEXT NOT NULL,                -- the forward's key, the rebalance's ref, the day
        body  TEXT NOT NULL,                -- canonical JSON: what the row states
        at    INTEGER NOT NULL,
        prev  TEXT NOT NULL,                -- the previous row's hash
        hash  TEXT NOT NULL                 -- sha256(prev ‖ canonical row)
    );
    CREATE TABLE contribution_keys (
        key TEXT PRIMARY KEY,               -- a forward's or a rebalance's key
        at  INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE contribution_days (
        day       INTEGER NOT NULL,
        member    TEXT NOT NULL,            -- a member's node id, or '' for this node's totals
        in_msat   INTEGER NOT NULL DEFAULT 0,   -- came in from it (we carried its traffic)
        out_msat  INTEGER NOT NULL DEFAULT 0,   -- went out to it (it carried ours)
        fees_msat INTEGER NOT NULL DEFAULT 0,
        forwards  INTEGER NOT NULL DEFAULT 0,
        rebalance_msat INTEGER NOT NULL DEFAULT 0,  -- ('' only) rebalance fees paid
        raw       INTEGER NOT NULL DEFAULT 0,   -- forward rows chained for it this day
        over_in   INTEGER NOT NULL DEFAULT 0,   -- past the bound, not chained yet (rollup)
        over_out  INTEGER NOT NULL DEFAULT 0,
        over_fees INTEGER NOT NULL DEFAULT 0,
        over_n    INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (day, member)
    ) WITHOUT ROWID;
    CREATE TABLE contribution_reports (
        author      TEXT NOT NULL,
        period      TEXT NOT NULL,          -- YYYY-WW
        msg_id      TEXT NOT NULL,
        body        TEXT NOT NULL,          -- the report as signed (canonical JSON)
        received_at INTEGER NOT NULL,
        PRIMARY KEY (author, period)
    );
    CREATE TABLE contribution_leech (
        member      TEXT PRIMARY KEY,
        below_since INTEGER,                -- first day of the current run below the threshold
        below_days  INTEGER NOT NULL DEFAULT 0,
        leech_since INTEGER,                -- the day it lost the zero-fee treatment (NULL: not)
        last_day    INTEGER NOT NULL,       -- the last day judged
        in_msat     INTEGER NOT NULL DEFAULT 0,
        out_msat    INTEGER NOT NULL DEFAULT 0,
        ratio_ppm   INTEGER NOT NULL DEFAULT 1000000
    );
    CREATE TABLE contribution_notices (
        author      TEXT NOT NULL,
        member      TEXT NOT NULL,
        day         TEXT NOT NULL,
        status      TEXT NOT NULL,
        body        TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        PRIMARY KEY (author, member, day, status)
    );
    CREATE TABLE contribution_disputes (
        author   TEXT NOT NULL,
        period   TEXT NOT NULL,
        field    TEXT NOT NULL,
        reported INTEGER NOT NULL,
        observed INTEGER NOT NULL,
        reason   TEXT NOT NULL,
        at       INTEGER NOT NULL,
        PRIMARY KEY (author, period, field)
    );
    CREATE TABLE contribution_counts (
        name TEXT PRIMARY KEY,
        n    INTEGER NOT NULL
    );
    """,
    # 2: the proof that a member signed two different reports for one period (an
    # equivocation): the second of the two variants every member keeps (the first is its
    # report); such a member's report is no settlement input for that period
    """
    CREATE TABLE contribution_conflicts (
        author      TEXT NOT NULL,
        period      TEXT NOT NULL,          -- YYYY-WW
        msg_id      TEXT NOT NULL,
        body        TEXT NOT NULL,          -- the other report as signed (canonical JSON)
        received_at INTEGER NOT NULL,
        PRIMARY KEY (author, period)
    );
    """,
]
