"""The marketplace between real agents on real relays: discovery across two relay
implementations (and a listing signed by nostr-tools), RFPs with sealed bids, contracts with
heartbeats, and reputation that changes the ranking."""

from __future__ import annotations

import json
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import nostr_sdk as sdk
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent import app
from agent.clock import ManualClock
from agent.market.discovery import collect_listings, rank
from agent.market.ranking import Need
from agent.market.service import Market
from agent.nostr.client import RelayClient
from agent.settings import RelayEntry, RelaysConfig, Settings
from agent.store import market as repo
from events import bid, contract, listing, reputation
from events.errors import Restricted
from events.listing import Frequency, Listing, ListingStatus, PricingModel, ServiceType, Trial
from tests.interop.nostr_tools import NostrTools

DAY = 86400
FAST = {"reconnect_base_s": 0.1, "reconnect_max_s": 0.5, "publish_timeout_s": 5}


def advert(lid: str, now: int, **kw) -> Listing:
    base = dict(
        listing_id=lid,
        service=ServiceType.ADVISOR,
        title=f"Advisor {lid}",
        summary="fees",
        price_sat=10_000,
        frequency=Frequency.MONTH,
        pricing_model=PricingModel.SUBSCRIPTION,
        primary="fee-policy",
        secondary=["rebalance"],
        schemas=["hive:fee-policy/v1"],
        trial=Trial(days=14, price_sat=1000),
        published_at=now,
        expires_at=now + 30 * DAY,
    )
    return Listing(**{**base, **kw})


@asynccontextmanager
async def agent(home: Path, urls: list[str], clock=None, keys=None) -> AsyncIterator[Market]:
    config = RelaysConfig(relays=[RelayEntry(url=u) for u in urls], **FAST)
    settings = Settings(home=home, outbox_retry_base_s=0.2, outbox_retry_max_s=1)
    built = app.standalone(settings, keys or sdk.Keys.generate(), config, clock=clock)
    async with built.agent:
        yield built.market


async def eventually(check, timeout: float = 10) -> None:
    with anyio.fail_after(timeout):
        while not check():
            await anyio.sleep(0.05)


async def publish_raw(url: str, raw: dict) -> None:
    from events.base import NostrEvent

    async with RelayClient([url]) as client:
        await client.publish(NostrEvent.model_validate(raw))


@pytest.mark.anyio
async def test_discovery_across_relays_and_clients(
    tmp_path: Path, relay_url: str, nostr_relay_url: str, nostr_tools: NostrTools
) -> None:
    now = int(time.time())
    async with (
        agent(tmp_path / "a", [relay_url]) as alice,
        agent(tmp_path / "b", [nostr_relay_url]) as bob,
    ):
        await alice.publish(advert(f"alice-{secrets.token_hex(4)}", now))
        await bob.publish(advert(f"bob-{secrets.token_hex(4)}", now, price_sat=5_000))
        gone = advert(f"gone-{secrets.token_hex(4)}", now)
        await bob.publish(gone)
        await bob.withdraw(gone.listing_id)
        deleted = advert(f"del-{secrets.token_hex(4)}", now)
        event = await alice.publish(deleted)
        await alice.agent.publish(
            listing.deletion(alice.agent.keys, deleted.listing_id, event.id, created_at=now)
        )
        # a listing signed by nostr-tools, and one whose signature is forged
        sk = secrets.token_hex(32)
        js_id = f"js-{secrets.token_hex(4)}"
        template = listing.build(  # its `did` names the key nostr-tools signs with
            sdk.Keys.parse(sk), advert(js_id, now, price_sat=7_000), created_at=now
        )
        js_event = nostr_tools.call(
            "sign",
            sk=sk,
            template={
                k: template.model_dump()[k] for k in ("kind", "created_at", "tags", "content")
            },
        )
        await publish_raw(nostr_relay_url, js_event)
        expired = listing.build(  # valid when signed, long expired now
            alice.agent.keys, advert("old", now - 40 * DAY), created_at=now - 40 * DAY
        )
        await alice.agent.publish(expired)

    async with agent(tmp_path / "c", [relay_url, nostr_relay_url]) as carol:
        ranked = await carol.browse(
            Need(service=ServiceType.ADVISOR, primary="fee-policy", budget_sat=10_000)
        )
    ids = {r.found.listing.listing_id for r in ranked}
    assert {j for j in ids if j.startswith(("alice-", "bob-", "js-"))} >= {js_id}
    assert any(i.startswith("alice-") for i in ids) and any(i.startswith("bob-") for i in ids)
    assert not any(i.startswith(("gone-", "del-")) for i in ids)
    assert "old" not in ids
    assert ranked == sorted(ranked, key=lambda r: -r.breakdown.total)


