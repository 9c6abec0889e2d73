"""Advisor-command rows: writes take an open `Tx`, reads take a `Store` (or a `Tx`)."""

from __future__ import annotations

import functools
import json
from enum import StrEnum
from typing import Any

from agent.store.db import Db, Tx, load_json_row, load_row
from events.command import Command
from events.credential import Grant
from events.receipt import GENESIS, Receipt

DAY = 86400


class CommandState(StrEnum):
    """Where a received command is (the `commands.state` column); moved only by `move`."""

    RECEIVED = "received"  # stored at intake, not yet decided
    QUEUED = "queued"  # waits for the operator's approval
    CONFIRM = "confirm"  # waits for approval, then a confirmation
    CONFIRMED = "confirmed"  # approved, waits for the confirmation
    MULTISIG = "multisig"  # waits for m of n approvers
    READY = "ready"  # approved: runs at the next step
    EXECUTING = "executing"  # claimed, budget reserved; on the node now (or interrupted)
    SETTLING = "settling"  # ran; outcome and receipt being recorded
    DONE = "done"  # final, with an OK receipt
    REFUSED = "refused"  # final, with an error receipt


class ReplyChannel(StrEnum):
    """How a command came, so how it is answered (the `commands.reply` column)."""

    RECEIPT = "receipt"  # a command rumor: answered by receipt rumors only
    DM = "dm"  # a plain-text NIP-17 DM: its receipts also as one-line DMs


def _conn(db: Db) -> Any:
    return db.conn


def _row(db: Db, sql: str, params: tuple[Any, ...] = ()) -> dict[str, Any] | None:
    cur = _conn(db).execute(sql, params)
    row = cur.fetchone()
    return None if row is None else dict(zip([d[0] for d in cur.description], row, strict=True))


def _rows(db: Db, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    cur = _conn(db).execute(sql, params)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur]


# --- credentials ----------------------------------------------------------------------------


def save_credential(tx: Tx, grant: Grant, role: str) -> None:
    cred = grant.credential
    tx.execute(
        "INSERT OR IGNORE INTO mgmt_credentials (credential_id, role, node, advisor, grant_json,"
        " valid_until, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            cred.credential_id,
            role,
            cred.node,
            cred.advisor,
            grant.model_dump_json(),
            cred.valid_until,
            tx.now,
        ),
    )


def revoke_credential(tx: Tx, credential_id: str) -> bool:
    cur = tx.execute(
        "UPDATE mgmt_credentials SET revoked_at = ? WHERE credential_id = ? AND revoked_at IS NULL",
        (tx.now, credential_id),
    )
    return cur.rowcount == 1


@functools.lru_cache(maxsize=256)
def _grant(text: str) -> Grant:
    """A stored grant, parsed once per distinct text (a grant never changes once signed; the
    node reads its credential twice per command)."""
    return load_row(Grant, text)


def credential(db: Db, credential_id: str) -> tuple[Grant, int | None, str] | None:
    """(grant, revoked_at, role) or None."""
    row = _row(
        db,
        "SELECT grant_json, revoked_at, role FROM mgmt_credentials WHERE credential_id = ?",
        (credential_id,),
    )
    return None if row is None else (_grant(row["grant_json"]), row["revoked_at"], row["role"])


def credentials(db: Db, role: str | None = None, newest: int = -1) -> list[dict[str, Any]]:
    """Oldest first; with `newest` ≥ 0, only the newest that many (-1: all)."""
    rows = _rows(
        db,
        "SELECT * FROM (SELECT *, rowid AS n FROM mgmt_credentials WHERE ? IS NULL OR role = ?"
        " ORDER BY created_at DESC, n DESC LIMIT ?) ORDER BY created_at, n",
        (role, role, newest),
    )
    for r in rows:
        del r["n"]
    return [{**r, "grant": load_json_row(r.pop("grant_json"))} for r in rows]


def count_credentials(db: Db, role: str) -> int:
    row = _row(db, "SELECT count(*) AS n FROM mgmt_credentials WHERE role = ?", (role,))
    return 0 if row is None else int(row["n"])


def active_held(db: Db, node: str, now: int) -> Grant | None:
    """The newest unrevoked, unexpired credential we hold for `node`."""
    row = _row(
        db,
        "SELECT grant_json FROM mgmt_credentials WHERE role = 'held' AND node = ? AND revoked_at"
        " IS NULL"
        " AND valid_until > ? ORDER BY created_at DESC LIMIT 1",
        (node, now),
    )
    return None if row is None else _grant(row["grant_json"])


