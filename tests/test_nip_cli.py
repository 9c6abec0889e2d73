"""The NIP-conformance items from the command line, against the real relay: `market publish`
then `market update` keep NIP-99's first `published_at` (nostr-tools' nip99 accepts both
versions), and `rep issue` / `rep revoke` publish and withdraw the NIP-85 and NIP-32
summaries."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

import anyio
import nostr_sdk as sdk

from tests.interop.nostr_tools import NostrTools
from tests.test_cli import run
from tests.test_nip_summaries import fetch, market


def relay_events(tmp_path: Path, relay_url: str, filters: list[dict]) -> list[dict]:
    async def look() -> list[dict]:
        async with market(tmp_path / f"reader-{secrets.token_hex(3)}", relay_url) as reader:
            return await fetch(reader, filters)

    return anyio.run(look, backend="asyncio")


def test_market_update_keeps_published_at(
    tmp_path: Path, relay_url: str, nostr_tools: NostrTools
) -> None:
    home = tmp_path / "seller"
    assert run("keys", "new", home=home).returncode == 0
    me = json.loads(run("--json", "keys", "show", home=home).stdout)["pubkey"]
    lid = f"nip99-{secrets.token_hex(4)}"
    first = run(
        "--json", "market", "publish", "--relay", relay_url, "--id", lid, "--service", "liquidity",
        "--title", "Inbound 5M", "--summary", "5M sat inbound for 90 days", "--price", "20000",
        "--frequency", "month", "--pricing-model", "flat", "--primary", "inbound-liquidity",
        "--capacity", "5000000", "--duration-days", "90", home=home,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    [v1] = relay_events(tmp_path, relay_url, [{"kinds": [30402], "authors": [me]}])
    time.sleep(1.1)
    updated = run(
        "market", "update", "--id", lid, "--price", "18000", "--relay", relay_url, home=home
    )
    assert updated.returncode == 0, updated.stderr
    [v2] = relay_events(tmp_path, relay_url, [{"kinds": [30402], "authors": [me]}])
    tags = {t[0]: t[1:] for t in v2["tags"]}
    assert v2["created_at"] > v1["created_at"]
    assert tags["published_at"] == [str(v1["created_at"])]  # the first publication
    assert tags["price"] == ["18000", "SAT", "month"] and tags["location"] == ["online"]
    assert v2["content"] == "5M sat inbound for 90 days"  # no description: the summary
    for version in (v1, v2):
        assert nostr_tools.call("nip99_validate", event=version) is True


def test_rep_issue_and_revoke_publish_nip85_and_nip32(tmp_path: Path, relay_url: str) -> None:
    home = tmp_path / "issuer"
    assert run("keys", "new", home=home).returncode == 0
    me = json.loads(run("--json", "keys", "show", home=home).stdout)["pubkey"]
    subject = sdk.Keys.generate().public_key().to_hex()
    metrics = ["--metric", "revenue_delta_pct=10", "--metric", "actions_taken=50",
               "--metric", "uptime_pct=99", "--metric", "channels_managed=25"]  # fmt: skip
    issued = run(
        "--json", "rep", "issue", subject, "--domain", "hive:advisor", *metrics,
        "--relay", relay_url, home=home,
    )  # fmt: skip
    assert issued.returncode == 0, issued.stderr
    credential_id = json.loads(issued.stdout)["credential_id"]
    [rank] = relay_events(tmp_path, relay_url, [{"kinds": [30382], "authors": [me]}])
    assert rank["tags"] == [["d", subject], ["rank", "65"], ["p", subject]]  # neutral: 64.75
    [tag] = relay_events(tmp_path, relay_url, [{"kinds": [1985], "authors": [me]}])
    assert tag["tags"][:3] == [
        ["L", "hive.reputation"],
        ["l", "hive:advisor:recognized", "hive.reputation"],
        ["p", subject],
    ]
    revoked = run("--json", "rep", "revoke", credential_id, "--relay", relay_url, home=home)
    assert revoked.returncode == 0, revoked.stderr
    [deletion] = relay_events(tmp_path, relay_url, [{"kinds": [5], "authors": [me]}])
    assert deletion["tags"] == [
        ["a", f"36383:{me}:{credential_id}"],
        ["k", "36383"],
        ["e", tag["id"]],
        ["k", "1985"],
        ["a", f"30382:{me}:{subject}"],
        ["k", "30382"],
    ]
