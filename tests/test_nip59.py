"""NIP-59 seal and gift wrap: round trips, every refusal, and the size budget."""

from __future__ import annotations

import random

import anyio
import nostr_sdk as sdk
import pytest

from agent.nostr.client import RelayClient
from events import nip44, nip59, note
from events.base import MAX_EVENT_BYTES, MAX_RUMOR_BYTES, make_rumor, parse_event, sign_event
from events.errors import (
    BadEventId,
    DecryptionFailed,
    Expired,
    InvalidEvent,
    InvalidJson,
    SealMismatch,
    TooLarge,
    WrongKind,
    WrongRecipient,
)
from events.kinds import Kind

NOW = 1_700_000_000
ALICE, BOB, MALLORY = sdk.Keys.generate(), sdk.Keys.generate(), sdk.Keys.generate()
A, B = ALICE.public_key().to_hex(), BOB.public_key().to_hex()


def hello(author: str = A, text: str = "hi") -> note.Note:
    return note.Note(msg_id="ab" * 16, text=text)


def manual_wrap(seal_keys: sdk.Keys, rumor_json: str, seal_tags: list | None = None):
    seal = sign_event(
        seal_keys, Kind.SEAL, nip44.encrypt(seal_keys, B, rumor_json), seal_tags or [], NOW
    )
    one_time = sdk.Keys.generate()
    return sign_event(
        one_time, Kind.GIFT_WRAP, nip44.encrypt(one_time, B, seal.to_json()), [["p", B]], NOW
    )


def test_round_trip() -> None:
    rumor = note.rumor(A, hello(), created_at=NOW)
    wrap = nip59.wrap(ALICE, B, rumor, now=NOW)
    assert wrap.kind == Kind.GIFT_WRAP and wrap.pubkey not in (A, B)
    opened = nip59.unwrap(BOB, parse_event(wrap.to_json()), now=NOW)
    assert opened.rumor == rumor and opened.sender == A and opened.wrap_id == wrap.id
    assert note.parse(opened.rumor, now=NOW).payload == hello()


def test_timestamps_are_randomised_into_the_past() -> None:
    rng = random.Random(7)
    stamps = {
        nip59.wrap(ALICE, B, note.rumor(A, hello(), created_at=NOW), now=NOW, rng=rng).created_at
        for _ in range(20)
    }
    assert all(NOW - nip59.TWO_DAYS < s <= NOW for s in stamps)
    assert len(stamps) > 10


def test_seal_signed_by_someone_else_is_refused() -> None:
    rumor = note.rumor(A, hello(), created_at=NOW)  # claims Alice...
    forged = manual_wrap(MALLORY, rumor.to_json())  # ...sealed by Mallory
    with pytest.raises(SealMismatch):
        nip59.unwrap(BOB, forged, now=NOW)


def test_cannot_seal_someone_elses_rumor() -> None:
    with pytest.raises(SealMismatch):
        nip59.wrap(MALLORY, B, note.rumor(A, hello(), created_at=NOW), now=NOW)


def test_wrong_recipient() -> None:
    wrap = nip59.wrap(ALICE, B, note.rumor(A, hello(), created_at=NOW), now=NOW)
    with pytest.raises(WrongRecipient):
        nip59.unwrap(MALLORY, wrap, now=NOW)


def test_not_a_gift_wrap() -> None:
    with pytest.raises(WrongKind):
        nip59.unwrap(BOB, sign_event(ALICE, 1, "x", [["p", B]], NOW), now=NOW)


def test_expired_wrap() -> None:
    wrap = nip59.wrap(
        ALICE, B, note.rumor(A, hello(), created_at=NOW), now=NOW, expiration=NOW + 10
    )
    nip59.unwrap(BOB, wrap, now=NOW + 9)
    with pytest.raises(Expired):
        nip59.unwrap(BOB, wrap, now=NOW + 10)


def test_tampered_layers() -> None:
    rumor = note.rumor(A, hello(), created_at=NOW)
    # the gift wrap's ciphertext replaced by one made with another key
    wrap = nip59.wrap(ALICE, B, rumor, now=NOW)
    other = nip44.encrypt(MALLORY, B, "garbage")
    tampered = sign_event(MALLORY, Kind.GIFT_WRAP, other, [["p", B]], NOW)
    with pytest.raises(InvalidJson):  # decrypts (Mallory signed it) but is not an event
        nip59.unwrap(BOB, tampered, now=NOW)
    # a seal carrying tags
    with pytest.raises(InvalidEvent):
        nip59.unwrap(BOB, manual_wrap(ALICE, rumor.to_json(), [["p", B]]), now=NOW)
    # a rumor whose id does not match
    bad = rumor.model_copy(update={"content": rumor.content.replace("hi", "ho")})
    with pytest.raises(BadEventId):
        nip59.unwrap(BOB, manual_wrap(ALICE, bad.to_json()), now=NOW)
    # the wrap's content swapped for the seal of another wrap (wrong sender key for the MAC)
    other_wrap = nip59.wrap(ALICE, B, rumor, now=NOW)
    mixed = sign_event(MALLORY, Kind.GIFT_WRAP, other_wrap.content, [["p", B]], NOW)
    with pytest.raises(DecryptionFailed):
        nip59.unwrap(BOB, mixed, now=NOW)
    assert nip59.unwrap(BOB, wrap, now=NOW).rumor == rumor


def test_size_budget_worst_case_fits_an_event() -> None:
    overhead = len(make_rumor(A, Kind.NOTE, "", [], NOW).to_json())
    rumor = make_rumor(A, Kind.NOTE, "é" * ((MAX_RUMOR_BYTES - overhead) // 2), [], NOW)
    assert MAX_RUMOR_BYTES - 1 <= len(rumor.to_json().encode()) <= MAX_RUMOR_BYTES
    wrap = nip59.wrap(ALICE, B, rumor, now=NOW, expiration=NOW + 86400)
    assert len(wrap.to_json()) <= MAX_EVENT_BYTES
    assert nip59.unwrap(BOB, parse_event(wrap.to_json()), now=NOW).rumor == rumor
    with pytest.raises(TooLarge):
        make_rumor(A, Kind.NOTE, "x" * (MAX_RUMOR_BYTES - overhead + 1), [], NOW)


@pytest.mark.anyio
async def test_largest_wrap_travels_through_a_real_relay(relay_url: str) -> None:
    overhead = len(make_rumor(A, Kind.NOTE, "", [], NOW).to_json())
    rumor = make_rumor(A, Kind.NOTE, "z" * (MAX_RUMOR_BYTES - overhead), [], NOW)
    wrap = nip59.wrap(ALICE, B, rumor, now=NOW)
    async with RelayClient([relay_url]) as sender, RelayClient([relay_url]) as receiver:
        await receiver.subscribe([{"kinds": [Kind.GIFT_WRAP], "#p": [B], "ids": [wrap.id]}])
        result = await sender.publish(wrap)
        assert result.accepted == [relay_url.rstrip("/")] or result.accepted == [relay_url]
        with anyio.fail_after(5):
            incoming = await receiver.inbox.receive()
    assert nip59.unwrap(BOB, parse_event(incoming.raw), now=NOW).rumor == rumor
