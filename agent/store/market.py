"""Marketplace rows: writes take an open `Tx`, reads take the `Store` (or, for the few an
inbound handler makes inside its transaction, the `Tx`)."""

from __future__ import annotations

from typing import Any

from agent.store.db import Db, Store, Tx, load_json_row, load_row
from events.bid import BidTerms
from events.contract import Contract, Offer
from events.listing import Listing
from events.reputation import ReputationCredential
from events.rfp import Rfp

# --- writes --------------------------------------------------------------------------------


def save_my_listing(tx: Tx, item: Listing, event_id: str) -> None:
    tx.execute(
        "INSERT OR REPLACE INTO my_listings (listing_id, listing, event_id, updated_at) VALUES"
        " (?, ?, ?, ?)",
        (item.listing_id, item.model_dump_json(), event_id, tx.now),
    )


def save_rfp(tx: Tx, address: str, author: str, rfp: Rfp, event_id: str, created_at: int) -> None:
    tx.execute(
        "INSERT INTO rfps (address, author, rfp, event_id, created_at) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (address) DO UPDATE SET rfp = excluded.rfp, event_id = excluded.event_id,"
        " created_at = excluded.created_at WHERE excluded.created_at > rfps.created_at"
        " OR (excluded.created_at = rfps.created_at AND excluded.event_id < rfps.event_id)",
        (address, author, rfp.model_dump_json(), event_id, created_at),
    )


def save_bid_commitment(tx: Tx, rfp: str, bidder: str, commitment: str) -> bool:
    """Record a sealed bid; False if this bidder already committed (the first one stands)."""
    cur = tx.execute(
        "INSERT OR IGNORE INTO bids_received (rfp, bidder, commitment, received_at) VALUES (?,"
        " ?, ?, ?)",
        (rfp, bidder, commitment, tx.now),
    )
    return cur.rowcount == 1


def reveal_bid(tx: Tx, rfp: str, bidder: str, terms: BidTerms) -> None:
    tx.execute(
        "UPDATE bids_received SET terms = ?, revealed_at = ? WHERE rfp = ? AND bidder = ? AND"
        " terms IS NULL",
        (terms.model_dump_json(), tx.now, rfp, bidder),
    )


def save_bid_made(tx: Tx, rfp: str, rfp_author: str, terms: BidTerms, nonce: str, commitment: str):
    tx.execute(
        "INSERT OR REPLACE INTO bids_made (rfp, rfp_author, terms, nonce, commitment) VALUES (?,"
        " ?, ?, ?, ?)",
        (rfp, rfp_author, terms.model_dump_json(), nonce, commitment),
    )


def mark_bid_revealed(tx: Tx, rfp: str) -> None:
    tx.execute("UPDATE bids_made SET revealed = 1 WHERE rfp = ?", (rfp,))


def save_offer(tx: Tx, offer: Offer, offerer: str, counterparty: str, direction: str) -> None:
    tx.execute(
        "INSERT OR IGNORE INTO offers (terms_hash, offer, offerer, counterparty, direction, state,"
        " created_at) VALUES (?, ?, ?, ?, ?, 'open', ?)",
        (offer.terms.hash, offer.model_dump_json(), offerer, counterparty, direction, tx.now),
    )


def save_contract(tx: Tx, contract: Contract, me: str) -> bool:
    """Store a signed contract (and close its offer); False if it was already stored."""
    client = contract.terms.client.removeprefix("did:nostr:")
    role = "client" if client == me else "provider"
    other = contract.terms.provider.removeprefix("did:nostr:") if role == "client" else client
    cur = tx.execute(
        "INSERT OR IGNORE INTO contracts (id, contract, counterparty, role, state, created_at)"
        " VALUES (?, ?, ?, ?, 'active', ?)",
        (contract.id, contract.model_dump_json(), other, role, tx.now),
    )
    tx.execute("UPDATE offers SET state = 'accepted' WHERE terms_hash = ?", (contract.id,))
    if cur.rowcount == 1 and contract.terms.trial is not None:
        terms = contract.terms
        tx.execute(
            "INSERT OR IGNORE INTO trials (contract, client, provider, started_at, ends_at,"
            " price_sat)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (contract.id, client, terms.provider.removeprefix("did:nostr:"), terms.starts_at,
             terms.starts_at + terms.trial.days * 86400, terms.trial.price_sat),
        )  # fmt: skip
    return cur.rowcount == 1


