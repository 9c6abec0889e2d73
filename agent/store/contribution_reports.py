"""The members' period reports, the settlement's inputs (agent/fleet/contribution.py), and the
proof of an equivocation: a member that signed two different reports for one period has the
second of them kept here as a *conflict* (agent/fleet/report_variants.py decides which two).
Writes take an open `Tx`; reads take the `Store` or the `Tx`."""

from __future__ import annotations

from collections.abc import Iterable

from agent.store.db import Db, Tx

Held = tuple[str, str]  # (msg id, body: the report as signed, canonical JSON)
_TABLES = {"report": "contribution_reports", "conflict": "contribution_conflicts"}


def report(db: Db, author: str, period: str) -> Held | None:
    """(msg id, body) of `author`'s report for `period`."""
    return _held(db, "report", author, period)


def conflict(db: Db, author: str, period: str) -> Held | None:
    """(msg id, body) of the other report `author` signed for `period`, if it signed two."""
    return _held(db, "conflict", author, period)


def _held(db: Db, slot: str, author: str, period: str) -> Held | None:
    row = db.conn.execute(
        f"SELECT msg_id, body FROM {_TABLES[slot]} WHERE author = ? AND period = ?",  # noqa: S608
        (author, period),
    ).fetchone()
    return (str(row[0]), str(row[1])) if row else None


def put(tx: Tx, slot: str, author: str, period: str, held: Held) -> None:
    """Hold `held` as `author`'s report (slot "report") or conflict for `period`, in place of
    what was there."""
    tx.execute(
        f"INSERT OR REPLACE INTO {_TABLES[slot]} (author, period, msg_id, body, received_at) "  # noqa: S608
        "VALUES (?, ?, ?, ?, ?)",
        (author, period, held[0], held[1], tx.now),
    )


def put_report(tx: Tx, author: str, period: str, msg_id: str, body: str) -> None:
    put(tx, "report", author, period, (msg_id, body))


def reports(db: Db, period: str) -> dict[str, str]:
    """Every report held for `period`, by author (equivocators' included: see `equivocators`)."""
    cur = db.conn.execute(
        "SELECT author, body FROM contribution_reports WHERE period = ? ORDER BY author", (period,)
    )
    return {a: b for a, b in cur.fetchall()}


def all_reports(db: Db) -> list[tuple[str, str, str]]:
    """(author, period, msg id) of every report held."""
    cur = db.conn.execute("SELECT author, period, msg_id FROM contribution_reports")
    return [(str(a), str(p), str(m)) for a, p, m in cur.fetchall()]


def equivocators(db: Db, period: str) -> set[str]:
    """The members proved to have signed two different reports for `period`."""
    cur = db.conn.execute("SELECT author FROM contribution_conflicts WHERE period = ?", (period,))
    return {str(r[0]) for r in cur.fetchall()}


def prune_reports(tx: Tx, periods_kept: Iterable[str]) -> int:
    keep = sorted(set(periods_kept))
    marks = ", ".join("?" * len(keep)) or "''"
    n = 0
    for table in _TABLES.values():
        n += tx.execute(
            f"DELETE FROM {table} WHERE period NOT IN ({marks})",  # noqa: S608
            tuple(keep),
        ).rowcount
    return n
