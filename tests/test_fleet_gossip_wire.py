"""The GOSSIP body (events/fleet/gossip.py): round trips through build_frame/parse_frame, the
owner's record signature apart from the frame's, and the limits (200 channels, 65,535 bytes)."""

from __future__ import annotations

import nostr_sdk as sdk
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events import fleet as wire
from events import lnsig
from events.canonical import canonical
from events.errors import InvalidPayload, TooLarge
from events.fleet import ChannelEntry, ChannelStatus, Gossip, MsgType, StateRecord
from events.fleet.gossip import record_digest
from events.fleet.wire import validated

OWNER_KEYS = sdk.Keys.parse("1" * 64)
HOP_KEYS = sdk.Keys.parse("4" * 64)
OWNER = lnsig.node_id(bytes.fromhex("2" * 64))
HOP = lnsig.node_id(bytes.fromhex("3" * 64))
HIVE = "hive_0123456789abcdef"

sats = st.integers(0, 2**40)
msats = st.integers(0, 2**50)
channels = st.builds(
    ChannelEntry,
    peer=st.sampled_from([OWNER, HOP]),
    scid=st.builds(
        "{}x{}x{}".format, st.integers(0, 10**8 - 1), st.integers(0, 99_999), st.integers(0, 9)
    ),
    capacity_sat=sats,
    balance=st.integers(0, 20),
    fee_base_msat=msats,
    fee_ppm=st.integers(0, 10_000_000),
    htlc_min_msat=msats,
    htlc_max_msat=msats,
    cltv_delta=st.integers(0, 65_535),
    state=st.sampled_from([s.value for s in ChannelStatus]),
)
records = st.builds(
    StateRecord,
    owner=st.just(OWNER),
    version=st.integers(1, 2**53 - 1),
    timestamp=st.integers(0, 2**40 - 1),
    capacity_sat=sats,
    outbound_sat=sats,
    channels=st.lists(channels, max_size=200),
    offered_sat=sats,
    features=st.lists(st.sampled_from(["anchor", "onion", "splice", "dual_fund"]), max_size=4),
    uptime_s=st.integers(0, 2**40 - 1),
)


def body_for(record: StateRecord, ttl: int = 3, path: list[str] | None = None) -> Gossip:
    sig = wire.sign_record(OWNER_KEYS, HIVE, record)
    return Gossip(record=record, sig=sig, ttl=ttl, path=path or [])


def frame(body: Gossip, keys: sdk.Keys = OWNER_KEYS, node: str = OWNER) -> bytes:
    return wire.build_frame(
        keys, MsgType.GOSSIP, body, hive=HIVE, msg_id="ab" * 16, node=node, ts=1_700_000_000
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    record=records, ttl=st.integers(0, 3), path=st.lists(st.sampled_from([OWNER, HOP]), max_size=10)
)
def test_round_trip(record: StateRecord, ttl: int, path: list[str]) -> None:
    body = body_for(record, ttl, path)
    try:
        raw = frame(body)
    except TooLarge:  # 200 channels of huge numbers do not fit; refused when built
        assert len(body.model_dump_json()) > 60_000
        return
    msg = wire.parse_frame(raw)
    assert msg.type == MsgType.GOSSIP and msg.body == body
    assert wire.record_verifies(HIVE, msg.body_as(Gossip), OWNER_KEYS.public_key().to_hex())
    # the digest over the record's canonical text, as the receiver has it, is the same
    text = canonical(record)
    assert record_digest(HIVE, record, text) == record_digest(HIVE, record)
    key = OWNER_KEYS.public_key().to_hex()
    assert wire.record_verifies(HIVE, msg.body_as(Gossip), key, text)


