"""Frames: the signed envelope around a body, built and parsed (size → type → magic → JSON →
envelope → body model → signature)."""

from __future__ import annotations

import builtins
import json
from typing import Any, Generic, Literal, cast

import nostr_sdk as sdk
from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypeVar

from events.canonical import canonical
from events.crypto import pubkey_hex, schnorr_verify, sha256, sign_hash
from events.errors import BadSignature, InvalidJson, InvalidPayload, TooLarge, UnknownMessage
from events.fleet.registry import BODIES
from events.fleet.wire import (
    FRAME_TAG,
    MAGIC,
    MAX_FRAME,
    STRICT,
    VERSION,
    Body,
    HiveId,
    MsgType,
    One,
    Unix,
    validated,
)
from events.types import Hex32, NodeId, Sig, XOnly

# --- envelope -----------------------------------------------------------------------------


class Envelope(BaseModel):
    model_config = STRICT
    v: One
    id: Hex32
    hive: HiveId | Literal[""]  # "" only before the sender knows the hive (never signed twice)
    from_: XOnly = Field(alias="from")
    node: NodeId
    ts: Unix
    body: dict[str, Any]
    sig: Sig


B = TypeVar("B", bound=Body, default=Body)  # the body a message carries (any, by default)
C = TypeVar("C", bound=Body)


class Message(BaseModel, Generic[B]):
    """A verified frame: its type, envelope fields and typed body (`Message[Vouch]` for a
    frame known to carry a Vouch; `narrow` and `body_as` check it).  `signed`: False for a
    session frame (events/fleet/compact.py), whose sender is the peer it came from and whose
    `sender_key` is empty."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    type: MsgType
    id: str
    hive: str
    sender_key: str
    node: str
    ts: int
    body: B
    raw: bytes
    signed: bool = True

    def body_as(self, kind: builtins.type[C]) -> C:
        """The body, as the model this frame type carries (InvalidPayload if it is not)."""
        return self.narrow(kind).body

    def narrow(self, kind: builtins.type[C]) -> Message[C]:
        """This message typed by its body (InvalidPayload if it carries another)."""
        if not isinstance(self.body, kind):
            raise InvalidPayload(f"a {self.type.name} frame does not carry a {kind.__name__}")
        return cast("Message[C]", self)  # checked just above: the body is a C


def _digest(
    msg_type: int, hive: str, msg_id: str, ts: int, key: str, node: str, body: Any
) -> bytes:
    return sha256(canonical([FRAME_TAG, msg_type, hive, msg_id, ts, key, node, body]))


def build_frame(
    keys: sdk.Keys, msg_type: MsgType, body: Body, *, hive: str, msg_id: str, node: str, ts: int
) -> bytes:
    """A signed frame; TooLarge if it would exceed 65,535 bytes.

    The body is written as canonical JSON once, and that text goes both into the signed
    digest and into the envelope: the very bytes `canonical` would give for each (a list's
    items and an object's sorted members are written as they are alone), without serialising
    the body twice — it is most of a frame (a state record, a proof)."""
    data = canonical(body)
    key = pubkey_hex(keys)
    head = canonical([FRAME_TAG, int(msg_type), hive, msg_id, ts, key, node])
    sig = sign_hash(keys, sha256(head[:-1] + b"," + data + b"]"))
    rest = {"v": VERSION, "id": msg_id, "hive": hive, "from": key, "node": node, "ts": ts,
            "sig": sig}  # fmt: skip
    envelope = b'{"body":' + data + b"," + canonical(rest)[1:]  # "body" sorts first
    frame = int(msg_type).to_bytes(2, "big") + MAGIC + envelope
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
    except (ValueError, UnicodeDecodeError, RecursionError):  # (nested past the stack)
        raise InvalidJson("the fleet message is not valid JSON") from None
    env: Envelope = validated(Envelope, obj, "fleet message")
    body = validated(BODIES[msg_type], env.body, f"{msg_type.name} body")
    digest = _digest(raw_type, env.hive, env.id, env.ts, env.from_, env.node, env.body)
    if not schnorr_verify(bytes.fromhex(env.from_), digest, bytes.fromhex(env.sig)):
        raise BadSignature(f"the {msg_type.name} message's signature does not verify")
    return Message(
        type=msg_type, id=env.id, hive=env.hive, sender_key=env.from_, node=env.node,
        ts=env.ts, body=body, raw=bytes(payload),
    )  # fmt: skip
