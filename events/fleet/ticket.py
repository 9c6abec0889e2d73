"""Invite tickets: signed by a full member under their own tag, carried as `hive1…` text."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated

import nostr_sdk as sdk
from pydantic import Field

from events.canonical import canonical
from events.crypto import pubkey_hex, schnorr_verify, sha256, sign_hash
from events.errors import BadSignature, InvalidPayload, TooLarge
from events.fleet.wire import MAX_TICKET, TICKET_TAG, Body, HiveId, One, Unix, validated
from events.types import Hex32, NodeId, Sig, XOnly

# --- invite tickets ----------------------------------------------------------------------


class TicketBody(Body):
    v: One = 1
    hive: HiveId
    ticket_id: Hex32
    issuer: NodeId
    issuer_key: XOnly
    invitee: NodeId
    issued_at: Unix
    expires_at: Unix
    requires: Annotated[int, Field(ge=0, le=15)] = 0


class Ticket(TicketBody):
    sig: Sig


def _ticket_digest(body: TicketBody) -> bytes:
    fields = body.model_dump(mode="json")
    fields.pop("sig", None)
    return sha256(canonical([TICKET_TAG, fields]))


def sign_ticket(keys: sdk.Keys, body: TicketBody) -> Ticket:
    if body.issuer_key != pubkey_hex(keys):
        raise InvalidPayload("a ticket must name its signer as issuer_key")
    sig = sign_hash(keys, _ticket_digest(body))
    return Ticket(**body.model_dump(), sig=sig)


def encode_ticket(ticket: Ticket) -> str:
    raw = canonical(ticket)
    return "hive1" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_ticket(text: str) -> Ticket:
    """Parse and verify a `hive1…` ticket's signature; InvalidPayload or BadSignature.

    Expiry, invitee and issuer membership are the receiver's checks.
    """
    if not isinstance(text, str) or not text.startswith("hive1"):
        raise InvalidPayload("an invite ticket is text starting with 'hive1'")
    if len(text) > MAX_TICKET:
        raise TooLarge(
            f"the invite ticket is {len(text):,} characters; the limit is {MAX_TICKET:,}"
        )
    data = text[5:].strip()
    try:
        raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
        obj = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidPayload("the invite ticket is not valid base64 JSON") from None
    return verify_ticket(validated(Ticket, obj, "invite ticket"))


def verify_ticket(ticket: Ticket) -> Ticket:
    ok = schnorr_verify(
        bytes.fromhex(ticket.issuer_key), _ticket_digest(ticket), bytes.fromhex(ticket.sig)
    )
    if not ok:
        raise BadSignature("the invite ticket's signature does not verify against its issuer")
    if ticket.expires_at <= ticket.issued_at:
        raise InvalidPayload("the invite ticket expires before it was issued")
    return ticket
