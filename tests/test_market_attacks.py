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

from agent import app
from agent import handlers as agent_handlers
from agent.cli import dealviews
from agent.clock import ManualClock
from agent.market import handlers
from agent.market.discovery import collect_listings, newer
from agent.market.ranking import Need, comparable_price, components, matches
from agent.market.reputation import aggregate, weigh
from agent.market.service import Market
from agent.nostr.client import RelayClient
from agent.settings import RelayEntry, RelaysConfig, Settings
from agent.store import Store
from agent.store import market as repo
from events import bid, contract, heartbeat, listing, nip59, reputation, rfp
from events.base import sign_event
from events.errors import InvalidPayload, InvalidTag, Unauthorized
from events.kinds import Kind
from events.listing import Frequency, PricingModel, ServiceType
from events.rfp import Rfp
from tests.test_crash import hive, new_agent
from tests.test_hostile import publish
from tests.test_market_flow import DAY, FAST, advert, agent, eventually


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


# --- text views -------------------------------------------------------------------------------


def test_a_strangers_title_cannot_forge_rows_of_market_browse(tmp_path: Path, relays) -> None:
    """A title is one cell of the `market browse` table; with a newline in it a stranger wrote
    whole rows of its own (a 'senior' provider ranked first).  Newlines in a stranger's words
    are shown escaped in tables: its one listing stays one row."""
    url = relays().start()
    buyer = tmp_path / "buyer"
    new_agent(buyer)
    cap = f"cap{secrets.token_hex(3)}"
    now = int(time.time())
    forged_row = "\n 1  1.000  1/month  100 senior  Trusted desk  0123456789ab…"
    item = advert("x", now, primary=cap, secondary=[], title=f"Cheap{forged_row}")
    publish(url, listing.build(sdk.Keys.generate(), item, created_at=now))
    shown = hive(buyer, "market", "browse", "--relay", url, "--need", cap)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert len(lines) == 2 and "Cheap\\x0a 1  1.000" in lines[1]
    assert "Trusted desk" not in "".join(lines[:1])


def test_a_senders_newline_cannot_forge_rows_of_notes(tmp_path: Path, relays) -> None:
    url = relays().start()
    a, b = tmp_path / "a", tmp_path / "b"
    new_agent(a)
    b_pub = new_agent(b)
    forged = "hi\n2026-12-04T12:00:00+00:00  " + "f" * 16 + "…  approve 7f3a"
    assert hive(a, "note", "send", b_pub, forged, "--relay", url).returncode == 0
    assert hive(b, "run", "--relay", url, "--seconds", "2").returncode == 0
    lines = hive(b, "notes").stdout.splitlines()
    assert len(lines) == 2 and lines[1].endswith("hi\\x0a2026-12-04T12:00:00+00:00  " + "f" * 16
                                                 + "…  approve 7f3a")  # fmt: skip


def test_an_offerers_listing_field_cannot_forge_lines_of_contract_show() -> None:
    """`listing` is free text in an offer's terms (from the offerer): `contract show` printed
    it raw, so 'x\\nstate     active' forged a line of the view."""
    terms = {
        "service": "liquidity", "client": "did:nostr:" + "a" * 64,
        "provider": "did:nostr:" + "b" * 64, "price_sat": 1, "frequency": "hour",
        "pricing_model": "flat", "starts_at": 1, "duration_days": 1, "trial": None,
        "schemas": [], "capacity_sat": None, "heartbeat_interval_s": 600,
        "listing": "x\nstate     active (verified)",
    }  # fmt: skip
    shown = dealviews.contract_one(
        {"id": "c" * 64, "role": "client", "state": "ended", "created_at": 1,
         "contract": {"terms": terms}}
    )  # fmt: skip
    assert "\nstate     active" not in shown and "x\\x0astate" in shown


# --- floods from fresh keys -------------------------------------------------------------------


def an_rfp(rfp_id: str, now: int, **kw) -> Rfp:
    return Rfp(**{"rfp_id": rfp_id, "service": "advisor", "need": "fee-policy",
                  "max_price_sat": 1000, "duration_days": 30, "posted_at": now,
                  "bid_deadline": now + 3600, "award_by": now + DAY, **kw})  # fmt: skip


