"""The marketplace attacked, on a real relay with real agents and stores: a dishonest provider's
heartbeats, a stranger's future-dated listing, an operator re-listing what it withdrew, sybil
reputation and text that forges the lines of a view."""

from __future__ import annotations

import secrets
import time
from collections import Counter
from pathlib import Path

import nostr_sdk as sdk
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.clock import ManualClock
from agent.market import handlers
from agent.market.discovery import collect_listings
from agent.market.ranking import Need, comparable_price, components, matches
from agent.market.reputation import aggregate, weigh
from agent.market.service import Market
from agent.nostr.client import RelayClient
from agent.store import Store
from agent.store import market as repo
from events import contract, heartbeat, listing, reputation
from events.base import sign_event
from events.errors import InvalidPayload, InvalidTag, Unauthorized
from events.kinds import Kind
from events.listing import Frequency, PricingModel, ServiceType
from tests.test_market_flow import DAY, advert, agent, eventually


async def signed_contract(client: Market, lsp: Market, now: int, **kw) -> contract.Contract:
    terms = contract.ContractTerms(
        **{
            "service": ServiceType.LIQUIDITY,
            "client": listing.did(client.me),
            "provider": listing.did(lsp.me),
            "price_sat": 3600,
            "pricing_model": PricingModel.SAT_HOURS,
            "frequency": Frequency.HOUR,
            "capacity_sat": 5_000_000,
            "starts_at": now,
            "duration_days": 30,
            "heartbeat_interval_s": 600,
            "nonce": secrets.token_hex(32),
            **kw,
        }
    )
    await client.offer(terms)
    await eventually(lambda: repo.offer(lsp.agent.store, terms.hash) is not None)
    signed = await lsp.accept(terms.hash)
    await eventually(lambda: len(repo.contracts(client.agent.store)) == 1)
    return signed


def errors(market: Market) -> dict[str, int]:
    return market.agent.store.error_counts()


# --- heartbeats -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_future_dated_heartbeat_cannot_keep_a_dead_lease_alive(
    tmp_path: Path, relay_url: str
) -> None:
    """A provider's one beat saying `sent_at` = ten years ahead made the client's lease look
    beaten until then: three missed intervals never ended it (the client kept paying)."""
    now = int(time.time())
    clock = ManualClock(now)
    async with (
        agent(tmp_path / "client", [relay_url], clock=clock) as client,
        agent(tmp_path / "lsp", [relay_url]) as lsp,
    ):
        signed = await signed_contract(client, lsp, now)
        forged = heartbeat.Heartbeat(contract=signed.id, seq=0, sent_at=now + 3650 * DAY,
                                     uptime_bp=10_000)  # fmt: skip
        await lsp.agent.publish(heartbeat.build(lsp.agent.keys, forged, created_at=now))
        await eventually(lambda: errors(client).get("FROM_FUTURE", 0) == 1)
        assert repo.last_heartbeat(client.agent.store, signed.id) is None
        clock.advance(3 * 600 + 1)
        assert client.check_heartbeats() == [(signed.id, "ended")]


@pytest.mark.anyio
async def test_a_burst_of_backdated_heartbeats_does_not_buy_uptime(
    tmp_path: Path, relay_url: str
) -> None:
    """Twenty beats sent at once, dated one interval apart over the past, counted as twenty
    intervals of uptime (availability 1.0 in ranking) for a provider that was never up."""
    now = int(time.time())
    clock = ManualClock(now)
    async with (
        agent(tmp_path / "client", [relay_url], clock=clock) as client,
        agent(tmp_path / "lsp", [relay_url]) as lsp,
    ):
        signed = await signed_contract(client, lsp, now, starts_at=now - 20 * 600)
        for seq in range(20):
            beat = heartbeat.Heartbeat(contract=signed.id, seq=seq, sent_at=now - seq * 600,
                                       uptime_bp=10_000)  # fmt: skip
            # each newer than the last (a relay keeps one per contract and refuses an older one)
            event = heartbeat.build(lsp.agent.keys, beat, created_at=now - 20 + seq)
            await lsp.agent.publish(event)
        await eventually(lambda: errors(client).get("RATE_LIMITED", 0) == 19)
        assert client.availability(lsp.me) == pytest.approx(1 / 20)


