"""Session frames: the compact, unsigned envelope of the point-to-point frames between two
connected members (a reconciliation's STATE_HASH and SYNC steps, and the acknowledgements of
such frames).

A signed frame proves who wrote it to anyone it is handed on to; a session frame proves
nothing to anyone but the peer it came from, and needs to: it is never a fact, never stored
as a proof and never handed on.  Its sender is the Lightning peer it arrived from — BOLT 8
authenticates and encrypts that link, so nobody else can put a frame on it or change one —
and the receiving kernel binds the frame's node to that peer.  So it carries no key, no node
and no signature:

    type(2) ‖ "HIVE" ‖ 0x01 ‖ id(16) ‖ hive(8: the hex of hive_…) ‖ ts(5, big-endian) ‖ body

(a signed frame's byte after `HIVE` is `{`; `parse_frame` refuses a session frame, so one can
never pass for an embedded proof).  The body is a fixed binary layout per type (`CODECS`),
decoded into the same strict pydantic model a signed frame's JSON body is.  Freshness,
duplicates, the hive, the sender's standing and which types may travel so are the receiving
kernel's checks (agent/fleet/kernel.py: a component declares its `session` types).

Pure: no I/O, no clock.  Malformed input raises InvalidPayload (UnknownMessage for a type
that has no compact layout, TooLarge beyond 65,535 bytes).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from events.errors import InvalidPayload, TooLarge, UnknownMessage
from events.fleet.ack import MsgAck
from events.fleet.frame import Message
from events.fleet.sync import StateHash, Sync
from events.fleet.wire import MAGIC, MAX_FRAME, Body, MsgType, is_node_id, validated

COMPACT = 0x01  # the byte after MAGIC that marks a session frame
HEADER = 2 + len(MAGIC) + 1 + 16 + 8 + 5
STATUSES = ("ok", "invalid", "retry_later")
_DONE = 0x01


class _Reader:
    """Bytes read front to back; running short or leaving any behind is InvalidPayload."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.pos, self.what = data, 0, what

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise InvalidPayload(f"{self.what}: ends prematurely")
        self.pos += n
        return self.data[self.pos - n : self.pos]

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def text(self, n: int) -> str:
        try:
            return self.take(self.uint(n)).decode()
        except UnicodeDecodeError:
            raise InvalidPayload(f"{self.what}: text that is not UTF-8") from None

    def end(self) -> None:
        if self.pos != len(self.data):
            raise InvalidPayload(f"{self.what}: {len(self.data) - self.pos} bytes too many")


def _text(value: str, n: int) -> bytes:
    data = value.encode()
    return len(data).to_bytes(n, "big") + data


def _pack_state_hash(body: StateHash) -> bytes:
    return bytes.fromhex(body.digest) + body.count.to_bytes(4, "big")


def _unpack_state_hash(r: _Reader) -> dict[str, Any]:
    return {"digest": r.take(32).hex(), "count": r.uint(4)}


def _pack_sync(body: Sync) -> bytes:
    data = base64.b64decode(body.data)
    want = b"".join(bytes.fromhex(w) for w in body.want)
    return (
        bytes.fromhex(body.session) + body.round.to_bytes(4, "big")
        + bytes([_DONE if body.done else 0]) + len(data).to_bytes(2, "big") + data
        + len(body.want).to_bytes(2, "big") + want
    )  # fmt: skip


def _unpack_sync(r: _Reader) -> dict[str, Any]:
    session, rnd, flags = r.take(16).hex(), r.uint(4), r.uint(1)
    if flags & ~_DONE:
        raise InvalidPayload(f"{r.what}: unknown flags {flags:#04x}")
    data = base64.b64encode(r.take(r.uint(2))).decode()
    want = [r.take(32).hex() for _ in range(r.uint(2))]
    return {"session": session, "round": rnd, "data": data, "want": want, "done": bool(flags)}


def _pack_ack(body: MsgAck) -> bytes:
    status = STATUSES.index(body.status).to_bytes(1, "big")
    return bytes.fromhex(body.ref) + status + _text(body.code, 1) + _text(body.message, 2)


def _unpack_ack(r: _Reader) -> dict[str, Any]:
    ref, status = r.take(16).hex(), r.uint(1)
    if status >= len(STATUSES):
        raise InvalidPayload(f"{r.what}: unknown status {status}")
    return {"ref": ref, "status": STATUSES[status], "code": r.text(1), "message": r.text(2)}


@dataclass(frozen=True)
class Codec:
    model: type[Body]
    pack: Callable[[Any], bytes]
    unpack: Callable[[_Reader], dict[str, Any]]


CODECS: dict[MsgType, Codec] = {
    MsgType.STATE_HASH: Codec(StateHash, _pack_state_hash, _unpack_state_hash),
    MsgType.SYNC: Codec(Sync, _pack_sync, _unpack_sync),
    MsgType.MSG_ACK: Codec(MsgAck, _pack_ack, _unpack_ack),
}


def is_compact(payload: bytes) -> bool:
    """True for a session frame (it may still be malformed: `parse_compact` judges)."""
    return len(payload) > 6 and payload[2:6] == MAGIC and payload[6] == COMPACT


def build_compact(msg_type: MsgType, body: Body, *, hive: str, msg_id: str, ts: int) -> bytes:
    """A session frame; UnknownMessage for a type with no compact layout, TooLarge beyond the
    frame limit."""
    codec = CODECS.get(msg_type)
    if codec is None or not isinstance(body, codec.model):
        raise UnknownMessage(f"{msg_type.name} frames have no compact layout for this body")
    if not hive.startswith("hive_"):
        raise InvalidPayload("a session frame belongs to a hive")
    head = int(msg_type).to_bytes(2, "big") + MAGIC + bytes([COMPACT])
    frame = (
        head + bytes.fromhex(msg_id) + bytes.fromhex(hive[5:]) + ts.to_bytes(5, "big")
        + codec.pack(body)
    )  # fmt: skip
    if len(frame) > MAX_FRAME:
        raise TooLarge(
            f"the session frame would be {len(frame):,} bytes; the limit is {MAX_FRAME:,}"
        )
    return frame


def parse_compact(payload: bytes, peer: str) -> Message:
    """Decode one session frame that arrived from `peer` (its BOLT 8 authenticated node id,
    which becomes the message's node).

    Raises TooLarge, UnknownMessage or InvalidPayload."""
    if len(payload) > MAX_FRAME:
        raise TooLarge(f"the fleet message is {len(payload):,} bytes; the limit is {MAX_FRAME:,}")
    if not is_compact(payload):
        raise UnknownMessage("not a session frame (odd type ≥ 32769, HIVE, 0x01)")
    if not is_node_id(peer):
        raise InvalidPayload("a session frame's peer is not a node id")
    raw_type = int.from_bytes(payload[:2], "big")
    try:
        msg_type = MsgType(raw_type)
    except ValueError:
        raise UnknownMessage(f"fleet message type {raw_type} is not one this agent knows") from None
    codec = CODECS.get(msg_type)
    if codec is None:
        raise UnknownMessage(f"{msg_type.name} frames do not travel as session frames")
    r = _Reader(payload[7:], f"a compact {msg_type.name} frame")
    msg_id, hive, ts = r.take(16).hex(), "hive_" + r.take(8).hex(), r.uint(5)
    fields = codec.unpack(r)
    r.end()
    body = validated(codec.model, fields, f"{msg_type.name} body")
    return Message(
        type=msg_type, id=msg_id, hive=hive, sender_key="", node=peer, ts=ts, body=body,
        raw=bytes(payload), signed=False,
    )  # fmt: skip
