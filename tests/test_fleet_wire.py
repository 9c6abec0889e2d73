"""The fleet wire codec (events/fleet.py): round trips of every message type up to the
65,535-byte limit, every byte of a signed frame flipped, domain separation, invite tickets."""

from __future__ import annotations

import json
import secrets

import nostr_sdk as sdk
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events import fleet as wire
from events import lnsig
from events.canonical import canonical
from events.errors import BadSignature, HiveError, InvalidPayload, TooLarge, UnknownMessage
from events.fleet import MsgType

KEYS = sdk.Keys.parse("1" * 64)
SECRET = bytes.fromhex("2" * 64)
NODE = lnsig.node_id(SECRET)
OTHER = lnsig.node_id(bytes.fromhex("3" * 64))
HIVE = "hive_0123456789abcdef"
PUB = KEYS.public_key().to_hex()
BINDING = lnsig.sign(SECRET, PUB).zbase

hexes = st.binary(min_size=16, max_size=16).map(bytes.hex)
texts = st.text(max_size=280)
node_ids = st.sampled_from([NODE, OTHER])


def _frame(msg_type: MsgType, body: wire.Body, **kw: object) -> bytes:
    args = {"hive": HIVE, "msg_id": "ab" * 16, "node": NODE, "ts": 1_700_000_000} | kw
    return wire.build_frame(KEYS, msg_type, body, **args)  # type: ignore[arg-type]


def _vouch_frame(candidate: str = OTHER) -> str:
    return _frame(MsgType.VOUCH, wire.Vouch(candidate=candidate)).hex()


