"""Session frames (events/fleet/compact.py): the compact unsigned envelope of STATE_HASH, SYNC
and their acknowledgements — round trips of every body, every malformed variant refused with a
typed error, and never accepted where a signed frame is required."""

from __future__ import annotations

import base64

import nostr_sdk as sdk
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events import fleet as wire
from events import lnsig
from events.errors import HiveError, InvalidJson, InvalidPayload, TooLarge, UnknownMessage
from events.fleet import MsgType
from events.fleet.compact import CODECS, COMPACT, HEADER, build_compact, is_compact, parse_compact
from events.fleet.sync import MAX_FACTS, MAX_WANT, NEG_LIMIT, StateHash, Sync

PEER = lnsig.node_id(bytes.fromhex("2" * 64))
HIVE = "hive_0123456789abcdef"
TS = 1_700_000_000

hex16 = st.binary(min_size=16, max_size=16).map(bytes.hex)
hex32 = st.binary(min_size=32, max_size=32).map(bytes.hex)
state_hashes = st.builds(
    lambda d, c: (MsgType.STATE_HASH, StateHash(digest=d, count=c)),
    hex32,
    st.integers(0, MAX_FACTS),
)
syncs = st.builds(
    lambda s, r, d, w, done: (
        MsgType.SYNC,
        Sync(session=s, round=r, data=base64.b64encode(d).decode(), want=w, done=done),
    ),
    hex16,
    st.integers(0, MAX_FACTS),
    st.binary(max_size=2_000),
    st.lists(hex32, max_size=20),
    st.booleans(),
)
acks = st.builds(
    lambda r, s, c, m: (MsgType.MSG_ACK, wire.MsgAck(ref=r, status=s, code=c, message=m)),
    hex16,
    st.sampled_from(["ok", "invalid", "retry_later"]),
    st.text(max_size=40),
    st.text(max_size=280),
)
bodies = st.one_of(state_hashes, syncs, acks)


def _build(msg_type: MsgType, body: wire.Body, **kw: object) -> bytes:
    args = {"hive": HIVE, "msg_id": "ab" * 16, "ts": TS} | kw
    return build_compact(msg_type, body, **args)  # type: ignore[arg-type]


@settings(max_examples=500, deadline=None)
@given(
    case=bodies, ts=st.integers(0, 2**40 - 1), msg_id=hex16, hive=st.binary(min_size=8, max_size=8)
)
def test_round_trip(case: tuple[MsgType, wire.Body], ts: int, msg_id: str, hive: bytes) -> None:
    msg_type, body = case
    hive_id = "hive_" + hive.hex()
    frame = _build(msg_type, body, ts=ts, msg_id=msg_id, hive=hive_id)
    assert is_compact(frame) and wire.is_hive_frame(frame)
    msg = parse_compact(frame, PEER)
    assert (msg.type, msg.body, msg.ts, msg.id, msg.hive) == (msg_type, body, ts, msg_id, hive_id)
    assert (msg.node, msg.sender_key, msg.signed, msg.raw) == (PEER, "", False, frame)


def test_the_compact_frames_are_small() -> None:
    """What the envelope costs: 36 bytes; a digest is 72 bytes in all (a signed one ~486)."""
    assert HEADER == 36
    digest = _build(MsgType.STATE_HASH, StateHash(digest="0" * 64, count=10_000))
    assert len(digest) == 72
    step = _build(
        MsgType.SYNC, Sync(session="0" * 32, round=0, data=base64.b64encode(b"x" * 100).decode())
    )
    assert len(step) == HEADER + 16 + 4 + 1 + 2 + 100 + 2


def test_a_session_frame_never_passes_for_a_signed_one() -> None:
    """parse_frame (the path of every embedded proof) refuses it; the signed JSON envelope's
    byte after HIVE is never the compact marker."""
    frame = _build(MsgType.STATE_HASH, StateHash(digest="0" * 64, count=1))
    with pytest.raises(InvalidJson):
        wire.parse_frame(frame)
    keys = sdk.Keys.parse("1" * 64)
    signed = wire.build_frame(
        keys, MsgType.STATE_HASH, StateHash(digest="0" * 64, count=1), hive=HIVE,
        msg_id="ab" * 16, node=PEER, ts=TS,
    )  # fmt: skip
    assert not is_compact(signed) and signed[6] != COMPACT


def test_only_the_session_types_have_a_compact_layout() -> None:
    assert set(CODECS) == {MsgType.STATE_HASH, MsgType.SYNC, MsgType.MSG_ACK}
    with pytest.raises(UnknownMessage):
        build_compact(MsgType.VOUCH, wire.Vouch(candidate=PEER), hive=HIVE, msg_id="ab" * 16, ts=TS)
    with pytest.raises(UnknownMessage):  # a body that is not the type's
        build_compact(
            MsgType.SYNC, StateHash(digest="0" * 64, count=1), hive=HIVE, msg_id="ab" * 16, ts=TS
        )
    with pytest.raises(InvalidPayload):
        build_compact(
            MsgType.STATE_HASH,
            StateHash(digest="0" * 64, count=1),
            hive="",
            msg_id="ab" * 16,
            ts=TS,
        )


