"""Fleet membership rows: the hive, members, tickets, challenges, vouches, bans, seen ids and the
per-peer outbox.  Writes take an open `Tx`; reads take the `Store`, or the `Tx` when they run
inside a transaction (so they see its writes)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.store.db import Db, Store, Tx


@dataclass(frozen=True)
class Hive:
    hive_id: str
    admin: str
    created_at: int
    joined_at: int


@dataclass(frozen=True)
class Member:
    node_id: str
    pubkey: str
    binding: str
    tier: str
    status: str
    joined_at: int
    promoted_at: int | None
    left_at: int | None

    def public(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id, "pubkey": self.pubkey, "tier": self.tier,
            "status": self.status, "joined_at": self.joined_at,
            "promoted_at": self.promoted_at, "left_at": self.left_at,
        }  # fmt: skip


@dataclass(frozen=True)
class OutItem:
    peer: str
    msg_id: str
    msg_type: int
    frame: bytes
    attempts: int
    expires_at: int


# --- the hive ---------------------------------------------------------------------------


def hive(db: Db) -> Hive | None:
    row = db.conn.execute("SELECT hive_id, admin, created_at, joined_at FROM fleet_hive").fetchone()
    return Hive(*row) if row else None


def set_hive(tx: Tx, h: Hive) -> None:
    tx.execute(
        "INSERT INTO fleet_hive (singleton, hive_id, admin, created_at, joined_at)"
        " VALUES (1, ?, ?, ?, ?)",
        (h.hive_id, h.admin, h.created_at, h.joined_at),
    )


def forget_hive(tx: Tx) -> None:
    """Leaving: drop the hive's state; seen ids and the outbox (our goodbyes) stay."""
    for table in (
        "fleet_hive", "fleet_members", "fleet_challenges", "fleet_vouches",
        "fleet_ban_proposals", "fleet_ban_votes",
    ):  # fmt: skip
        tx.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names


# --- members ------------------------------------------------------------------------------

_MEMBER = "node_id, pubkey, binding, tier, status, joined_at, promoted_at, left_at"


def member(db: Db, node_id: str) -> Member | None:
    row = db.conn.execute(
        f"SELECT {_MEMBER} FROM fleet_members WHERE node_id = ?",  # noqa: S608
        (node_id,),
    ).fetchone()
    return Member(*row) if row else None


def members(db: Db, *, status: str | None = "active") -> list[Member]:
    sql = f"SELECT {_MEMBER} FROM fleet_members"  # noqa: S608
    rows = (
        db.conn.execute(sql + " WHERE status = ? ORDER BY node_id", (status,))
        if status
        else db.conn.execute(sql + " ORDER BY node_id")
    ).fetchall()
    return [Member(*r) for r in rows]


def member_ids(db: Db) -> list[str]:
    """The active members' node ids, sorted (what a fan-out needs: no rows to build)."""
    rows = db.conn.execute(
        "SELECT node_id FROM fleet_members WHERE status = 'active' ORDER BY node_id"
    ).fetchall()
    return [r[0] for r in rows]


def add_member(
    tx: Tx, node_id: str, pubkey: str, binding: str, tier: str, joined_at: int,
    manifest: dict[str, Any] | None = None, promoted_at: int | None = None,
) -> bool:  # fmt: skip
    """Insert (or re-admit after leaving); False if already an active or banned member."""
    cur = tx.execute(
        "INSERT INTO fleet_members (node_id, pubkey, binding, tier, status, joined_at,"
        " promoted_at, manifest) VALUES (?, ?, ?, ?, 'active', ?, ?, ?)"
        " ON CONFLICT (node_id) DO UPDATE SET pubkey = excluded.pubkey,"
        " binding = excluded.binding, tier = excluded.tier, status = 'active',"
        " joined_at = excluded.joined_at, promoted_at = excluded.promoted_at, left_at = NULL,"
        " manifest = excluded.manifest WHERE fleet_members.status = 'left'",
        (
            node_id, pubkey, binding, tier, joined_at, promoted_at,
            json.dumps(manifest) if manifest else None,
        ),
    )  # fmt: skip
    return bool(cur.rowcount)


def promote(tx: Tx, node_id: str, at: int) -> bool:
    cur = tx.execute(
        "UPDATE fleet_members SET tier = 'member', promoted_at = ?"
        " WHERE node_id = ? AND tier = 'neophyte' AND status = 'active'",
        (at, node_id),
    )
    return bool(cur.rowcount)