def set_contract_state(tx: Tx, contract_id: str, state: str, reason: str) -> None:
    tx.execute(
        "UPDATE contracts SET state = ?, state_reason = ? WHERE id = ? AND state = 'active'",
        (state, reason, contract_id),
    )


def save_heartbeat(tx: Tx, contract: str, provider: str, seq: int, sent_at: int) -> None:
    """Record a beat; a `seq` seen before (a provider restored from a backup counts from 0
    again) is a beat too, so a later one moves that row's times on rather than vanishing."""
    tx.execute(
        "INSERT INTO heartbeats (contract, provider, seq, sent_at, received_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (contract, seq) DO UPDATE SET"
        " sent_at = excluded.sent_at, received_at = excluded.received_at"
        " WHERE excluded.sent_at > heartbeats.sent_at",
        (contract, provider, seq, sent_at, tx.now),
    )


def save_credential(tx: Tx, address: str, cred: ReputationCredential, event_json: str) -> None:
    """Store a credential event; an older version of its address (or, in the same second, a
    higher id: NIP-01) never replaces the one stored, and only a newer one clears a
    revocation (a revoked credential re-delivered stays revoked)."""
    tx.execute(
        "INSERT INTO credentials (address, issuer, subject, credential, event, revoked,"
        " received_at) VALUES (?, ?, ?, ?, ?, 0, ?) ON CONFLICT (address) DO UPDATE SET"
        " credential = excluded.credential, event = excluded.event, revoked = 0,"
        " received_at = excluded.received_at WHERE"
        " json_extract(excluded.event, '$.created_at') > json_extract(event, '$.created_at')"
        " OR (json_extract(excluded.event, '$.created_at') = json_extract(event, '$.created_at')"
        " AND json_extract(excluded.event, '$.id') < json_extract(event, '$.id'))",
        (
            address,
            cred.issuer.removeprefix("did:nostr:"),
            cred.credentialSubject.id.removeprefix("did:nostr:"),
            cred.model_dump_json(),
            event_json,
            tx.now,
        ),
    )


def revoke_credential(tx: Tx, address: str, issuer: str, until: int) -> bool:
    """Only the issuer's deletion revokes, and only the versions made up to the deletion's
    `created_at` (NIP-09: a credential re-issued later stands); True if one was revoked."""
    cur = tx.execute(
        "UPDATE credentials SET revoked = 1 WHERE address = ? AND issuer = ?"
        " AND json_extract(event, '$.created_at') <= ?",
        (address, issuer, until),
    )
    return cur.rowcount == 1


# --- reads ---------------------------------------------------------------------------------


def _rows(store: Db, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    cur = store.conn.execute(sql, params)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur]


def my_listings(store: Store) -> dict[str, Listing]:
    rows = _rows(store, "SELECT listing FROM my_listings")
    return {(item := load_row(Listing, r["listing"])).listing_id: item for r in rows}


def my_listing_times(store: Store) -> dict[str, int]:
    """When each of our listings was last published (its latest event's `created_at`)."""
    rows = _rows(store, "SELECT listing_id, updated_at FROM my_listings")
    return {r["listing_id"]: int(r["updated_at"]) for r in rows}


def credentials_issued_about(store: Store, issuer: str, subject: str) -> list[ReputationCredential]:
    """`issuer`'s unrevoked credentials about `subject`."""
    rows = _rows(
        store,
        "SELECT credential FROM credentials WHERE issuer = ? AND subject = ? AND revoked = 0",
        (issuer, subject),
    )
    return [load_row(ReputationCredential, r["credential"]) for r in rows]


def credential_subject(store: Db, address: str) -> str | None:
    rows = _rows(store, "SELECT subject FROM credentials WHERE address = ?", (address,))
    return str(rows[0]["subject"]) if rows else None


def rfps(store: Store, newest: int = -1) -> list[dict[str, Any]]:
    """Newest first; with `newest` ≥ 0, only that many (-1: all)."""
    rows = _rows(
        store,
        "SELECT address, author, rfp, created_at FROM rfps ORDER BY created_at DESC LIMIT ?",
        (newest,),
    )
    return [{**r, "rfp": load_json_row(r["rfp"])} for r in rows]


