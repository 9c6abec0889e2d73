"""The fleet wire: signed messages between members over BOLT 1 custom messages.

A frame is a BOLT custom message: a 2-byte odd type (32769 upwards, one per message kind),
the 4 bytes `HIVE`, then compact JSON, at most 65,535 bytes in all:

    {"v":1,"id":"<16 random bytes hex>","hive":"hive_…","from":"<Nostr x-only key>",
     "node":"<sender's node id>","ts":<unix seconds>,"body":{…},"sig":"<BIP-340 hex>"}

The signature is by the sender's Nostr key over a domain-separated digest of
(tag, type, hive id, message id, timestamp, sender key, sender node, body), so a signature
can never be replayed as another type, into another hive, or as another event kind.
`parse_frame()` checks size → type → magic → JSON → envelope → body model → signature, and
raises a typed error at the first failure.  Freshness, replay and membership are the
receiver's business (agent/fleet): this module does no I/O and reads no clock.

Invite tickets are signed the same way under their own tag and travel as `hive1…` text.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import json
import re
from enum import IntEnum, StrEnum
from typing import Annotated, Any, Literal, TypeVar

import nostr_sdk as sdk
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from events.canonical import canonical
from events.crypto import pubkey_hex, schnorr_verify, sha256, sign_hash
from events.errors import BadSignature, InvalidJson, InvalidPayload, TooLarge, UnknownMessage
from events.types import Hex32, NodeId, Sig, XOnly, first_error

MAGIC = b"HIVE"
MAX_FRAME = 65_535  # BOLT 1: the whole message, 2-byte type included
MAX_TICKET = 10_240
VERSION = 1
FRAME_TAG = "lightning-hive/fleet/v1"
TICKET_TAG = "lightning-hive/invite/v1"

NODE_ID = re.compile(r"^0[23][0-9a-f]{64}$")
HiveId = Annotated[str, StringConstraints(pattern=r"^hive_[0-9a-f]{16}$")]
Zbase = Annotated[str, StringConstraints(pattern=r"^[ybndrfg8ejkmcpqxot1uwisza345h769]{100,110}$")]
Text = Annotated[str, StringConstraints(max_length=280)]
Unix = Annotated[int, Field(ge=0, lt=2**40)]
_STRICT = ConfigDict(strict=True, frozen=True, extra="forbid")
One = Annotated[int, Field(ge=1, le=1)]  # strict int: `true` is not 1 here (a Literal[1] allows it)


class MsgType(IntEnum):
    """Custom message types (UPSTREAM.md §2 numbering; MEMBER_JOINED is ours)."""

    HELLO = 32769
    CHALLENGE = 32771
    ATTEST = 32773
    WELCOME = 32775
    VOUCH = 32789
    BAN = 32791
    PROMOTION = 32793
    MEMBER_LEFT = 32797
    BAN_PROPOSAL = 32799
    BAN_VOTE = 32801
    MSG_ACK = 32881
    MEMBER_JOINED = 32905


TierName = Literal["neophyte", "member"]

# requirement bits of an invite ticket (UPSTREAM.md §2) and the manifest feature names
REQUIREMENT_BITS = {"splice": 1, "dual_fund": 2, "anchor": 4, "onion": 8}


def is_node_id(value: object) -> bool:
    """True for a Lightning node id: 33-byte compressed key, lowercase hex."""
    return isinstance(value, str) and NODE_ID.fullmatch(value) is not None


def requirement_names(bits: int) -> list[str]:
    return [name for name, bit in REQUIREMENT_BITS.items() if bits & bit]


def requirement_bits(names: list[str]) -> int:
    unknown = [n for n in names if n not in REQUIREMENT_BITS]
    if unknown:
        raise InvalidPayload(
            f"unknown requirement {unknown[0]!r}; known: {', '.join(REQUIREMENT_BITS)}"
        )
    bits = 0
    for name in names:
        bits |= REQUIREMENT_BITS[name]
    return bits


class Body(BaseModel):
    model_config = _STRICT


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
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidPayload("the invite ticket is not valid base64 JSON") from None
    return verify_ticket(_model(Ticket, obj, "invite ticket"))


def verify_ticket(ticket: Ticket) -> Ticket:
    ok = schnorr_verify(
        bytes.fromhex(ticket.issuer_key), _ticket_digest(ticket), bytes.fromhex(ticket.sig)
    )
    if not ok:
        raise BadSignature("the invite ticket's signature does not verify against its issuer")
    if ticket.expires_at <= ticket.issued_at:
        raise InvalidPayload("the invite ticket expires before it was issued")
    return ticket


# --- message bodies ----------------------------------------------------------------------


class Hello(Body):
    ticket: Annotated[str, StringConstraints(max_length=MAX_TICKET)]
    protocol_version: One = 1
    supported_versions: Annotated[list[Annotated[int, Field(ge=1, le=255)]], Field(max_length=8)]


class Challenge(Body):
    nonce: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    ticket_id: Hex32
    ttl_s: Annotated[int, Field(ge=1, le=3600)] = 300


class Manifest(Body):
    """What a joining node attests: who it is, what it runs, and the challenge it answers."""

    node_id: NodeId
    pubkey: XOnly
    version: Annotated[str, StringConstraints(max_length=64)]
    features: Annotated[
        list[Annotated[str, StringConstraints(max_length=32)]], Field(max_length=32)
    ]
    timestamp: Unix
    nonce: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class Attest(Body):
    ticket: Annotated[str, StringConstraints(max_length=MAX_TICKET)]
    manifest: Manifest
    binding: Zbase  # CLN signmessage over the Nostr key: the node vouches for the key


class MemberEntry(Body):
    node_id: NodeId
    pubkey: XOnly
    binding: Zbase
    tier: TierName
    joined_at: Unix
    promoted_at: Unix | None = None


class BanEntry(Body):
    target: NodeId
    reason: Text
    decided_at: Unix


class Welcome(Body):
    tier: TierName
    admin: NodeId
    created_at: Unix
    members: Annotated[list[MemberEntry], Field(max_length=500)]
    bans: Annotated[list[BanEntry], Field(max_length=1000)]


Frame = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]+$", max_length=2 * MAX_FRAME)]


class MemberJoined(Body):
    attest: Frame  # the joiner's own signed ATTEST frame: every member re-checks it
    joined_at: Unix


class Vouch(Body):
    candidate: NodeId


Electorate = Annotated[list[NodeId], Field(min_length=1, max_length=500)]


class Promotion(Body):
    """A promotion decided by the sender: the full members it counted, and their vouches."""

    candidate: NodeId
    electorate: Electorate
    vouches: Annotated[list[Frame], Field(min_length=1, max_length=100)]


class BanProposal(Body):
    proposal_id: Hex32
    target: NodeId
    reason: Text


class BanVote(Body):
    proposal_id: Hex32
    target: NodeId
    approve: bool


class Ban(Body):
    """A ban decided by the sender: the full members it counted, the proposal and the votes."""

    target: NodeId
    electorate: Electorate
    proposal: Frame
    votes: Annotated[list[Frame], Field(max_length=100)]


class MemberLeft(Body):
    reason: Text = ""


class AckStatus(StrEnum):
    OK = "ok"  # handled (or a duplicate of one that was)
    INVALID = "invalid"  # refused for good: the sender stops retrying
    RETRY_LATER = "retry_later"  # we may not know enough yet: the sender tries again later


class MsgAck(Body):
    ref: Hex32
    status: Literal["ok", "invalid", "retry_later"]  # an AckStatus (bodies are strict: as text)
    code: Annotated[str, StringConstraints(max_length=40)] = ""
    message: Text = ""

    @property
    def outcome(self) -> AckStatus:
        return AckStatus(self.status)


BODIES: dict[MsgType, type[Body]] = {
    MsgType.HELLO: Hello,
    MsgType.CHALLENGE: Challenge,
    MsgType.ATTEST: Attest,
    MsgType.WELCOME: Welcome,
    MsgType.VOUCH: Vouch,
    MsgType.BAN: Ban,
    MsgType.PROMOTION: Promotion,
    MsgType.MEMBER_LEFT: MemberLeft,
    MsgType.BAN_PROPOSAL: BanProposal,
    MsgType.BAN_VOTE: BanVote,
    MsgType.MSG_ACK: MsgAck,
    MsgType.MEMBER_JOINED: MemberJoined,
}


# --- envelope -----------------------------------------------------------------------------


class Envelope(BaseModel):
    model_config = _STRICT
    v: One
    id: Hex32
    hive: HiveId | Literal[""]  # "" only before the sender knows the hive (never signed twice)
    from_: XOnly = Field(alias="from")
    node: NodeId
    ts: Unix
    body: dict[str, Any]
    sig: Sig


B = TypeVar("B", bound="Body")


class Message(BaseModel):
    """A verified frame: its type, envelope fields and typed body."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    type: MsgType
    id: str
    hive: str
    sender_key: str
    node: str
    ts: int
    body: Body
    raw: bytes

    def body_as(self, kind: builtins.type[B]) -> B:
        """The body, as the model this frame type carries (InvalidPayload if it is not)."""
        if not isinstance(self.body, kind):
            raise InvalidPayload(f"a {self.type.name} frame does not carry a {kind.__name__}")
        return self.body