# --- listings ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_listing_withdrawn_then_published_again_is_found(
    tmp_path: Path, relay_url: str
) -> None:
    """NIP-09: a deletion of an address covers the versions up to its own `created_at`.  The
    agent treated it as covering every later version too: an operator who withdrew a listing
    and published it again (same id) was never found by anyone."""
    now = int(time.time())
    clock = ManualClock(now - 100)
    lid = f"again-{secrets.token_hex(4)}"
    async with agent(tmp_path / "a", [relay_url], clock=clock) as alice:
        await alice.publish(advert(lid, now - 100))
        await alice.withdraw(lid)
        clock.advance(50)
        await alice.publish(advert(lid, now - 50))
        async with agent(tmp_path / "c", [relay_url]) as carol:
            found = await carol.browse(Need(service=ServiceType.ADVISOR))
    assert lid in [r.found.listing.listing_id for r in found]


@pytest.mark.anyio
async def test_a_future_dated_listing_is_not_ranked(tmp_path: Path, relay_url: str) -> None:
    """A listing dated five years ahead stayed at full freshness for five years (and outranked
    an honest one just like it); discovery now refuses it like the inbound path (FROM_FUTURE)."""
    now = int(time.time())
    tag = secrets.token_hex(3)
    mallory = sdk.Keys.generate()
    ahead = now + 5 * 365 * DAY
    future = listing.build(
        mallory, advert(f"m-{tag}", ahead, primary=f"cap{tag}", secondary=[]), created_at=ahead
    )
    then = ManualClock(now - 10 * DAY)
    async with agent(tmp_path / "h", [relay_url], clock=then) as honest:
        await honest.agent.publish(future)
        await honest.publish(advert(f"h-{tag}", now - 10 * DAY, primary=f"cap{tag}", secondary=[]))
        async with agent(tmp_path / "c", [relay_url]) as carol:
            ranked = await carol.browse(Need(service=ServiceType.ADVISOR, primary=f"cap{tag}"))
            skipped = dict(carol.errors)
    assert [r.found.listing.listing_id for r in ranked] == [f"h-{tag}"]
    assert skipped.get("FROM_FUTURE") == 1


@pytest.mark.anyio
async def test_a_price_per_hour_is_not_cheaper_than_the_same_per_month(
    tmp_path: Path, relay_url: str
) -> None:
    """Prices were compared as raw numbers whatever their period: 20 sat/hour (14,400 a
    month) ranked above 10,000 sat/month and passed a 12,000 --max-price.  Prices are now
    compared per month."""
    now = int(time.time())
    tag = secrets.token_hex(3)
    need = dict(service=ServiceType.ADVISOR, primary=f"cap{tag}", budget_sat=10_000)
    async with (
        agent(tmp_path / "h", [relay_url]) as honest,
        agent(tmp_path / "g", [relay_url]) as gamer,
    ):
        await honest.publish(advert(f"h-{tag}", now, primary=f"cap{tag}", secondary=[]))
        hourly = advert(f"g-{tag}", now, primary=f"cap{tag}", secondary=[], price_sat=20,
                        frequency=Frequency.HOUR)  # fmt: skip
        await gamer.publish(hourly)
        async with agent(tmp_path / "c", [relay_url]) as carol:
            ranked = await carol.browse(Need(**need))
            capped = await carol.browse(Need(**need, max_price_sat=12_000))
    assert [r.found.author for r in ranked] == [honest.me, gamer.me]
    assert ranked[1].breakdown.price == pytest.approx(10_000 / 14_400)
    assert [r.found.author for r in capped] == [honest.me]


@given(price=st.integers(1, 10**9), frequency=st.sampled_from(list(Frequency)),
       cap=st.integers(0, 10**12))  # fmt: skip
def test_max_price_and_price_score_follow_the_monthly_price(price, frequency, cap) -> None:
    item = advert("p", 1_800_000_000, price_sat=price, frequency=frequency)
    monthly = comparable_price(item)
    assert monthly == pytest.approx(
        price
        * {"hour": 720, "day": 30, "week": 30 / 7, "month": 1, "year": 1 / 12, "action": 1}[
            frequency
        ]
    )
    assert matches(item, Need(max_price_sat=cap)) == (monthly <= cap)
    score = components(item, Need(budget_sat=cap), 0, None, 1_800_000_000).price
    assert score == pytest.approx(min(1.0, cap / monthly))