def count_rfps(store: Store) -> int:
    return int(store.conn.execute("SELECT count(*) FROM rfps").fetchone()[0])


def rfp(store: Store, address: str) -> Rfp | None:
    rows = _rows(store, "SELECT rfp FROM rfps WHERE address = ?", (address,))
    return load_row(Rfp, rows[0]["rfp"]) if rows else None


def bids_received(store: Store, rfp_address: str) -> list[dict[str, Any]]:
    rows = _rows(
        store, "SELECT * FROM bids_received WHERE rfp = ? ORDER BY received_at", (rfp_address,)
    )
    return [{**r, "terms": load_json_row(r["terms"]) if r["terms"] else None} for r in rows]


def bid_made(store: Store, rfp_address: str) -> dict[str, Any] | None:
    rows = _rows(store, "SELECT * FROM bids_made WHERE rfp = ?", (rfp_address,))
    return rows[0] if rows else None


def offers(store: Store, state: str | None = None, newest: int = -1) -> list[dict[str, Any]]:
    """Oldest first; with `newest` ≥ 0, only the newest that many (-1: all)."""
    sql = (
        "SELECT * FROM (SELECT *, rowid AS n FROM offers WHERE ? IS NULL OR state = ?"
        " ORDER BY created_at DESC, n DESC LIMIT ?) ORDER BY created_at, n"
    )
    rows = _rows(store, sql, (state, state, newest))
    return [{k: v for k, v in r.items() if k != "n"} | {"offer": load_json_row(r["offer"])}
            for r in rows]  # fmt: skip


def count_offers(store: Store) -> int:
    return int(store.conn.execute("SELECT count(*) FROM offers").fetchone()[0])


def offer(store: Db, terms_hash: str) -> dict[str, Any] | None:
    rows = _rows(store, "SELECT * FROM offers WHERE terms_hash = ?", (terms_hash,))
    return {**rows[0], "offer": load_row(Offer, rows[0]["offer"])} if rows else None


def contracts(store: Store, state: str | None = None) -> list[dict[str, Any]]:
    sql = "SELECT * FROM contracts WHERE ? IS NULL OR state = ? ORDER BY created_at"
    rows = _rows(store, sql, (state, state))
    return [{**r, "contract": load_row(Contract, r["contract"])} for r in rows]


def last_heartbeat(store: Store, contract: str) -> int | None:
    row = store.conn.execute(
        "SELECT max(sent_at) FROM heartbeats WHERE contract = ?", (contract,)
    ).fetchone()
    return None if row[0] is None else int(row[0])


def heartbeat_times(store: Store, provider: str, since: int) -> list[tuple[str, int]]:
    return store.conn.execute(
        "SELECT contract, sent_at FROM heartbeats WHERE provider = ? AND sent_at >= ? ORDER BY"
        " sent_at",
        (provider, since),
    ).fetchall()


def trials(store: Store, client: str) -> list[dict[str, Any]]:
    return _rows(store, "SELECT * FROM trials WHERE client = ? ORDER BY started_at", (client,))


def pending_trials(store: Store, client: str, since: int) -> list[dict[str, Any]]:
    """Trials `client` offered since `since` that nobody accepted yet, shaped like `trials`
    rows (they count against the trial limits as if running: offered in parallel, they all
    could be)."""
    rows = _rows(
        store,
        "SELECT offer FROM offers WHERE direction = 'out' AND state = 'open' AND created_at >= ?",
        (since,),
    )
    pending = []
    for row in rows:
        terms = load_row(Offer, row["offer"]).terms
        if terms.trial is None or terms.client != f"did:nostr:{client}":
            continue
        ends = terms.starts_at + terms.trial.days * 86400
        provider = terms.provider.removeprefix("did:nostr:")
        pending.append({"provider": provider, "started_at": terms.starts_at, "ends_at": ends})
    return pending


def credentials_about(store: Store, subject: str) -> list[ReputationCredential]:
    rows = _rows(
        store, "SELECT credential FROM credentials WHERE subject = ? AND revoked = 0", (subject,)
    )
    return [load_row(ReputationCredential, r["credential"]) for r in rows]