def _digest(
    msg_type: int, hive: str, msg_id: str, ts: int, key: str, node: str, body: Any
) -> bytes:
    return sha256(canonical([FRAME_TAG, msg_type, hive, msg_id, ts, key, node, body]))


def build_frame(
    keys: sdk.Keys, msg_type: MsgType, body: Body, *, hive: str, msg_id: str, node: str, ts: int
) -> bytes:
    """A signed frame; TooLarge if it would exceed 65,535 bytes."""
    data = body.model_dump(mode="json")
    key = pubkey_hex(keys)
    sig = sign_hash(keys, _digest(int(msg_type), hive, msg_id, ts, key, node, data))
    envelope = {
        "v": VERSION, "id": msg_id, "hive": hive, "from": key, "node": node, "ts": ts,
        "body": data, "sig": sig,
    }  # fmt: skip
    frame = int(msg_type).to_bytes(2, "big") + MAGIC + canonical(envelope)
    if len(frame) > MAX_FRAME:
        raise TooLarge(
            f"the fleet message would be {len(frame):,} bytes; the limit is {MAX_FRAME:,}"
        )
    return frame


def is_hive_frame(payload: bytes) -> bool:
    """True for a custom message that belongs to us: odd type ≥ 32769 followed by `HIVE`."""
    if len(payload) < 6 or payload[2:6] != MAGIC:
        return False
    msg_type = int.from_bytes(payload[:2], "big")
    return msg_type >= 32769 and msg_type % 2 == 1