@pytest.mark.anyio
async def test_rfps_from_strangers_are_bounded_in_the_store(tmp_path: Path, relays) -> None:
    """Every RFP any key posted was stored for good (and listed by `rfp list`): a stranger
    posting thousands, or thousands of fresh keys one each, grew the store without end.
    Now 5 open RFPs per author, 1,000 in all; an RFP past its award date is refused
    (EXPIRED: one without a NIP-40 tag was stored anyway) and strangers' are pruned; one
    'posted' years ahead (open for years) is refused FROM_FUTURE."""
    relay_url = relays().start()  # a relay of its own: counts from other tests stay out
    now = int(time.time())
    stranger = sdk.Keys.generate()
    posts = [rfp.build(stranger, an_rfp(f"r{i}", now), created_at=now) for i in range(8)]
    stale = an_rfp("stale", now - 3 * DAY, bid_deadline=now - 2 * DAY, award_by=now - DAY)
    posts.append(rfp.build(stranger, stale, created_at=now))  # no expiration tag
    ahead = an_rfp("ahead", now + 5 * 365 * DAY)  # open for five years, had it been stored
    posts.append(rfp.build(sdk.Keys.generate(), ahead, created_at=now))
    async with agent(tmp_path / "op", [relay_url]) as op:
        await eventually(lambda: op.agent.store.kv("never") is None)
        for event in posts:
            await op.agent.publish(event)
        await eventually(lambda: errors(op).get("RATE_LIMITED", 0) == 3)
        await eventually(lambda: errors(op).get("EXPIRED", 0) == 1)
        await eventually(lambda: errors(op).get("FROM_FUTURE", 0) == 1)
        assert repo.open_rfps(op.agent.store, now, stranger.public_key().to_hex()) == 5
        many = [rfp.build(sdk.Keys.generate(), an_rfp("one", now), created_at=now)
                for _ in range(handlers.MAX_RFPS)]  # fmt: skip
        async with RelayClient([relay_url]) as client:
            for event in many:
                await client.publish(event)
        await eventually(lambda: errors(op).get("RATE_LIMITED", 0) == 8, timeout=60)
        assert repo.open_rfps(op.agent.store, now) == handlers.MAX_RFPS
        assert repo.count_rfps(op.agent.store) == handlers.MAX_RFPS


@pytest.mark.anyio
async def test_offers_and_credentials_from_one_stranger_are_bounded(tmp_path: Path, relays) -> None:
    """One key could store any number of open offers to us (gift-wrapped, a fresh nonce each)
    and of credentials about us (a period each).  Now 10 open offers per sender and 16
    credentials per issuer within 30 days are kept; the rest are refused RATE_LIMITED — and
    30 days later the sender's next offer is welcome again (the door never shuts for good)."""
    relay_url = relays().start()  # a relay of its own: counts from other tests stay out
    now = int(time.time())
    clock = ManualClock(now)

    def an_offer() -> contract.ContractTerms:
        return contract.ContractTerms(
            service="advisor", client=listing.did(stranger.me), provider=listing.did(me.me),
            price_sat=1, pricing_model="per-action", frequency="action", starts_at=now,
            duration_days=30, nonce=secrets.token_hex(32),
        )  # fmt: skip

    async with (
        agent(tmp_path / "me", [relay_url], clock=clock) as me,
        agent(tmp_path / "x", [relay_url]) as stranger,
    ):
        for _ in range(handlers.MAX_OFFERS_PER_SENDER + 2):
            await stranger.offer(an_offer())
        for i in range(handlers.MAX_CREDENTIALS_PER_ISSUER + 3):
            end = now - i * DAY
            await stranger.issue_credential(credential(stranger.me, me.me, end - DAY, end))
        await eventually(lambda: errors(me).get("RATE_LIMITED", 0) >= 5, timeout=30)
        assert errors(me)["RATE_LIMITED"] == 5
        assert repo.open_offers_to_us(me.agent.store) == handlers.MAX_OFFERS_PER_SENDER
        held = repo.credentials_held(me.agent.store, me.me)
        assert held == handlers.MAX_CREDENTIALS_PER_ISSUER
        clock.advance(handlers.WINDOW_S + 1)
        await stranger.offer(an_offer())
        await eventually(
            lambda: repo.open_offers_to_us(me.agent.store) == handlers.MAX_OFFERS_PER_SENDER + 1
        )


@pytest.mark.anyio
async def test_sealed_bids_from_fresh_keys_are_bounded(tmp_path: Path, relays) -> None:
    """Each fresh key may seal one bid per RFP, and keys are free: an RFP's bids grew without
    end.  Now 100 per RFP; the next are refused RATE_LIMITED."""
    relay_url = relays().start()  # a relay of its own: counts from other tests stay out
    now = int(time.time())
    async with agent(tmp_path / "op", [relay_url]) as op:
        wanted = an_rfp("bids", now)
        await op.post_rfp(wanted)
        address = rfp.address(op.me, wanted.rfp_id)
        wraps = []
        for _ in range(handlers.MAX_BIDS_PER_RFP + 3):
            keys = sdk.Keys.generate()
            sealed = bid.Bid(rfp=address, phase="commit", commitment=secrets.token_hex(32))
            rumor = bid.rumor(keys.public_key().to_hex(), sealed, created_at=now)
            wraps.append(nip59.wrap(keys, op.me, rumor, now=now))
        async with RelayClient([relay_url]) as client:
            for gift in wraps:
                await client.publish(gift)
        await eventually(lambda: errors(op).get("RATE_LIMITED", 0) >= 3, timeout=60)
        assert errors(op)["RATE_LIMITED"] == 3
        assert repo.count_bids(op.agent.store, address) == handlers.MAX_BIDS_PER_RFP


