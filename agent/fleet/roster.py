"""Who is in the hive, as every fleet component asks it: the hive we are in, an active member
signing with its bound key, and what any member can check about a joiner's ATTEST.  Functions
of the store's rows only (no node, no clock: times are given)."""

from __future__ import annotations

from agent.fleet.kernel import short
from agent.store import fleet as db
from agent.store.db import Db, Tx
from events import fleet as wire
from events import lnsig
from events.errors import (
    BadSignature,
    Banned,
    Expired,
    NotMember,
    Replayed,
    Restricted,
    Unauthorized,
)
from events.fleet import Message


def current_hive(store: Db) -> db.Hive:
    h = db.hive(store)
    if h is None:
        raise NotMember("this node is not in a hive (hive-genesis or hive-join first)")
    return h


def active_member(
    store: Db, node: str, key: str | None, *, full: bool = False, what: str = ""
) -> db.Member:
    """`node`, an active member signing with its bound key (a full member if `full`; `key`
    None: a session frame, unsigned, that came from `node` itself over BOLT 8)."""
    if db.is_banned(store, node):
        raise Banned(f"{short(node)} is banned from the hive")
    m = db.member(store, node)
    if m is None or m.status != "active":
        raise NotMember(f"{short(node)} is not an active member of this hive")
    if key is not None and m.pubkey != key:
        raise BadSignature(f"signed by a key that is not {short(node)}'s bound Nostr key")
    if full and m.tier != "member":
        raise Restricted(f"only full members may {what}; {short(node)} is a {m.tier}")
    return m


def check_ticket(tx: Db, h: db.Hive, text: str, invitee: str, *, at: int) -> wire.Ticket:
    ticket = wire.decode_ticket(text)
    if ticket.hive != h.hive_id:
        raise Unauthorized("the invite ticket is for another hive")
    if ticket.invitee != invitee:
        raise Unauthorized(
            f"the invite ticket names node {short(ticket.invitee)}, not {short(invitee)}"
        )
    issuer = db.member(tx, ticket.issuer)
    if issuer is None or issuer.status != "active" or issuer.tier != "member":
        raise NotMember("the invite ticket's issuer is not a full member of this hive")
    if issuer.pubkey != ticket.issuer_key:
        raise BadSignature("the invite ticket is not signed by its issuer's bound key")
    if ticket.expires_at <= at:
        raise Expired("the invite ticket has expired")
    used = db.ticket_used_by(tx, ticket.ticket_id)
    if used is not None:
        raise Replayed(f"the invite ticket was already used by {short(used)}")
    return ticket


def check_admission(tx: Tx, h: db.Hive, attest: Message, *, at: int) -> wire.Ticket:
    """Everything any member can check about an ATTEST: its ticket, manifest and binding."""
    body = attest.body_as(wire.Attest)
    if attest.hive != h.hive_id:
        raise Unauthorized("ATTEST names another hive")
    ticket = check_ticket(tx, h, body.ticket, attest.node, at=at)
    manifest = body.manifest
    if manifest.node_id != attest.node or manifest.pubkey != attest.sender_key:
        raise Unauthorized("the manifest names another node or key than its signer")
    if not lnsig.check(manifest.pubkey, body.binding, attest.node):
        raise BadSignature(
            f"node {short(attest.node)} did not sign this Nostr key (signmessage binding)"
        )
    missing = [n for n in wire.requirement_names(ticket.requires) if n not in manifest.features]
    if missing:
        raise Restricted(f"the invite requires {', '.join(missing)}, which this node lacks")
    return ticket


def admit(tx: Tx, attest: Message, ticket: wire.Ticket, *, joined_at: int) -> None:
    """The joiner becomes a neophyte; its ticket is used up."""
    body = attest.body_as(wire.Attest)
    db.use_ticket(
        tx, ticket.ticket_id, ticket.invitee, ticket.issuer, ticket.expires_at,
        attest.node, tx.now,
    )  # fmt: skip
    db.add_member(
        tx, attest.node, attest.sender_key, body.binding, "neophyte", joined_at,
        manifest=body.manifest.model_dump(),
    )  # fmt: skip
