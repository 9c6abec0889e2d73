"""The contribution ledger's rows (agent/fleet/contribution.py reads and writes them; the
advisory command path records its rebalances here): an append-only hash chain of what was
counted, the per-day totals per member that the ratio and the period reports are read from,
the anti-leech state, the leech notices, the disputes and counters (the members' period
reports: agent/store/contribution_reports.py).  Writes take an open `Tx`; reads take the
`Store` or the `Tx`.

Every forward and rebalance counted is a chain row (`seq`, `prev` = the previous row's hash,
`hash` = sha256(prev ‖ canonical {seq, day, kind, ref, body, at})), except what goes past the
bound of `RAW_PER_DAY` rows a day per member: that is summed per day and chained as one
`rollup` row once the day is over.  The day totals are derived, and `verify` checks both the
chain's hashes and that the totals are what the chain adds up to.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from agent.store.db import Db, Tx
from events.canonical import canonical

GENESIS = "0" * 64
ANCHOR_KV = "contribution:anchor"  # {"seq", "hash"} of the last row pruned
RAW_PER_DAY = 10_000
OWN = ""  # the member column of this node's own totals

Part = tuple[int, int, int, int]  # in_msat, out_msat, fees_msat, forwards


def parts(in_peer: str, out_peer: str, in_msat: int, out_msat: int, fee: int) -> dict[str, Part]:
    """What one settled forward adds to each subject's day: this node's totals ('') always;
    the member it came in from (in, fees), the member it went out to (out, fees)."""
    out: dict[str, Part] = {OWN: (in_msat, out_msat, fee, 1)}
    for m in sorted({in_peer, out_peer} - {OWN}):
        out[m] = (in_msat if m == in_peer else 0, out_msat if m == out_peer else 0, fee, 1)
    return out


def row_hash(prev: str, seq: int, day: int, kind: str, ref: str, body: str, at: int) -> str:
    """sha256(prev ‖ canonical {at, body, day, kind, ref, seq}), `body` being the row's
    canonical JSON text as stored (spliced in, not encoded again)."""
    doc = (
        f'{{"at":{at},"body":{body},"day":{day},"kind":{json.dumps(kind, ensure_ascii=False)},'
        f'"ref":{json.dumps(ref, ensure_ascii=False)},"seq":{seq}}}'
    )
    return hashlib.sha256(prev.encode() + doc.encode()).hexdigest()


# --- the chain ------------------------------------------------------------------------------


def _head(db: Db) -> tuple[int, str]:
    row = db.conn.execute(
        "SELECT seq, hash FROM contribution_chain ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    if row is not None:
        return int(row[0]), str(row[1])
    anchor = _anchor(db)
    return int(anchor["seq"]), str(anchor["hash"])


def _anchor(db: Db) -> dict[str, Any]:
    row = db.conn.execute("SELECT value FROM kv WHERE key = ?", (ANCHOR_KV,)).fetchone()
    return json.loads(row[0]) if row is not None else {"seq": 0, "hash": GENESIS}


def append(
    tx: Tx, day: int, kind: str, ref: str, body: dict[str, Any],
    head: tuple[int, str] | None = None,
) -> str:  # fmt: skip
    """One new chain row (after `head`, the chain's last (seq, hash), read here if not
    given); its hash."""
    seq, prev = head or _head(tx)
    seq += 1
    text = canonical(body).decode()
    digest = row_hash(prev, seq, day, kind, ref, text, tx.now)
    tx.execute(
        "INSERT INTO contribution_chain (seq, day, kind, ref, body, at, prev, hash) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (seq, day, kind, ref, text, tx.now, prev, digest),
    )
    return digest


def new_key(tx: Tx, key: str) -> bool:
    """True the first time `key` is seen (within the keys kept)."""
    cur = tx.execute(
        "INSERT OR IGNORE INTO contribution_keys (key, at) VALUES (?, ?)", (key, tx.now)
    )
    return bool(cur.rowcount)


def prune_keys(tx: Tx, before: int) -> int:
    return tx.execute("DELETE FROM contribution_keys WHERE at < ?", (before,)).rowcount


@dataclass(frozen=True)
class ChainRow:
    seq: int
    day: int
    kind: str
    ref: str
    body: dict[str, Any]
    at: int
    prev: str
    hash: str
    text: str  # the body as stored (what the hash covers)


def chain(db: Db, *, since_day: int | None = None) -> list[ChainRow]:
    sql = "SELECT seq, day, kind, ref, body, at, prev, hash FROM contribution_chain"
    params: tuple[Any, ...] = ()
    if since_day is not None:
        sql += " WHERE day >= ?"
        params = (since_day,)
    cur = db.conn.execute(sql + " ORDER BY seq", params)
    return [
        ChainRow(int(s), int(d), k, r, json.loads(b), int(a), p, h, b)
        for s, d, k, r, b, a, p, h in cur.fetchall()
    ]


def verify(db: Db) -> dict[str, Any]:
    """The chain checked row by row from its anchor (each row's prev is the hash before it,
    each hash recomputes) and the day totals against what the chain adds up to."""
    anchor = _anchor(db)
    seq, prev = int(anchor["seq"]), str(anchor["hash"])
    rows = chain(db)
    sums: dict[tuple[int, str], list[int]] = {}
    for r in rows:
        if r.seq != seq + 1 or r.prev != prev:
            return _broken(r, len(rows), "a row is missing or out of order before it")
        if row_hash(prev, r.seq, r.day, r.kind, r.ref, r.text, r.at) != r.hash:
            return _broken(r, len(rows), "its content does not match its hash")
        seq, prev = r.seq, r.hash
        for subject, p in _row_parts(r).items():
            acc = sums.setdefault((r.day, subject), [0, 0, 0, 0, 0])
            for i, v in enumerate(p):
                acc[i] += v
    first_day = rows[0].day if rows else None
    for day, member, *total in _day_totals(db):
        if first_day is None or day <= first_day:
            continue  # (the first day's early rows may be pruned already)
        got = sums.get((day, member), [0, 0, 0, 0, 0])
        if got != total:
            return {
                "ok": False, "rows": len(rows), "head": prev, "seq": None, "day": day,
                "member": member, "reason": "the day's totals are not what its rows add up to",
            }  # fmt: skip
    return {"ok": True, "rows": len(rows), "head": prev, "anchor": anchor}


def _broken(r: ChainRow, n: int, reason: str) -> dict[str, Any]:
    return {"ok": False, "rows": n, "seq": r.seq, "day": r.day, "reason": reason}


def _row_parts(r: ChainRow) -> dict[str, tuple[int, ...]]:
    """(in, out, fees, forwards, rebalance) a chain row adds to each subject's day."""
    b = r.body
    if r.kind == "forward":
        return {
            s: (*p, 0)
            for s, p in parts(b["in"], b["out"], b["in_msat"], b["out_msat"], b["fee_msat"]).items()
        }
    if r.kind == "rebalance":
        return {OWN: (0, 0, 0, 0, int(b["fee_msat"]))}
    return {s: (v["in"], v["out"], v["fees"], v["n"], 0) for s, v in b["subjects"].items()}