@pytest.mark.anyio
async def test_rfp_sealed_bids(tmp_path: Path, relay_url: str) -> None:
    now = int(time.time())
    clock = ManualClock(now)
    async with (
        agent(tmp_path / "op", [relay_url], clock=clock) as op,
        agent(tmp_path / "adv", [relay_url]) as adv,
    ):
        from events.rfp import Rfp

        wanted = Rfp(
            rfp_id=f"rfp-{secrets.token_hex(3)}",
            service=ServiceType.ADVISOR,
            need="fee-policy",
            max_price_sat=20_000,
            duration_days=30,
            posted_at=now,
            bid_deadline=now + 3600,
            award_by=now + 2 * DAY,
        )
        await op.post_rfp(wanted)
        address = f"36381:{op.me}:{wanted.rfp_id}"
        open_rfps = await adv.list_rfps()
        assert address in [r["address"] for r in open_rfps]
        terms = bid.BidTerms(
            price_sat=15_000,
            pricing_model=PricingModel.SUBSCRIPTION,
            duration_days=30,
            sla_response_s=900,
        )
        commitment = await adv.bid(address, terms)
        await eventually(lambda: len(repo.bids_received(op.agent.store, address)) == 1)
        sealed = repo.bids_received(op.agent.store, address)[0]
        assert sealed["commitment"] == commitment and sealed["terms"] is None  # price still hidden
        await adv.reveal(address)  # too early: the operator's clock is before the deadline
        await eventually(lambda: op.agent.store.error_counts().get("EXPIRED", 0) == 1)
        assert repo.bids_received(op.agent.store, address)[0]["terms"] is None
        clock.advance(3601)
        # the advisor sends its reveal again after the deadline: the outbox signs a new wrap
        await adv.reveal(address)
        await eventually(
            lambda: repo.bids_received(op.agent.store, address)[0]["terms"] is not None
        )
        assert repo.bids_received(op.agent.store, address)[0]["terms"]["price_sat"] == 15_000


@pytest.mark.anyio
async def test_contract_and_heartbeats(tmp_path: Path, relay_url: str) -> None:
    now = int(time.time())
    clock = ManualClock(now)
    async with (
        agent(tmp_path / "client", [relay_url], clock=clock) as client,
        agent(tmp_path / "lsp", [relay_url]) as lsp,
    ):
        terms = contract.ContractTerms(
            service=ServiceType.LIQUIDITY,
            client=listing.did(client.me),
            provider=listing.did(lsp.me),
            price_sat=3600,
            pricing_model=PricingModel.SAT_HOURS,
            frequency=Frequency.HOUR,
            capacity_sat=5_000_000,
            starts_at=now,
            duration_days=30,
            heartbeat_interval_s=600,
            nonce=secrets.token_hex(32),
        )
        await client.offer(terms)
        await eventually(lambda: len(repo.offers(lsp.agent.store, "open")) == 1)
        signed = await lsp.accept(terms.hash)
        await eventually(lambda: len(repo.contracts(client.agent.store)) == 1)
        mine = repo.contracts(client.agent.store)[0]
        assert mine["contract"] == signed and mine["role"] == "client"
        contract.verify(mine["contract"])
        assert await lsp.beat_due() == [signed.id]  # the first beat is due at once
        assert await lsp.beat_due() == []  # the next only after 600 s
        await lsp.beat(signed.id, 1)
        await eventually(lambda: repo.last_heartbeat(client.agent.store, signed.id) is not None)
        clock.advance(2 * 600)
        assert client.check_heartbeats() == []  # two intervals missed: still fine
        clock.advance(600 + 1)
        assert client.check_heartbeats() == [(signed.id, "ended")]  # the third miss ends a lease
        assert repo.contracts(client.agent.store)[0]["state"] == "ended"


@pytest.mark.anyio
async def test_reputation_changes_the_ranking(tmp_path: Path, relay_url: str) -> None:
    now = int(time.time())
    async with agent(tmp_path / "x", [relay_url]) as x, agent(tmp_path / "y", [relay_url]) as y:
        tag = secrets.token_hex(3)
        await x.publish(advert(f"x-{tag}", now, primary=f"cap{tag}", secondary=[]))
        await y.publish(
            advert(f"y-{tag}", now, primary=f"cap{tag}", secondary=[], price_sat=12_000)
        )
        async with agent(tmp_path / "judge", [relay_url]) as judge:
            need = Need(service=ServiceType.ADVISOR, primary=f"cap{tag}", budget_sat=10_000)
            before = [r.found.author for r in await judge.browse(need)]
            assert before == [x.me, y.me]  # same everything, y is dearer
            subject = reputation.Subject(
                id=listing.did(y.me),
                domain="hive:advisor",
                period=reputation.Period(
                    start=reputation.iso(now - 30 * DAY), end=reputation.iso(now)
                ),
                metrics={
                    "revenue_delta_pct": 40,
                    "actions_taken": 100,
                    "uptime_pct": 100,
                    "channels_managed": 50,
                },
                outcome="renew",
            )
            cred = reputation.ReputationCredential(
                issuer=listing.did(judge.me),
                validFrom=reputation.iso(now),
                credentialSubject=subject,
            )
            await judge.issue_credential(cred)
            after = await judge.browse(need)
            assert [r.found.author for r in after] == [y.me, x.me]
            assert after[0].reputation.score == pytest.approx(100.0)
            await judge.revoke_credential(cred.credential_id)
            assert (await judge.reputation_of(y.me)).score == 0.0


