"""Reads of one receipt chain a piece at a time: its length, a page of it, and what follows a
given seq — so a long chain (an advisor's every fee change for months) is checked once and
then only what was added, and a page shows a hundred receipts without parsing ten thousand.

`node` None: a chain this node sealed (`receipts`).  Otherwise a chain we hold, read only from
the node that granted us its credential (`receipts_held` joined to the credential held from
that node, as everywhere else: a receipt naming it from anyone else is never part of it).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from agent.store.advisory import HELD_FROM
from agent.store.db import Db, load_row
from events.receipt import Receipt

_OWN_COUNT = "SELECT COUNT(*) FROM receipts WHERE credential_id = ? AND seq <= ?"
_HELD_COUNT = (
    f"SELECT COUNT(*) FROM {HELD_FROM}"  # noqa: S608
    " WHERE r.credential_id = ? AND r.node = ? AND r.seq <= ?"
)
_OWN_AFTER = "SELECT receipt FROM receipts WHERE credential_id = ? AND seq > ? ORDER BY seq"
_HELD_AFTER = (
    f"SELECT r.receipt FROM {HELD_FROM}"  # noqa: S608
    " WHERE r.credential_id = ? AND r.node = ? AND r.seq > ? ORDER BY r.seq, r.rowid"
)
_OWN_PAGE = (
    "SELECT receipt FROM receipts WHERE credential_id = ? ORDER BY seq DESC LIMIT ? OFFSET ?"
)
_HELD_PAGE = (
    f"SELECT r.receipt FROM {HELD_FROM}"  # noqa: S608
    " WHERE r.credential_id = ? AND r.node = ? ORDER BY r.seq DESC, r.rowid DESC"
    " LIMIT ? OFFSET ?"
)
EVERY_SEQ = 2**62


def _query(db: Db, own: str, held: str, credential_id: str, node: str | None, *args: Any) -> Any:
    conn = db.conn
    if node is None:
        return conn.execute(own, (credential_id, *args))
    return conn.execute(held, (credential_id, node, *args))


def count(db: Db, credential_id: str, node: str | None, upto: int = EVERY_SEQ) -> int:
    """How many receipts of the chain have a seq ≤ `upto` (all of them by default)."""
    cur = _query(db, _OWN_COUNT, _HELD_COUNT, credential_id, node, upto)
    return int(cur.fetchone()[0])


def after(db: Db, credential_id: str, node: str | None, seq: int) -> Iterator[Receipt]:
    """The receipts with a seq above `seq`, in seq order, parsed one at a time (a check that
    stops at the first problem parses nothing beyond it)."""
    for (raw,) in _query(db, _OWN_AFTER, _HELD_AFTER, credential_id, node, seq).fetchall():
        yield load_row(Receipt, raw)


def page(db: Db, credential_id: str, node: str | None, offset: int, limit: int) -> list[Receipt]:
    """`limit` receipts, newest (highest seq) first, skipping the newest `offset`."""
    cur = _query(db, _OWN_PAGE, _HELD_PAGE, credential_id, node, limit, offset)
    return [load_row(Receipt, raw) for (raw,) in cur.fetchall()]