def _day_totals(db: Db) -> list[tuple[int, str, int, int, int, int, int]]:
    """Per (day, member) what the chain must add up to: the totals less what is still over
    the bound and not rolled up."""
    cur = db.conn.execute(
        "SELECT day, member, in_msat - over_in, out_msat - over_out, fees_msat - over_fees, "
        "forwards - over_n, rebalance_msat FROM contribution_days ORDER BY day, member"
    )
    return [tuple(int(v) if i != 1 else v for i, v in enumerate(r)) for r in cur.fetchall()]  # type: ignore[misc]


# --- counting -------------------------------------------------------------------------------


def ingest_forward(
    tx: Tx, key: str, day: int, in_peer: str, out_peer: str, in_msat: int, out_msat: int,
    fee: int, cap: int = RAW_PER_DAY,
) -> str:  # fmt: skip
    """Count one settled forward: "duplicate" (its key was seen), "raw" (a chain row of its
    own) or "rolled" (a member it touches is past `cap` rows today: into the day's rollup)."""
    if not new_key(tx, key):
        return "duplicate"
    got = parts(in_peer, out_peer, in_msat, out_msat, fee)
    bounded = [s for s in got if s != OWN] or [OWN]
    most, head = _raw_and_head(tx, day, bounded)
    raw = most < cap
    if raw:
        body = {"in": in_peer, "out": out_peer, "in_msat": in_msat, "out_msat": out_msat,
                "fee_msat": fee}  # fmt: skip
        append(tx, day, "forward", key, body, head)
    rows = []
    for subject, (i, o, f, n) in got.items():
        over = (0, 0, 0, 0) if raw else (i, o, f, n)
        rows.append((day, subject, i, o, f, n, int(raw and subject in bounded), *over))
    _add(tx, rows)
    return "raw" if raw else "rolled"


def record_rebalance(tx: Tx, ref: str, fee_msat: int, amount_msat: int = 0) -> bool:
    """This node paid `fee_msat` for a rebalance (`ref`: its command id or payment hash);
    counted once per ref.  True if it was new."""
    if fee_msat < 0 or not new_key(tx, f"rebalance:{ref}"):
        return False
    day = tx.now // 86_400
    append(tx, day, "rebalance", ref, {"fee_msat": fee_msat, "amount_msat": amount_msat})
    tx.execute(
        "INSERT INTO contribution_days (day, member, rebalance_msat) VALUES (?, '', ?) "
        "ON CONFLICT (day, member) DO UPDATE SET "
        "rebalance_msat = rebalance_msat + excluded.rebalance_msat",
        (day, fee_msat),
    )
    return True


