"""Escrow rows: the wallet's proofs, tickets and parts, the node's preimages.

Writes take an open `Tx`, reads a `Store` or `Tx`.  Amounts are integers (sat).  Preimages at
rest are XOR-masked with HMAC-SHA256(agent secret, lock hash): a copy of the database alone
does not reveal them.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from agent.store.advisory import Db, _row, _rows
from agent.store.db import Tx, load_json_row, load_row
from events.escrow import CashuProof, Ticket

# --- wallet proofs ---------------------------------------------------------------------------


def add_proofs(tx: Tx, mint: str, proofs: list[CashuProof], origin: str) -> None:
    for p in proofs:
        tx.execute(
            "INSERT OR IGNORE INTO wallet_proofs (secret, mint, keyset_id, amount, c, state,"
            " origin, updated_at) VALUES (?, ?, ?, ?, ?, 'unspent', ?, ?)",
            (p.secret, mint, p.id, p.amount, p.C, origin, tx.now),
        )


def known_secrets(db: Db, secrets: list[str]) -> set[str]:
    """Which of these proof secrets the wallet ledger holds already (in any state)."""
    marks = ", ".join("?" for _ in secrets)
    sql = f"SELECT secret FROM wallet_proofs WHERE secret IN ({marks})"  # noqa: S608
    return {row["secret"] for row in _rows(db, sql, tuple(secrets))} if secrets else set()


def spend_proofs(tx: Tx, proofs: list[CashuProof]) -> None:
    for p in proofs:
        tx.execute(
            "UPDATE wallet_proofs SET state = 'spent', updated_at = ? WHERE secret = ?",
            (tx.now, p.secret),
        )


def unspend_proofs(tx: Tx, proofs: list[CashuProof]) -> None:
    """Give back proofs set aside for a payment the mint did not make."""
    for p in proofs:
        tx.execute(
            "UPDATE wallet_proofs SET state = 'unspent', updated_at = ? WHERE secret = ?",
            (tx.now, p.secret),
        )


def records(db: Db, prefix: str) -> dict[str, Any]:
    """kv records under `prefix` (mint and melt quotes), by the rest of their key."""
    rows = _rows(db, "SELECT key, value FROM kv WHERE key LIKE ? ORDER BY key", (prefix + "%",))
    return {r["key"][len(prefix) :]: load_json_row(r["value"]) for r in rows}


def unspent(db: Db, mint: str) -> list[CashuProof]:
    rows = _rows(
        db,
        "SELECT keyset_id, amount, secret, c FROM wallet_proofs WHERE mint = ? AND state ="
        " 'unspent' ORDER BY amount DESC, secret",
        (mint,),
    )
    return [
        CashuProof(id=r["keyset_id"], amount=r["amount"], secret=r["secret"], C=r["c"])
        for r in rows
    ]


def balances(db: Db) -> dict[str, int]:
    rows = _rows(
        db,
        "SELECT mint, sum(amount) AS total FROM wallet_proofs WHERE state = 'unspent'"
        " GROUP BY mint",
    )
    return {r["mint"]: int(r["total"]) for r in rows}


# --- tickets and parts -----------------------------------------------------------------------


def save_ticket(tx: Tx, ticket: Ticket, role: str) -> bool:
    cur = tx.execute(
        "INSERT OR IGNORE INTO escrow_tickets (ticket_id, role, ticket, created_at)"
        " VALUES (?, ?, ?, ?)",
        (ticket.ticket_id, role, ticket.model_dump_json(), tx.now),
    )
    if cur.rowcount == 0:
        return False
    for part in ticket.parts:
        tx.execute(
            "INSERT INTO escrow_parts (ticket_id, part_index, lock_hash, amount, locktime, state,"
            " updated_at) VALUES (?, ?, ?, ?, ?, 'locked', ?)",
            (ticket.ticket_id, part.index, part.lock_hash, part.amount_sat, part.locktime, tx.now),
        )
    return True


def credential_of(db: Db, credential_id: str) -> tuple[str, str] | None:
    """(node, role) of a management credential this agent knows, or None."""
    row = _row(
        db, "SELECT node, role FROM mgmt_credentials WHERE credential_id = ?", (credential_id,)
    )
    return None if row is None else (str(row["node"]), str(row["role"]))


def unvouched_tickets(db: Db) -> int:
    """Tickets held (payee) that name no credential this agent holds (one its check at the
    mint refused is kept, for its reason, but holds no place)."""
    row = _row(
        db,
        "SELECT count(*) AS n FROM escrow_tickets t WHERE t.role = 'payee'"
        " AND (t.checked IS NULL OR t.checked IN ('ok', 'legacy')"  # (passed or unchecked:
        " OR substr(t.checked, 1, 4) = 'ok: ')"  # 'ok: <fees>' passed too, checks.py)
        " AND NOT EXISTS (SELECT 1 FROM mgmt_credentials c WHERE c.role = 'held'"
        " AND c.credential_id = json_extract(t.ticket, '$.credential_id'))",
    )
    return 0 if row is None else int(row["n"])


def live_tickets_from(db: Db, node: str) -> int:
    """Tickets held (payee) from `node` with a part still locked (and not refused)."""
    row = _row(
        db,
        "SELECT count(*) AS n FROM escrow_tickets t WHERE t.role = 'payee'"
        " AND (t.checked IS NULL OR t.checked IN ('ok', 'legacy')"  # (passed or unchecked:
        " OR substr(t.checked, 1, 4) = 'ok: ')"  # 'ok: <fees>' passed too, checks.py)
        " AND json_extract(t.ticket, '$.node') = ? AND EXISTS (SELECT 1 FROM escrow_parts p"
        " WHERE p.ticket_id = t.ticket_id AND p.state = 'locked')",
        (node,),
    )
    return 0 if row is None else int(row["n"])


def receipt_preimages(db: Db, node: str, credential_id: str) -> list[tuple[str, str]]:
    """(receipt id, preimage) of the receipts held from `node` under `credential_id` that
    carry a preimage (a ticket that arrives after its receipt takes them)."""
    rows = _rows(
        db,
        "SELECT receipt_id, json_extract(receipt, '$.preimage') AS preimage FROM receipts_held"
        " WHERE node = ? AND credential_id = ? AND json_extract(receipt, '$.preimage') IS NOT NULL",
        (node, credential_id),
    )
    return [(str(r["receipt_id"]), str(r["preimage"])) for r in rows]


def ticket(db: Db, ticket_id: str) -> tuple[Ticket, str, int] | None:
    row = _row(
        db, "SELECT ticket, role, successes FROM escrow_tickets WHERE ticket_id = ?", (ticket_id,)
    )
    if row is None:
        return None
    return load_row(Ticket, row["ticket"]), row["role"], row["successes"]


def tickets(db: Db, role: str | None = None, newest: int = -1) -> list[dict[str, Any]]:
    """Oldest first; with `newest` ≥ 0, only the newest that many (-1: all)."""
    rows = _rows(
        db,
        "SELECT * FROM (SELECT ticket_id, role, ticket, successes, created_at, checked"
        " FROM escrow_tickets"
        " WHERE ? IS NULL OR role = ? ORDER BY created_at DESC, ticket_id DESC LIMIT ?)"
        " ORDER BY created_at, ticket_id",
        (role, role, newest),
    )
    for r in rows:
        r["parts"] = parts(db, r["ticket_id"])
    return rows


def unchecked_tickets(db: Db) -> list[str]:
    """Held tickets (payee) whose ecash was not checked at the mint yet, oldest first (a
    partial index holds just these)."""
    sql = "SELECT ticket_id FROM escrow_tickets WHERE role = 'payee' AND checked IS NULL"
    return [str(r["ticket_id"]) for r in _rows(db, sql + " ORDER BY created_at, ticket_id")]


def set_checked(tx: Tx, ticket_id: str, verdict: str) -> None:
    """'ok', or the refusal as `CODE: message` (checks.py)."""
    tx.execute(
        "UPDATE escrow_tickets SET checked = ?, checked_at = ? WHERE ticket_id = ?",
        (verdict, tx.now, ticket_id),
    )


def checked(db: Db, ticket_id: str) -> str | None:
    row = _row(db, "SELECT checked FROM escrow_tickets WHERE ticket_id = ?", (ticket_id,))
    return None if row is None else row["checked"]


def count_tickets(db: Db, role: str) -> int:
    row = _row(db, "SELECT count(*) AS n FROM escrow_tickets WHERE role = ?", (role,))
    return 0 if row is None else int(row["n"])


def parts(db: Db, ticket_id: str) -> list[dict[str, Any]]:
    return _rows(
        db,
        "SELECT part_index, lock_hash, amount, locktime, state, preimage, measure_from,"
        " released_by, note, swap_from, updated_at FROM escrow_parts WHERE ticket_id = ? ORDER BY"
        " part_index",
        (ticket_id,),
    )


def parts_in(db: Db, role: str, *states: str) -> list[dict[str, Any]]:
    marks = ", ".join("?" for _ in states)
    sql = (
        "SELECT p.*, t.ticket FROM escrow_parts p JOIN escrow_tickets t USING (ticket_id)"  # noqa: S608
        f" WHERE t.role = ? AND p.state IN ({marks}) ORDER BY p.locktime"
    )
    return _rows(db, sql, (role, *states))


def part_by_hash(db: Db, role: str, lock_hash: str) -> dict[str, Any] | None:
    return _row(
        db,
        "SELECT p.*, t.ticket FROM escrow_parts p JOIN escrow_tickets t USING (ticket_id)"
        " WHERE t.role = ? AND p.lock_hash = ?",
        (role, lock_hash),
    )


PART_FIELDS = frozenset({"preimage", "measure_from", "released_by", "note", "swap_from"})


def move_part(
    tx: Tx, ticket_id: str, index: int, frm: tuple[str, ...], to: str, **fields: Any
) -> bool:
    assert set(fields) <= PART_FIELDS
    sets = ", ".join(f"{k} = ?" for k in fields)
    marks = ", ".join("?" for _ in frm)
    cur = tx.execute(
        f"UPDATE escrow_parts SET state = ?, updated_at = ?{', ' + sets if sets else ''}"  # noqa: S608
        f" WHERE ticket_id = ? AND part_index = ? AND state IN ({marks})",
        (to, tx.now, *fields.values(), ticket_id, index, *frm),
    )
    return cur.rowcount == 1


def set_part(tx: Tx, ticket_id: str, index: int, **fields: Any) -> None:
    assert set(fields) <= PART_FIELDS
    sets = ", ".join(f"{k} = ?" for k in fields)
    tx.execute(
        f"UPDATE escrow_parts SET {sets}, updated_at = ? WHERE ticket_id = ? AND part_index = ?",  # noqa: S608
        (*fields.values(), tx.now, ticket_id, index),
    )


def count_success(tx: Tx, ticket_id: str) -> int:
    tx.execute(
        "UPDATE escrow_tickets SET successes = successes + 1 WHERE ticket_id = ?", (ticket_id,)
    )
    row = _row(tx, "SELECT successes FROM escrow_tickets WHERE ticket_id = ?", (ticket_id,))
    assert row is not None
    return int(row["successes"])


# --- the node's preimages --------------------------------------------------------------------


def _mask(agent_secret: bytes, lock_hash: str) -> bytes:
    return hmac.new(agent_secret, b"hive-agent/escrow/" + lock_hash.encode(), "sha256").digest()


def hold_secret(tx: Tx, agent_secret: bytes, preimage: bytes) -> str:
    digest = hashlib.sha256(preimage).hexdigest()
    masked = bytes(a ^ b for a, b in zip(preimage, _mask(agent_secret, digest), strict=True))
    tx.execute(
        "INSERT INTO escrow_secrets (lock_hash, masked, state, created_at)"
        " VALUES (?, ?, 'held', ?)",
        (digest, masked.hex(), tx.now),
    )
    return digest


def release_secret(tx: Tx, agent_secret: bytes, lock_hash: str) -> str | None:
    """The preimage, marked released; None if unknown (released again gives it again)."""
    row = _row(tx, "SELECT masked FROM escrow_secrets WHERE lock_hash = ?", (lock_hash,))
    if row is None:
        return None
    tx.execute(
        "UPDATE escrow_secrets SET state = 'released', released_at = coalesce(released_at, ?)"
        " WHERE lock_hash = ?",
        (tx.now, lock_hash),
    )
    masked = bytes.fromhex(row["masked"])
    preimage = bytes(a ^ b for a, b in zip(masked, _mask(agent_secret, lock_hash), strict=True))
    assert hashlib.sha256(preimage).hexdigest() == lock_hash
    return preimage.hex()


def secret_state(db: Db, lock_hash: str) -> str | None:
    row = _row(db, "SELECT state FROM escrow_secrets WHERE lock_hash = ?", (lock_hash,))
    return None if row is None else str(row["state"])


def forget_drafts(tx: Tx, ticket_id: str, parts: int) -> None:
    """The funded ticket is saved: its parts' drafts (preimages being made) are done."""
    for index in range(parts):
        forget_draft(tx, ticket_id, index)