def test_a_forwarder_signs_the_frame_and_the_owner_signature_still_holds() -> None:
    record = StateRecord(
        owner=OWNER, version=7, timestamp=1_700_000_000, capacity_sat=10**6, outbound_sat=5 * 10**5,
        channels=[], offered_sat=0, features=["anchor"], uptime_s=60,
    )  # fmt: skip
    hop = body_for(record).model_copy(update={"ttl": 2, "path": [HOP]})
    msg = wire.parse_frame(frame(hop, HOP_KEYS, HOP))
    body = msg.body_as(Gossip)
    assert msg.sender_key == HOP_KEYS.public_key().to_hex()
    assert wire.record_verifies(HIVE, body, OWNER_KEYS.public_key().to_hex())
    assert not wire.record_verifies(HIVE, body, HOP_KEYS.public_key().to_hex())
    assert not wire.record_verifies("hive_fedcba9876543210", body, OWNER_KEYS.public_key().to_hex())
    forged = body.model_copy(update={"record": record.model_copy(update={"version": 8})})
    assert not wire.record_verifies(HIVE, forged, OWNER_KEYS.public_key().to_hex())


def _channel(i: int) -> dict[str, object]:
    return {
        "peer": HOP, "scid": f"800000x{i}x0", "capacity_sat": 2_000_000, "balance": 10,
        "fee_base_msat": 1000, "fee_ppm": 100, "htlc_min_msat": 1, "htlc_max_msat": 10**9,
        "cltv_delta": 34, "state": "normal",
    }  # fmt: skip


def _raw_record(n: int) -> dict[str, object]:
    return {
        "owner": OWNER, "version": 1, "timestamp": 1, "capacity_sat": 1, "outbound_sat": 1,
        "channels": [_channel(i) for i in range(n)], "offered_sat": 0, "features": [],
        "uptime_s": 0,
    }  # fmt: skip


def test_200_channels_fit_and_201_are_refused() -> None:
    full = body_for(StateRecord.model_validate(_raw_record(200)))
    assert len(frame(full)) < wire.MAX_FRAME
    raw = {"record": _raw_record(201), "sig": "00" * 64, "ttl": 3, "path": []}
    with pytest.raises(InvalidPayload, match="GOSSIP body"):
        validated(Gossip, raw, "GOSSIP body")
    # and on the wire: a hand-made frame with 201 channels is refused by parse_frame
    over = frame(full).replace(b'"channels":[', b'"channels":[' + _json(_channel(999)) + b",")
    with pytest.raises(InvalidPayload, match="channels"):
        wire.parse_frame(over)


def _json(value: dict[str, object]) -> bytes:

    return canonical(value)


def test_a_frame_over_65535_bytes_is_refused() -> None:
    """The largest values of every field: 200 channels no longer fit in one frame."""
    most = {
        "peer": HOP, "scid": "99999999x999999x99999", "capacity_sat": 2**53 - 1,
        "balance": 20, "fee_base_msat": 2**63 - 1, "fee_ppm": 10_000_000,
        "htlc_min_msat": 2**63 - 1, "htlc_max_msat": 2**63 - 1, "cltv_delta": 65_535,
        "state": "closing",
    }  # fmt: skip
    big = _raw_record(0) | {"channels": [most] * 200, "features": ["x" * 32] * 32}
    body = body_for(StateRecord.model_validate(big), path=[HOP] * 10)
    with pytest.raises(TooLarge, match="65,535"):
        frame(body)
    with pytest.raises(TooLarge):
        wire.parse_frame(b"\x80\x09HIVE" + b" " * wire.MAX_FRAME)


@pytest.mark.parametrize(
    ("field", "value"),
    [("ttl", 4), ("ttl", -1), ("path", [HOP] * 11), ("sig", "zz" * 64)],
)
def test_forwarding_fields_are_bounded(field: str, value: object) -> None:
    raw = {"record": _raw_record(0), "sig": "00" * 64, "ttl": 3, "path": [], field: value}
    with pytest.raises(InvalidPayload):
        validated(Gossip, raw, "GOSSIP body")


def test_record_fields_are_strict() -> None:
    for change in (
        {"version": 0},
        {"balance": 21},
        {"state": "CHANNELD_NORMAL"},
        {"version": True},
    ):
        rec = _raw_record(1)
        if "balance" in change or "state" in change:
            rec["channels"][0].update(change)  # type: ignore[index]
        else:
            rec.update(change)
        with pytest.raises(InvalidPayload):
            validated(StateRecord, rec, "record")