@pytest.mark.anyio
async def test_a_flood_of_fresh_listings_cannot_hide_the_honest_ones(
    tmp_path: Path, relays
) -> None:
    """A relay answers with at most its own limit (500 here), newest first: 1,100 listings
    from fresh keys, dated now, pushed an honest, reputed listing out of `browse` entirely.
    Discovery now reads page after page, and asks about authors 250 at a time (1,100 authors
    in one `#p` filter make a request larger than a relay takes)."""
    url = relays().start()
    now = int(time.time())
    junk = [listing.build(sdk.Keys.generate(), advert(f"j{i}", now - i % 10), created_at=now - i % 10)
            for i in range(1100)]  # fmt: skip
    then = ManualClock(now - 100)
    async with (
        agent(tmp_path / "h", [url], clock=then) as honest,
        agent(tmp_path / "judge", [url], clock=then) as judge,
    ):
        await honest.publish(advert("honest", now - 100))
        await judge.issue_credential(credential(judge.me, honest.me, now - 200, now - 100))
        async with RelayClient([url]) as client:
            for event in junk:
                await client.publish(event)
    async with agent(tmp_path / "c", [url]) as carol:
        ranked = await carol.browse(Need(service=ServiceType.ADVISOR, primary="fee-policy"))
    # every junk second but those a page ended inside (their rest are skipped: `until` moves
    # a whole second) is read, and the honest listing ranks first on its reputation
    assert len(ranked) > 900
    assert ranked[0].found.author == honest.me and ranked[0].reputation.score > 90


# --- reputation -------------------------------------------------------------------------------

ADVISOR_METRICS = {
    "revenue_delta_pct": 40,
    "actions_taken": 100,
    "uptime_pct": 100,
    "channels_managed": 50,
}
POOR_METRICS = {"revenue_delta_pct": -50, "actions_taken": 0, "uptime_pct": 0,
                "channels_managed": 0}  # fmt: skip


def credential(issuer: str, subject: str, start: int, end: int, metrics=None, **kw):
    return reputation.ReputationCredential(
        issuer=listing.did(issuer),
        validFrom=reputation.iso(end),
        credentialSubject=reputation.Subject(
            id=listing.did(subject),
            domain="hive:advisor",
            period=reputation.Period(start=reputation.iso(start), end=reputation.iso(end)),
            metrics=metrics or ADVISOR_METRICS,
            outcome="renew",
            **kw,
        ),
    )


def unchecked(keys: sdk.Keys, cred, created_at: int):
    """The credential's event, signed without the checks `reputation.build` makes."""
    fam = reputation.FAMILY
    return sign_event(keys, fam.kind, cred.model_dump_json(), fam.tags(cred), created_at)


@pytest.mark.anyio
async def test_one_key_issuing_many_credentials_counts_as_one_issuer(
    tmp_path: Path, relay_url: str
) -> None:
    """A sybil key published twenty top credentials about its friend (a period each) against
    one honest issuer's poor one: the average was 20 to 1, a 'senior' 96; now each issuer's
    credentials about a subject weigh together as one."""
    now = int(time.time())
    friend = sdk.Keys.generate().public_key().to_hex()
    async with (
        agent(tmp_path / "s", [relay_url]) as sybil,
        agent(tmp_path / "h", [relay_url]) as honest,
    ):
        for i in range(20):
            end = now - i * DAY
            await sybil.issue_credential(credential(sybil.me, friend, end - DAY, end))
        await honest.issue_credential(credential(honest.me, friend, now - DAY, now, POOR_METRICS))
        async with agent(tmp_path / "j", [relay_url]) as judge:
            rep = await judge.reputation_of(friend)
    assert len(rep.parts) == 21
    by = {p.issuer: 0.0 for p in rep.parts}
    for p in rep.parts:
        by[p.issuer] += p.weight
    assert by[sybil.me] == pytest.approx(by[honest.me], rel=0.1)  # one voice each
    assert rep.score < 60 and rep.tier == "newcomer"


@pytest.mark.anyio
async def test_a_credential_about_the_future_does_not_count(tmp_path: Path, relay_url: str) -> None:
    """A period ending in ten years never aged: its recency stayed 1 (full weight) for ten
    years while honest credentials decayed.  It is refused (INVALID_PAYLOAD) until it has
    ended."""
    now = int(time.time())
    friend = sdk.Keys.generate().public_key().to_hex()
    sybil = sdk.Keys.generate()
    cred = credential(sybil.public_key().to_hex(), friend, now - DAY, now + 3650 * DAY)
    async with agent(tmp_path / "j", [relay_url]) as judge:
        await judge.agent.publish(unchecked(sybil, cred, now))
        rep = await judge.reputation_of(friend)
        assert rep.parts == () and judge.errors["INVALID_PAYLOAD"] == 1
    with pytest.raises(InvalidPayload, match="ended"):
        reputation.build(sybil, cred, created_at=now)


