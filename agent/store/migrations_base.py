"""The base slice's schema history: the transport, marketplace, advisory, escrow and
fleet-membership tables from before slices, and the transport's since (agent/store/migrations.py
keeps the list of slices).  Append only: a released migration is never edited."""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: outbox, inbound dedupe, counters, relay status, cursors, relay lists, first handlers
    """
    CREATE TABLE outbox (
        event_id        TEXT PRIMARY KEY,
        event_json      TEXT NOT NULL,
        kind            INTEGER NOT NULL,
        targets         TEXT NOT NULL,      -- JSON list of relay URLs
        min_acks        INTEGER NOT NULL,
        enqueued_at     INTEGER NOT NULL,
        expires_at      INTEGER NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        state           TEXT NOT NULL CHECK (state IN ('pending', 'done', 'failed', 'expired')),
        last_error      TEXT
    );
    CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
    CREATE TABLE outbox_acks (
        event_id TEXT NOT NULL REFERENCES outbox (event_id) ON DELETE CASCADE,
        relay    TEXT NOT NULL,
        acked_at INTEGER NOT NULL,
        refusal  TEXT,                      -- NULL: the relay holds it; else its permanent refusal
        PRIMARY KEY (event_id, relay)
    );
    CREATE TABLE seen (
        event_id TEXT PRIMARY KEY,
        seen_at  INTEGER NOT NULL,
        kind     INTEGER NOT NULL,
        outcome  TEXT NOT NULL              -- 'ok' or the error code it was refused with
    );
    CREATE INDEX seen_by_age ON seen (seen_at);
    CREATE TABLE msg_ids (
        msg_id  TEXT NOT NULL,
        sender  TEXT NOT NULL,
        seen_at INTEGER NOT NULL,
        PRIMARY KEY (sender, msg_id)
    );
    CREATE INDEX msg_ids_by_age ON msg_ids (seen_at);
    CREATE TABLE error_counts (code TEXT PRIMARY KEY, count INTEGER NOT NULL);
    CREATE TABLE relay_status (
        url          TEXT PRIMARY KEY,
        status       TEXT NOT NULL,
        read         INTEGER NOT NULL,
        write        INTEGER NOT NULL,
        since        INTEGER NOT NULL,      -- when it entered this status
        attempts     INTEGER NOT NULL,      -- consecutive failed connection attempts
        acks         INTEGER NOT NULL,
        rejections   INTEGER NOT NULL,
        received     INTEGER NOT NULL,
        last_error   TEXT
    );
    CREATE TABLE cursors (
        relay           TEXT NOT NULL,
        sub             TEXT NOT NULL,
        last_created_at INTEGER NOT NULL,
        PRIMARY KEY (relay, sub)
    );
    CREATE TABLE relay_lists (
        pubkey     TEXT NOT NULL,
        kind       INTEGER NOT NULL,        -- 10002 (NIP-65) or 10050 (NIP-17 DM inbox)
        created_at INTEGER NOT NULL,
        relays     TEXT NOT NULL,           -- JSON [[url, marker], ...]
        PRIMARY KEY (pubkey, kind)
    );
    CREATE TABLE profiles (
        pubkey     TEXT PRIMARY KEY,
        created_at INTEGER NOT NULL,
        event_id   TEXT NOT NULL,
        payload    TEXT NOT NULL
    );
    CREATE TABLE notes (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        msg_id      TEXT NOT NULL,
        sender      TEXT NOT NULL,
        text        TEXT NOT NULL,
        reply_to    TEXT,
        received_at INTEGER NOT NULL
    );
    CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # 2: marketplace - own listings, RFPs, bids, offers, contracts, heartbeats, trials, credentials
    """
    CREATE TABLE my_listings (
        listing_id TEXT PRIMARY KEY,
        listing    TEXT NOT NULL,           -- the Listing model, JSON
        event_id   TEXT NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE rfps (
        address    TEXT PRIMARY KEY,        -- 36381:<author>:<d>
        author     TEXT NOT NULL,
        rfp        TEXT NOT NULL,
        event_id   TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE bids_received (
        rfp        TEXT NOT NULL,
        bidder     TEXT NOT NULL,
        commitment TEXT NOT NULL,
        terms      TEXT,                    -- set once revealed
        received_at INTEGER NOT NULL,
        revealed_at INTEGER,
        PRIMARY KEY (rfp, bidder)
    );
    CREATE TABLE bids_made (
        rfp        TEXT PRIMARY KEY,
        rfp_author TEXT NOT NULL,
        terms      TEXT NOT NULL,
        nonce      TEXT NOT NULL,           -- secret until the reveal
        commitment TEXT NOT NULL,
        revealed   INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE offers (
        terms_hash TEXT PRIMARY KEY,
        offer      TEXT NOT NULL,
        offerer    TEXT NOT NULL,
        counterparty TEXT NOT NULL,
        direction  TEXT NOT NULL CHECK (direction IN ('in', 'out')),
        state      TEXT NOT NULL CHECK (state IN ('open', 'accepted')),
        created_at INTEGER NOT NULL
    );
    CREATE TABLE contracts (
        id         TEXT PRIMARY KEY,        -- the terms hash
        contract   TEXT NOT NULL,
        counterparty TEXT NOT NULL,
        role       TEXT NOT NULL CHECK (role IN ('client', 'provider')),
        state      TEXT NOT NULL CHECK (state IN ('active', 'ended', 'flagged')),
        created_at INTEGER NOT NULL,
        state_reason TEXT
    );
    CREATE TABLE heartbeats (
        contract   TEXT NOT NULL,
        provider   TEXT NOT NULL,
        seq        INTEGER NOT NULL,
        sent_at    INTEGER NOT NULL,
        received_at INTEGER NOT NULL,
        PRIMARY KEY (contract, seq)
    );
    CREATE INDEX heartbeats_by_provider ON heartbeats (provider, sent_at);
    CREATE TABLE trials (
        contract   TEXT PRIMARY KEY,
        client     TEXT NOT NULL,
        provider   TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        ends_at    INTEGER NOT NULL,
        price_sat  INTEGER NOT NULL
    );
    CREATE TABLE credentials (
        address    TEXT PRIMARY KEY,        -- 36383:<issuer>:<d>
        issuer     TEXT NOT NULL,
        subject    TEXT NOT NULL,
        credential TEXT NOT NULL,
        event      TEXT NOT NULL,
        revoked    INTEGER NOT NULL DEFAULT 0,
        received_at INTEGER NOT NULL
    );
    CREATE INDEX credentials_by_subject ON credentials (subject);
    """,
    # 3: advisor commands - credentials, nonces, commands, approvals, receipts, usage, rates
    """
    CREATE TABLE mgmt_credentials (
        credential_id TEXT PRIMARY KEY,
        role        TEXT NOT NULL CHECK (role IN ('granted', 'held')),
        node        TEXT NOT NULL,
        advisor     TEXT NOT NULL,
        grant_json  TEXT NOT NULL,
        valid_until INTEGER NOT NULL,
        revoked_at  INTEGER,
        created_at  INTEGER NOT NULL
    );
    CREATE TABLE nonces (
        credential_id TEXT NOT NULL,
        nonce   TEXT NOT NULL,
        seen_at INTEGER NOT NULL,
        PRIMARY KEY (credential_id, nonce)
    );
    CREATE TABLE commands (
        command_id  TEXT PRIMARY KEY,
        sender      TEXT NOT NULL,
        command     TEXT NOT NULL,          -- the Command, JSON
        params_hash TEXT NOT NULL,
        reply       TEXT NOT NULL CHECK (reply IN ('receipt', 'dm')),
        state       TEXT NOT NULL,          -- received, queued, confirm, confirmed, multisig,
                                            -- oracle, ready, executing, done, refused, expired
        danger      INTEGER,
        route       TEXT,
        reasons     TEXT,
        decide_by   INTEGER,
        received_at INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL,
        reserved    TEXT,                   -- budget reserved at execution, JSON
        outcome     TEXT                    -- result or error, JSON
    );
    CREATE INDEX commands_by_state ON commands (state);
    CREATE TABLE approvals (
        command_id TEXT NOT NULL,
        approver   TEXT NOT NULL,
        step       TEXT NOT NULL CHECK (step IN ('approve', 'confirm', 'reject')),
        at         INTEGER NOT NULL,
        PRIMARY KEY (command_id, approver, step)
    );
    CREATE TABLE receipts (
        receipt_id    TEXT PRIMARY KEY,
        credential_id TEXT NOT NULL,
        seq           INTEGER NOT NULL,
        command_id    TEXT NOT NULL,
        receipt       TEXT NOT NULL,
        created_at    INTEGER NOT NULL,
        UNIQUE (credential_id, seq)
    );
    CREATE TABLE receipts_held (
        receipt_id    TEXT PRIMARY KEY,
        node          TEXT NOT NULL,
        credential_id TEXT NOT NULL,
        seq           INTEGER NOT NULL,
        command_id    TEXT NOT NULL,
        status        TEXT NOT NULL,
        receipt       TEXT NOT NULL,
        received_at   INTEGER NOT NULL
    );
    CREATE INDEX receipts_held_by_command ON receipts_held (command_id);
    CREATE TABLE usage (
        scope      TEXT NOT NULL,           -- 'node' or a credential id
        day        INTEGER NOT NULL,        -- unix day number (UTC)
        sats_moved INTEGER NOT NULL DEFAULT 0,
        fees_sat   INTEGER NOT NULL DEFAULT 0,
        channels   INTEGER NOT NULL DEFAULT 0,
        actions    INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (scope, day)
    );
    CREATE TABLE rate_events (
        credential_id TEXT NOT NULL,
        at        INTEGER NOT NULL,
        dangerous INTEGER NOT NULL
    );
    CREATE INDEX rate_events_by_credential ON rate_events (credential_id, at);
    CREATE TABLE commands_sent (
        command_id    TEXT PRIMARY KEY,
        node          TEXT NOT NULL,
        credential_id TEXT NOT NULL,
        command       TEXT NOT NULL,
        sent_at       INTEGER NOT NULL
    );
    """,
    # 4: escrow — the wallet's proofs, tickets (funded or held) and their parts, and the node's
    # preimages (XOR-masked with a key derived from the agent's secret)
    """
    CREATE TABLE wallet_proofs (
        secret     TEXT PRIMARY KEY,
        mint       TEXT NOT NULL,
        keyset_id  TEXT NOT NULL,
        amount     INTEGER NOT NULL CHECK (amount > 0),
        c          TEXT NOT NULL,
        state      TEXT NOT NULL CHECK (state IN ('unspent', 'spent')),
        origin     TEXT NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE INDEX wallet_proofs_unspent ON wallet_proofs (mint, state);
    CREATE TABLE escrow_tickets (
        ticket_id  TEXT PRIMARY KEY,
        role       TEXT NOT NULL CHECK (role IN ('funder', 'payee')),
        ticket     TEXT NOT NULL,
        successes  INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE escrow_parts (
        ticket_id    TEXT NOT NULL REFERENCES escrow_tickets (ticket_id),
        part_index   INTEGER NOT NULL,
        lock_hash    TEXT NOT NULL,
        amount       INTEGER NOT NULL CHECK (amount > 0),
        locktime     INTEGER NOT NULL,
        state        TEXT NOT NULL CHECK (state IN
                     ('locked', 'released', 'redeemed', 'refunded', 'lapsed')),
        preimage     TEXT,                  -- the payee's copy, once released
        measure_from INTEGER,               -- performance bonus: when its window started
        released_by  TEXT,                  -- receipt or release that revealed it
        note         TEXT,
        updated_at   INTEGER NOT NULL,
        PRIMARY KEY (ticket_id, part_index)
    );
    CREATE INDEX escrow_parts_by_hash ON escrow_parts (lock_hash);
    CREATE TABLE forwards_log (
        at          INTEGER NOT NULL,       -- when the agent saw it settle (its clock)
        in_channel  TEXT NOT NULL,
        out_channel TEXT NOT NULL,
        fee_msat    INTEGER NOT NULL
    );
    CREATE INDEX forwards_log_by_time ON forwards_log (at);
    CREATE TABLE escrow_secrets (
        lock_hash  TEXT PRIMARY KEY,
        masked     TEXT NOT NULL,           -- preimage XOR HMAC(agent key, lock hash)
        state      TEXT NOT NULL CHECK (state IN ('held', 'released')),
        created_at INTEGER NOT NULL,
        released_at INTEGER
    );
    """,
    # 5: fleet membership over custom messages
    """
    CREATE TABLE fleet_hive (
        singleton  INTEGER PRIMARY KEY CHECK (singleton = 1),
        hive_id    TEXT NOT NULL,
        admin      TEXT NOT NULL,           -- the genesis node
        created_at INTEGER NOT NULL,
        joined_at  INTEGER NOT NULL         -- when this node became a member
    );
    CREATE TABLE fleet_members (
        node_id     TEXT PRIMARY KEY,
        pubkey      TEXT NOT NULL,          -- its Nostr key (signs its fleet messages)
        binding     TEXT NOT NULL,          -- CLN signmessage over that key, by the node
        tier        TEXT NOT NULL CHECK (tier IN ('neophyte', 'member')),
        status      TEXT NOT NULL CHECK (status IN ('active', 'left', 'banned')),
        joined_at   INTEGER NOT NULL,
        promoted_at INTEGER,
        left_at     INTEGER,
        manifest    TEXT
    );
    CREATE TABLE fleet_tickets (
        ticket_id  TEXT PRIMARY KEY,
        invitee    TEXT NOT NULL,
        issuer     TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        ticket     TEXT,                    -- the text, for tickets this node issued
        used_by    TEXT,
        used_at    INTEGER
    );
    CREATE TABLE fleet_challenges (
        peer       TEXT PRIMARY KEY,
        nonce      TEXT NOT NULL,
        ticket_id  TEXT NOT NULL,
        hello_key  TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE fleet_vouches (
        candidate TEXT NOT NULL,
        voucher   TEXT NOT NULL,
        frame     TEXT NOT NULL,            -- the signed VOUCH, carried again in PROMOTION
        at        INTEGER NOT NULL,
        PRIMARY KEY (candidate, voucher)
    );
    CREATE TABLE fleet_ban_proposals (
        proposal_id TEXT PRIMARY KEY,
        target      TEXT NOT NULL,
        proposer    TEXT NOT NULL,
        reason      TEXT NOT NULL,
        frame       TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        state       TEXT NOT NULL CHECK (state IN ('open', 'enacted', 'expired'))
    );
    CREATE TABLE fleet_ban_votes (
        proposal_id TEXT NOT NULL,
        voter       TEXT NOT NULL,
        approve     INTEGER NOT NULL,
        frame       TEXT NOT NULL,
        at          INTEGER NOT NULL,
        PRIMARY KEY (proposal_id, voter)
    );
    CREATE TABLE fleet_bans (
        target      TEXT PRIMARY KEY,
        reason      TEXT NOT NULL,
        decided_at  INTEGER NOT NULL,
        proposal_id TEXT NOT NULL
    );
    CREATE TABLE fleet_seen (
        node    TEXT NOT NULL,
        msg_id  TEXT NOT NULL,
        seen_at INTEGER NOT NULL,
        via     TEXT NOT NULL CHECK (via IN ('direct', 'proof')),
        PRIMARY KEY (node, msg_id)
    );
    CREATE INDEX fleet_seen_by_time ON fleet_seen (seen_at);
    CREATE TABLE fleet_outbox (
        peer       TEXT NOT NULL,
        msg_id     TEXT NOT NULL,
        msg_type   INTEGER NOT NULL,
        frame      BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        attempts   INTEGER NOT NULL DEFAULT 0,
        next_at    REAL NOT NULL,
        state      TEXT NOT NULL CHECK (state IN ('pending', 'acked', 'failed', 'expired')),
        last_error TEXT,
        PRIMARY KEY (peer, msg_id)
    );
    CREATE INDEX fleet_outbox_due ON fleet_outbox (state, peer, next_at);
    """,
    # 6: command rates counted per (credential, second) instead of one row per command, so a
    # rate check reads at most 60 rows however busy the credential (the last hour's rows of
    # the old table are dropped: rate windows restart at the upgrade)
    """
    DROP TABLE rate_events;
    CREATE TABLE rate_buckets (
        credential_id TEXT NOT NULL,
        at        INTEGER NOT NULL,         -- unix second
        n         INTEGER NOT NULL,
        dangerous INTEGER NOT NULL,
        PRIMARY KEY (credential_id, at)
    ) WITHOUT ROWID;
    CREATE INDEX rate_buckets_by_age ON rate_buckets (at);
    """,
    # 7: outbox rows know the address of a replaceable event (kind:pubkey:d) and its date, so a
    # newer version supersedes an older one still waiting (state 'superseded'); both outbox
    # tables are rebuilt because SQLite cannot change a CHECK constraint in place (acks first:
    # dropping `outbox` would cascade into them)
    """
    CREATE TABLE outbox_new (
        event_id        TEXT PRIMARY KEY,
        event_json      TEXT NOT NULL,
        kind            INTEGER NOT NULL,
        targets         TEXT NOT NULL,
        min_acks        INTEGER NOT NULL,
        enqueued_at     INTEGER NOT NULL,
        expires_at      INTEGER NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        state           TEXT NOT NULL
            CHECK (state IN ('pending', 'done', 'failed', 'expired', 'superseded')),
        last_error      TEXT,
        address         TEXT,               -- kind:pubkey:d of a replaceable event, else NULL
        created_at      INTEGER NOT NULL DEFAULT 0
    );
    INSERT INTO outbox_new (event_id, event_json, kind, targets, min_acks, enqueued_at,
        expires_at, attempts, next_attempt_at, state, last_error)
        SELECT event_id, event_json, kind, targets, min_acks, enqueued_at, expires_at, attempts,
            next_attempt_at, state, last_error FROM outbox;
    CREATE TABLE outbox_acks_new (
        event_id TEXT NOT NULL REFERENCES outbox_new (event_id) ON DELETE CASCADE,
        relay    TEXT NOT NULL,
        acked_at INTEGER NOT NULL,
        refusal  TEXT,
        PRIMARY KEY (event_id, relay)
    );
    INSERT INTO outbox_acks_new SELECT event_id, relay, acked_at, refusal FROM outbox_acks;
    DROP TABLE outbox_acks;
    DROP TABLE outbox;
    ALTER TABLE outbox_new RENAME TO outbox;
    ALTER TABLE outbox_acks_new RENAME TO outbox_acks;
    CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
    CREATE INDEX outbox_by_address ON outbox (address, state) WHERE address IS NOT NULL;
    """,
    # 8: the proof of work (NIP-13 bits) a recipient's inbox list asks of gift wraps to it
    """
    ALTER TABLE relay_lists ADD COLUMN pow INTEGER NOT NULL DEFAULT 0;
    """,
    # 9: the date of each event seen, so NIP-77 catch-up can tell relays what we already hold
    # (queried through seen_by_age: an event is seen after it was made; another index here
    # cost the inbound pipeline 6 %)
    """
    ALTER TABLE seen ADD COLUMN created_at INTEGER NOT NULL DEFAULT 0;
    """,
    # 10: who a key is to us, by index (a gift wrap's seal signer is looked up as it arrives)
    """
    CREATE INDEX mgmt_credentials_by_advisor ON mgmt_credentials (advisor);
    CREATE INDEX mgmt_credentials_by_node ON mgmt_credentials (node);
    CREATE INDEX contracts_by_counterparty ON contracts (counterparty);
    CREATE INDEX offers_by_offerer ON offers (offerer);
    CREATE INDEX offers_by_counterparty ON offers (counterparty);
    CREATE INDEX commands_sent_by_node ON commands_sent (node);
    """,
    # 11: where a final swap's outputs start (NUT-13 `<keyset>:<counter>`), recorded before it
    # is sent, so a swap whose answer was lost is restored from the mint (NUT-09)
    """
    ALTER TABLE escrow_parts ADD COLUMN swap_from TEXT;
    """,
    # 12: notes counted per sender and in all as each arrives (the limits): by index, not a scan
    """CREATE INDEX notes_by_sender ON notes (sender, received_at);
    CREATE INDEX notes_by_age ON notes (received_at);""",
    # 13: the inbound dedupe set and the outbox's per-relay acks keyed by their primary keys
    # alone (WITHOUT ROWID): each row was written twice, into the table and into the index of
    # its key, a page more in every commit that records an event or a delivery
    """
    CREATE TABLE seen_new (
        event_id   TEXT PRIMARY KEY,
        seen_at    INTEGER NOT NULL,
        kind       INTEGER NOT NULL,
        outcome    TEXT NOT NULL,
        created_at INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    INSERT INTO seen_new SELECT event_id, seen_at, kind, outcome, created_at FROM seen
        WHERE event_id IS NOT NULL;
    DROP TABLE seen;
    ALTER TABLE seen_new RENAME TO seen;
    CREATE INDEX seen_by_age ON seen (seen_at);
    CREATE TABLE outbox_acks_new (
        event_id TEXT NOT NULL REFERENCES outbox (event_id) ON DELETE CASCADE,
        relay    TEXT NOT NULL,
        acked_at INTEGER NOT NULL,
        refusal  TEXT,
        PRIMARY KEY (event_id, relay)
    ) WITHOUT ROWID;
    INSERT INTO outbox_acks_new SELECT event_id, relay, acked_at, refusal FROM outbox_acks;
    DROP TABLE outbox_acks;
    ALTER TABLE outbox_acks_new RENAME TO outbox_acks;
    """,
]
