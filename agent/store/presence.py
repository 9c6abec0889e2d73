"""Presence over time and gossip counters: the seconds each member was seen up per UTC day
(kept 30 days), the last evidence of each being up, and the gossip component's counters
(records sent, accepted, forwarded, refused by code).  The arithmetic (what a piece of evidence
credits) is the caller's (agent/fleet/gossip_rules.py); these are the rows.  Writes take an
open `Tx`; reads take the `Store`, or the `Tx` when they run inside a transaction."""

from __future__ import annotations

from dataclasses import dataclass

from agent.store.db import Db, Tx

DAY_S = 86_400


@dataclass(frozen=True)
class Mark:
    since: int  # the first evidence kept
    at: int  # the last evidence


def mark(db: Db, node_id: str) -> Mark | None:
    row = db.conn.execute(
        "SELECT since, at FROM fleet_uptime_marks WHERE node_id = ?", (node_id,)
    ).fetchone()
    return Mark(int(row[0]), int(row[1])) if row else None


def marks(db: Db) -> dict[str, Mark]:
    rows = db.conn.execute("SELECT node_id, since, at FROM fleet_uptime_marks").fetchall()
    return {r[0]: Mark(int(r[1]), int(r[2])) for r in rows}


def set_mark(tx: Tx, node_id: str, since: int, at: int) -> None:
    tx.execute(
        "INSERT INTO fleet_uptime_marks (node_id, since, at) VALUES (?, ?, ?)"
        " ON CONFLICT (node_id) DO UPDATE SET since = excluded.since, at = excluded.at",
        (node_id, since, at),
    )


def credit(tx: Tx, node_id: str, day: int, seconds: int) -> None:
    """Add `seconds` to a node's day, never beyond a whole day."""
    tx.execute(
        "INSERT INTO fleet_uptime (node_id, day, up_s) VALUES (?, ?, min(?, ?))"
        " ON CONFLICT (node_id, day) DO UPDATE SET up_s = min(?, up_s + excluded.up_s)",
        (node_id, day, seconds, DAY_S, DAY_S),
    )


def uptime(db: Db, first_day: int) -> dict[str, dict[int, int]]:
    """Seconds up per day, per node, from `first_day` on."""
    out: dict[str, dict[int, int]] = {}
    for node, day, up in db.conn.execute(
        "SELECT node_id, day, up_s FROM fleet_uptime WHERE day >= ?", (first_day,)
    ).fetchall():
        out.setdefault(node, {})[int(day)] = int(up)
    return out


def prune_uptime(tx: Tx, first_day: int, keep: set[str]) -> int:
    """Forget days before `first_day`, and everything of nodes not in `keep`."""
    removed = tx.execute("DELETE FROM fleet_uptime WHERE day < ?", (first_day,)).rowcount
    nodes = {
        r[0]
        for r in tx.conn.execute(
            "SELECT node_id FROM fleet_uptime UNION SELECT node_id FROM fleet_uptime_marks"
        ).fetchall()
    }
    for node in nodes - keep:
        removed += tx.execute("DELETE FROM fleet_uptime WHERE node_id = ?", (node,)).rowcount
        removed += tx.execute("DELETE FROM fleet_uptime_marks WHERE node_id = ?", (node,)).rowcount
    return removed


# --- gossip counters ---------------------------------------------------------------------------


def count(tx: Tx, name: str, n: int = 1) -> None:
    tx.execute(
        "INSERT INTO fleet_gossip_counts (name, n) VALUES (?, ?)"
        " ON CONFLICT (name) DO UPDATE SET n = n + excluded.n",
        (name, n),
    )


def counts(db: Db) -> dict[str, int]:
    rows = db.conn.execute("SELECT name, n FROM fleet_gossip_counts ORDER BY name").fetchall()
    return {r[0]: int(r[1]) for r in rows}