@pytest.mark.anyio
async def test_credentials_about_an_advisor_cannot_be_slipped_into_a_nodes_store(
    tmp_path: Path, relay_url: str
) -> None:
    """A credential may carry extra tags; a sybil's top credential about an advisor, with an
    extra `p` tag naming the node, matched the node's subscription (`#p` = the node) and was
    stored — and the node's approval engine weighs every stored credential about the advisor
    (reputation factor up to 2: a danger-6 command that waits for the operator ran at once).
    A credential's `p` is now its subject's alone (INVALID_TAG otherwise), and the node keeps
    only credentials about itself or its own."""
    now = int(time.time())
    advisor = sdk.Keys.generate().public_key().to_hex()
    sybil = sdk.Keys.generate()
    cred = credential(sybil.public_key().to_hex(), advisor, now - DAY, now)
    async with agent(tmp_path / "node", [relay_url]) as node:
        fam = reputation.FAMILY
        tags = [*fam.tags(cred), ["p", node.me]]
        slipped = sign_event(sybil, fam.kind, cred.model_dump_json(), tags, now)
        with pytest.raises(InvalidTag):
            reputation.parse(slipped, now=now)
        await node.agent.publish(slipped)
        await eventually(lambda: errors(node).get("INVALID_TAG", 0) == 1)
        held = repo.credentials_about(node.agent.store, advisor)
    assert held == [] and aggregate(advisor, held, now).parts == ()
    # one about the advisor alone, as a relay that ignores our filter would deliver it
    store = Store(tmp_path / "node" / "agent.sqlite")
    on_credential = handlers.public_handlers(ManualClock(now), node.me)[Kind.REPUTATION]
    with pytest.raises(Unauthorized), store.transaction(now) as tx:
        on_credential(unchecked(sybil, cred, now), tx)
    assert repo.credentials_about(store, advisor) == []


def test_one_evidence_event_repeated_is_one_piece_of_evidence() -> None:
    """One signed event embedded six times counted as six verified items (evidence factor
    1.0, more than a credential with five distinct receipts)."""
    now = 1_800_000_000
    keys = sdk.Keys.generate()
    proof = sign_event(keys, 1, "receipt", [], now)
    item = reputation.Evidence(type="SignedReceipt", id=proof.id, event=proof.model_dump())
    cred = credential(keys.public_key().to_hex(), "b" * 64, now - DAY, now, evidence=[item] * 6)
    assert reputation.verified_evidence(cred) == 1
    assert weigh(cred, now, set()).evidence == 0.7


@pytest.mark.anyio
async def test_an_old_credential_or_deletion_arriving_late_changes_nothing(
    tmp_path: Path, relay_url: str, nostr_relay_url: str
) -> None:
    """Two relays, two orders.  An issuer's older version of a credential about us, arriving
    (from a second relay) after the newer one, replaced it in the store; and an issuer's old
    deletion arriving after it re-issued the credential revoked the re-issue (NIP-09: a
    deletion covers only versions up to its own `created_at`)."""
    now = int(time.time())
    issuer = sdk.Keys.generate()
    me_keys = sdk.Keys.generate()
    me_pub = me_keys.public_key().to_hex()
    cred = credential(issuer.public_key().to_hex(), me_pub, now - 2 * DAY, now - DAY)
    better = credential(issuer.public_key().to_hex(), me_pub, now - 2 * DAY, now - DAY,
                        ADVISOR_METRICS | {"actions_taken": 90})  # fmt: skip
    old = reputation.build(issuer, cred, created_at=now - 100)
    new = reputation.build(issuer, better, created_at=now - 50)
    address = reputation.address(issuer.public_key().to_hex(), cred.credential_id)
    deletion = sign_event(
        issuer, Kind.DELETION, "", [["a", address], ["k", str(int(Kind.REPUTATION))]], now - 75
    )

    def held() -> list[float]:  # unrevoked credentials about us: their actions_taken
        about = repo.credentials_about(me.agent.store, me_pub)
        return [c.credentialSubject.metrics["actions_taken"] for c in about]

    async with agent(tmp_path / "me", [relay_url, nostr_relay_url], keys=me_keys) as me:
        await me.agent.publish(new)
        await eventually(lambda: held() == [90])
        async with RelayClient([nostr_relay_url]) as other:
            await other.publish(old)  # the other relay never saw the newer one
        await eventually(lambda: me.agent.store.is_seen(old.id))
        assert held() == [90]
        async with RelayClient([nostr_relay_url]) as other:
            await other.publish(deletion)  # made before the re-issue
        await eventually(lambda: me.agent.store.is_seen(deletion.id))
        assert held() == [90]


