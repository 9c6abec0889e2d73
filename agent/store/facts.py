"""The fleet's fact set (anti-entropy): each fact's id, kind, subject, timestamp and the signed
frame that proves it.  Writes take an open `Tx`; reads take the `Store` or the `Tx`."""

from __future__ import annotations

from dataclasses import dataclass

from agent.store.db import Db, Tx


@dataclass(frozen=True)
class FactRow:
    fact_id: str
    kind: str
    subject: str
    ts: int
    msg_id: str
    msg_type: int
    frame: bytes


_COLS = "fact_id, kind, subject, ts, msg_id, msg_type, frame"


def put(tx: Tx, row: FactRow, *, single: bool = False, replace_held: bool = False) -> bool:
    """Keep `row` (True if it is new); `single`: it replaces its subject's other facts of the
    same kind (a member's state record: only the latest is a fact); `replace_held`: it
    replaces the fact of its id held (another frame proving it: agent/fleet/report_variants.py)."""
    if single:
        tx.execute(
            "DELETE FROM fleet_facts WHERE kind = ? AND subject = ? AND fact_id != ?",
            (row.kind, row.subject, row.fact_id),
        )
    verb = "INSERT OR REPLACE" if replace_held else "INSERT OR IGNORE"
    cur = tx.execute(
        f"{verb} INTO fleet_facts ({_COLS}, added_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (row.fact_id, row.kind, row.subject, row.ts, row.msg_id, row.msg_type, row.frame, tx.now),
    )
    return bool(cur.rowcount)


def remove(tx: Tx, fact_id: str) -> bool:
    """Forget the fact `fact_id` (True if it was held)."""
    return bool(tx.execute("DELETE FROM fleet_facts WHERE fact_id = ?", (fact_id,)).rowcount)


def items(db: Db) -> list[tuple[str, str, int, str]]:
    """Every fact as (kind, subject, ts, fact id)."""
    cur = db.conn.execute("SELECT kind, subject, ts, fact_id FROM fleet_facts")
    return [(k, s, int(t), f) for k, s, t, f in cur.fetchall()]


def rows(db: Db, fact_ids: list[str]) -> list[FactRow]:
    """The facts named, in timestamp order (unknown ids are left out)."""
    out: list[FactRow] = []
    for start in range(0, len(fact_ids), 500):
        chunk = fact_ids[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        cur = db.conn.execute(
            f"SELECT {_COLS} FROM fleet_facts WHERE fact_id IN ({marks})",  # noqa: S608
            chunk,
        )
        out += [FactRow(f, k, s, int(t), m, int(y), bytes(b)) for f, k, s, t, m, y, b in cur]
    return sorted(out, key=lambda r: (r.ts, r.fact_id))


def drop(tx: Tx, kinds: set[str], keep: set[str] | None = None, before: int | None = None) -> int:
    """Forget facts of `kinds` about subjects not in `keep` (if given) or dated before
    `before` (if given); all of them if neither is given."""
    n = 0
    for kind in sorted(kinds):
        if keep is None and before is None:
            n += tx.execute("DELETE FROM fleet_facts WHERE kind = ?", (kind,)).rowcount
            continue
        if before is not None:
            n += tx.execute(
                "DELETE FROM fleet_facts WHERE kind = ? AND ts < ?", (kind, before)
            ).rowcount
        if keep is not None:
            cur = tx.conn.execute(
                "SELECT DISTINCT subject FROM fleet_facts WHERE kind = ?", (kind,)
            )
            for (subject,) in [r for r in cur.fetchall() if r[0] not in keep]:
                n += tx.execute(
                    "DELETE FROM fleet_facts WHERE kind = ? AND subject = ?", (kind, subject)
                ).rowcount
    return n


def count(db: Db) -> int:
    return int(db.conn.execute("SELECT count(*) FROM fleet_facts").fetchone()[0])