def active_granted_to(db: Db, advisor: str, now: int) -> Grant | None:
    row = _row(
        db,
        "SELECT grant_json FROM mgmt_credentials WHERE role = 'granted' AND advisor = ? AND"
        " revoked_at IS NULL"
        " AND valid_until > ? ORDER BY created_at DESC LIMIT 1",
        (advisor, now),
    )
    return None if row is None else _grant(row["grant_json"])


def claim_nonce(tx: Tx, credential_id: str, nonce: str) -> bool:
    cur = tx.execute(
        "INSERT OR IGNORE INTO nonces (credential_id, nonce, seen_at) VALUES (?, ?, ?)",
        (credential_id, nonce, tx.now),
    )
    return cur.rowcount == 1


# --- commands -------------------------------------------------------------------------------


def insert_command(tx: Tx, cmd: Command, sender: str, reply: str) -> None:
    tx.execute(
        "INSERT INTO commands (command_id, sender, command, params_hash, reply, state, received_at,"
        " updated_at) VALUES (?, ?, ?, ?, ?, 'received', ?, ?)",
        (cmd.command_id, sender, cmd.model_dump_json(), cmd.params_hash, reply, tx.now, tx.now),
    )


def command_row(db: Db, command_id: str) -> dict[str, Any] | None:
    return _row(db, "SELECT * FROM commands WHERE command_id = ?", (command_id,))


def commands_in(db: Db, *states: CommandState) -> list[dict[str, Any]]:
    marks = ",".join("?" * len(states))
    sql = f"SELECT * FROM commands WHERE state IN ({marks}) ORDER BY received_at"  # noqa: S608
    return _rows(db, sql, states)


def waiting_from(db: Db, sender: str, states: tuple[CommandState, ...]) -> int:
    """How many of `sender`'s commands are in one of `states` (waiting for a decision)."""
    marks = ",".join("?" * len(states))
    sql = f"SELECT count(*) AS n FROM commands WHERE state IN ({marks}) AND sender = ?"  # noqa: S608
    row = _row(db, sql, (*states, sender))
    return 0 if row is None else int(row["n"])


def move(
    tx: Tx,
    command_id: str,
    from_states: tuple[CommandState, ...],
    to: CommandState,
    **fields: Any,
) -> bool:
    """Compare-and-set a command's state (so two processes can never both claim it)."""
    sets = ", ".join(f"{k} = ?" for k in fields)
    marks = ",".join("?" * len(from_states))
    cur = tx.execute(
        f"UPDATE commands SET state = ?, updated_at = ?{', ' + sets if sets else ''}"  # noqa: S608
        f" WHERE command_id = ? AND state IN ({marks})",
        (to, tx.now, *fields.values(), command_id, *from_states),
    )
    return cur.rowcount == 1


def add_approval(tx: Tx, command_id: str, approver: str, step: str) -> bool:
    cur = tx.execute(
        "INSERT OR IGNORE INTO approvals (command_id, approver, step, at) VALUES (?, ?, ?, ?)",
        (command_id, approver, step, tx.now),
    )
    return cur.rowcount == 1


def approvals(db: Db, command_id: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {"approve": set(), "confirm": set(), "reject": set()}
    for row in _rows(
        db, "SELECT approver, step FROM approvals WHERE command_id = ?", (command_id,)
    ):
        out[row["step"]].add(row["approver"])
    return out


# --- receipts -------------------------------------------------------------------------------


def chain_tip(db: Db, credential_id: str) -> tuple[int, str]:
    """(last seq, last receipt hash) of a credential's chain; (0, genesis) when empty."""
    row = _row(
        db,
        "SELECT seq, receipt FROM receipts WHERE credential_id = ? ORDER BY seq DESC LIMIT 1",
        (credential_id,),
    )
    if row is None:
        return 0, GENESIS
    return row["seq"], load_json_row(row["receipt"])["receipt_hash"]


def save_receipt(tx: Tx, receipt: Receipt, diff: dict[str, list[Any]] | None = None) -> None:
    """Store a sealed receipt; `diff`: the node state its command changed, `{"channel.field":
    [old, new]}` (None: nothing recorded — the command did not run, or failed)."""
    tx.execute(
        "INSERT INTO receipts (receipt_id, credential_id, seq, command_id, receipt, created_at,"
        " state_diff) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            receipt.receipt_id,
            receipt.credential_id,
            receipt.seq,
            receipt.command_id,
            receipt.model_dump_json(),
            tx.now,
            None if diff is None else json.dumps(diff),
        ),
    )