def set_status(tx: Tx, node_id: str, status: str, at: int) -> bool:
    cur = tx.execute(
        "UPDATE fleet_members SET status = ?, left_at = ? WHERE node_id = ? AND status = 'active'",
        (status, at, node_id),
    )
    return bool(cur.rowcount)


# --- tickets and challenges ---------------------------------------------------------------


def record_ticket(
    tx: Tx, ticket_id: str, invitee: str, issuer: str, expires_at: int, text: str | None
) -> None:
    tx.execute(
        "INSERT OR IGNORE INTO fleet_tickets (ticket_id, invitee, issuer, expires_at, ticket)"
        " VALUES (?, ?, ?, ?, ?)",
        (ticket_id, invitee, issuer, expires_at, text),
    )


def ticket_used_by(db: Db, ticket_id: str) -> str | None:
    row = db.conn.execute("SELECT used_by FROM fleet_tickets WHERE ticket_id = ?", (ticket_id,))
    found = row.fetchone()
    return found[0] if found else None


def use_ticket(
    tx: Tx, ticket_id: str, invitee: str, issuer: str, expires: int, by: str, at: int
) -> None:
    record_ticket(tx, ticket_id, invitee, issuer, expires, None)
    tx.execute(
        "UPDATE fleet_tickets SET used_by = ?, used_at = ? WHERE ticket_id = ? AND used_by IS NULL",
        (by, at, ticket_id),
    )


def challenge(db: Db, peer: str) -> tuple[str, str, str, int] | None:
    row = db.conn.execute(
        "SELECT nonce, ticket_id, hello_key, created_at FROM fleet_challenges WHERE peer = ?",
        (peer,),
    ).fetchone()
    return tuple(row) if row else None


def pending_challenges(db: Db, since: int) -> int:
    cur = db.conn.execute("SELECT count(*) FROM fleet_challenges WHERE created_at > ?", (since,))
    return int(cur.fetchone()[0])


def put_challenge(tx: Tx, peer: str, nonce: str, ticket_id: str, key: str, at: int) -> None:
    tx.execute(
        "INSERT OR REPLACE INTO fleet_challenges (peer, nonce, ticket_id, hello_key, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (peer, nonce, ticket_id, key, at),
    )


def drop_challenge(tx: Tx, peer: str) -> None:
    tx.execute("DELETE FROM fleet_challenges WHERE peer = ?", (peer,))


# --- vouches and bans -----------------------------------------------------------------------


def add_vouch(tx: Tx, candidate: str, voucher: str, frame: str, at: int) -> bool:
    cur = tx.execute(
        "INSERT OR IGNORE INTO fleet_vouches (candidate, voucher, frame, at) VALUES (?, ?, ?, ?)",
        (candidate, voucher, frame, at),
    )
    return bool(cur.rowcount)


def vouches(db: Db, candidate: str) -> list[tuple[str, str]]:
    """(voucher, frame hex) for a candidate."""
    cur = db.conn.execute(
        "SELECT voucher, frame FROM fleet_vouches WHERE candidate = ? ORDER BY voucher",
        (candidate,),
    )
    return [tuple(r) for r in cur.fetchall()]


def add_proposal(
    tx: Tx, proposal_id: str, target: str, proposer: str, reason: str, frame: str, at: int
) -> bool:
    cur = tx.execute(
        "INSERT OR IGNORE INTO fleet_ban_proposals (proposal_id, target, proposer, reason, frame,"
        " created_at, state) VALUES (?, ?, ?, ?, ?, ?, 'open')",
        (proposal_id, target, proposer, reason, frame, at),
    )
    return bool(cur.rowcount)


def proposal(db: Db, proposal_id: str) -> dict[str, Any] | None:
    row = db.conn.execute(
        "SELECT proposal_id, target, proposer, reason, frame, created_at, state"
        " FROM fleet_ban_proposals WHERE proposal_id = ?",
        (proposal_id,),
    ).fetchone()
    names = ["proposal_id", "target", "proposer", "reason", "frame", "created_at", "state"]
    return dict(zip(names, row, strict=True)) if row else None


def open_proposal_for(db: Db, target: str) -> str | None:
    row = db.conn.execute(
        "SELECT proposal_id FROM fleet_ban_proposals WHERE target = ? AND state = 'open'"
        " ORDER BY created_at, proposal_id LIMIT 1",
        (target,),
    ).fetchone()
    return row[0] if row else None


def open_proposals(db: Db, proposer: str | None = None) -> list[str]:
    """The ids of the open ban proposals (of `proposer`, if given), oldest first."""
    cur = db.conn.execute(
        "SELECT proposal_id FROM fleet_ban_proposals WHERE state = 'open'"
        " AND (? IS NULL OR proposer = ?) ORDER BY created_at, proposal_id",
        (proposer, proposer),
    )
    return [r[0] for r in cur.fetchall()]