def test_trial_limits(tmp_path: Path) -> None:
    from agent.market.trials import trial_price

    now = 1_800_000_000
    a, b, c = "a" * 64, "b" * 64, "c" * 64
    history = [{"provider": a, "started_at": now - 20 * DAY, "ends_at": now - 6 * DAY}]
    assert trial_price(history, a, 1000, now) == 2000  # a repeat within 90 days: ×2
    with pytest.raises(Restricted, match="wait 9 more days"):
        trial_price(history, b, 1000, now)  # a different provider inside the 14-day cooldown
    history = [
        {"provider": a, "started_at": now, "ends_at": now + DAY},
        {"provider": a, "started_at": now, "ends_at": now + DAY},
    ]
    with pytest.raises(Restricted, match="at most 2"):
        trial_price(history, a, 1000, now)
    assert trial_price([], c, 1000, now) == 1000


def test_forged_listings_are_not_discovered() -> None:
    """Honest relays refuse forged events, so this is what a malicious relay could serve."""
    now = 1_800_000_000
    keys = sdk.Keys.generate()
    good = listing.build(keys, advert("real", now), created_at=now).model_dump()
    other = sdk.Keys.generate().public_key().to_hex()
    stolen_sig = {**good, "pubkey": other}  # someone else's key, the original signature
    renamed = {**good, "tags": [["d", "forged"] if t[0] == "d" else t for t in good["tags"]]}
    errors: Counter[str] = Counter()
    found = collect_listings([json.dumps(e) for e in (good, stolen_sig, renamed)], now, errors)
    assert [f.listing.listing_id for f in found] == ["real"]
    assert errors == {"BAD_ID": 2}


VALID = [
    listing.build(
        sdk.Keys.generate(), advert("fuzz", 1_800_000_000), created_at=1_800_000_000
    ).to_json()
]


@settings(max_examples=400)
@given(data=st.data())
def test_discovery_never_crashes(data: st.DataObject) -> None:
    raw = bytearray(VALID[0].encode())
    for _ in range(data.draw(st.integers(0, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    junk = data.draw(
        st.lists(st.text(max_size=50) | st.just(json.dumps({"kind": 30402})), max_size=3)
    )
    errors: Counter[str] = Counter()
    found = collect_listings([bytes(raw).decode("utf-8", "replace"), *junk], 1_800_000_000, errors)
    assert len(found) <= 1
    assert all(f.listing.status == ListingStatus.ACTIVE for f in found)


@pytest.mark.anyio
async def test_update_and_refresh_keep_the_first_published_at(
    tmp_path: Path, relay_url: str, nostr_tools: NostrTools
) -> None:
    """NIP-99: `published_at` is the first publication; each version has its own created_at,
    which ranking freshness follows; every version passes nostr-tools' nip99.validateEvent."""
    now = int(time.time()) - 34 * DAY
    clock = ManualClock(now)
    lid = f"keep-{secrets.token_hex(4)}"
    async with agent(tmp_path / "a", [relay_url], clock=clock) as alice:
        first = await alice.publish(advert(lid, now))
        clock.advance(5 * DAY)
        updated = await alice.publish(advert(lid, clock.now(), price_sat=12_000, description=""))
        clock.advance(29 * DAY)  # one day before it expires: refreshed, for another 30 days
        assert await alice.refresh() == [lid]
        raws = await alice.agent.fetch([{"kinds": [30402], "#d": [lid]}])
    [latest] = [json.loads(r) for r in raws]
    assert latest["created_at"] == now + 34 * DAY != first.created_at
    tags = {t[0]: t[1:] for t in latest["tags"]}
    assert tags["published_at"] == [str(now)] == [first.tag("published_at")]
    assert updated.tag("published_at") == str(now) and updated.content == "fees"
    assert tags["expiration"] == [str(now + 34 * DAY + 30 * DAY)]
    assert tags["location"] == ["online"] and tags["price"] == ["12000", "SAT", "month"]
    for event in (first.model_dump(), updated.model_dump(), latest):
        assert nostr_tools.call("nip99_validate", event=event) is True
    found = collect_listings(raws, now + 34 * DAY)
    assert [f.created_at for f in found] == [now + 34 * DAY]
    ranked_fresh = Need(service=ServiceType.ADVISOR)
    [row] = rank(found, ranked_fresh, {}, {}, now + 34 * DAY)
    assert row.breakdown.freshness == 1.0  # just refreshed, although first published 34 days ago
