"""Inbound marketplace events: public RFPs, heartbeats, credentials and deletions; private
bids, contract offers and acceptances (rumors inside gift wraps).

What strangers can make us store is bounded, in the store (fresh keys are free, so a per-key
limit alone bounds nothing): open RFPs (5 per author, 1,000 in all; strangers' RFPs past their
award date are dropped), sealed bids (100 per RFP), and received within the last 30 days (so a
flood, or a patient counterparty, never shuts the door for good): open offers to us (10 per
sender, 1,000 in all) and credentials about us (16 per issuer, 2,000 in all).  Past a limit:
RATE_LIMITED.
"""

from __future__ import annotations

from collections.abc import Callable

import nostr_sdk as sdk

from agent.clock import Clock
from agent.inbound import Handler, RumorHandler
from agent.market import heartbeats
from agent.store import Tx
from agent.store import market as repo
from events import bid, contract, heartbeat, reputation, rfp
from events.base import FUTURE_TOLERANCE_S, NostrEvent, tag_values
from events.errors import (
    Expired,
    FromFuture,
    InvalidPayload,
    NotFound,
    RateLimited,
    Replayed,
    Unauthorized,
)
from events.kinds import Kind
from events.nip59 import Unwrapped

MAX_RFPS_PER_AUTHOR = 5
MAX_RFPS = 1000
MAX_OFFERS_PER_SENDER = 10
MAX_OFFERS = 1000
MAX_BIDS_PER_RFP = 100
MAX_CREDENTIALS_PER_ISSUER = 16
MAX_CREDENTIALS = 2000
WINDOW_S = 30 * 86400  # offers and credentials count against the limits for 30 days


def limit(count: int, most: int, what: str) -> None:
    if count >= most:
        raise RateLimited(f"{what}: at most {most:,}")


def check_rfp_dates(item: rfp.Rfp, now: int) -> None:
    """EXPIRED past its award date; FROM_FUTURE if it claims to be posted ahead of our clock
    (its windows run from `posted_at`: one dated years ahead stayed open, holding a place in
    the store and in `rfp list`, for years)."""
    if item.award_by <= now:
        raise Expired("the RFP's award date has passed")
    if item.posted_at > now + FUTURE_TOLERANCE_S:
        raise FromFuture("the RFP says it is posted ahead of our clock")


def room_for_rfp(tx: Tx, author: str, address: str, me: str, now: int) -> None:
    """RATE_LIMITED unless another's new RFP fits (strangers' closed RFPs pruned first)."""
    repo.prune_rfps(tx, now, keep=me)
    if author != me and repo.rfp_json(tx, address) is None:
        limit(repo.open_rfps(tx, now, author), MAX_RFPS_PER_AUTHOR, "open RFPs per author")
        limit(repo.open_rfps(tx, now), MAX_RFPS, "open RFPs")  # (ours too)


def room_for_credential(
    tx: Tx, cred: reputation.ReputationCredential, issuer: str, address: str, me: str
) -> None:
    """Unauthorized unless it is about us or our own (what we subscribe to: the node's
    approvals weigh every stored credential about an advisor, so a stranger's is never kept);
    RATE_LIMITED past the limits."""
    if cred.credentialSubject.id != f"did:nostr:{me}" and issuer != me:
        raise Unauthorized("we keep credentials about us, and our own")
    if issuer != me and repo.credential_subject(tx, address) is None:
        since = tx.now - WINDOW_S
        counted = repo.credentials_held(tx, me, issuer, since)
        limit(counted, MAX_CREDENTIALS_PER_ISSUER, "credentials in 30 days per issuer")
        limit(repo.credentials_held(tx, me, None, since), MAX_CREDENTIALS, "credentials in 30 days")


def room_for_offer(tx: Tx, sender: str, terms_hash: str) -> None:
    if repo.offer(tx, terms_hash) is None:
        since = tx.now - WINDOW_S
        counted = repo.open_offers_to_us(tx, sender, since)
        limit(counted, MAX_OFFERS_PER_SENDER, "open offers in 30 days per sender")
        limit(repo.open_offers_to_us(tx, None, since), MAX_OFFERS, "open offers in 30 days")


def room_for_bid(tx: Tx, rfp_address: str, bidder: str) -> None:
    if repo.bid_commitment(tx, rfp_address, bidder) is None:
        limit(repo.count_bids(tx, rfp_address), MAX_BIDS_PER_RFP, "sealed bids per RFP")