def parse_frame(payload: bytes) -> Message:
    """Decode and verify one frame.

    Raises TooLarge, UnknownMessage, InvalidJson, InvalidPayload or BadSignature.
    """
    if len(payload) > MAX_FRAME:
        raise TooLarge(f"the fleet message is {len(payload):,} bytes; the limit is {MAX_FRAME:,}")
    if not is_hive_frame(payload):
        raise UnknownMessage("not a fleet message (odd type ≥ 32769 followed by HIVE)")
    raw_type = int.from_bytes(payload[:2], "big")
    try:
        msg_type = MsgType(raw_type)
    except ValueError:
        raise UnknownMessage(f"fleet message type {raw_type} is not one this agent knows") from None
    try:
        obj = json.loads(payload[6:])
    except (ValueError, UnicodeDecodeError):
        raise InvalidJson("the fleet message is not valid JSON") from None
    env: Envelope = _model(Envelope, obj, "fleet message")
    body = _model(BODIES[msg_type], env.body, f"{msg_type.name} body")
    digest = _digest(raw_type, env.hive, env.id, env.ts, env.from_, env.node, env.body)
    if not schnorr_verify(bytes.fromhex(env.from_), digest, bytes.fromhex(env.sig)):
        raise BadSignature(f"the {msg_type.name} message's signature does not verify")
    return Message(
        type=msg_type, id=env.id, hive=env.hive, sender_key=env.from_, node=env.node,
        ts=env.ts, body=body, raw=bytes(payload),
    )  # fmt: skip


def _model(model: type[Any], data: Any, what: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidPayload(f"{what}: {first_error(exc)}") from None
