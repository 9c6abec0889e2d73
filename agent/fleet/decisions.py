"""Membership decisions as facts (agent/fleet/facts.py): whom a decision frame is about,
whether our rows already reflect it, and recording it where it belongs in the set.  Functions
of the store's rows and the frame only."""

from __future__ import annotations

from agent.fleet import facts
from agent.fleet.facts import FactKind
from agent.store import fleet as db
from agent.store.db import Tx
from events import fleet as wire
from events.fleet import Message, MsgType

KINDS = {
    MsgType.MEMBER_JOINED: FactKind.JOIN,
    MsgType.PROMOTION: FactKind.PROMOTION,
    MsgType.BAN: FactKind.BAN,
    MsgType.MEMBER_LEFT: FactKind.LEFT,
}


def subject(msg: Message) -> str:
    """The node a decision is about: the joiner, the candidate, the target, the leaver."""
    if msg.type == MsgType.MEMBER_JOINED:
        return wire.parse_frame(bytes.fromhex(msg.body_as(wire.MemberJoined).attest)).node
    if msg.type == MsgType.PROMOTION:
        return msg.body_as(wire.Promotion).candidate
    if msg.type == MsgType.BAN:
        return msg.body_as(wire.Ban).target
    return msg.node  # MEMBER_LEFT


def reflected(tx: Tx, msg: Message, about: str, skew_s: int) -> bool:
    """True if our rows already say what the decision says (it would change nothing)."""
    m = db.member(tx, about)
    if msg.type == MsgType.MEMBER_JOINED:
        return m is not None
    if msg.type == MsgType.PROMOTION:
        return m is not None and m.tier == "member"
    if msg.type == MsgType.BAN:
        return db.is_banned(tx, about)
    return m is not None and m.status == "left" and msg.ts >= m.joined_at - skew_s


def record(tx: Tx, msg: Message, about: str) -> None:
    """Keep the fact `msg` proves, if it belongs in the set: joins and promotions only of
    members still active."""
    if msg.type in (MsgType.MEMBER_JOINED, MsgType.PROMOTION):
        m = db.member(tx, about)
        if m is None or m.status != "active":
            return
    facts.record(tx, KINDS[msg.type], about, msg)


def forget(tx: Tx) -> None:
    """Joins and promotions of members no longer active leave the set at once (not at the
    next upkeep), in the transaction that ended their membership."""
    active = {m.node_id for m in db.members(tx)}
    facts.drop(tx, {FactKind.JOIN, FactKind.PROMOTION}, keep=active)