def state_diffs(db: Db, credential_id: str, first: int, last: int) -> dict[int, Any]:
    """The recorded state diffs of a credential's receipts `first`..`last` (by seq); a receipt
    without one is absent."""
    rows = _rows(
        db,
        "SELECT seq, state_diff FROM receipts WHERE credential_id = ? AND seq BETWEEN ? AND ?"
        " AND state_diff IS NOT NULL",
        (credential_id, first, last),
    )
    return {r["seq"]: json.loads(r["state_diff"]) for r in rows}


def latest_receipt(db: Db, command_id: str) -> Receipt | None:
    row = _row(
        db,
        "SELECT receipt FROM receipts WHERE command_id = ? ORDER BY seq DESC LIMIT 1",
        (command_id,),
    )
    return None if row is None else load_row(Receipt, row["receipt"])


def receipts_after(db: Db, rowid: int, limit: int = 500) -> list[tuple[int, Receipt]]:
    """Receipts this node sealed after row `rowid`, oldest first, with their row numbers (the
    plugin's notifications follow the table with this)."""
    rows = _rows(
        db,
        "SELECT rowid AS n, receipt FROM receipts WHERE rowid > ? ORDER BY rowid LIMIT ?",
        (rowid, limit),
    )
    return [(r["n"], load_row(Receipt, r["receipt"])) for r in rows]


def last_receipt_row(db: Db) -> int:
    row = _row(db, "SELECT COALESCE(MAX(rowid), 0) AS n FROM receipts")
    return 0 if row is None else int(row["n"])


def chain(db: Db, credential_id: str) -> list[Receipt]:
    rows = _rows(
        db, "SELECT receipt FROM receipts WHERE credential_id = ? ORDER BY seq", (credential_id,)
    )
    return [load_row(Receipt, r["receipt"]) for r in rows]


def save_held_receipt(tx: Tx, receipt: Receipt) -> bool:
    cur = tx.execute(
        "INSERT OR IGNORE INTO receipts_held (receipt_id, node, credential_id, seq, command_id,"
        " status, receipt,"
        " received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            receipt.receipt_id,
            receipt.node,
            receipt.credential_id,
            receipt.seq,
            receipt.command_id,
            receipt.status.value,
            receipt.model_dump_json(),
            tx.now,
        ),
    )
    return cur.rowcount == 1


# the receipts we hold, each read only from the node that granted us its credential (a
# receipt naming it from anyone else is never part of a chain): every read of them joins so
HELD_FROM = (
    "receipts_held r JOIN mgmt_credentials c"
    " ON c.credential_id = r.credential_id AND c.node = r.node AND c.role = 'held'"
)


def held_receipts(
    db: Db, node: str | None = None, credential_id: str | None = None
) -> list[Receipt]:
    """Receipts of the credentials we hold, each from the node that granted it (a receipt
    naming a credential we do not hold from its sender is never read as part of a chain)."""
    rows = _rows(
        db,
        f"SELECT r.receipt FROM {HELD_FROM}"  # noqa: S608
        " WHERE (? IS NULL OR r.node = ?) AND (? IS NULL OR r.credential_id = ?)"
        " ORDER BY r.credential_id, r.seq",
        (node, node, credential_id, credential_id),
    )
    return [load_row(Receipt, r["receipt"]) for r in rows]


def held_for_command(db: Db, command_id: str) -> list[Receipt]:
    rows = _rows(
        db,
        f"SELECT r.receipt FROM {HELD_FROM}"  # noqa: S608
        " WHERE r.command_id = ? ORDER BY r.seq",
        (command_id,),
    )
    return [load_row(Receipt, r["receipt"]) for r in rows]


def save_sent(tx: Tx, cmd: Command) -> None:
    tx.execute(
        "INSERT OR IGNORE INTO commands_sent (command_id, node, credential_id, command, sent_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (cmd.command_id, cmd.node, cmd.credential_id, cmd.model_dump_json(), tx.now),
    )


# --- budgets and rates ----------------------------------------------------------------------


