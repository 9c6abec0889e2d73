"""NIP-13 proof of work on gift wraps: mining gives the promised bits, a receiver with a floor
refuses wraps below it before any decryption, and a sender mines what the recipient's inbox
list (kind 10050) asks for — capped, so a stranger cannot make it mine for minutes."""

from __future__ import annotations

import time

import nostr_sdk as sdk
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.clock import SystemClock
from agent.handlers import core_routes
from agent.inbound import Inbound
from agent.nostr.client import Incoming
from agent.ratelimit import FloodLimiter, WrapGuard
from agent.store import Store
from events import nip13, nip59, note, relay_lists
from events.base import event_id, parse_event, sign_event


@settings(max_examples=30)
@given(
    bits=st.integers(min_value=0, max_value=12),
    content=st.text(max_size=200),
    tags=st.lists(st.lists(st.text(max_size=10), min_size=1, max_size=3), max_size=4),
)
def test_mined_ids_have_the_bits(bits: int, content: str, tags: list[list[str]]) -> None:
    pubkey, created_at = "ab" * 32, 1_800_000_000
    mined = nip13.mine(pubkey, created_at, 1059, tags, content, bits)
    assert mined[: len(tags)] == tags and len(mined) == len(tags) + (1 if bits else 0)
    if bits:
        assert mined[-1][0] == "nonce" and mined[-1][2] == str(bits)
        assert nip13.committed_target(mined) == bits
    assert nip13.leading_zero_bits(event_id(pubkey, created_at, 1059, mined, content)) >= bits


def test_leading_zero_bits() -> None:
    assert nip13.leading_zero_bits("00" * 32) == 256
    assert nip13.leading_zero_bits("0f" + "ff" * 31) == 4
    assert nip13.leading_zero_bits("000f" + "ff" * 30) == 12
    assert nip13.leading_zero_bits("80" + "00" * 31) == 0


def test_advertised_floor_is_read_and_capped() -> None:
    keys = sdk.Keys.generate()
    asks = relay_lists.build_dm_relays(keys, ["wss://a.example"], created_at=1, pow_bits=16)
    assert ["pow", "16"] in asks.tags and relay_lists.dm_pow(asks) == 16
    greedy = relay_lists.build_dm_relays(keys, ["wss://a.example"], created_at=1, pow_bits=200)
    assert relay_lists.dm_pow(greedy) == nip13.MAX_BITS


def test_a_receiver_with_a_floor_refuses_cheap_wraps(tmp_path) -> None:
    me, sender = sdk.Keys.generate(), sdk.Keys.generate()
    store, clock = Store(tmp_path / "s.sqlite"), SystemClock()
    guard = WrapGuard(min_pow=10)
    inbound = Inbound(
        store, core_routes(me, clock, guard).handlers, FloodLimiter(600, 60, 99), clock
    )
    now = int(time.time())

    def wrap(bits: int, text: str):
        msg = note.Note(msg_id=f"{bits:032x}", text=text)
        rumor = note.rumor(sender.public_key().to_hex(), msg, created_at=now)
        return nip59.wrap(sender, me.public_key().to_hex(), rumor, now=now, pow_bits=bits)

    cheap, mined = wrap(0, "cheap"), wrap(10, "worked for it")
    assert parse_event(mined.to_json()) == mined  # still an ordinary, valid event
    report = inbound.process([Incoming("r", cheap.to_json(), "inbox"),
                              Incoming("r", mined.to_json(), "inbox")])  # fmt: skip
    assert report.outcomes == ["POW_TOO_LOW", "ok"]
    assert [n["text"] for n in store.notes()] == ["worked for it"]


@pytest.mark.parametrize("value", ["²", "9" * 5000, "-3", "1e3", "", " 8"])
def test_strange_pow_tags_ask_for_nothing(value: str) -> None:
    keys = sdk.Keys.generate()
    event = sign_event(keys, 10050, "", [["relay", "wss://a.example"], ["pow", value]], 1)
    assert relay_lists.dm_pow(event) == 0
