"""`hive-agent rfp | contract | rep` text views, as a user runs them: the real CLI as a
subprocess against a real relay, two agents; the exact text (tables, local ISO times, amounts
in sat, npub beside short hex) and that `--json` keeps the raw values."""

from __future__ import annotations

import json
from pathlib import Path

import nostr_sdk as sdk
import pytest

from agent.cli.views import when
from agent.store import Store
from tests.test_crash import hive, new_agent


def npub(pubkey: str) -> str:
    return f"{sdk.PublicKey.parse(pubkey).to_bech32()} ({pubkey[:8]})"


def ok(home: Path, *args: str) -> str:
    done = hive(home, *args)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


@pytest.fixture
def two(tmp_path: Path, relays):
    url = relays().start()
    a, b = tmp_path / "a", tmp_path / "b"
    return url, a, new_agent(a), b, new_agent(b)


def test_rfp_text_views(two) -> None:
    url, a, a_pub, b, b_pub = two
    address = f"36381:{a_pub}:need-fees"
    posted = ok(a, "rfp", "post", "--id", "need-fees", "--service", "advisor", "--need",
                "fee-policy", "--max-price", "20000", "--relay", url).splitlines()  # fmt: skip
    assert posted[0] == f"posted  {address}"
    assert posted[1].startswith("event   ") and len(posted[1]) == 8 + 64
    raw = json.loads(ok(b, "--json", "rfp", "list", "--relay", url))["rfps"]
    assert [r["address"] for r in raw] == [address]
    assert isinstance(raw[0]["rfp"]["bid_deadline"], int)  # --json keeps epoch seconds
    due = when(raw[0]["rfp"]["bid_deadline"])
    assert ok(b, "rfp", "list", "--relay", url) == (
        f"{'rfp'.ljust(len(address))}  service  need        max price   term  bids due\n"
        f"{address}  advisor  fee-policy  20,000 sat  30 d  {due}\n"
    )
    bid = ok(b, "rfp", "bid", address, "--price", "15000", "--pricing-model", "subscription",
             "--relay", url).splitlines()  # fmt: skip
    assert bid[0] == f"sealed bid sent  {address}"
    commitment = bid[1].removeprefix("commitment       ")
    assert len(commitment) == 64
    assert bid[2] == f"reveal it after the bid deadline: hive-agent rfp reveal {address}"
    ok(a, "run", "--until-idle", "--relay", url)
    received = json.loads(ok(a, "--json", "rfp", "bids", address, "--relay", url))["bids"]
    at = when(received[0]["received_at"])
    assert ok(a, "rfp", "bids", address, "--relay", url) == (
        f"{'bidder'.ljust(len(npub(b_pub)))}  commitment        {'received'.ljust(len(at))}  price\n"
        f"{npub(b_pub)}  {commitment[:16]}  {at}  sealed\n"
    )


def test_empty_rfp_views(two) -> None:
    url, a, *_ = two
    assert ok(a, "rfp", "list", "--relay", url) == "no open RFPs\n"
    assert ok(a, "rfp", "bids", "36381:" + "ab" * 32 + ":x", "--relay", url) == "no bids yet\n"
    assert ok(a, "contract", "list", "--relay", url) == (
        "contracts\n(none)\n\nopen offers\n(none)\n"
    )


def test_contract_text_views(two) -> None:
    url, a, a_pub, b, b_pub = two
    offered = ok(a, "contract", "offer", b_pub, "--role", "client", "--service", "advisor",
                 "--price", "20000", "--pricing-model", "subscription", "--trial-days", "7",
                 "--trial-price", "1000", "--relay", url).splitlines()  # fmt: skip
    assert offered[0] == f"offered to  {npub(b_pub)}"
    terms_hash = offered[1].removeprefix("terms hash  ")
    assert len(terms_hash) == 64
    ok(b, "run", "--until-idle", "--relay", url)
    raw = json.loads(ok(b, "--json", "contract", "list", "--relay", url))
    offered_at = raw["offers"][0]["created_at"]
    assert ok(b, "contract", "list", "--relay", url) == (
        "contracts\n(none)\n\nopen offers\n"
        f"{'terms hash'.ljust(64)}  direction  {'party'.ljust(len(npub(a_pub)))}  "
        f"{'price'.ljust(16)}  offered\n"
        f"{terms_hash}  to us      {npub(a_pub)}  20,000 sat/month  {when(offered_at)}\n"
    )
    accepted = ok(b, "contract", "accept", terms_hash, "--relay", url).splitlines()
    starts = json.loads(ok(b, "--json", "contract", "show", terms_hash, "--relay", url))[
        "contract"
    ]["terms"]["starts_at"]
    terms = [
        "service    advisor",
        f"client     {npub(a_pub)}",
        f"provider   {npub(b_pub)}",
        "price      20,000 sat/month (subscription)",
        f"starts     {when(starts)}",
        "duration   30 days",
        "trial      7 days for 1,000 sat",
        "schemas    -",
        "capacity   -",
        "listing    -",
        "heartbeat  every 3600 s",
    ]
    assert accepted == [f"contract   {terms_hash}", *terms]
    shown = ok(b, "contract", "show", terms_hash, "--relay", url).splitlines()
    assert shown[:3] == [f"contract   {terms_hash}", "role       we are the provider",
                         "state      active"]  # fmt: skip
    assert shown[3].startswith("signed     ") and shown[3].endswith(" ago)")
    assert shown[4:] == terms


def test_rep_text_views(two, tmp_path: Path) -> None:
    url, a, a_pub, b, b_pub = two
    issued = ok(a, "rep", "issue", b_pub, "--domain", "hive:advisor", "--metric",
                "revenue_delta_pct=12", "--metric", "actions_taken=80", "--metric", "uptime_pct=99.5",
                "--metric", "channels_managed=20", "--outcome", "renew", "--relay", url).splitlines()  # fmt: skip
    cred_id = issued[0].removeprefix("credential  ")
    score = issued[1].removeprefix("score       ")
    assert issued[2].startswith("event       ") and len(issued[2]) == 12 + 64
    raw = json.loads(ok(b, "--json", "rep", "show", b_pub, "--relay", url))
    assert raw["subject"] == b_pub and [c["credential_id"] for c in raw["credentials"]] == [cred_id]
    part = raw["credentials"][0]
    assert ok(b, "rep", "show", b_pub, "--relay", url) == (
        f"subject      {npub(b_pub)}\n"
        f"score        {raw['score']} of 100\n"
        f"tier         {raw['tier']}\n"
        "credentials  1\n\n"
        f"{'credential'.ljust(len(cred_id))}  {'issuer'.ljust(len(npub(a_pub)))}  score  weight\n"
        f"{cred_id}  {npub(a_pub)}  {round(part['score'], 2):>5}  {part['weight']:>6}\n"
    )
    assert float(score) == round(part["score"], 2)
    event = Store(a / "agent.sqlite").conn.execute("SELECT event FROM credentials").fetchone()[0]
    (tmp_path / "cred.json").write_text(event)
    assert ok(b, "rep", "verify", str(tmp_path / "cred.json")) == (
        "valid              yes, signed by its issuer\n"
        f"issuer             {npub(a_pub)}\n"
        f"subject            {npub(b_pub)}\n"
        f"score              {score} ({raw['tier']})\n"
        "verified evidence  0\n"
    )
    revoked = ok(a, "rep", "revoke", cred_id, "--relay", url).splitlines()
    assert revoked[0] == f"revoked         {cred_id}"
    assert revoked[1].startswith("deletion event  ")