def proposals(db: Db) -> list[dict[str, Any]]:
    cur = db.conn.execute(
        "SELECT p.proposal_id, p.target, p.proposer, p.reason, p.created_at, p.state,"
        " (SELECT count(*) FROM fleet_ban_votes v WHERE v.proposal_id = p.proposal_id"
        "  AND v.approve = 1),"
        " (SELECT count(*) FROM fleet_ban_votes v WHERE v.proposal_id = p.proposal_id"
        "  AND v.approve = 0)"
        " FROM fleet_ban_proposals p ORDER BY p.created_at"
    )
    names = ["proposal_id", "target", "proposer", "reason", "created_at", "state", "yes", "no"]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def add_vote(tx: Tx, proposal_id: str, voter: str, approve: bool, frame: str, at: int) -> bool:
    cur = tx.execute(
        "INSERT OR IGNORE INTO fleet_ban_votes (proposal_id, voter, approve, frame, at)"
        " VALUES (?, ?, ?, ?, ?)",
        (proposal_id, voter, int(approve), frame, at),
    )
    return bool(cur.rowcount)


def votes(db: Db, proposal_id: str) -> list[tuple[str, bool, str]]:
    cur = db.conn.execute(
        "SELECT voter, approve, frame FROM fleet_ban_votes WHERE proposal_id = ? ORDER BY voter",
        (proposal_id,),
    )
    return [(v, bool(a), f) for v, a, f in cur.fetchall()]


def ban(tx: Tx, target: str, reason: str, at: int, proposal_id: str) -> bool:
    cur = tx.execute(
        "INSERT OR IGNORE INTO fleet_bans (target, reason, decided_at, proposal_id)"
        " VALUES (?, ?, ?, ?)",
        (target, reason, at, proposal_id),
    )
    tx.execute(
        "UPDATE fleet_ban_proposals SET state = 'enacted' WHERE target = ? AND state = 'open'",
        (target,),
    )
    return bool(cur.rowcount)


def is_banned(db: Db, node_id: str) -> bool:
    return (
        db.conn.execute("SELECT 1 FROM fleet_bans WHERE target = ?", (node_id,)).fetchone()
        is not None
    )


def bans(db: Db) -> list[dict[str, Any]]:
    cur = db.conn.execute("SELECT target, reason, decided_at FROM fleet_bans ORDER BY target")
    return [{"target": t, "reason": r, "decided_at": d} for t, r, d in cur.fetchall()]


def expire_proposals(tx: Tx, before: int) -> None:
    tx.execute(
        "UPDATE fleet_ban_proposals SET state = 'expired' WHERE state = 'open' AND created_at < ?",
        (before,),
    )


# --- seen ids and the outbox ----------------------------------------------------------------


def claim(tx: Tx, node: str, msg_id: str, at: int, via: str = "direct") -> bool:
    """Record a message id from `node`; False if it was handled before (a duplicate).
    `via`: 'direct' from its sender, or 'proof' when it arrived inside another message."""
    cur = tx.execute(
        "INSERT OR IGNORE INTO fleet_seen (node, msg_id, seen_at, via) VALUES (?, ?, ?, ?)",
        (node, msg_id, at, via),
    )
    return bool(cur.rowcount)


def seen_via(db: Db, node: str, msg_id: str) -> str | None:
    """How a message id was first seen ('direct' or 'proof'), or None."""
    cur = db.conn.execute(
        "SELECT via FROM fleet_seen WHERE node = ? AND msg_id = ?", (node, msg_id)
    )
    row = cur.fetchone()
    return row[0] if row else None


def prune_seen(tx: Tx, before: int) -> None:
    tx.execute("DELETE FROM fleet_seen WHERE seen_at < ?", (before,))


def enqueue(
    tx: Tx, peer: str, msg_id: str, msg_type: int, frame: bytes, at: int, ttl_s: int
) -> None:
    tx.execute(
        "INSERT OR IGNORE INTO fleet_outbox (peer, msg_id, msg_type, frame, created_at,"
        " expires_at, next_at, state) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending')",
        (peer, msg_id, msg_type, frame, at, at + ttl_s, float(at)),
    )


def requeue(
    tx: Tx, peer: str, msg_id: str, msg_type: int, frame: bytes, at: int, ttl_s: int
) -> None:
    """Queue a frame for `peer` afresh (last in line), whatever became of an earlier copy."""
    tx.execute("DELETE FROM fleet_outbox WHERE peer = ? AND msg_id = ?", (peer, msg_id))
    enqueue(tx, peer, msg_id, msg_type, frame, at, ttl_s)