GOOD = [
    _build(MsgType.STATE_HASH, StateHash(digest="1" * 64, count=7)),
    _build(
        MsgType.SYNC,
        Sync(
            session="2" * 32,
            round=3,
            data=base64.b64encode(b"abc").decode(),
            want=["3" * 64],
            done=True,
        ),
    ),
    _build(MsgType.MSG_ACK, wire.MsgAck(ref="4" * 32, status="invalid", code="X", message="é")),
]


@pytest.mark.parametrize("frame", GOOD)
def test_every_truncation_and_every_extra_byte_is_refused(frame: bytes) -> None:
    for n in range(len(frame)):
        with pytest.raises((InvalidPayload, UnknownMessage)):
            parse_compact(frame[:n], PEER)
    with pytest.raises(InvalidPayload, match="too many"):
        parse_compact(frame + b"\x00", PEER)


@settings(max_examples=3_000, deadline=None)
@given(which=st.integers(0, len(GOOD) - 1), where=st.integers(0, 10**6), mask=st.integers(1, 255))
def test_every_flipped_byte_is_refused_with_a_typed_error_or_still_well_formed(
    which: int, where: int, mask: int
) -> None:
    """Unsigned: integrity on the wire is BOLT 8's; the codec's part is that damage is either
    a typed refusal or another well-formed frame, never an exception of another kind."""
    frame = GOOD[which]
    i = where % len(frame)
    damaged = frame[:i] + bytes([frame[i] ^ mask]) + frame[i + 1 :]
    try:
        msg = parse_compact(damaged, PEER)
    except HiveError:
        return
    assert build_compact(msg.type, msg.body, hive=msg.hive, msg_id=msg.id, ts=msg.ts) == damaged


def _raw(msg_type: MsgType, body: bytes) -> bytes:
    head = int(msg_type).to_bytes(2, "big") + b"HIVE" + bytes([COMPACT])
    return head + b"\xab" * 16 + bytes.fromhex(HIVE[5:]) + TS.to_bytes(5, "big") + body


SYNC_HEAD = b"\x22" * 16 + (0).to_bytes(4, "big")


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (_raw(MsgType.SYNC, SYNC_HEAD + b"\x02" + b"\x00\x00" + b"\x00\x00"), "unknown flags"),
        (_raw(MsgType.MSG_ACK, b"\x44" * 16 + b"\x03" + b"\x00" + b"\x00\x00"), "unknown status"),
        (_raw(MsgType.MSG_ACK, b"\x44" * 16 + b"\x00" + b"\x01\xff" + b"\x00\x00"), "UTF-8"),
        (_raw(MsgType.MSG_ACK, b"\x44" * 16 + b"\x00" + b"\x29" + b"x" * 41 + b"\x00\x00"), "code"),
        (_raw(MsgType.STATE_HASH, b"\x00" * 32 + (MAX_FACTS + 1).to_bytes(4, "big")), "count"),
        (
            _raw(MsgType.SYNC, b"\x22" * 16 + (MAX_FACTS + 1).to_bytes(4, "big") + b"\x00" * 5),
            "round",
        ),
        (
            _raw(
                MsgType.SYNC,
                SYNC_HEAD
                + b"\x00"
                + (NEG_LIMIT + 3).to_bytes(2, "big")
                + b"\x00" * (NEG_LIMIT + 3)
                + b"\x00\x00",
            ),
            "data",
        ),
        (
            _raw(
                MsgType.SYNC,
                SYNC_HEAD
                + b"\x00\x00\x00"
                + (MAX_WANT + 1).to_bytes(2, "big")
                + b"\x33" * 32 * (MAX_WANT + 1),
            ),
            "want",
        ),
    ],
)
def test_malformed_bodies_are_refused_with_invalid_payload(payload: bytes, error: str) -> None:
    with pytest.raises(InvalidPayload, match=error):
        parse_compact(payload, PEER)


@pytest.mark.parametrize(
    "payload",
    [
        _raw(MsgType.GOSSIP, b""),  # a type that must be signed
        _raw(MsgType.VOUCH, b""),
        (32999).to_bytes(2, "big") + b"HIVE\x01" + b"\x00" * 40,  # a type nobody knows
        b"\x00\x01HIVE\x01" + b"\x00" * 40,
        b"HIVE\x01",
    ],
)
def test_unknown_or_signed_only_types_are_refused(payload: bytes) -> None:
    with pytest.raises(UnknownMessage):
        parse_compact(payload, PEER)


def test_too_large_and_a_bad_peer() -> None:
    with pytest.raises(TooLarge):
        parse_compact(GOOD[1] + b"\x00" * wire.MAX_FRAME, PEER)
    with pytest.raises(InvalidPayload):
        parse_compact(GOOD[0], "not a node id")
    huge = Sync(session="2" * 32, round=0, want=["3" * 64] * MAX_WANT,
                data=base64.b64encode(b"\x00" * NEG_LIMIT).decode())  # fmt: skip
    assert len(_build(MsgType.SYNC, huge)) < wire.MAX_FRAME  # the largest step fits
