"""NIP-01 envelopes: parse_event / sign_event, their typed errors, and agreement with nostr-sdk."""

from __future__ import annotations

import json

import nostr_sdk as sdk
import pytest
from hypothesis import given
from hypothesis import strategies as st

from events.base import (
    MAX_EVENT_BYTES,
    NostrEvent,
    canonical_bytes,
    event_id,
    expiration,
    parse_event,
    parse_rumor,
    require_kind,
    require_tags,
    require_unexpired,
    sign_event,
)
from events.errors import (
    BadEventId,
    BadSignature,
    Expired,
    HiveError,
    InvalidEvent,
    InvalidJson,
    InvalidTag,
    MissingTag,
    TooLarge,
    WrongKind,
)

KEYS = sdk.Keys.parse("7f7ff03d123792d6ac594bfa67bf6d0c0ab55b6b1fdb6249303fe861f1ccba9a")
NOW = 1_700_000_000

text = st.text(st.characters(codec="utf-8"), max_size=200)  # any unicode, control chars too
tags = st.lists(st.lists(text, min_size=1, max_size=4), max_size=6)


def signed(**overrides: object) -> dict:
    ev = sign_event(KEYS, 1, "hello", [["t", "hive"]], NOW)
    return {**ev.model_dump(), **overrides}


def test_round_trip() -> None:
    ev = sign_event(KEYS, 30402, "content", [["d", "x"], ["t", "a"]], NOW)
    assert parse_event(ev.to_json()) == ev
    assert parse_event(ev.to_json().encode()) == ev


@given(content=text, tags=tags, kind=st.integers(0, 65535), created_at=st.integers(0, 2**40))
def test_id_agrees_with_nostr_sdk(content: str, tags: list[list[str]], kind: int, created_at: int):
    ours = event_id(KEYS.public_key().to_hex(), created_at, kind, tags, content)
    theirs = sdk.EventId.compute(
        KEYS.public_key(),
        sdk.Timestamp.from_secs(created_at),
        sdk.Kind(kind),
        [sdk.Tag.parse(t) for t in tags],
        content,
    ).to_hex()
    assert ours == theirs


@given(content=text, tags=tags)
def test_signed_events_verify_in_nostr_sdk_and_back(content: str, tags: list[list[str]]) -> None:
    ours = sign_event(KEYS, 4380, content, tags, NOW)
    assert sdk.Event.from_json(ours.to_json()).verify()
    theirs = sdk.EventBuilder(sdk.Kind(1), content).tags([sdk.Tag.parse(t) for t in tags])
    event = theirs.custom_created_at(sdk.Timestamp.from_secs(NOW)).finalize(KEYS)
    parsed = parse_event(event.as_json())
    assert (parsed.content, parsed.tags, parsed.id) == (content, tags, event.id().to_hex())


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ("not json", InvalidJson),
        ("[1,2,3]", InvalidEvent),
        ('{"id": 1}', InvalidEvent),
        (json.dumps(signed(created_at="1700000000")), InvalidEvent),  # strict: no coercion
        (json.dumps(signed(kind=70000)), InvalidEvent),
        (json.dumps(signed(tags=[["t", 1]])), InvalidEvent),
        (json.dumps(signed(extra="field")), InvalidEvent),
        (json.dumps(signed(id=signed()["id"].upper())), InvalidEvent),
        (json.dumps(signed(content="tampered")), BadEventId),
        (json.dumps(signed(sig="00" * 64)), BadSignature),
        (json.dumps(signed(content="\ud800")), InvalidEvent),  # lone surrogate
        ("[" * 60_000, InvalidJson),  # deep nesting is refused, not a crash
    ],
)
def test_typed_errors(raw: str, error: type[HiveError]) -> None:
    with pytest.raises(error):
        parse_event(raw)


def test_signature_of_another_key_is_refused() -> None:
    other = sdk.Keys.generate()
    forged = signed(pubkey=other.public_key().to_hex())
    forged["id"] = event_id(forged["pubkey"], NOW, 1, [["t", "hive"]], "hello")
    with pytest.raises(BadSignature):
        parse_event(json.dumps(forged))