def due(db: Db, peer: str, now: float, limit: int) -> list[OutItem]:
    cur = db.conn.execute(
        "SELECT peer, msg_id, msg_type, frame, attempts, expires_at FROM fleet_outbox"
        " WHERE state = 'pending' AND peer = ? AND next_at <= ?"
        " ORDER BY rowid LIMIT ?",  # the order they were queued in
        (peer, now, limit),
    )
    return [OutItem(p, m, t, bytes(f), a, e) for p, m, t, f, a, e in cur.fetchall()]


def next_due(db: Db, peers: set[str]) -> float | None:
    if not peers:
        return None
    marks = ",".join("?" * len(peers))
    row = db.conn.execute(
        f"SELECT min(next_at) FROM fleet_outbox WHERE state = 'pending' AND peer IN ({marks})",  # noqa: S608
        tuple(sorted(peers)),
    ).fetchone()
    return None if row is None or row[0] is None else float(row[0])


def sent(tx: Tx, item: OutItem, next_at: float, state: str, error: str | None) -> None:
    tx.execute(
        "UPDATE fleet_outbox SET attempts = attempts + 1, next_at = ?, state = ?, last_error = ?"
        " WHERE peer = ? AND msg_id = ? AND state = 'pending'",
        (next_at, state, error, item.peer, item.msg_id),
    )


def acked(tx: Tx, peer: str, msg_id: str, state: str, next_at: float, error: str | None) -> bool:
    """Settle an outbox item from an ack: 'acked', 'failed', or 'pending' again (retry later)."""
    cur = tx.execute(
        "UPDATE fleet_outbox SET state = ?, next_at = ?, last_error = ?"
        " WHERE peer = ? AND msg_id = ? AND state = 'pending'",
        (state, next_at, error, peer, msg_id),
    )
    return bool(cur.rowcount)


def wake_peer(tx: Tx, peer: str, now: float) -> None:
    tx.execute(
        "UPDATE fleet_outbox SET next_at = ? WHERE peer = ? AND state = 'pending'", (now, peer)
    )


def drop_peer(tx: Tx, peer: str, why: str) -> None:
    tx.execute(
        "UPDATE fleet_outbox SET state = 'failed', last_error = ?"
        " WHERE peer = ? AND state = 'pending'",
        (why, peer),
    )


def expire_outbox(tx: Tx, now: int) -> None:
    tx.execute(
        "UPDATE fleet_outbox SET state = 'expired' WHERE state = 'pending' AND expires_at <= ?",
        (now,),
    )


def outbox_counts(db: Db) -> dict[str, int]:
    cur = db.conn.execute("SELECT state, count(*) FROM fleet_outbox GROUP BY state")
    return {s: n for s, n in cur.fetchall()}


# --- one store per agent ----------------------------------------------------------------------

LEGACY_TABLE = re.compile(r"^fleet_[a-z_]{1,40}$")


def absorb_legacy(store: Store, legacy: Path, now: int) -> bool:
    """Fold a separate fleet store into `store`, once: the plugin kept its fleet rows in
    `fleet.sqlite` beside `agent.sqlite` until 2026-12.  Its `fleet_*` tables and fleet kv rows
    are copied in one transaction, then the file is renamed `<name>.absorbed` (kept, not
    deleted).  Nothing is copied if `store` is in a hive already: two hives never mix."""
    if not legacy.exists():
        return False
    Store(legacy).close()  # an older file is brought to the current schema first
    if hive(store) is not None:
        return False
    conn = store.conn
    conn.execute("ATTACH DATABASE ? AS legacy", (str(legacy),))
    try:
        names = [
            str(row[0])
            for row in conn.execute(
                "SELECT name FROM legacy.sqlite_master WHERE type = 'table' AND name LIKE 'fleet%'"
            )
        ]
        with store.transaction(now) as tx:
            for name in filter(LEGACY_TABLE.fullmatch, names):
                tx.execute(f"INSERT OR IGNORE INTO main.{name} SELECT * FROM legacy.{name}")  # noqa: S608 - names checked above
            tx.execute(
                "INSERT OR REPLACE INTO main.kv SELECT * FROM legacy.kv WHERE key LIKE 'fleet%'"
            )
    finally:
        conn.execute("DETACH DATABASE legacy")
    for suffix in ("", "-wal", "-shm"):
        part = Path(f"{legacy}{suffix}")
        if part.exists():
            part.rename(Path(f"{legacy}.absorbed{suffix}"))
    return True
