"""The weekly settlement's rows (agent/fleet/settlement.py): the proposal per period, the
votes on it, this node's payments, the invoices it issued, the payments reported executed.
Writes take an open `Tx`; reads take the `Store` or the `Tx`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from agent.store.db import Db, Tx


@dataclass(frozen=True)
class PeriodRow:
    period: str
    plan_hash: str
    data_hash: str
    proposer: str
    total_sat: int
    inputs: list[dict[str, Any]]
    state: str  # proposed, agreed, executed
    frame: bytes
    created_at: int
    agreed_at: int | None
    broadcast_at: int


@dataclass(frozen=True)
class Vote:
    voter: str
    plan_hash: str
    agree: bool
    code: str
    own_plan_hash: str
    ts: int


@dataclass(frozen=True)
class PayRow:
    period: str
    receiver: str
    plan_hash: str
    amount_sat: int
    state: str  # new, requested, invoiced, attempting, paid, failed
    bolt11: str = ""
    payment_hash: str = ""
    preimage: str = ""
    fee_msat: int = 0
    attempts: int = 0
    next_at: int = 0
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "receiver": self.receiver, "amount_sat": self.amount_sat, "state": self.state,
            "payment_hash": self.payment_hash, "fee_msat": self.fee_msat,
            "attempts": self.attempts, "error": self.error,
        }  # fmt: skip


@dataclass(frozen=True)
class InvoiceRow:
    period: str
    payer: str
    plan_hash: str
    amount_sat: int
    bolt11: str
    payment_hash: str
    state: str  # issued, paid


_P = (
    "period, plan_hash, data_hash, proposer, total_sat, inputs, state, frame, created_at,"
    " agreed_at, broadcast_at"
)
_PAY = (
    "period, receiver, plan_hash, amount_sat, state, bolt11, payment_hash, preimage, fee_msat,"
    " attempts, next_at, error"
)


def _period(r: tuple[Any, ...]) -> PeriodRow:
    return PeriodRow(
        r[0], r[1], r[2], r[3], int(r[4]), json.loads(r[5]), r[6], bytes(r[7]), int(r[8]),
        None if r[9] is None else int(r[9]), int(r[10]),
    )  # fmt: skip


def put_period(tx: Tx, row: PeriodRow) -> None:
    tx.execute(
        f"INSERT INTO settlement_periods ({_P}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
        (
            row.period, row.plan_hash, row.data_hash, row.proposer, row.total_sat,
            json.dumps(row.inputs, sort_keys=True), row.state, row.frame, row.created_at,
            row.agreed_at, row.broadcast_at,
        ),
    )  # fmt: skip


def drop_period(tx: Tx, name: str) -> None:
    """A proposal nobody agreed to, giving way to another (its votes stay: they name their
    plan hash, and only the held plan's count)."""
    tx.execute("DELETE FROM settlement_periods WHERE period = ?", (name,))


def period(db: Db, name: str) -> PeriodRow | None:
    cur = db.conn.execute(f"SELECT {_P} FROM settlement_periods WHERE period = ?", (name,))  # noqa: S608
    r = cur.fetchone()
    return None if r is None else _period(r)


def by_plan(db: Db, plan_hash: str) -> PeriodRow | None:
    cur = db.conn.execute(
        f"SELECT {_P} FROM settlement_periods WHERE plan_hash = ?",  # noqa: S608
        (plan_hash,),
    )
    r = cur.fetchone()
    return None if r is None else _period(r)


def periods(db: Db, states: tuple[str, ...] | None = None, limit: int = 100) -> list[PeriodRow]:
    where = ""
    params: tuple[Any, ...] = ()
    if states:
        where = f" WHERE state IN ({', '.join('?' * len(states))})"
        params = states
    cur = db.conn.execute(
        f"SELECT {_P} FROM settlement_periods{where} ORDER BY period DESC LIMIT ?",  # noqa: S608
        (*params, limit),
    )
    return [_period(r) for r in cur.fetchall()]


def set_state(tx: Tx, name: str, state: str) -> None:
    agreed = tx.now if state == "agreed" else None
    tx.execute(
        "UPDATE settlement_periods SET state = ?, agreed_at = COALESCE(agreed_at, ?)"
        " WHERE period = ?",
        (state, agreed, name),
    )


def broadcast(tx: Tx, name: str) -> None:
    tx.execute("UPDATE settlement_periods SET broadcast_at = ? WHERE period = ?", (tx.now, name))


# --- votes ----------------------------------------------------------------------------------


def put_vote(tx: Tx, period_name: str, vote: Vote) -> bool:
    """Keep `vote` unless the voter's vote held is newer (True if kept)."""
    cur = tx.execute(
        "SELECT ts FROM settlement_votes WHERE period = ? AND voter = ?", (period_name, vote.voter)
    ).fetchone()
    if cur is not None and int(cur[0]) > vote.ts:
        return False
    tx.execute(
        "INSERT OR REPLACE INTO settlement_votes"
        " (period, voter, plan_hash, agree, code, own_plan_hash, ts) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (period_name, vote.voter, vote.plan_hash, int(vote.agree), vote.code,
         vote.own_plan_hash, vote.ts),
    )  # fmt: skip
    return True