def credential_rows(store: Store) -> list[dict[str, Any]]:
    return _rows(store, "SELECT address, issuer, subject, revoked, received_at FROM credentials")


def client_contract_ids(store: Store) -> list[str]:
    """The active contracts where we are the client (we watch their heartbeats)."""
    rows = store.conn.execute(
        "SELECT id FROM contracts WHERE state = 'active' AND role = 'client' ORDER BY id"
    )
    return [row[0] for row in rows]


def issued_credential(store: Store, address: str, issuer: str) -> bool:
    row = store.conn.execute(
        "SELECT 1 FROM credentials WHERE address = ? AND issuer = ?", (address, issuer)
    ).fetchone()
    return row is not None


# --- reads inside an inbound handler's transaction ---------------------------------------------


def contract_party(db: Db, contract_id: str) -> tuple[str, str, int] | None:
    """(counterparty, our role, heartbeat interval) of a stored contract; None if it is not
    ours."""
    row = db.conn.execute(
        "SELECT counterparty, role, contract FROM contracts WHERE id = ?", (contract_id,)
    ).fetchone()
    if row is None:
        return None
    return row[0], row[1], load_row(Contract, row[2]).terms.heartbeat_interval_s


def last_heartbeat_received(db: Db, contract: str) -> int | None:
    """When we received the last heartbeat of a contract (our clock); None before the first."""
    row = db.conn.execute(
        "SELECT max(received_at) FROM heartbeats WHERE contract = ?", (contract,)
    ).fetchone()
    return None if row[0] is None else int(row[0])


def rfp_json(db: Db, address: str) -> str | None:
    """A stored RFP as its JSON text (the caller parses it); None if there is none."""
    row = db.conn.execute("SELECT rfp FROM rfps WHERE address = ?", (address,)).fetchone()
    return None if row is None else row[0]


def bid_commitment(db: Db, rfp: str, bidder: str) -> str | None:
    """The sealed commitment `bidder` made for an RFP of ours; None if it made none."""
    row = db.conn.execute(
        "SELECT commitment FROM bids_received WHERE rfp = ? AND bidder = ?", (rfp, bidder)
    ).fetchone()
    return None if row is None else row[0]


def our_offer_json(db: Db, terms_hash: str) -> str | None:
    """An offer we sent, as its JSON text (the caller parses it); None if we sent none."""
    row = db.conn.execute(
        "SELECT offer FROM offers WHERE terms_hash = ? AND direction = 'out'", (terms_hash,)
    ).fetchone()
    return None if row is None else row[0]


def _count(db: Db, sql: str, params: tuple[Any, ...]) -> int:
    return int(db.conn.execute(sql, params).fetchone()[0])


def prune_rfps(tx: Tx, now: int, *, keep: str) -> None:
    """Forget others' RFPs past their award date (`keep`'s own stay: their bids refer to them)."""
    tx.execute(
        "DELETE FROM rfps WHERE author != ? AND json_extract(rfp, '$.award_by') <= ?", (keep, now)
    )


def open_rfps(db: Db, now: int, author: str | None = None) -> int:
    """RFPs still open (award date ahead), of `author` or of everyone."""
    return _count(
        db,
        "SELECT count(*) FROM rfps WHERE json_extract(rfp, '$.award_by') > ?"
        " AND (? IS NULL OR author = ?)",
        (now, author, author),
    )


def count_bids(db: Db, rfp: str) -> int:
    return _count(db, "SELECT count(*) FROM bids_received WHERE rfp = ?", (rfp,))


def open_offers_to_us(db: Db, sender: str | None = None, since: int = 0) -> int:
    """Open offers we received (since `since`), from `sender` or from anyone."""
    return _count(
        db,
        "SELECT count(*) FROM offers WHERE direction = 'in' AND state = 'open'"
        " AND created_at >= ? AND (? IS NULL OR offerer = ?)",
        (since, sender, sender),
    )


def credentials_held(db: Db, me: str, issuer: str | None = None, since: int = 0) -> int:
    """Others' credentials we received (since `since`), from `issuer` or from anyone."""
    return _count(
        db,
        "SELECT count(*) FROM credentials WHERE issuer != ? AND received_at >= ?"
        " AND (? IS NULL OR issuer = ?)",
        (me, since, issuer, issuer),
    )
