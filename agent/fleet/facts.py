"""The fleet's fact set, shared by every protocol (a kernel-level mechanism, as the seen ids and
the outbox are): each component records here the facts its frames establish — gossip the
latest state record per member, membership the joins, promotions, bans and leaves — and the
anti-entropy component (agent/fleet/sync.py) reconciles the set with peers and hands on the
proving frames.

What is in the set is decided here, alike for every member, so that two members that know
the same things hold the same set:

- a member's latest state record, while it is fresh enough for a receiver to accept
  (receivers refuse records older than an hour: ours stop being offered ten minutes before);
- the join and the promotions of each member still active (the departed are gone from it);
- every ban in force;
- leaves for a week (a member away longer learns of them from its peers' views later);
- intents and their commits, aborts and ends for an hour (no lock lives longer);
- settlement proposals, each member's latest vote and the payments executed, for five weeks;
- contribution reports (one per member and period; two, the proof, of a member that signed
  two different ones: agent/fleet/report_variants.py) and leech notices for 35 days.
"""

from __future__ import annotations

from enum import StrEnum

from agent.store import facts as rows
from agent.store.db import Db, Tx
from events.fleet import Message
from events.fleet.sync import fact_id

STATE_FRESH_S = 3_000
LEFT_KEEP_S = 7 * 86_400
INTENT_KEEP_S = 3_600  # an intent lives at most an hour: its frames leave the set then
INTENT_KINDS = {"intent", "intent_commit", "intent_end"}
SETTLEMENT_KEEP_S = 35 * 86_400  # a period is settled within a week or two of its end
SETTLEMENT_KINDS = {"settle_propose", "settle_ready", "settle_executed"}
CONTRIBUTION_KEEP_S = 35 * 86_400  # a period's reports outlive its settlement
CONTRIBUTION_KINDS = {"contribution", "leech"}


class FactKind(StrEnum):
    STATE = "state"
    JOIN = "join"
    PROMOTION = "promotion"
    BAN = "ban"
    LEFT = "left"
    INTENT = "intent"
    INTENT_COMMIT = "intent_commit"
    INTENT_END = "intent_end"
    SETTLE_PROPOSE = "settle_propose"
    SETTLE_READY = "settle_ready"
    SETTLE_EXECUTED = "settle_executed"
    CONTRIBUTION = "contribution"
    LEECH = "leech"


def record(
    tx: Tx,
    kind: FactKind,
    subject: str,
    msg: Message,
    *,
    names: tuple[str | int, ...] = (),
    ts: int | None = None,
    single: bool = False,
) -> bool:
    """Record the fact `msg` proves about `subject` (True if it is new here).  Its id is
    derived from `names` (what the fact states, the same in every copy) or else from the
    frame itself (its signer and id)."""
    fid = fact_id(kind.value, *(names or (msg.node, msg.id)))
    row = rows.FactRow(
        fid, kind.value, subject, msg.ts if ts is None else ts, msg.id, int(msg.type), msg.raw
    )
    return rows.put(tx, row, single=single)


def drop(tx: Tx, kinds: set[FactKind], keep: set[str] | None = None) -> int:
    """Forget facts of `kinds` about anyone not in `keep` (all of them if None)."""
    return rows.drop(tx, {k.value for k in kinds}, keep)


def expire(tx: Tx, now: int) -> int:
    """Leaves older than a week leave the set."""
    return rows.drop(tx, {FactKind.LEFT.value}, before=now - LEFT_KEEP_S)


def expire_intents(tx: Tx, now: int) -> int:
    """Intents, their commits and ends leave the set an hour after they were made."""
    return rows.drop(tx, INTENT_KINDS, before=now - INTENT_KEEP_S)


def expire_settlement(tx: Tx, now: int) -> int:
    """Settlement frames leave the set five weeks after they were made."""
    return rows.drop(tx, SETTLEMENT_KINDS, before=now - SETTLEMENT_KEEP_S)


def expire_contribution(tx: Tx, now: int) -> int:
    """Contribution reports and leech notices leave the set after 35 days."""
    return rows.drop(tx, CONTRIBUTION_KINDS, before=now - CONTRIBUTION_KEEP_S)


def items(db: Db, now: int) -> list[tuple[int, bytes]]:
    """The set reconciled with peers at `now`: (timestamp, 32-byte id) per fact."""
    out = []
    for kind, _subject, ts, fid in rows.items(db):
        if kind == FactKind.STATE and ts < now - STATE_FRESH_S:
            continue
        if kind == FactKind.LEFT and ts < now - LEFT_KEEP_S:
            continue
        if kind in INTENT_KINDS and ts < now - INTENT_KEEP_S:
            continue
        if kind in SETTLEMENT_KINDS and ts < now - SETTLEMENT_KEEP_S:
            continue
        if kind in CONTRIBUTION_KINDS and ts < now - CONTRIBUTION_KEEP_S:
            continue
        out.append((ts, bytes.fromhex(fid)))
    return out


def proofs(db: Db, fact_ids: list[bytes]) -> list[rows.FactRow]:
    """The frames proving the facts named (those we hold), oldest first."""
    return rows.rows(db, [f.hex() for f in fact_ids])


def clear(tx: Tx) -> int:
    """Out of the hive: nothing is a fact any more."""
    return rows.drop(tx, {k.value for k in FactKind})