def forget_draft(tx: Tx, ticket_id: str, index: int) -> None:
    tx.execute("DELETE FROM kv WHERE key = ?", (f"escrow-draft:{ticket_id}:{index}",))


def log_forward(tx: Tx, at: int, in_channel: str, out_channel: str, fee_msat: int) -> None:
    """A settled forward, for measuring performance bonuses."""
    tx.execute(
        "INSERT INTO forwards_log (at, in_channel, out_channel, fee_msat) VALUES (?, ?, ?, ?)",
        (at, in_channel, out_channel, fee_msat),
    )


def fees_earned(db: Db, start: int, end: int, channel: str | None = None) -> int:
    """Forwarding fees (msat) settled in [start, end), through `channel` if given."""
    sql = "SELECT coalesce(sum(fee_msat), 0) FROM forwards_log WHERE at >= ? AND at < ?"
    args: tuple[Any, ...] = (start, end)
    if channel:
        sql += " AND (out_channel = ? OR in_channel = ?)"
        args += (channel, channel)
    return int(db.conn.execute(sql, args).fetchone()[0])


async def empty_cashu_scratch(cashu_db: Any) -> None:
    """Empty the cashu library's own proof table (in its wallet database, not ours): a
    scratchpad for restores — this store's ledger is the record of what the wallet holds."""
    await cashu_db.execute("DELETE FROM proofs", {})
