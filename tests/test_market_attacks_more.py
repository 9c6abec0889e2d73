"""More of the marketplace attacked on real relays and stores: text that forges lines of a view,
floods from fresh keys bounded in the store, same-second replacement races, notes by the
gigabyte, and contracts beaten after their term."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import nostr_sdk as sdk
import pytest

from agent import app
from agent import handlers as agent_handlers
from agent.cli import dealviews
from agent.clock import ManualClock
from agent.market import handlers
from agent.market.discovery import collect_listings, newer
from agent.nostr.client import RelayClient
from agent.settings import RelayEntry, RelaysConfig, Settings
from agent.store import Store
from agent.store import market as repo
from events import bid, contract, listing, nip19, nip59, rfp
from events.errors import Restricted
from events.rfp import Rfp
from tests.test_crash import hive, new_agent
from tests.test_hostile import publish
from tests.test_market_attacks import credential, errors, signed_contract
from tests.test_market_flow import DAY, FAST, advert, agent, eventually

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
    assert "Trusted desk" not in shown.stdout.replace(lines[1], "")  # only inside that row


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
async def test_trials_offered_in_parallel_count_against_the_limit(
    tmp_path: Path, relay_url: str
) -> None:
    """'At most two trials at once' counted only accepted ones: a client offering trials to
    the same provider three times before any was accepted ended up with three running.  Trials
    offered and not yet accepted now count as running."""
    now = int(time.time())
    async with (
        agent(tmp_path / "client", [relay_url]) as client,
        agent(tmp_path / "p", [relay_url]) as provider,
    ):

        def trial_terms(to: str) -> contract.ContractTerms:
            return contract.ContractTerms(
                service="advisor", client=listing.did(client.me), provider=listing.did(to),
                price_sat=1, pricing_model="per-action", frequency="action", starts_at=now,
                duration_days=14, trial={"days": 7, "price_sat": 500},
                nonce=secrets.token_hex(32),
            )  # fmt: skip

        first, second = trial_terms(provider.me), trial_terms(provider.me)
        await client.offer(first)
        await client.offer(second)
        with pytest.raises(Restricted, match="at most 2"):
            await client.offer(trial_terms(provider.me))
        with pytest.raises(Restricted):
            await client.offer(trial_terms(sdk.Keys.generate().public_key().to_hex()))
        await eventually(lambda: len(repo.offers(provider.agent.store)) == 2)
        await provider.accept(first.hash)
        await provider.accept(second.hash)
        await eventually(lambda: len(repo.contracts(client.agent.store)) == 2)
        assert len(repo.trials(client.agent.store, client.me)) == 2


@pytest.mark.anyio
async def test_a_flood_of_fresh_rfps_cannot_hide_an_honest_one(tmp_path: Path, relays) -> None:
    """`rfp list` read one page: 600 RFPs from fresh keys, newer than an honest one, pushed it
    out of the relay's answer (500 here).  It now reads every page (into the store, within its
    limits)."""
    url = relays().start()
    now = int(time.time())
    junk = [rfp.build(sdk.Keys.generate(), an_rfp("junk", now), created_at=now - i % 5)
            for i in range(600)]  # fmt: skip
    async with agent(tmp_path / "op", [url], clock=ManualClock(now - 60)) as op:
        await op.post_rfp(an_rfp("honest", now - 60))
    async with RelayClient([url]) as client:
        for event in junk:
            await client.publish(event)
    async with agent(tmp_path / "adv", [url]) as adv:
        listed = await adv.list_rfps()
    assert rfp.address(op.me, "honest") in [r["address"] for r in listed]


def test_someone_elses_naddr_does_not_withdraw_our_listing(tmp_path: Path, relays) -> None:
    """`market withdraw` took any address and kept only its `d`: pasting a stranger's
    `naddr1…` whose `d` is the id of one of ours ("please withdraw your duplicate listing,
    here it is") withdrew ours.  An address that is not ours is now INVALID_PARAMS."""
    url = relays().start()
    home = tmp_path / "seller"
    me = new_agent(home)
    listing_args = [
        "--service", "advisor", "--title", "Fees", "--summary", "fee policy", "--price", "1000",
        "--frequency", "month", "--pricing-model", "subscription", "--primary", "fee-policy",
    ]  # fmt: skip
    published = hive(home, "market", "publish", "--id", "fees", *listing_args, "--relay", url)
    assert published.returncode == 0, published.stderr
    stranger = sdk.Keys.generate().public_key().to_hex()
    theirs = nip19.naddr(f"30402:{stranger}:fees")
    refused = hive(home, "market", "withdraw", theirs, "--relay", url)
    assert refused.returncode == 65 and "is not one of our listings" in refused.stderr
    mine = repo.my_listings(Store(home / "agent.sqlite"))["fees"]
    assert mine.status == "active"
    ours = nip19.naddr(f"30402:{me}:fees")
    assert hive(home, "market", "withdraw", ours, "--relay", url).returncode == 0
    assert repo.my_listings(Store(home / "agent.sqlite"))["fees"].status == "sold"
