"""The fleet slice's schema history (agent/store/migrations.py keeps the list of slices).
Append only: a released migration is never edited."""

from __future__ import annotations

FLEET: list[str] = [
    # 1: state gossip — the latest signed state record per member (the frame it came in kept
    # as received, the record and its owner's signature kept verbatim so anti-entropy can
    # hand it on), our own record's version counter (never reused, never reset by leaving a
    # hive), and presence: when each member was last heard from
    """
    CREATE TABLE fleet_states (
        owner       TEXT PRIMARY KEY,       -- the member's node id
        version     INTEGER NOT NULL,
        ts          INTEGER NOT NULL,       -- the record's own timestamp
        record      TEXT NOT NULL,          -- the record as signed (canonical JSON)
        sig         TEXT NOT NULL,          -- the owner's signature over it
        frame       BLOB NOT NULL,          -- the GOSSIP frame it arrived in, verbatim
        via         TEXT NOT NULL,          -- the peer it came from (the owner: first hand)
        received_at INTEGER NOT NULL
    );
    CREATE TABLE fleet_gossip_self (
        singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
        version   INTEGER NOT NULL,         -- the last version used (bumped before sending)
        sent_at   INTEGER NOT NULL
    );
    CREATE TABLE fleet_presence (
        node_id   TEXT PRIMARY KEY,
        last_seen INTEGER NOT NULL
    );
    """,
    # 2: anti-entropy — the fleet's durable facts (each proved by one signed frame, kept
    # verbatim so it can be handed on as it was signed), named by what they state
    """
    CREATE TABLE fleet_facts (
        fact_id  TEXT PRIMARY KEY,          -- 64 hex digits, derived from what the fact states
        kind     TEXT NOT NULL,             -- state, join, promotion, ban, left
        subject  TEXT NOT NULL,             -- the node it is about
        ts       INTEGER NOT NULL,          -- from the signed content (the same for every holder)
        msg_id   TEXT NOT NULL,             -- the proving frame's id and type
        msg_type INTEGER NOT NULL,
        frame    BLOB NOT NULL,             -- the proving frame, verbatim
        added_at INTEGER NOT NULL
    );
    CREATE INDEX fleet_facts_by_subject ON fleet_facts (kind, subject);
    """,
    # 3: presence over time and gossip counters — seconds each member was seen up per UTC day
    # (30 days kept), the last evidence of it being up (a gap longer than the heartbeat allows
    # credits nothing), and how many records were sent, accepted, forwarded, refused by code
    """
    CREATE TABLE fleet_uptime (
        node_id TEXT NOT NULL,
        day     INTEGER NOT NULL,           -- UTC day: unix time // 86400
        up_s    INTEGER NOT NULL,           -- seconds seen up that day (at most 86400)
        PRIMARY KEY (node_id, day)
    );
    CREATE TABLE fleet_uptime_marks (
        node_id TEXT PRIMARY KEY,
        since   INTEGER NOT NULL,           -- the first evidence kept (observed from then)
        at      INTEGER NOT NULL            -- the last evidence that the node was up
    );
    CREATE TABLE fleet_gossip_counts (
        name TEXT PRIMARY KEY,              -- sent, received, forwarded, refused:<CODE>
        n    INTEGER NOT NULL
    );
    """,
    # 4: intent locks — every intent this member knows (its own and the other members'), its
    # state, the answers to its own, and how far the action it guards has got (own only)
    """
    CREATE TABLE fleet_intents (
        intent_id  TEXT PRIMARY KEY,        -- the id of the INTENT frame that announced it
        owner      TEXT NOT NULL,
        kind       TEXT NOT NULL,
        target     TEXT NOT NULL,
        amount_sat INTEGER NOT NULL,
        hold_s     INTEGER NOT NULL,
        created    INTEGER NOT NULL,        -- the INTENT frame's timestamp
        expires_at INTEGER NOT NULL,
        status     TEXT NOT NULL,           -- pending, committed, aborted, done, failed, expired
        mine       INTEGER NOT NULL,
        waiting    TEXT NOT NULL,           -- (own) JSON list: members whose answer it needs
        acks       TEXT NOT NULL,           -- (own) JSON object: member → ok, conflict, refused:…
        reason     TEXT NOT NULL,
        exec       TEXT NOT NULL,           -- (own) none, claimed, waiting, finished
        outcome    TEXT NOT NULL,           -- (own) what the action reported
        origin     TEXT NOT NULL,           -- (own) planner, hive-expand, operator, …
        frame      BLOB NOT NULL,           -- the INTENT frame, verbatim
        updated_at INTEGER NOT NULL
    );
    CREATE INDEX fleet_intents_by_target ON fleet_intents (kind, target);
    CREATE INDEX fleet_intents_by_owner ON fleet_intents (owner, status);
    """,
]