def test_a_listing_claiming_anothers_did_is_refused() -> None:
    """A listing signed by a stranger with `["did", "did:nostr:<victim>"]` was read as any
    other: a DID-aware reader attributes it to the victim.  Its `did` must be its author's."""
    now = 1_800_000_000
    stranger, victim = sdk.Keys.generate(), sdk.Keys.generate().public_key().to_hex()
    good = listing.build(stranger, advert("claim", now), created_at=now)
    tags = [["did", listing.did(victim)] if t[0] == "did" else t for t in good.tags]
    forged = sign_event(stranger, good.kind, good.content, tags, now)
    with pytest.raises(InvalidTag, match="own author"):
        listing.parse(forged, now=now)
    errors: Counter[str] = Counter()
    found = collect_listings([forged.to_json(), good.to_json()], now, errors)
    assert [f.event_id for f in found] == [good.id] and errors == {"INVALID_TAG": 1}


@given(
    counts=st.lists(st.integers(1, 30), min_size=1, max_size=5),
    scores=st.lists(st.integers(-50, 50), min_size=5, max_size=5),
)
def test_each_issuer_weighs_as_one_whatever_it_issues(counts: list[int], scores: list[int]) -> None:
    """Property: an issuer's credentials about a subject weigh, together, what one of them
    weighs (same recency and evidence here); the score stays within its credentials' range."""
    now = 1_800_000_000
    subject = "b" * 64
    creds = []
    for k, n in enumerate(counts):
        issuer = f"{k + 1:064x}"
        metrics = ADVISOR_METRICS | {"revenue_delta_pct": scores[k]}
        creds += [credential(issuer, subject, now - (i + 2) * DAY, now - DAY, metrics)
                  for i in range(n)]  # fmt: skip
    agg = aggregate(subject, creds, now)
    per_issuer: Counter[str] = Counter()
    for p in agg.parts:
        per_issuer[p.issuer] += p.weight
    one = weigh(creds[0], now, set()).weight  # every credential here weighs the same alone
    assert all(w == pytest.approx(one) for w in per_issuer.values())
    own = [reputation.score(c.credentialSubject) for c in creds]
    assert min(own) - 1e-9 <= agg.score <= max(own) + 1e-9


@pytest.mark.anyio
async def test_a_provider_restored_from_a_backup_keeps_its_lease(
    tmp_path: Path, relay_url: str
) -> None:
    """A provider whose store came back from a backup (or was set up again with its key) counts
    its beats from 0 again; the client ignored every beat whose `seq` it had seen (INSERT OR
    IGNORE), so the lease ended as 'missed' while the provider beat on time."""
    now = int(time.time())
    clock, lsp_clock = ManualClock(now), ManualClock(now)
    async with (
        agent(tmp_path / "client", [relay_url], clock=clock) as client,
        agent(tmp_path / "lsp", [relay_url], clock=lsp_clock) as lsp,
    ):
        signed = await signed_contract(client, lsp, now)
        await lsp.beat(signed.id, 0)
        await eventually(lambda: repo.last_heartbeat(client.agent.store, signed.id) == now)
        for c in (clock, lsp_clock):
            c.advance(600)
        await lsp.beat(signed.id, 0)  # restored: seq 0 again, on time
        await eventually(lambda: repo.last_heartbeat(client.agent.store, signed.id) == now + 600)
        clock.advance(1500)
        assert client.check_heartbeats() == []


@pytest.mark.anyio
async def test_a_contract_another_process_stores_is_watched_without_a_read_per_batch(
    tmp_path: Path, relay_url: str
) -> None:
    """The heartbeat subscription follows the contracts: a read of them after an inbound batch
    only when this process stored one or another process (the CLI) committed to the store."""
    async with agent(tmp_path / "client", [relay_url]) as client:
        client.heartbeats_changed()  # (whatever the first look found)
        assert client.heartbeats_changed() is None  # nothing moved: not read again
        other = Store(client.agent.store.path)  # another process's connection
        with other.transaction(int(time.time())) as tx:
            tx.execute(
                "INSERT INTO contracts (id, contract, counterparty, role, state, created_at)"
                " VALUES (?, '{}', ?, 'client', 'active', 1)",
                ("c1" * 32, "ab" * 32),
            )
        changed = client.heartbeats_changed()
        assert changed is not None and changed.filters[0]["#d"] == ["c1" * 32]
        assert client.heartbeats_changed() is None
