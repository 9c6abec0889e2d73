"""State gossip rows: the latest state record per member, our own record's version counter,
and presence (when each member was last heard from).  Writes take an open `Tx`; reads take
the `Store`, or the `Tx` when they run inside a transaction."""

from __future__ import annotations

from dataclasses import dataclass

from agent.store.db import Db, Tx


@dataclass(frozen=True)
class StateRow:
    owner: str
    version: int
    ts: int
    record: str  # canonical JSON, as signed
    sig: str
    frame: bytes
    via: str
    received_at: int


_STATE = "owner, version, ts, record, sig, frame, via, received_at"


def state(db: Db, owner: str) -> StateRow | None:
    row = db.conn.execute(
        f"SELECT {_STATE} FROM fleet_states WHERE owner = ?",  # noqa: S608 - fixed columns
        (owner,),
    ).fetchone()
    return (
        StateRow(row[0], row[1], row[2], row[3], row[4], bytes(row[5]), row[6], row[7])
        if row
        else None
    )


def states(db: Db) -> list[StateRow]:
    rows = db.conn.execute(
        f"SELECT {_STATE} FROM fleet_states ORDER BY owner"  # noqa: S608 - fixed columns
    ).fetchall()
    return [StateRow(r[0], r[1], r[2], r[3], r[4], bytes(r[5]), r[6], r[7]) for r in rows]


def stored_version(db: Db, owner: str) -> int | None:
    row = db.conn.execute("SELECT version FROM fleet_states WHERE owner = ?", (owner,)).fetchone()
    return int(row[0]) if row else None


def put_state(tx: Tx, row: StateRow) -> None:
    """Keep `row` as the owner's latest record (the caller checked the version grows)."""
    tx.execute(
        f"INSERT OR REPLACE INTO fleet_states ({_STATE}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
        (row.owner, row.version, row.ts, row.record, row.sig, row.frame, row.via, row.received_at),
    )


def drop_states(tx: Tx, keep: set[str] | None = None) -> int:
    """Forget the records of everyone not in `keep` (all, if None): members gone or banned."""
    if keep is None:
        return tx.execute("DELETE FROM fleet_states").rowcount
    owners = [r[0] for r in tx.conn.execute("SELECT owner FROM fleet_states").fetchall()]
    gone = [o for o in owners if o not in keep]
    for owner in gone:
        tx.execute("DELETE FROM fleet_states WHERE owner = ?", (owner,))
    return len(gone)


# --- our own record's version --------------------------------------------------------------


def own_version(db: Db) -> tuple[int, int]:
    """(the last version we used, when we last sent): (0, 0) before the first."""
    row = db.conn.execute("SELECT version, sent_at FROM fleet_gossip_self").fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def bump_version(tx: Tx, at: int) -> int:
    """The next version of our record, recorded as used (commit it before sending)."""
    version = own_version(tx)[0] + 1
    tx.execute(
        "INSERT INTO fleet_gossip_self (singleton, version, sent_at) VALUES (1, ?, ?)"
        " ON CONFLICT (singleton) DO UPDATE SET version = excluded.version,"
        " sent_at = excluded.sent_at",
        (version, at),
    )
    return version


# --- presence ---------------------------------------------------------------------------------


def seen(tx: Tx, node_id: str, at: int) -> None:
    tx.execute(
        "INSERT INTO fleet_presence (node_id, last_seen) VALUES (?, ?)"
        " ON CONFLICT (node_id) DO UPDATE SET last_seen = max(last_seen, excluded.last_seen)",
        (node_id, at),
    )


def last_seen(db: Db) -> dict[str, int]:
    rows = db.conn.execute("SELECT node_id, last_seen FROM fleet_presence").fetchall()
    return {r[0]: int(r[1]) for r in rows}


def drop_presence(tx: Tx, keep: set[str]) -> int:
    """Forget when anyone not in `keep` was last seen (nodes no longer members)."""
    nodes = [r[0] for r in tx.conn.execute("SELECT node_id FROM fleet_presence").fetchall()]
    gone = [n for n in nodes if n not in keep]
    for node in gone:
        tx.execute("DELETE FROM fleet_presence WHERE node_id = ?", (node,))
    return len(gone)