bodies = st.one_of(
    st.builds(lambda v: (MsgType.HELLO, wire.Hello(ticket=v, supported_versions=[1])), texts),
    st.builds(
        lambda n, t: (MsgType.CHALLENGE, wire.Challenge(nonce=n, ticket_id=t)),
        st.binary(min_size=32, max_size=32).map(bytes.hex),
        hexes,
    ),
    st.builds(lambda c: (MsgType.VOUCH, wire.Vouch(candidate=c)), node_ids),
    st.builds(
        lambda p, t, r: (MsgType.BAN_PROPOSAL, wire.BanProposal(proposal_id=p, target=t, reason=r)),
        hexes,
        node_ids,
        texts,
    ),
    st.builds(
        lambda p, t, a: (MsgType.BAN_VOTE, wire.BanVote(proposal_id=p, target=t, approve=a)),
        hexes,
        node_ids,
        st.booleans(),
    ),
    st.builds(lambda r: (MsgType.MEMBER_LEFT, wire.MemberLeft(reason=r)), texts),
    st.builds(
        lambda r, s, m: (MsgType.MSG_ACK, wire.MsgAck(ref=r, status=s, code="X", message=m)),
        hexes,
        st.sampled_from(["ok", "invalid", "retry_later"]),
        texts,
    ),
    st.builds(
        lambda n: (
            MsgType.BAN,
            wire.Ban(
                target=OTHER, electorate=[NODE], proposal=_vouch_frame(), votes=[_vouch_frame()] * n
            ),
        ),
        st.integers(0, 40),
    ),
    st.builds(
        lambda t: (MsgType.MEMBER_JOINED, wire.MemberJoined(attest=_vouch_frame(), joined_at=t)),
        st.integers(0, 2**40 - 1),
    ),
    st.builds(
        lambda n: (
            MsgType.PROMOTION,
            wire.Promotion(candidate=OTHER, electorate=[NODE], vouches=[_vouch_frame()] * n),
        ),
        st.integers(1, 60),
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=bodies, ts=st.integers(0, 2**40 - 1), msg_id=hexes)
def test_round_trip(case: tuple[MsgType, wire.Body], ts: int, msg_id: str) -> None:
    msg_type, body = case
    frame = _frame(msg_type, body, ts=ts, msg_id=msg_id)
    assert len(frame) <= wire.MAX_FRAME
    assert frame[:2] == int(msg_type).to_bytes(2, "big") and frame[2:6] == b"HIVE"
    # the envelope is canonical JSON (the body written once, spliced into digest and envelope)
    assert frame[6:] == canonical(json.loads(frame[6:]))
    msg = wire.parse_frame(frame)
    assert (msg.type, msg.body, msg.ts, msg.id) == (msg_type, body, ts, msg_id)
    assert (msg.node, msg.sender_key, msg.hive, msg.raw) == (NODE, PUB, HIVE, frame)


def test_the_size_limit_is_exact() -> None:
    """Grow a PROMOTION until it no longer fits: the last fitting frame parses, the next
    one is refused when built and when received."""
    vouch = _vouch_frame()
    n = 1
    while len(
        _frame(
            MsgType.PROMOTION,
            wire.Promotion(candidate=OTHER, electorate=[NODE], vouches=[vouch] * n),
        )
    ) < (wire.MAX_FRAME - len(vouch) - 3):
        n += 1
    body = wire.Promotion(candidate=OTHER, electorate=[NODE], vouches=[vouch] * n)
    fits = _frame(MsgType.PROMOTION, body)
    pad = wire.MAX_FRAME - len(fits)
    # pad the last vouch's slot with a longer (still valid-hex) frame until exactly at the limit
    exact = body.model_copy(update={"vouches": [vouch] * (n - 1) + [vouch + "00" * (pad // 2)]})
    frame = _frame(MsgType.PROMOTION, exact)
    assert wire.MAX_FRAME - 1 <= len(frame) <= wire.MAX_FRAME
    assert wire.parse_frame(frame).body == exact
    over = exact.model_copy(update={"vouches": [*exact.vouches, vouch]})
    with pytest.raises(TooLarge, match="65,535"):
        _frame(MsgType.PROMOTION, over)
    with pytest.raises(TooLarge):
        wire.parse_frame(frame + b" " * (wire.MAX_FRAME + 1 - len(frame)))


VALID = [
    _frame(MsgType.VOUCH, wire.Vouch(candidate=OTHER)),
    _frame(MsgType.BAN_VOTE, wire.BanVote(proposal_id="c" * 32, target=OTHER, approve=True)),
    _frame(MsgType.MEMBER_LEFT, wire.MemberLeft(reason="bye")),
]


@settings(max_examples=3_000, deadline=None)
@given(which=st.integers(0, len(VALID) - 1), where=st.integers(0, 10**6), mask=st.integers(1, 255))
def test_every_flipped_byte_is_refused_with_a_typed_error(
    which: int, where: int, mask: int
) -> None:
    frame = VALID[which]
    i = where % len(frame)
    damaged = frame[:i] + bytes([frame[i] ^ mask]) + frame[i + 1 :]
    with pytest.raises(HiveError):
        wire.parse_frame(damaged)


def test_signatures_are_bound_to_type_hive_and_sender() -> None:
    frame = VALID[0]
    # the same body and signature under another (odd, known) type
    as_ban = int(MsgType.BAN_PROPOSAL).to_bytes(2, "big") + frame[2:]
    with pytest.raises(InvalidPayload):
        wire.parse_frame(as_ban)
    retyped = int(MsgType.PROMOTION).to_bytes(2, "big") + frame[2:]
    with pytest.raises(HiveError):
        wire.parse_frame(retyped)
    other_hive = frame.replace(HIVE.encode(), b"hive_fedcba9876543210")
    with pytest.raises(BadSignature):
        wire.parse_frame(other_hive)
    other_node = frame.replace(NODE.encode(), OTHER.encode())
    with pytest.raises(BadSignature):
        wire.parse_frame(other_node)
    assert wire.parse_frame(frame).type == MsgType.VOUCH


@pytest.mark.parametrize(
    "payload",
    [
        b"", b"\x80", b"\x80\x01HIV", (32768).to_bytes(2, "big") + b"HIVE{}",
        (32770).to_bytes(2, "big") + b"HIVE{}", (32769).to_bytes(2, "big") + b"LSPS{}",
        (32999).to_bytes(2, "big") + b"HIVE{}",
    ],
)  # fmt: skip
def test_not_ours_or_unknown(payload: bytes) -> None:
    with pytest.raises(UnknownMessage):
        wire.parse_frame(payload)


def test_strict_shapes() -> None:
    good = VALID[0]
    for bad in (
        good.replace(b'"v":1', b'"v":2'),
        good.replace(b'"v":1', b'"v":true'),
        good.replace(b'"ts":1700000000', b'"ts":"1700000000"'),
        good.replace(b'"body":{', b'"extra":1,"body":{'),
        good[:-1],
    ):
        with pytest.raises(HiveError):
            wire.parse_frame(bad)


# --- invite tickets ------------------------------------------------------------------------


def _ticket(**changes: object) -> wire.Ticket:
    body = wire.TicketBody(
        hive=HIVE, ticket_id=secrets.token_hex(16), issuer=NODE, issuer_key=PUB, invitee=OTHER,
        issued_at=1_700_000_000, expires_at=1_700_086_400, requires=5,
    )  # fmt: skip
    return wire.sign_ticket(KEYS, body.model_copy(update=changes))


@settings(max_examples=200, deadline=None)
@given(hours=st.integers(1, 168), requires=st.integers(0, 15))
def test_ticket_round_trip(hours: int, requires: int) -> None:
    ticket = _ticket(expires_at=1_700_000_000 + hours * 3600, requires=requires)
    text = wire.encode_ticket(ticket)
    assert text.startswith("hive1") and len(text) < 1_000
    assert wire.decode_ticket(text) == ticket
    names = wire.requirement_names(requires)
    assert wire.requirement_bits(names) == requires


def test_ticket_tampering_and_garbage() -> None:
    ticket = _ticket()
    for change in ({"invitee": NODE}, {"expires_at": 1_800_000_000}, {"requires": 0}):
        forged = wire.Ticket(**(ticket.model_dump() | change))
        with pytest.raises(BadSignature):
            wire.decode_ticket(wire.encode_ticket(forged))
    for text in (
        "",
        "hive1",
        "hive1!!!!",
        "nope" + wire.encode_ticket(ticket),
        "hive1" + "A" * 20_000,
    ):
        with pytest.raises(HiveError):
            wire.decode_ticket(text)
    with pytest.raises(InvalidPayload, match="unknown requirement"):
        wire.requirement_bits(["warp"])
    with pytest.raises(InvalidPayload, match="issuer_key"):
        wire.sign_ticket(sdk.Keys.generate(), ticket)
