"""Inbound marketplace events: public RFPs, heartbeats, credentials and deletions; private
bids, contract offers and acceptances (rumors inside gift wraps)."""

from __future__ import annotations

import nostr_sdk as sdk

from agent.clock import Clock
from agent.inbound import Handler, RumorHandler
from agent.market import heartbeats
from agent.store import Tx
from agent.store import market as repo
from events import bid, contract, heartbeat, reputation, rfp
from events.base import NostrEvent, tag_values
from events.errors import (
    FromFuture,
    InvalidPayload,
    NotFound,
    RateLimited,
    Replayed,
    Unauthorized,
)
from events.kinds import Kind
from events.nip59 import Unwrapped


def public_handlers(clock: Clock) -> dict[int, Handler]:
    def on_rfp(ev: NostrEvent, tx: Tx) -> None:
        item = rfp.parse(ev, now=clock.now()).payload
        repo.save_rfp(
            tx, rfp.address(ev.pubkey, item.rfp_id), ev.pubkey, item, ev.id, ev.created_at
        )

    def on_heartbeat(ev: NostrEvent, tx: Tx) -> None:
        now = clock.now()
        beat = heartbeat.parse(ev, now=now).payload
        party = repo.contract_party(tx, beat.contract)
        if party is None:
            return  # someone else's contract: not our business, not an error
        counterparty, role, interval = party
        if role != "client" or counterparty != ev.pubkey:
            raise Unauthorized("only the provider of a contract can beat for it")
        if beat.sent_at > now + heartbeats.FUTURE_TOLERANCE_S:
            raise FromFuture("a heartbeat dated ahead of our clock keeps no lease alive")
        if heartbeats.too_soon(repo.last_heartbeat_received(tx, beat.contract), interval, now):
            raise RateLimited("heartbeats closer than half an interval are refused")
        repo.save_heartbeat(tx, beat.contract, ev.pubkey, beat.seq, min(beat.sent_at, now))

    def on_credential(ev: NostrEvent, tx: Tx) -> None:
        cred = reputation.parse(ev, now=clock.now()).payload
        repo.save_credential(
            tx, reputation.address(ev.pubkey, cred.credential_id), cred, ev.to_json()
        )

    def on_deletion(ev: NostrEvent, tx: Tx) -> None:
        for address in tag_values(ev.tags, "a"):
            if address.startswith(f"{Kind.REPUTATION}:"):
                repo.revoke_credential(tx, address, ev.pubkey)

    return {
        Kind.RFP: on_rfp,
        Kind.HEARTBEAT: on_heartbeat,
        Kind.REPUTATION: on_credential,
        Kind.DELETION: on_deletion,
    }


def rumor_handlers(keys: sdk.Keys, clock: Clock) -> dict[int, RumorHandler]:
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
        repo.save_offer(tx, offer, opened.sender, opened.sender, "in")

    def on_accept(opened: Unwrapped, tx: Tx) -> None:
        accept = contract.ACCEPT.parse(opened.rumor, now=clock.now()).payload
        sent = repo.our_offer_json(tx, accept.terms_hash)
        if sent is None:
            raise NotFound("no offer of ours has these terms")
        offer = contract.Offer.model_validate_json(sent)
        signed = contract.assemble(offer, me, accept, opened.sender)
        repo.save_contract(tx, signed, me)

    return {Kind.BID: on_bid, Kind.CONTRACT_OFFER: on_offer, Kind.CONTRACT_ACCEPT: on_accept}