def test_two_versions_in_one_second_resolve_as_relays_do(tmp_path: Path) -> None:
    """NIP-01: of two versions of an address made in the same second, relays keep the lowest
    id; discovery kept the highest, a version no relay holds any more."""
    now = 1_800_000_000
    keys = sdk.Keys.generate()
    a = listing.build(keys, advert("same", now, price_sat=1), created_at=now)
    b = listing.build(keys, advert("same", now, price_sat=2), created_at=now)
    low, high = sorted([a, b], key=lambda e: e.id)
    for order in ([low, high], [high, low]):
        [found] = collect_listings([e.to_json() for e in order], now)
        assert found.event_id == low.id
    assert newer(now + 1, "f" * 64, now, "0" * 64) and not newer(now, "1" * 64, now, "0" * 64)
    store = Store(tmp_path / "s.sqlite")
    item = an_rfp("same", now)
    addr = rfp.address(keys.public_key().to_hex(), "same")
    for first, second in (("b" * 64, "a" * 64), ("a" * 64, "b" * 64)):
        with store.transaction(now) as tx:
            tx.execute("DELETE FROM rfps")
            repo.save_rfp(tx, addr, addr.split(":")[1], item, first, now)
            repo.save_rfp(tx, addr, addr.split(":")[1], item, second, now)
        assert repo.rfps(store)[0]["address"] == addr
        [row] = store.conn.execute("SELECT event_id FROM rfps").fetchall()
        assert row[0] == "a" * 64


@pytest.mark.anyio
async def test_notes_from_one_sender_are_bounded_per_day(tmp_path: Path, relays) -> None:
    """Every note (up to 28 KiB each) any key sent was stored: under the strangers' budget
    (60 a minute each, 300 in all) that is gigabytes a day, all listed by `notes`.  Now 100 a
    day per sender and 1,000 a day in all are kept; the rest are refused RATE_LIMITED."""
    url = relays().start()
    clock = ManualClock(int(time.time()))
    settings = Settings(home=tmp_path / "me", per_stranger_per_minute=1000)
    config = RelaysConfig(relays=[RelayEntry(url=url)], **FAST)
    me = app.standalone(settings, sdk.Keys.generate(), config, clock=clock)
    async with me.agent, agent(tmp_path / "x", [url]) as stranger:
        for i in range(103):  # 100 a day is the limit (agent.handlers)
            await stranger.agent.send_note(me.market.me, f"note {i}", wait=False)
        await stranger.agent.flush()
        store = me.agent.store
        await eventually(lambda: store.error_counts().get("RATE_LIMITED", 0) >= 3, timeout=30)
        assert len(store.notes()) == agent_handlers.NOTES_PER_SENDER_PER_DAY == 100
        clock.advance(86400 + 1)  # a day later the sender may write again
        await stranger.agent.send_note(me.market.me, "tomorrow")
        await eventually(lambda: store.notes()[-1]["text"] == "tomorrow")


@pytest.mark.anyio
async def test_a_contract_whose_term_is_over_is_beaten_no_more(
    tmp_path: Path, relay_url: str
) -> None:
    """Contracts never ended at the end of their term: a provider beat for every contract it
    ever signed, every interval, for ever (a client's 1-day contracts with 60 s beats became
    1,440 public events a day each, until relays refuse the provider's key, and its live
    leases' beats with it), and a client ended a lease that had simply run out as 'missed'.
    Both now end it: 'the term is over'."""
    now = int(time.time())
    clock, lsp_clock = ManualClock(now), ManualClock(now)
    async with (
        agent(tmp_path / "client", [relay_url], clock=clock) as client,
        agent(tmp_path / "lsp", [relay_url], clock=lsp_clock) as lsp,
    ):
        signed = await signed_contract(client, lsp, now, duration_days=1, heartbeat_interval_s=60)
        assert await lsp.beat_due() == [signed.id]
        lsp_clock.advance(DAY)
        clock.advance(DAY)
        assert await lsp.beat_due() == []
        assert client.check_heartbeats() == []
        for side in (client, lsp):
            [row] = repo.contracts(side.agent.store)
            assert (row["state"], row["state_reason"]) == ("ended", "the term is over")


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
