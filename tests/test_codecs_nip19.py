"""Round trips of what the command line reads: amounts (agent/cli/types.py) and NIP-19
(events/nip19.py), property-tested; the id-prefix rule (agent/cli/ids.py)."""

from __future__ import annotations

import argparse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.cli.bech32 import beside, enrich
from agent.cli.ids import match
from agent.cli.types import MAX_SAT, UNITS, format_sats, msats, sats, sats_of
from agent.errors import AmbiguousId
from events import nip19
from events.errors import InvalidKey, InvalidParams, NotFound

amounts = st.integers(min_value=0, max_value=MAX_SAT)
hex64 = st.binary(min_size=32, max_size=32).map(bytes.hex)


@given(amounts, st.sampled_from(sorted(UNITS)))
def test_an_amount_written_in_any_unit_reads_back(value: int, unit: str) -> None:
    assert sats_of(format_sats(value, unit)) == value


@given(amounts)
def test_an_amount_with_spaces_and_separators_reads_back(value: int) -> None:
    assert sats_of(f" {value} sats ") == value
    assert sats_of(f"{value:,}") == value
    assert sats_of(f"{value:_}sat") == value
    assert sats_of(f"{value * 1000}msat") == value


@given(st.integers(min_value=0, max_value=MAX_SAT * 1000))
def test_msat_options_read_msat_and_any_unit(msat: int) -> None:
    assert msats(str(msat)) == msat == msats(f"{msat}msat")
    assert msats(format_sats(msat // 1000, "btc")) == msat // 1000 * 1000


@given(st.integers(min_value=0, max_value=MAX_SAT * 1000).filter(lambda m: m % 1000))
def test_msat_that_are_not_whole_sats_are_refused(msat: int) -> None:
    with pytest.raises(ValueError, match="msat that are not whole sats"):
        sats_of(f"{msat}msat")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("300k", 300_000),
        ("300000sat", 300_000),
        ("300000 sats", 300_000),
        ("0.003btc", 300_000),
        ("0.003 BTC", 300_000),
        ("300000000msat", 300_000),
        ("1.5M", 1_500_000),
        ("2K", 2_000),
        ("1,000,000", 1_000_000),
    ],
)
def test_the_amount_forms(text: str, value: int) -> None:
    assert sats(text) == value


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1m", "'1m' is ambiguous: write M for a million sats, or msat"),
        ("1.5", "'1.5' is a fraction of a sat; amounts here are whole sats"),
        ("0.000000001btc", "'0.000000001btc' is a fraction of a sat; amounts here are whole sats"),
        ("1500msat", "'1500msat' is msat that are not whole sats; amounts here are whole sats"),
        ("-5", "'-5' is not an amount (e.g. 300000, 300k, 1.5M, 300000sat, 0.003btc, "
               "300000000msat)"),
        ("1e5", "'1e5' is not an amount (e.g. 300000, 300k, 1.5M, 300000sat, 0.003btc, "
                "300000000msat)"),
        ("5 eur", "'5 eur' is not an amount (e.g. 300000, 300k, 1.5M, 300000sat, 0.003btc, "
                  "300000000msat)"),
        ("21000001btc", "'21000001btc' is more than 21 million bitcoin"),
    ],
)  # fmt: skip
def test_what_is_not_an_amount(text: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        sats(text)
    assert str(refused.value) == message


@given(hex64)
def test_npub_and_nprofile_read_back(key: str) -> None:
    import nostr_sdk as sdk

    npub = nip19.npub(key)
    assert nip19.pubkey_hex(npub) == key
    assert nip19.pubkey_hex(f"nostr:{npub}") == key
    assert nip19.pubkey_hex(key.upper()) == key
    profile = sdk.Nip19Profile(sdk.PublicKey.parse(key), []).to_bech32()
    assert nip19.pubkey_hex(profile) == key


@given(hex64, hex64)
def test_note_and_nevent_read_back(event_id: str, author: str) -> None:
    import nostr_sdk as sdk

    assert nip19.event_id_hex(nip19.nevent(event_id)) == event_id
    assert nip19.event_id_hex(f"nostr:{nip19.nevent(event_id, author)}") == event_id
    assert nip19.event_id_hex(sdk.EventId.parse(event_id).to_bech32()) == event_id


@given(
    st.integers(min_value=30000, max_value=39999),
    hex64,
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40),
)
def test_naddr_reads_back(kind: int, author: str, d: str) -> None:
    address = f"{kind}:{author}:{d}"
    assert nip19.coordinate(nip19.naddr(address)) == address
    assert nip19.coordinate(f"nostr:{nip19.naddr(address)}") == address


def test_what_is_not_a_key_an_event_or_an_address() -> None:
    with pytest.raises(InvalidKey) as key:
        nip19.pubkey_hex("npub1nothing")
    assert key.value.message == (
        "not a public key: expected hex, npub1… or nprofile1…, got 'npub1nothing'"
    )
    with pytest.raises(InvalidParams) as event:
        nip19.event_id_hex("note1zzz")
    assert (
        event.value.message == "not an event id: expected hex, note1… or nevent1…, got 'note1zzz'"
    )
    with pytest.raises(InvalidParams) as address:
        nip19.coordinate("naddr1zzz")
    assert address.value.message == (
        "not an address: expected naddr1… or <kind>:<pubkey>:<d>, got 'naddr1zzz'"
    )
    with pytest.raises(InvalidKey) as secret:
        nip19.secret_hex("nsec1" + "q" * 58)
    assert "q" * 10 not in secret.value.message  # a secret is never echoed


def test_json_gains_nip19_beside_hex() -> None:
    key, event = "ab" * 32, "cd" * 32
    address = f"30402:{key}:fees"
    out = enrich(
        {"pubkey": key, "rows": [{"provider": key, "event_id": event}], "address": address}
    )
    assert out["pubkey"] == key and out["npub"] == nip19.npub(key)
    assert out["rows"][0]["provider_npub"] == nip19.npub(key)
    assert out["rows"][0]["nevent"] == nip19.nevent(event)
    assert out["naddr"] == nip19.naddr(address)
    assert enrich({"npub": "given", "pubkey": key})["npub"] == "given"
    assert enrich({"subject": f"did:nostr:{key}"})["subject_npub"] == nip19.npub(key)
    assert beside(key) == f"{key} ({nip19.npub(key)})"
    assert beside(event, "event") == f"{event} ({nip19.nevent(event)})"


def test_one_id_prefix_rule() -> None:
    known = ["abcdef0123", "abcdef9999", "123456aaaa"]
    assert match("123456", known, "ticket") == "123456aaaa"
    assert match("abcdef0123", known, "ticket") == "abcdef0123"
    assert match("ABCDEF01", known, "ticket") == "abcdef0123"
    with pytest.raises(AmbiguousId) as two:
        match("abcdef", known, "ticket")
    assert two.value.message == "2 tickets start with 'abcdef'; give more of the id"
    with pytest.raises(NotFound) as none:
        match("999999", known, "ticket")
    assert none.value.message == "no ticket matches '999999'"
    assert match("999999", known, "ticket", unknown_ok=True) == "999999"