def test_size_limits() -> None:
    overhead = len(sign_event(KEYS, 1, "", [], NOW).to_json())
    fits = sign_event(KEYS, 1, "x" * (MAX_EVENT_BYTES - overhead), [], NOW)
    assert len(fits.to_json()) == MAX_EVENT_BYTES
    assert parse_event(fits.to_json()) == fits
    with pytest.raises(TooLarge):
        sign_event(KEYS, 1, "x" * (MAX_EVENT_BYTES - overhead + 1), [], NOW)
    with pytest.raises(TooLarge):
        parse_event(fits.to_json() + " ")


def test_expiry_against_the_given_clock() -> None:
    ev = sign_event(KEYS, 1, "", [["expiration", str(NOW + 60)]], NOW)
    assert expiration(ev) == NOW + 60
    require_unexpired(ev, NOW + 59)
    with pytest.raises(Expired):
        require_unexpired(ev, NOW + 60)
    bad = sign_event(KEYS, 1, "", [["expiration", "soon"]], NOW)
    with pytest.raises(InvalidTag):
        require_unexpired(bad, NOW)


def test_kind_and_tag_requirements() -> None:
    ev = sign_event(KEYS, 1, "", [["d", "x"]], NOW)
    require_kind(ev, 1, 2)
    with pytest.raises(WrongKind):
        require_kind(ev, 30402)
    require_tags(ev, ["d"])
    with pytest.raises(MissingTag):
        require_tags(ev, ["d", "title"])


def test_rumor_must_not_carry_a_signature() -> None:
    ev = sign_event(KEYS, 14, "hi", [], NOW)
    with pytest.raises(InvalidEvent):
        parse_rumor(ev.to_json())
    rumor = {k: v for k, v in ev.model_dump().items() if k != "sig"}
    assert parse_rumor(json.dumps(rumor)).id == ev.id
    with pytest.raises(BadEventId):
        parse_rumor(json.dumps({**rumor, "content": "changed"}))


VALID = [
    sign_event(KEYS, 1, "short", [], NOW),
    sign_event(
        KEYS, 30402, "# Listing\n\nunicode: é ✓ 🐝", [["d", "a"], ["price", "1", "SAT"]], NOW
    ),
    sign_event(KEYS, 1059, "A" * 2000, [["p", KEYS.public_key().to_hex()]], NOW),
]


@given(which=st.sampled_from(VALID), data=st.data())
def test_flipped_bytes_only_raise_typed_errors(which: NostrEvent, data: st.DataObject) -> None:
    raw = bytearray(which.to_json().encode())
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] ^= data.draw(st.integers(1, 255))
    try:
        parsed = parse_event(bytes(raw))
    except HiveError:
        return
    # A flip that survives must not have changed what was signed (e.g. JSON whitespace).
    assert parsed == which


@given(content=text, tags=tags, kind=st.integers(0, 65535), created_at=st.integers(0, 2**40))
def test_the_id_serialization_is_the_standard_json_one_byte_for_byte(
    content: str, tags: list[list[str]], kind: int, created_at: int
) -> None:
    """canonical_bytes is written by pydantic-core; it must equal JSON.stringify's escaping
    (the standard library's `json.dumps` with ensure_ascii=False) for any text."""
    pubkey = KEYS.public_key().to_hex()
    expected = json.dumps(
        [0, pubkey, created_at, kind, tags, content], ensure_ascii=False, separators=(",", ":")
    ).encode()
    assert canonical_bytes(pubkey, created_at, kind, tags, content) == expected


@pytest.mark.parametrize("bad", ["\ud800", "a\udfffb"])
def test_a_lone_surrogate_cannot_be_serialized_for_an_id(bad: str) -> None:
    with pytest.raises(InvalidEvent):
        canonical_bytes("00" * 32, NOW, 1, [["t", bad]], "x")
    with pytest.raises(InvalidEvent):
        canonical_bytes("00" * 32, NOW, 1, [], bad)
