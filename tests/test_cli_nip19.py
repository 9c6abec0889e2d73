"""NIP-19, amounts, `keys import` and the id-prefix rule as a user meets them: the real CLI in
a subprocess, a real relay, exact output and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import nostr_sdk as sdk
import pytest

from agent.store import Store
from events import nip19
from tests.conftest import HIVE_AGENT

OFFLINE = "ws://127.0.0.1:1"
NSEC = sdk.Keys.generate().secret_key().to_bech32()  # pasted where a public key belongs


def run(home: Path, *args: str, stdin: str | None = None, env: dict[str, str] | None = None):
    return subprocess.run(
        [HIVE_AGENT, "--home", str(home), *args],
        capture_output=True, text=True, timeout=60, check=False, input=stdin,
        env={**os.environ, **(env or {})}, start_new_session=True,  # no terminal to prompt on
    )  # fmt: skip


def ok(home: Path, *args: str, **kw) -> dict:
    result = run(home, "--json", *args, **kw)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def refused(home: Path, args: list[str], line: str, status: int, **kw) -> None:
    result = run(home, *args, **kw)
    assert (result.returncode, result.stderr) == (status, line + "\n")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    assert run(home, "keys", "new").returncode == 0
    return home


# --- keys -------------------------------------------------------------------------------------


def test_keys_import_from_nsec_hex_and_ncryptsec(tmp_path: Path) -> None:
    keys = sdk.Keys.generate()
    secret, pub = keys.secret_key(), keys.public_key()
    home = tmp_path / "a"
    done = ok(home, "keys", "import", stdin=secret.to_bech32() + "\n")
    assert done == {
        "key_file": str(home / "nostr.key"), "pubkey": pub.to_hex(), "npub": pub.to_bech32(),
    }  # fmt: skip
    assert (home / "nostr.key").stat().st_mode & 0o777 == 0o600
    assert (home / "nostr.key").read_text() == secret.to_hex() + "\n"
    refused(
        home, ["keys", "import"],
        f"error: KEY_EXISTS: {home / 'nostr.key'} already exists; refusing to overwrite a key "
        "(--force replaces it)", 73, stdin=secret.to_hex(),
    )  # fmt: skip
    other = sdk.Keys.generate()
    (tmp_path / "pw").write_text("correct horse\n")
    (tmp_path / "key").write_text(other.secret_key().encrypt("correct horse").to_bech32())
    text = run(
        home, "keys", "import", "--from", str(tmp_path / "key"),
        "--password-file", str(tmp_path / "pw"), "--force",
    )  # fmt: skip
    assert text.returncode == 0
    assert text.stdout == (
        f"imported into {home / 'nostr.key'} (mode 0600)\n"
        f"pubkey {other.public_key().to_hex()}\nnpub   {other.public_key().to_bech32()}\n"
    )
    assert "correct horse" not in text.stdout + text.stderr
    assert other.secret_key().to_hex() not in text.stdout + text.stderr
    (kept,) = home.glob("nostr.key.old-*")  # the replaced key is kept, never lost
    assert kept.read_text() == secret.to_hex() + "\n" and kept.stat().st_mode & 0o777 == 0o600


def test_keys_import_refusals(tmp_path: Path) -> None:
    home = tmp_path / "b"
    crypted = sdk.Keys.generate().secret_key().encrypt("pw").to_bech32()
    refused(
        home, ["keys", "import"], "error: INVALID_KEY: cannot decrypt the ncryptsec1… key: "
        "wrong password?", 65, stdin=crypted, env={"HIVE_KEY_PASSWORD": "wrong"},
    )  # fmt: skip
    refused(
        home, ["keys", "import"], "error: USAGE: an ncryptsec1… key needs its password: "
        "--password-file FILE or HIVE_KEY_PASSWORD", 64, stdin=crypted,
    )  # fmt: skip
    refused(
        home, ["keys", "import"],
        "error: INVALID_KEY: not a secret key: expected 64 hex digits or nsec1…", 65,
        stdin="nsec1notasecret",
    )  # fmt: skip
    refused(
        home, ["keys", "import"],
        "error: USAGE: no secret key given (prompt, --from FILE, or stdin)", 64, stdin="",
    )  # fmt: skip
    assert not (home / "nostr.key").exists()
    assert ok(home, "keys", "import", stdin=crypted, env={"HIVE_KEY_PASSWORD": "pw"})["npub"]


def test_a_key_file_holding_an_nsec(tmp_path: Path) -> None:
    keys = sdk.Keys.generate()
    tmp_path.chmod(0o700)
    (tmp_path / "nostr.key").write_text(keys.secret_key().to_bech32() + "\n")
    (tmp_path / "nostr.key").chmod(0o600)
    assert ok(tmp_path, "keys", "show")["npub"] == keys.public_key().to_bech32()


# --- refused before anything connects ---------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "line", "status"),
    [
        (["note", "send", "npub1nothing", "hi"], "error: INVALID_KEY: not a public key: "
         "expected hex, npub1… or nprofile1…, got 'npub1nothing'", 65),
        (["credential", "grant", "nostr:npub1x", "--schema", "hive:fee-policy/*"],
         "error: INVALID_KEY: not a public key: expected hex, npub1… or nprofile1…, got "
         "'nostr:npub1x'", 65),
        (["market", "show", "naddr1zzz"], "error: INVALID_PARAMS: not an address: expected "
         "naddr1… or <kind>:<pubkey>:<d>, got 'naddr1zzz'", 65),
        (["rfp", "bid", "36381:nobody:x", "--price", "1k", "--pricing-model", "flat"],
         "error: INVALID_PARAMS: not an address: expected naddr1… or <kind>:<pubkey>:<d>, "
         "got '36381:nobody:x'", 65),
        (["escrow", "topup", "--amount", "1500msat"], "error: USAGE: hive-agent escrow topup: "
         "argument --amount: '1500msat' is msat that are not whole sats; amounts here are "
         "whole sats", 64),
        (["escrow", "topup", "--amount", "1m"], "error: USAGE: hive-agent escrow topup: "
         "argument --amount: '1m' is ambiguous: write M for a million sats, or msat", 64),
        (["market", "browse", "--budget", "lots"], "error: USAGE: hive-agent market browse: "
         "argument --budget: 'lots' is not an amount (e.g. 300000, 300k, 1.5M, 300000sat, "
         "0.003btc, 300000000msat)", 64),
        (["contract", "accept", "abc"], "error: USAGE: hive-agent contract accept: argument "
         "terms_hash: 'abc' is too short: give the id or at least 6 of its first characters",
         64),
        (["contract", "accept", "abcdef12"],
         "error: NOT_FOUND: no offer to us matches 'abcdef12'", 65),
        (["contract", "show", "abcdef12"], "error: NOT_FOUND: no contract matches 'abcdef12'",
         65),
        (["escrow", "show", "abcdef"], "error: NOT_FOUND: no escrow ticket matches 'abcdef'",
         65),
        (["credential", "revoke", "abcdef"],
         "error: NOT_FOUND: no credential matches 'abcdef'", 65),
        (["approvals", "approve", "abcdef"],
         "error: NOT_FOUND: no waiting command matches 'abcdef'", 65),
        (["credential", "grant", NSEC, "--schema", "hive:fee-policy/*"],
         "error: INVALID_KEY: not a public key: expected hex, npub1… or nprofile1…, got a "
         "secret key (not shown; never paste it where a public key is asked)", 65),
        (["rfp", "bid", "foo:bar", "--price", "100", "--pricing-model", "per-action"],
         "error: INVALID_PARAMS: not an address: expected naddr1… or <kind>:<pubkey>:<d>, got "
         "'foo:bar'", 65),
        (["market", "withdraw", "foo:bar"], "error: INVALID_PARAMS: not an address: expected "
         "naddr1… or <kind>:<pubkey>:<d>, got 'foo:bar'", 65),
        (["escrow", "send", "0"], "error: USAGE: hive-agent escrow send: argument amount: "
         "'0': the amount must be at least 1 sat", 64),
    ],
)  # fmt: skip
def test_bad_input_is_one_typed_line(home: Path, args: list[str], line: str, status: int) -> None:
    started = time.monotonic()
    refused(home, [*args, "--relay", OFFLINE] if args[0] != "approvals" else args, line, status)
    assert time.monotonic() - started < 5  # refused before connecting to anything
    assert Store(home / "agent.sqlite").outbox_counts() == {}


def test_an_ambiguous_prefix_names_how_many_it_matches(home: Path) -> None:
    store = Store(home / "agent.sqlite")
    with store.transaction(int(time.time())) as tx:
        for ticket_id in ("feed00aa", "feed00bb"):
            tx.execute(
                "INSERT INTO escrow_tickets (ticket_id, role, ticket, created_at)"
                " VALUES (?, 'funder', '{}', 0)",
                (ticket_id,),
            )
    store.close()
    refused(
        home, ["escrow", "refund", "feed00"],
        "error: AMBIGUOUS_ID: 2 escrow tickets start with 'feed00'; give more of the id", 64,
    )  # fmt: skip
    as_json = run(home, "--json", "escrow", "show", "feed00")
    assert as_json.returncode == 64
    assert json.loads(as_json.stdout)["error"]["code"] == "AMBIGUOUS_ID"


# --- with a relay -----------------------------------------------------------------------------


LISTING = [
    "--service", "advisor", "--title", "Fees", "--summary", "fee policy",
    "--frequency", "month", "--pricing-model", "subscription", "--primary", "fee-policy",
]  # fmt: skip


def test_listing_by_naddr_with_amounts_in_any_unit(home: Path, relays) -> None:
    url = relays().start()
    me = ok(home, "keys", "show")
    published = ok(home, "market", "publish", "--id", "fees", "--price", "0.0005btc",
                   "--capacity", "1.5M", *LISTING, "--relay", url)  # fmt: skip
    address = f"30402:{me['pubkey']}:fees"
    assert published["address"] == address
    assert published["naddr"] == nip19.naddr(address)
    assert published["nevent"] == nip19.nevent(published["event_id"])
    for which in (published["naddr"], f"nostr:{published['naddr']}", address, "fees"):
        shown = ok(home, "market", "show", which, "--budget", "100k", "--relay", url)
        [row] = shown["listings"]
        assert (row["address"], row["naddr"], row["price_sat"]) == (
            address, published["naddr"], 50_000,
        )  # fmt: skip
        assert (row["provider"], row["provider_npub"]) == (me["pubkey"], me["npub"])
    withdrawn = run(home, "market", "withdraw", published["naddr"], "--relay", url)
    event_id = withdrawn.stdout.split()[1]
    assert withdrawn.stdout == (
        f"event_id   {event_id}\nnevent     {nip19.nevent(event_id)}\nwithdrawn  fees\n"
    )


def test_keys_as_npub_nprofile_and_nostr_uri(home: Path, tmp_path: Path, relays) -> None:
    url = relays().start()
    advisor = sdk.Keys.generate().public_key()
    profile = sdk.Nip19Profile(advisor, [sdk.RelayUrl.parse(url)]).to_bech32()
    for given in (advisor.to_bech32(), f"nostr:{profile}"):
        grant = ok(home, "credential", "grant", given, "--schema", "hive:fee-policy/*",
                   "--max-rebalance-sats", "250k", "--relay", url)  # fmt: skip
        assert (grant["advisor"], grant["advisor_npub"]) == (advisor.to_hex(), advisor.to_bech32())
    rep = ok(home, "rep", "show", f"nostr:{advisor.to_bech32()}", "--relay", url)
    assert (rep["subject"], rep["subject_npub"]) == (
        advisor.to_hex(),
        advisor.to_bech32(),
    )
    sent = ok(home, "note", "send", profile, "hello", "--relay", url)
    assert sent["nevent"] == nip19.nevent(sent["event_id"])
    granted = ok(home, "credential", "list")["credentials"]
    prefix = granted[0]["credential_id"][:8]
    revoked = ok(home, "credential", "revoke", prefix, "--relay", url)
    assert revoked["revoked"] == granted[0]["credential_id"]


def test_rfp_bid_without_rfp_list(home: Path, tmp_path: Path, relays) -> None:
    url = relays().start()
    poster = tmp_path / "poster"
    assert run(poster, "keys", "new").returncode == 0
    posted = ok(poster, "rfp", "post", "--id", "need-fees", "--service", "advisor",
                "--need", "fee-policy", "--max-price", "0.001 BTC", "--relay", url)  # fmt: skip
    assert posted["naddr"] == nip19.naddr(posted["address"])
    bid = ok(home, "rfp", "bid", posted["naddr"], "--price", "80k",
             "--pricing-model", "subscription", "--relay", url)  # fmt: skip
    assert bid["rfp"] == posted["address"] and len(bid["commitment"]) == 64
    assert bid["rfp_naddr"] == posted["naddr"]
    by_id = tmp_path / "by-id"
    assert run(by_id, "keys", "new").returncode == 0
    bid = ok(by_id, "rfp", "bid", "need-fees", "--price", "90000sat",
             "--pricing-model", "subscription", "--relay", url)  # fmt: skip
    assert bid["rfp"] == posted["address"]
    refused(
        by_id, ["rfp", "bid", "nobody-asked", "--price", "1k", "--pricing-model", "flat",
                "--relay", url],
        "error: NOT_FOUND: no RFP 'nobody-asked' on the relays", 65,
    )  # fmt: skip


def test_contract_accept_and_show_by_prefix(home: Path, tmp_path: Path, relays) -> None:
    url = relays().start()
    offerer = tmp_path / "offerer"
    assert run(offerer, "keys", "new").returncode == 0
    me = ok(home, "keys", "show")
    offer = ok(offerer, "contract", "offer", me["npub"], "--role", "client",
               "--service", "advisor", "--price", "10k", "--pricing-model", "subscription",
               "--relay", url)  # fmt: skip
    assert (offer["offered_to"], offer["offered_to_npub"]) == (me["pubkey"], me["npub"])
    ran = run(home, "run", "--until-idle", "--timeout", "10", "--relay", url)  # the offer arrives
    assert ran.returncode == 0, ran.stderr
    prefix = offer["terms_hash"][:8]
    accepted = ok(home, "contract", "accept", prefix, "--relay", url)
    assert accepted["contract"] == offer["terms_hash"]
    assert ok(home, "contract", "show", prefix, "--relay", url)["id"] == offer["terms_hash"]


def test_an_ncryptsec_asking_for_absurd_scrypt_memory_is_refused_before_scrypt(
    tmp_path: Path,
) -> None:
    """NIP-49's log_n is the attacker's to choose: above 22 (512 MiB) it is refused unread."""
    from agent.keys import _BECH32, _scrypt_log_n, import_key_file
    from events.errors import InvalidKey

    secret = sdk.Keys.generate().secret_key()
    good = sdk.EncryptedSecretKey(secret, "pw", 16, sdk.KeySecurity.UNKNOWN).to_bech32()
    data = good.removeprefix("ncryptsec1")
    bits = (0x02 << 12) | (30 << 4)  # version 2, log_n 30, then 4 bits
    head = "".join(_BECH32[(bits >> shift) & 31] for shift in (15, 10, 5, 0))
    greedy = "ncryptsec1" + head + data[4:]
    assert (_scrypt_log_n(good), _scrypt_log_n(greedy)) == (16, 30)
    started = time.monotonic()
    with pytest.raises(InvalidKey, match="log_n above 22"):
        import_key_file(tmp_path / "nostr.key", greedy, "pw", force=False)
    assert time.monotonic() - started < 1 and not (tmp_path / "nostr.key").exists()