def usage(db: Db, scope: str, now: int, days: int) -> dict[str, int]:
    """Sums over the last `days` UTC days including today."""
    today = now // DAY
    row = _row(
        db,
        "SELECT coalesce(sum(sats_moved), 0) AS sats_moved, coalesce(sum(fees_sat), 0) AS fees_sat,"
        " coalesce(sum(channels), 0) AS channels, coalesce(sum(actions), 0) AS actions"
        " FROM usage WHERE scope = ? AND day > ?",
        (scope, today - days),
    )
    assert row is not None
    return {k: int(v) for k, v in row.items()}


def add_usage(
    tx: Tx, scope: str, sats_moved: int = 0, fees_sat: int = 0, channels: int = 0, actions: int = 0
) -> None:
    """Add to a scope's usage today; a change of nothing writes nothing (settling a command
    that cost exactly its reservation, the common case, would add zeros)."""
    if not (sats_moved or fees_sat or channels or actions):
        return
    tx.execute(
        "INSERT INTO usage (scope, day, sats_moved, fees_sat, channels, actions) VALUES (?, ?,"
        " ?, ?, ?, ?)"
        " ON CONFLICT (scope, day) DO UPDATE SET sats_moved = sats_moved + excluded.sats_moved,"
        " fees_sat = fees_sat + excluded.fees_sat, channels = channels + excluded.channels,"
        " actions = actions + excluded.actions",
        (scope, tx.now // DAY, sats_moved, fees_sat, channels, actions),
    )


def record_rate(tx: Tx, credential_id: str, dangerous: bool) -> None:
    tx.execute(
        "INSERT INTO rate_buckets (credential_id, at, n, dangerous) VALUES (?, ?, 1, ?)"
        " ON CONFLICT (credential_id, at) DO UPDATE SET n = n + 1,"
        " dangerous = dangerous + excluded.dangerous",
        (credential_id, tx.now, int(dangerous)),
    )
    # old buckets are pruned once a minute, not on every command
    if _pruned.get(id(tx.conn)) != tx.now // 60:
        _pruned[id(tx.conn)] = tx.now // 60
        tx.execute("DELETE FROM rate_buckets WHERE at < ?", (tx.now - 3600,))


_pruned: dict[int, int] = {}  # connection → the minute its rate buckets were last pruned


def rate(db: Db, credential_id: str, now: int) -> tuple[int, int]:
    """(all, dangerous) commands of a credential in the last 60 seconds."""
    row = _row(
        db,
        "SELECT coalesce(sum(n), 0) AS n, coalesce(sum(dangerous), 0) AS d FROM rate_buckets"
        " WHERE credential_id = ? AND at > ?",
        (credential_id, now - 60),
    )
    assert row is not None
    return int(row["n"]), int(row["d"])


def rate_since(db: Db, key: str, since: int) -> int:
    """How many times `key` was counted after `since` (within the hour rate buckets are kept)."""
    row = _row(
        db,
        "SELECT coalesce(sum(n), 0) AS n FROM rate_buckets WHERE credential_id = ? AND at > ?",
        (key, since),
    )
    assert row is not None
    return int(row["n"])


def save_dm_origin(tx: Tx, command_id: str, rumor_id: str) -> None:
    """Remember the NIP-17 DM a command came in (its DM receipts answer it with an `e` tag)."""
    tx.set_kv(f"dm-origin:{command_id}", rumor_id)


def dm_origin(db: Db, command_id: str) -> str | None:
    row = _row(db, "SELECT value FROM kv WHERE key = ?", (f"dm-origin:{command_id}",))
    return None if row is None else str(json.loads(row["value"]))


def forget_dm_origin(tx: Tx, command_id: str) -> None:
    tx.execute("DELETE FROM kv WHERE key = ?", (f"dm-origin:{command_id}",))


def finalize(tx: Tx, command_id: str, state: CommandState, outcome: str) -> None:
    """Record a command's final state and outcome (whatever state it was in)."""
    tx.execute(
        "UPDATE commands SET state = ?, outcome = ?, updated_at = ? WHERE command_id = ?",
        (state, outcome, tx.now, command_id),
    )


def record_decision(tx: Tx, command_id: str, danger: int, route: str, reasons: str) -> None:
    tx.execute(
        "UPDATE commands SET danger = ?, route = ?, reasons = ? WHERE command_id = ?",
        (danger, route, reasons, command_id),
    )