def _raw_and_head(db: Db, day: int, members: list[str]) -> tuple[int, tuple[int, str] | None]:
    """The most rows of its own any of `members` has on `day`, and the chain's last (seq,
    hash) (None if the chain is empty: its anchor then) — in one read."""
    marks = ", ".join("?" * len(members))
    row = db.conn.execute(
        "SELECT (SELECT max(raw) FROM contribution_days WHERE day = ? "  # noqa: S608
        f"AND member IN ({marks})), (SELECT seq FROM contribution_chain ORDER BY seq DESC "
        "LIMIT 1), (SELECT hash FROM contribution_chain ORDER BY seq DESC LIMIT 1)",
        (day, *members),
    ).fetchone()
    head = (int(row[1]), str(row[2])) if row[1] is not None else None
    return int(row[0] or 0), head


_UPSERT_HEAD = (
    "INSERT INTO contribution_days (day, member, in_msat, out_msat, fees_msat, forwards, "
    "raw, over_in, over_out, over_fees, over_n) VALUES "
)
_UPSERT_TAIL = (
    " ON CONFLICT (day, member) DO UPDATE SET in_msat = in_msat + excluded.in_msat, "
    "out_msat = out_msat + excluded.out_msat, fees_msat = fees_msat + excluded.fees_msat, "
    "forwards = forwards + excluded.forwards, raw = raw + excluded.raw, "
    "over_in = over_in + excluded.over_in, over_out = over_out + excluded.over_out, "
    "over_fees = over_fees + excluded.over_fees, over_n = over_n + excluded.over_n"
)


def _add(tx: Tx, rows: list[tuple[Any, ...]]) -> None:
    """Per (day, member): in, out, fees, forwards, raw rows, and the over-the-bound part."""
    values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(rows))
    sql = _UPSERT_HEAD + values + _UPSERT_TAIL  # (only placeholders are joined in)
    tx.execute(sql, tuple(v for r in rows for v in r))


def roll_up(tx: Tx, before_day: int) -> int:
    """Days before `before_day` with forwards past the bound: one rollup row each, chained;
    the overflow is then part of the chain.  How many rows were appended."""
    cur = tx.conn.execute(
        "SELECT day, member, over_in, over_out, over_fees, over_n FROM contribution_days "
        "WHERE day < ? AND over_n > 0 ORDER BY day, member",
        (before_day,),
    )
    by_day: dict[int, dict[str, dict[str, int]]] = {}
    for day, member, i, o, f, n in cur.fetchall():
        by_day.setdefault(int(day), {})[member] = {"in": i, "out": o, "fees": f, "n": n}
    for day, subjects in sorted(by_day.items()):
        append(tx, day, "rollup", str(day), {"subjects": subjects})
        tx.execute(
            "UPDATE contribution_days SET over_in = 0, over_out = 0, over_fees = 0, over_n = 0 "
            "WHERE day = ?",
            (day,),
        )
    return len(by_day)


def prune(tx: Tx, before_day: int) -> int:
    """Days before `before_day` leave the totals, and the chain's rows up to the first row
    of a later day leave the chain (the last one pruned becomes its anchor)."""
    n = tx.execute("DELETE FROM contribution_days WHERE day < ?", (before_day,)).rowcount
    row = tx.conn.execute(
        "SELECT min(seq) FROM contribution_chain WHERE day >= ?", (before_day,)
    ).fetchone()
    keep_from = row[0] if row and row[0] is not None else _head(tx)[0] + 1
    last = tx.conn.execute(
        "SELECT seq, hash FROM contribution_chain WHERE seq < ? ORDER BY seq DESC LIMIT 1",
        (keep_from,),
    ).fetchone()
    if last is not None:
        tx.set_kv(ANCHOR_KV, {"seq": int(last[0]), "hash": str(last[1])})
        n += tx.execute("DELETE FROM contribution_chain WHERE seq < ?", (keep_from,)).rowcount
    return n


# --- reading the totals ---------------------------------------------------------------------


def totals(db: Db, first_day: int, last_day: int) -> dict[str, dict[str, int]]:
    """Per member ('' = this node) the sums over days first_day..last_day (inclusive)."""
    cur = db.conn.execute(
        "SELECT member, sum(in_msat), sum(out_msat), sum(fees_msat), sum(forwards), "
        "sum(rebalance_msat) FROM contribution_days WHERE day BETWEEN ? AND ? GROUP BY member",
        (first_day, last_day),
    )
    return {
        m: {
            "in_msat": int(i),
            "out_msat": int(o),
            "fees_msat": int(f),
            "forwards": int(n),
            "rebalance_msat": int(r),
        }
        for m, i, o, f, n, r in cur.fetchall()
    }


