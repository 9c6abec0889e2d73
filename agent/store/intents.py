"""Intent locks (agent/fleet/intents.py): every intent this member knows, as the pure core's
`Lock` plus what only the store keeps (the announcing frame, how far our own action got).
Writes take an open `Tx`; reads take the `Store` or the `Tx`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from agent.fleet.intent_rules import Lock, Status
from agent.store.db import Db, Tx

_COLS = (
    "intent_id, owner, kind, target, amount_sat, hold_s, created, expires_at, status, mine,"
    " waiting, acks, reason, exec, outcome, origin, frame"
)


@dataclass(frozen=True)
class IntentRow:
    lock: Lock
    exec: str = "none"  # (own) none → claimed → waiting → finished
    outcome: str = ""
    origin: str = ""
    frame: bytes = b""

    def to_dict(self) -> dict[str, Any]:
        k = self.lock
        return {
            "id": k.id, "owner": k.owner, "kind": k.kind, "target": k.target,
            "amount_sat": k.amount_sat, "hold_s": k.hold_s, "created": k.created,
            "expires_at": k.expires_at, "status": k.status.value, "mine": k.mine,
            "waiting": sorted(k.waiting), "acks": dict(sorted(k.acks.items())),
            "reason": k.reason, "exec": self.exec, "outcome": self.outcome, "origin": self.origin,
        }  # fmt: skip


def _row(r: tuple[Any, ...]) -> IntentRow:
    lock = Lock(
        id=r[0], owner=r[1], kind=r[2], target=r[3], amount_sat=int(r[4]), hold_s=int(r[5]),
        created=int(r[6]), expires_at=int(r[7]), status=Status(r[8]), mine=bool(r[9]),
        waiting=frozenset(json.loads(r[10])), acks=dict(json.loads(r[11])), reason=r[12],
    )  # fmt: skip
    return IntentRow(lock, r[13], r[14], r[15], bytes(r[16]))


def put(tx: Tx, row: IntentRow) -> None:
    k = row.lock
    tx.execute(
        f"INSERT OR REPLACE INTO fleet_intents ({_COLS}, updated_at)"  # noqa: S608
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            k.id, k.owner, k.kind, k.target, k.amount_sat, k.hold_s, k.created, k.expires_at,
            k.status.value, int(k.mine), json.dumps(sorted(k.waiting)),
            json.dumps(k.acks, sort_keys=True), k.reason, row.exec, row.outcome, row.origin,
            row.frame, tx.now,
        ),
    )  # fmt: skip


def get(db: Db, intent_id: str) -> IntentRow | None:
    cur = db.conn.execute(
        f"SELECT {_COLS} FROM fleet_intents WHERE intent_id = ?",  # noqa: S608
        (intent_id,),
    )
    r = cur.fetchone()
    return None if r is None else _row(r)


def on_target(db: Db, kind: str, target: str) -> list[Lock]:
    cur = db.conn.execute(
        f"SELECT {_COLS} FROM fleet_intents WHERE kind = ? AND target = ?",  # noqa: S608
        (kind, target),
    )
    return [_row(r).lock for r in cur.fetchall()]


def own_open(db: Db) -> list[IntentRow]:
    """Our own intents still to be driven: pending, or committed with an action to finish."""
    cur = db.conn.execute(
        f"SELECT {_COLS} FROM fleet_intents WHERE mine = 1"  # noqa: S608
        " AND (status = 'pending' OR (status IN ('committed', 'expired') AND exec != 'finished'))"
        " ORDER BY created, intent_id"
    )
    return [_row(r) for r in cur.fetchall()]


def live_count(db: Db, owner: str, now: int) -> int:
    return int(
        db.conn.execute(
            "SELECT count(*) FROM fleet_intents WHERE owner = ? AND expires_at > ?"
            " AND status IN ('pending', 'committed')",
            (owner, now),
        ).fetchone()[0]
    )


def recent_count(db: Db, owner: str, since: int) -> int:
    return int(
        db.conn.execute(
            "SELECT count(*) FROM fleet_intents WHERE owner = ? AND created >= ?", (owner, since)
        ).fetchone()[0]
    )


def around(db: Db, owner: str, ts: int, span: int) -> tuple[int, int]:
    """The owner's intents announced in (ts − span, ts] and in [ts, ts + span)."""
    r = db.conn.execute(
        "SELECT coalesce(sum(created > ? AND created <= ?), 0),"
        " coalesce(sum(created >= ? AND created < ?), 0) FROM fleet_intents WHERE owner = ?",
        (ts - span, ts, ts, ts + span, owner),
    ).fetchone()
    return int(r[0]), int(r[1])


def listing(db: Db, limit: int = 200) -> list[IntentRow]:
    cur = db.conn.execute(
        f"SELECT {_COLS} FROM fleet_intents ORDER BY created DESC, intent_id LIMIT ?",  # noqa: S608
        (limit,),
    )
    return [_row(r) for r in cur.fetchall()]


def lapse(tx: Tx, now: int) -> list[str]:
    """Other members' pending and committed intents past their expiry become `expired`."""
    cur = tx.execute(
        "SELECT intent_id FROM fleet_intents WHERE mine = 0 AND expires_at <= ?"
        " AND status IN ('pending', 'committed')",
        (now,),
    )
    ids = [r[0] for r in cur.fetchall()]
    for intent_id in ids:
        tx.execute(
            "UPDATE fleet_intents SET status = 'expired', updated_at = ? WHERE intent_id = ?",
            (now, intent_id),
        )
    return ids


def prune(tx: Tx, before_foreign: int, before_own: int) -> int:
    """Forget other members' intents that ended before `before_foreign`, and our own finished
    ones before `before_own` (kept longer: `hive-intents` shows them)."""
    n = tx.execute(
        "DELETE FROM fleet_intents WHERE mine = 0 AND expires_at < ?", (before_foreign,)
    ).rowcount
    n += tx.execute(
        "DELETE FROM fleet_intents WHERE mine = 1 AND expires_at < ?"
        " AND (exec = 'finished' OR status IN ('aborted', 'failed', 'done'))",
        (before_own,),
    ).rowcount
    return n