def votes(db: Db, period_name: str) -> list[Vote]:
    cur = db.conn.execute(
        "SELECT voter, plan_hash, agree, code, own_plan_hash, ts FROM settlement_votes"
        " WHERE period = ? ORDER BY voter",
        (period_name,),
    )
    return [Vote(r[0], r[1], bool(r[2]), r[3], r[4], int(r[5])) for r in cur.fetchall()]


# --- this node's payments -------------------------------------------------------------------


def put_pay(tx: Tx, row: PayRow) -> None:
    tx.execute(
        f"INSERT OR REPLACE INTO settlement_pays ({_PAY}, updated_at)"  # noqa: S608
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            row.period, row.receiver, row.plan_hash, row.amount_sat, row.state, row.bolt11,
            row.payment_hash, row.preimage, row.fee_msat, row.attempts, row.next_at, row.error,
            tx.now,
        ),
    )  # fmt: skip


def pays(db: Db, period_name: str) -> list[PayRow]:
    cur = db.conn.execute(
        f"SELECT {_PAY} FROM settlement_pays WHERE period = ? ORDER BY receiver",  # noqa: S608
        (period_name,),
    )
    return [PayRow(*r) for r in cur.fetchall()]


def pay(db: Db, period_name: str, receiver: str) -> PayRow | None:
    cur = db.conn.execute(
        f"SELECT {_PAY} FROM settlement_pays WHERE period = ? AND receiver = ?",  # noqa: S608
        (period_name, receiver),
    )
    r = cur.fetchone()
    return None if r is None else PayRow(*r)


# --- invoices this node issued --------------------------------------------------------------


def put_invoice(tx: Tx, row: InvoiceRow) -> None:
    tx.execute(
        "INSERT OR REPLACE INTO settlement_invoices (period, payer, plan_hash, amount_sat,"
        " bolt11, payment_hash, state, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (row.period, row.payer, row.plan_hash, row.amount_sat, row.bolt11, row.payment_hash,
         row.state, tx.now),
    )  # fmt: skip


def invoice(db: Db, period_name: str, payer: str) -> InvoiceRow | None:
    cur = db.conn.execute(
        "SELECT period, payer, plan_hash, amount_sat, bolt11, payment_hash, state"
        " FROM settlement_invoices WHERE period = ? AND payer = ?",
        (period_name, payer),
    )
    r = cur.fetchone()
    return None if r is None else InvoiceRow(*r)


def invoices(db: Db, period_name: str) -> list[InvoiceRow]:
    cur = db.conn.execute(
        "SELECT period, payer, plan_hash, amount_sat, bolt11, payment_hash, state"
        " FROM settlement_invoices WHERE period = ? ORDER BY payer",
        (period_name,),
    )
    return [InvoiceRow(*r) for r in cur.fetchall()]


# --- payments reported executed -------------------------------------------------------------


def put_executed(
    tx: Tx, period_name: str, payer: str, plan_hash: str, payments: list[dict[str, Any]], ts: int
) -> bool:
    cur = tx.execute(
        "INSERT OR IGNORE INTO settlement_executed (period, payer, plan_hash, payments, ts)"
        " VALUES (?, ?, ?, ?, ?)",
        (period_name, payer, plan_hash, json.dumps(payments, sort_keys=True), ts),
    )
    return bool(cur.rowcount)


def executed(db: Db, period_name: str) -> dict[str, list[dict[str, Any]]]:
    """The payments reported executed in `period`, by payer."""
    cur = db.conn.execute(
        "SELECT payer, payments FROM settlement_executed WHERE period = ? ORDER BY payer",
        (period_name,),
    )
    return {r[0]: json.loads(r[1]) for r in cur.fetchall()}