def days(db: Db, member: str, first_day: int) -> list[dict[str, int]]:
    cur = db.conn.execute(
        "SELECT day, in_msat, out_msat, fees_msat, forwards, raw, rebalance_msat "
        "FROM contribution_days WHERE member = ? AND day >= ? ORDER BY day",
        (member, first_day),
    )
    names = ("day", "in_msat", "out_msat", "fees_msat", "forwards", "raw_rows", "rebalance_msat")
    return [dict(zip(names, map(int, r), strict=True)) for r in cur.fetchall()]


# --- anti-leech, notices, disputes, counters (the reports: contribution_reports.py) ---------


@dataclass(frozen=True)
class LeechRow:
    member: str
    below_since: int | None
    below_days: int
    leech_since: int | None
    last_day: int
    in_msat: int
    out_msat: int
    ratio_ppm: int


def leech_rows(db: Db) -> dict[str, LeechRow]:
    cur = db.conn.execute(
        "SELECT member, below_since, below_days, leech_since, last_day, in_msat, out_msat, "
        "ratio_ppm FROM contribution_leech"
    )
    return {r[0]: LeechRow(*r) for r in cur.fetchall()}


def put_leech(tx: Tx, row: LeechRow) -> None:
    tx.execute(
        "INSERT OR REPLACE INTO contribution_leech (member, below_since, below_days, "
        "leech_since, last_day, in_msat, out_msat, ratio_ppm) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (row.member, row.below_since, row.below_days, row.leech_since, row.last_day,
         row.in_msat, row.out_msat, row.ratio_ppm),
    )  # fmt: skip


def drop_leech(tx: Tx, keep: set[str]) -> int:
    n = 0
    for member in leech_rows(tx):
        if member not in keep:
            n += tx.execute("DELETE FROM contribution_leech WHERE member = ?", (member,)).rowcount
    return n


def put_notice(tx: Tx, author: str, member: str, day: str, status: str, body: str) -> bool:
    cur = tx.execute(
        "INSERT OR IGNORE INTO contribution_notices (author, member, day, status, body, "
        "received_at) VALUES (?, ?, ?, ?, ?, ?)",
        (author, member, day, status, body, tx.now),
    )
    return bool(cur.rowcount)


def notices(db: Db) -> list[dict[str, Any]]:
    cur = db.conn.execute(
        "SELECT author, body, received_at FROM contribution_notices ORDER BY received_at, author"
    )
    return [{"author": a, **json.loads(b), "received_at": int(t)} for a, b, t in cur.fetchall()]


def prune_notices(tx: Tx, before: int) -> int:
    return tx.execute("DELETE FROM contribution_notices WHERE received_at < ?", (before,)).rowcount


def put_dispute(
    tx: Tx, author: str, period: str, field: str, reported: int, observed: int, reason: str
) -> bool:
    cur = tx.execute(
        "INSERT OR IGNORE INTO contribution_disputes (author, period, field, reported, "
        "observed, reason, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (author, period, field, reported, observed, reason, tx.now),
    )
    return bool(cur.rowcount)


def drop_disputes(tx: Tx, author: str, period: str) -> int:
    """Forget what was found in `author`'s report for `period` (another report took its place)."""
    return tx.execute(
        "DELETE FROM contribution_disputes WHERE author = ? AND period = ?", (author, period)
    ).rowcount


def disputes_found(db: Db) -> list[dict[str, Any]]:
    cur = db.conn.execute(
        "SELECT author, period, field, reported, observed, reason, at FROM contribution_disputes "
        "ORDER BY at, author, field"
    )
    names = ("node", "period", "field", "reported", "observed", "reason", "at")
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def count(tx: Tx, name: str, n: int = 1) -> None:
    tx.execute(
        "INSERT INTO contribution_counts (name, n) VALUES (?, ?) "
        "ON CONFLICT (name) DO UPDATE SET n = n + excluded.n",
        (name, n),
    )


def counts(db: Db) -> dict[str, int]:
    cur = db.conn.execute("SELECT name, n FROM contribution_counts ORDER BY name")
    return {k: int(v) for k, v in cur.fetchall()}


def kv_int(db: Db, key: str) -> int | None:
    row = db.conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
    return None if row is None else int(json.loads(row[0]))


def set_kv_int(tx: Tx, key: str, value: int) -> None:
    tx.set_kv(key, int(value))


def chain_size(db: Db) -> int:
    return int(db.conn.execute("SELECT count(*) FROM contribution_chain").fetchone()[0])