def public_handlers(clock: Clock, me: str) -> dict[int, Handler]:
    def on_rfp(ev: NostrEvent, tx: Tx) -> None:
        now = clock.now()
        item = rfp.parse(ev, now=now).payload
        check_rfp_dates(item, now)
        address = rfp.address(ev.pubkey, item.rfp_id)
        room_for_rfp(tx, ev.pubkey, address, me, now)
        repo.save_rfp(tx, address, ev.pubkey, item, ev.id, ev.created_at)

    def on_heartbeat(ev: NostrEvent, tx: Tx) -> None:
        now = clock.now()
        beat = heartbeat.parse(ev, now=now).payload
        party = repo.contract_party(tx, beat.contract)
        if party is None:
            return  # someone else's contract: not our business, not an error
        counterparty, role, interval = party
        if role != "client" or counterparty != ev.pubkey:
            raise Unauthorized("only the provider of a contract can beat for it")
        if beat.sent_at > now + FUTURE_TOLERANCE_S:
            raise FromFuture("a heartbeat dated ahead of our clock keeps no lease alive")
        if heartbeats.too_soon(repo.last_heartbeat_received(tx, beat.contract), interval, now):
            raise RateLimited("heartbeats closer than half an interval are refused")
        repo.save_heartbeat(tx, beat.contract, ev.pubkey, beat.seq, min(beat.sent_at, now))

    def on_credential(ev: NostrEvent, tx: Tx) -> None:
        cred = reputation.parse(ev, now=clock.now()).payload
        address = reputation.address(ev.pubkey, cred.credential_id)
        room_for_credential(tx, cred, ev.pubkey, address, me)
        repo.save_credential(tx, address, cred, ev.to_json())

    def on_deletion(ev: NostrEvent, tx: Tx) -> None:
        for address in tag_values(ev.tags, "a"):
            if address.startswith(f"{Kind.REPUTATION}:"):
                repo.revoke_credential(tx, address, ev.pubkey, ev.created_at)

    return {
        Kind.RFP: on_rfp,
        Kind.HEARTBEAT: on_heartbeat,
        Kind.REPUTATION: on_credential,
        Kind.DELETION: on_deletion,
    }


def rumor_handlers(
    keys: sdk.Keys, clock: Clock, on_contract: Callable[[], None] = lambda: None
) -> dict[int, RumorHandler]:
    """The gift-wrapped market messages; `on_contract` is called once a contract they stored
    is committed."""
    me = keys.public_key().to_hex()

    def on_bid(opened: Unwrapped, tx: Tx) -> None:
        item = bid.parse(opened.rumor, now=clock.now()).payload
        if item.rfp.split(":")[1] != me:
            raise Unauthorized("bids go to the author of the RFP")
        stored_rfp = repo.rfp_json(tx, item.rfp)
        if stored_rfp is None:
            raise NotFound("no such RFP of ours")
        deadline = rfp.FAMILY.load(stored_rfp).bid_deadline
        bid.check_phase(item, deadline, clock.now())
        if item.phase == bid.Phase.COMMIT:
            room_for_bid(tx, item.rfp, opened.sender)
            if not repo.save_bid_commitment(tx, item.rfp, opened.sender, item.commitment):
                raise Replayed("this bidder already sealed a bid for this RFP")
            return
        sealed = repo.bid_commitment(tx, item.rfp, opened.sender)
        if sealed is None or sealed != item.commitment:
            raise InvalidPayload("this reveal does not open the bid that was sealed")
        assert item.terms is not None
        repo.reveal_bid(tx, item.rfp, opened.sender, item.terms)

    def on_offer(opened: Unwrapped, tx: Tx) -> None:
        offer = contract.OFFER.parse(opened.rumor, now=clock.now()).payload
        contract.check_offer(offer, opened.sender)
        parties = {contract.pubkey_of(offer.terms.client), contract.pubkey_of(offer.terms.provider)}
        if me not in parties:
            raise Unauthorized("this offer names other parties")
        room_for_offer(tx, opened.sender, offer.terms.hash)
        repo.save_offer(tx, offer, opened.sender, opened.sender, "in")

    def on_accept(opened: Unwrapped, tx: Tx) -> None:
        accept = contract.ACCEPT.parse(opened.rumor, now=clock.now()).payload
        sent = repo.our_offer_json(tx, accept.terms_hash)
        if sent is None:
            raise NotFound("no offer of ours has these terms")
        offer = contract.Offer.model_validate_json(sent)
        signed = contract.assemble(offer, me, accept, opened.sender)
        if repo.save_contract(tx, signed, me):
            tx.on_commit(on_contract)

    return {Kind.BID: on_bid, Kind.CONTRACT_OFFER: on_offer, Kind.CONTRACT_ACCEPT: on_accept}
