"""The escrow wallet against real Nutshell mints through the real CLI: invoices paid later and
claimed, waits that time out, melts, cashuB tokens between two agents, restore from the seed,
and `hive-agent mint`."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agent.escrow.mint import MintProcess
from agent.store import Store
from tests.test_crash import HIVE_AGENT, hive, new_agent


def ok(done: subprocess.CompletedProcess[str]) -> dict:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def failed(done: subprocess.CompletedProcess[str], code: str, exit_code: int) -> str:
    assert done.returncode == exit_code, (done.stdout, done.stderr)
    error = json.loads(done.stdout)["error"]
    assert error["code"] == code
    return str(error["message"])


def agent(home: Path, *mints: str) -> Path:
    new_agent(home)
    (home / "policy.json").write_text(json.dumps({"mints": list(mints)}))
    return home


def balance(home: Path) -> dict[str, int]:
    return ok(hive(home, "--json", "escrow", "balance"))["balances"]  # type: ignore[no-any-return]


def external_invoice(sat: int) -> str:
    """A bolt11 invoice of some other node (FakeWallet pays any)."""
    from bolt11 import Bolt11, MilliSatoshi, TagChar, Tags, encode

    tags = Tags()
    tags.add(TagChar.description, "hive test")
    tags.add(TagChar.payment_secret, os.urandom(32).hex())
    tags.add(TagChar.payment_hash, hashlib.sha256(os.urandom(32)).hexdigest())
    invoice = Bolt11(
        currency="bc", amount_msat=MilliSatoshi(sat * 1000), date=int(time.time()), tags=tags
    )
    return str(encode(invoice, os.urandom(32).hex()))


@pytest.fixture(scope="module")
def slow_mint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """FakeWallet pays each invoice 2 s after it is issued (if nobody asks about it first)."""
    mint = MintProcess(tmp_path_factory.mktemp("slow-mint"), delay_s=2)
    yield mint.start()
    mint.stop()


@pytest.fixture(scope="module")
def unpaid_mint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """FakeWallet that never pays an invoice by itself."""
    mint = MintProcess(tmp_path_factory.mktemp("unpaid-mint"), brr=False)
    yield mint.start()
    mint.stop()


def test_an_invoice_paid_later_is_claimed_once(tmp_path: Path, slow_mint: str) -> None:
    home = agent(tmp_path / "a", slow_mint)
    issued = ok(hive(home, "--json", "escrow", "invoice", "100", "--no-wait"))
    assert issued["minted"] == 0 and issued["state"] == "unpaid"
    assert issued["request"].startswith("lnbc1u1")
    time.sleep(3)  # the backend pays it meanwhile
    claimed = hive(home, "escrow", "invoice", "--claim", issued["quote"])
    assert claimed.returncode == 0, claimed.stderr
    assert claimed.stdout == f"minted 100 sat at {slow_mint} (quote {issued['quote']})\n"
    again = hive(home, "escrow", "invoice", "--claim", issued["quote"])
    assert again.stdout == f"quote {issued['quote']} was already claimed\n"
    assert balance(home) == {slow_mint: 100}


def test_a_paid_invoice_left_unclaimed_is_claimed_on_next_use(
    tmp_path: Path, slow_mint: str
) -> None:
    home = agent(tmp_path / "a", slow_mint)
    ok(hive(home, "--json", "escrow", "invoice", "64", "--no-wait"))
    time.sleep(3)
    assert balance(home) == {slow_mint: 64}
    assert balance(home) == {slow_mint: 64}


def test_waiting_for_an_unpaid_invoice_times_out(tmp_path: Path, unpaid_mint: str) -> None:
    home = agent(tmp_path / "a", unpaid_mint)
    done = hive(home, "escrow", "invoice", "21", "--timeout", "1")
    assert done.returncode == 75, done.stderr
    lines = done.stdout.splitlines()
    assert re.fullmatch(r"pay this invoice \(21 sat, quote [0-9a-f-]+\):", lines[0])
    assert lines[1].startswith("lnbc210n1") and len(lines) == 2
    quote = lines[0].split("quote ")[1].rstrip("):")
    assert "waiting for payment… 0/1 s" in done.stderr
    assert done.stderr.endswith(
        f"error: INVOICE_UNPAID: not paid within 1 s; once paid:"
        f" hive-agent escrow invoice --claim {quote}\n"
    )
    claim = hive(home, "--json", "escrow", "invoice", "--claim", quote)
    assert failed(claim, "INVOICE_UNPAID", 75) == f"the invoice of quote {quote} is not paid yet"
    # a day later nobody paid it: wallet commands stop asking the mint about it
    store = Store(home / "agent.sqlite")
    record = store.kv("escrow-quote:" + quote)
    assert record["state"] == "unpaid"
    with store.transaction(int(time.time())) as tx:
        tx.set_kv("escrow-quote:" + quote, {**record, "issued_at": int(time.time()) - 86_401})
    assert balance(home) == {}
    assert Store(home / "agent.sqlite").kv("escrow-quote:" + quote)["state"] == "expired"


def test_topup_says_an_unpaid_invoice_is_unpaid(tmp_path: Path, unpaid_mint: str) -> None:
    home = agent(tmp_path / "a", unpaid_mint)
    done = hive(home, "escrow", "topup", "--amount", "10")
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    assert first.startswith("invoice issued, not yet paid: lnbc100n1")
    assert re.fullmatch(r"claim it once paid: hive-agent escrow invoice --claim [0-9a-f-]+", second)
    assert balance(home) == {}


def test_a_melt_pays_an_invoice_and_keeps_the_change(tmp_path: Path, mint_url: str) -> None:
    home = agent(tmp_path / "a", mint_url)
    ok(hive(home, "--json", "escrow", "topup", "--amount", "100"))
    invoice = external_invoice(40)
    done = hive(home, "escrow", "pay", invoice)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "paid 40 sat (fee reserve 2 sat, 1 sat back as change; 41 sat spent)\n"
    assert balance(home) == {mint_url: 59}
    again = hive(home, "--json", "escrow", "pay", invoice)
    assert failed(again, "MINT_REFUSED", 65).startswith("Melt quote already paid")
    assert balance(home) == {mint_url: 59}
    too_much = hive(home, "--json", "escrow", "pay", external_invoice(500))
    assert failed(too_much, "INSUFFICIENT_BALANCE", 65).startswith("the wallet holds 59 sat")


def test_a_token_moves_between_two_agents_once(tmp_path: Path, mint_url: str) -> None:
    alice, bob = agent(tmp_path / "alice", mint_url), agent(tmp_path / "bob", mint_url)
    ok(hive(alice, "--json", "escrow", "topup", "--amount", "200"))
    sent = hive(alice, "escrow", "send", "30")
    token = sent.stdout.strip()
    assert sent.returncode == 0 and token.startswith("cashuB")
    assert balance(alice) == {mint_url: 170}
    got = hive(bob, "escrow", "receive", token)
    assert got.returncode == 0, got.stderr
    assert got.stdout == f"received 30 sat at {mint_url}\n"
    assert balance(bob) == {mint_url: 30}
    twice = hive(bob, "--json", "escrow", "receive", token)
    assert failed(twice, "TOKEN_SPENT", 65) == "the token's proofs are already spent at the mint"
    back = hive(alice, "--json", "escrow", "receive", token)  # the sender cannot take it back
    assert failed(back, "TOKEN_SPENT", 65).startswith("this token was already received or sent")
    assert (balance(alice), balance(bob)) == ({mint_url: 170}, {mint_url: 30})
    junk = hive(bob, "--json", "escrow", "receive", "cashuBnotatoken")
    assert failed(junk, "TOKEN_INVALID", 65).startswith("not a Cashu sat token")


def test_a_token_for_an_unknown_mint_is_refused(
    tmp_path: Path, mint_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = agent(tmp_path / "alice", mint_url), agent(tmp_path / "bob")
    ok(hive(alice, "--json", "escrow", "topup", "--amount", "50"))
    token = ok(hive(alice, "--json", "escrow", "send", "16"))["token"]
    refused = hive(bob, "--json", "escrow", "receive", token)
    assert failed(refused, "MINT_NOT_ALLOWED", 65) == (
        f"the token is for {mint_url}, not one of this agent's mints (--trust-mint to accept)"
    )
    assert balance(bob) == {}
    monkeypatch.setenv("HIVE_ALLOW_PRIVATE_RELAYS", "1")  # the test mint is on 127.0.0.1
    trusted = ok(hive(bob, "--json", "escrow", "receive", token, "--trust-mint"))
    assert trusted == {"mint": mint_url, "received": 16, "fee": 0}


def test_restore_into_a_fresh_home_recovers_the_balance(tmp_path: Path, mint_url: str) -> None:
    home = agent(tmp_path / "a", mint_url)
    ok(hive(home, "--json", "escrow", "topup", "--amount", "300"))
    token = ok(hive(home, "--json", "escrow", "send", "44"))["token"]
    ok(hive(home, "--json", "escrow", "pay", external_invoice(10)))
    before = balance(home)
    assert before == {mint_url: 300 - 44 - 11}  # 10 paid, 1 of the 2 sat fee reserve
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    for name in ("nostr.key", "policy.json"):
        (fresh / name).write_bytes((home / name).read_bytes())
    os.chmod(fresh / "nostr.key", 0o600)
    # a token sent and not yet received is still the seed's: restored too
    done = hive(fresh, "escrow", "restore")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{mint_url}: 289 sat restored\n"
    assert balance(fresh) == {mint_url: 289}
    ok(hive(agent(tmp_path / "bob", mint_url), "--json", "escrow", "receive", token))
    # the ledger is behind the mint (bob swapped the sent token away): restore catches up
    assert balance(fresh) == {mint_url: 289}
    again = ok(hive(fresh, "--json", "escrow", "restore"))
    assert (again["restored"], again["found_spent"]) == ({mint_url: 0}, {mint_url: 44})
    assert balance(fresh) == {mint_url: 245}
    last = hive(fresh, "escrow", "restore")
    assert last.stdout == f"{mint_url}: 0 sat restored\n", last.stderr


def test_hive_agent_mint_runs_until_interrupted(tmp_path: Path) -> None:
    cmd = [
        HIVE_AGENT,
        "--home",
        str(tmp_path / "h"),
        "--json",
        "mint",
        "--dir",
        str(tmp_path / "m"),
    ]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            started = json.loads(proc.stdout.readline())
            assert started["dir"] == str(tmp_path / "m")
            assert httpx.get(f"{started['url']}/v1/info", timeout=5).status_code == 200
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
