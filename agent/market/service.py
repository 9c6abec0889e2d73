"""The marketplace, as an agent does it: publish and browse listings, post RFPs and bid,
offer and accept contracts, send and check heartbeats, issue and weigh reputation.

A component: it handles the public marketplace kinds and the private bids/offers/acceptances,
subscribes to RFPs and to reputation about us, and to the heartbeats of our active contracts
(re-subscribed when that set changes)."""

from __future__ import annotations

import secrets
from collections import Counter
from typing import Any

import anyio

from agent import __version__
from agent.component import Messaging, Wiring
from agent.market import heartbeats, paging, summaries, trials
from agent.market.discovery import Ranked, collect_credentials, collect_listings, rank
from agent.market.handlers import public_handlers, rumor_handlers
from agent.market.ranking import Need, matches
from agent.market.reputation import Aggregate, aggregate
from agent.nostr.pool import Subscription
from agent.store import OutboxItem
from agent.store import market as repo
from events import bid, contract, handler_info, heartbeat, listing, reputation, rfp
from events.base import NostrEvent
from events.contract import Accept, Contract, ContractTerms, Offer
from events.errors import Expired, InvalidParams, NotFound
from events.kinds import Kind
from events.listing import Listing, ListingStatus, ServiceType

REFRESH_BEFORE_S = 2 * 86400
DOMAIN_OF = {
    ServiceType.ADVISOR: reputation.Domain.ADVISOR,
    ServiceType.LIQUIDITY: reputation.Domain.NODE,
}


class Market:
    def __init__(self, host: Messaging) -> None:
        self.agent = host
        self.me = host.pubkey
        self.errors: Counter[str] = Counter()
        self._watched: list[str] | None = None  # contracts whose heartbeats we subscribed to
        self._moved = True  # a contract was stored or ended here since the last look
        self._version = -1  # the store's data_version then (another process's commits)

    def wiring(self) -> Wiring:
        return Wiring(
            handlers=public_handlers(self.agent.clock, self.me),
            rumors=rumor_handlers(self.agent.keys, self.agent.clock, self._contracts_moved),
            subscriptions=[
                Subscription(
                    "market",
                    [
                        {"kinds": [Kind.RFP], "#t": ["hive-rfp"]},
                        {"kinds": [Kind.REPUTATION], "#p": [self.me]},
                        {"kinds": [Kind.DELETION], "#k": [str(int(Kind.REPUTATION))]},
                    ],
                )
            ],
            resubscribe=[self.heartbeats_changed],
        )

    def _contracts_moved(self) -> None:
        self._moved = True

    def heartbeats_changed(self) -> Subscription | None:
        """The heartbeat subscription, if the set of contracts we watch changed.  Asked after
        every inbound batch and by `maintain`: the contracts are read only when this process
        stored or ended one, or another process (the CLI) committed to the store since."""
        version = self.agent.store.data_version()
        if not self._moved and version == self._version:
            return None
        self._moved, self._version = False, version
        ids = repo.client_contract_ids(self.agent.store)
        if ids == self._watched:
            return None
        self._watched = ids
        return Subscription("heartbeats", [{"kinds": [Kind.HEARTBEAT], "#d": ids}]) if ids else None

    @property
    def now(self) -> int:
        return self.agent.clock.now()

    # --- listings ------------------------------------------------------------------------

    async def publish(self, item: Listing, *, wait: bool = True) -> NostrEvent:
        """Publish (or update: same `listing_id`) a listing and remember it.  An update keeps
        the NIP-99 `published_at` of the listing's first publication (kept in the store)."""
        now = self.now
        first = repo.my_listings(self.agent.store).get(item.listing_id)
        if first is None:  # the first publication: its event's own time (not the caller's
            item = item.model_copy(update={"published_at": now})  # a second before, maybe)
        elif first.published_at < item.published_at:
            item = item.model_copy(update={"published_at": first.published_at})
        event = listing.build(self.agent.keys, item, created_at=now)
        with self.agent.store.transaction(now) as tx:
            repo.save_my_listing(tx, item, event.id)
        await self.agent.publish(event, wait=wait)
        return event

    def mine(self, listing_id: str) -> Listing:
        item = repo.my_listings(self.agent.store).get(listing_id)
        if item is None:
            raise NotFound(f"no listing {listing_id!r} of ours")
        return item

    async def withdraw(self, listing_id: str) -> NostrEvent:
        """Mark the listing sold (NIP-99) and ask relays to delete it (NIP-09)."""
        item = self.mine(listing_id).model_copy(update={"status": ListingStatus.WITHDRAWN})
        event = await self.publish(item)
        await self.agent.publish(
            listing.deletion(self.agent.keys, listing_id, event.id, created_at=self.now)
        )
        return event

    async def refresh(self) -> list[str]:
        """Re-publish active listings that expire within two days, keeping their lifetime
        (from the last version's `created_at`) and their first `published_at`."""
        refreshed = []
        last = repo.my_listing_times(self.agent.store)
        for item in repo.my_listings(self.agent.store).values():
            if (
                item.status == ListingStatus.ACTIVE
                and item.expires_at - self.now < REFRESH_BEFORE_S
            ):
                lifetime = item.expires_at - last.get(item.listing_id, item.published_at)
                new = item.model_copy(update={"expires_at": self.now + lifetime})
                await self.publish(new)
                refreshed.append(item.listing_id)
        return refreshed

    async def browse(self, need: Need, members: frozenset[str] = frozenset()) -> list[Ranked]:
        """Listings from every read relay, verified, filtered and ranked (best first)."""
        tags = (
            [f"hive-{s.value}" for s in ServiceType]
            if need.service is None
            else [f"hive-{need.service.value}"]
        )
        fetch = self.agent.fetch
        raws = await paging.fetch_pages(fetch, {"kinds": [Kind.CLASSIFIED_LISTING], "#t": tags})
        raws += await paging.fetch_pages(
            fetch, {"kinds": [Kind.DELETION], "#k": [str(int(Kind.CLASSIFIED_LISTING))]}
        )
        found = collect_listings(raws, self.now, self.errors)
        authors = sorted({f.author for f in found if matches(f.listing, need)})
        creds = await self.credentials_about(authors) if authors else {}
        ours = repo.contracts(self.agent.store)  # read once: browse may rank thousands
        avail = {a: self.availability(a, ours) for a in authors}
        return rank(found, need, creds, avail, self.now, members)

    async def credentials_about(
        self, subjects: list[str]
    ) -> dict[str, list[reputation.ReputationCredential]]:
        fetch = self.agent.fetch
        raws = await paging.fetch_about(fetch, {"kinds": [Kind.REPUTATION]}, "p", subjects)
        raws += await paging.fetch_pages(
            fetch, {"kinds": [Kind.DELETION], "#k": [str(int(Kind.REPUTATION))]}
        )
        return collect_credentials(raws, self.now, self.errors)

    def availability(
        self, provider: str, contracts: list[dict[str, Any]] | None = None
    ) -> float | None:
        """Heartbeat uptime of `provider` over 30 days, from our own contracts with it
        (`contracts`: all of ours, when the caller has read them already)."""
        if contracts is None:
            contracts = repo.contracts(self.agent.store)
        rows = [c for c in contracts if c["counterparty"] == provider]
        if not rows:
            return None
        since = self.now - heartbeats.WINDOW_S
        beats = repo.heartbeat_times(self.agent.store, provider, since)
        shares = []
        for row in rows:
            terms = row["contract"].terms
            own = [t for cid, t in beats if cid == row["id"]]
            share = heartbeats.uptime(own, terms.heartbeat_interval_s, terms.starts_at, self.now)
            if share is not None:
                shares.append(share)
        return sum(shares) / len(shares) if shares else None

    # --- RFPs and bids -------------------------------------------------------------------

    async def post_rfp(self, item: rfp.Rfp) -> NostrEvent:
        event = rfp.build(self.agent.keys, item, created_at=self.now, expiration=item.award_by)
        with self.agent.store.transaction(self.now) as tx:
            repo.save_rfp(
                tx, rfp.address(self.me, item.rfp_id), self.me, item, event.id, event.created_at
            )
        await self.agent.publish(event)
        return event

    async def list_rfps(self) -> list[dict[str, Any]]:
        """Open RFPs: every page the relays hold read into the store (within its limits)."""
        filt = {"kinds": [Kind.RFP], "#t": ["hive-rfp"]}
        await paging.fetch_pages(self.agent.fetch_into_store, filt)
        return [r for r in repo.rfps(self.agent.store) if r["rfp"]["award_by"] > self.now]

    async def bid(self, rfp_address: str, terms: bid.BidTerms) -> str:
        """Seal a bid (commitment only) and send it to the RFP's author; returns the commitment."""
        wanted = repo.rfp(self.agent.store, rfp_address)
        if wanted is None:
            raise NotFound("unknown RFP; run `hive-agent rfp list` first")
        if self.now >= wanted.bid_deadline:
            raise Expired("the bid deadline has passed")
        nonce = secrets.token_hex(32)
        commitment = bid.commitment(terms, nonce)
        author = rfp_address.split(":")[1]
        with self.agent.store.transaction(self.now) as tx:
            repo.save_bid_made(tx, rfp_address, author, terms, nonce, commitment)
        sealed = bid.Bid(rfp=rfp_address, phase=bid.Phase.COMMIT, commitment=commitment)
        await self.agent.send_private(author, bid.rumor(self.me, sealed, created_at=self.now))
        return commitment

    async def reveal(self, rfp_address: str) -> OutboxItem:
        made = repo.bid_made(self.agent.store, rfp_address)
        if made is None:
            raise NotFound("we made no bid on this RFP")
        opened = bid.Bid(
            rfp=rfp_address,
            phase=bid.Phase.REVEAL,
            commitment=made["commitment"],
            terms=bid.BidTerms.model_validate_json(made["terms"]),
            nonce=made["nonce"],
        )
        item = await self.agent.send_private(
            made["rfp_author"], bid.rumor(self.me, opened, created_at=self.now)
        )
        with self.agent.store.transaction(self.now) as tx:
            repo.mark_bid_revealed(tx, rfp_address)
        return item

    # --- contracts -----------------------------------------------------------------------

    def _check_trial(self, terms: ContractTerms) -> None:
        """As the client, refuse trials beyond the limits (Restricted) before signing anything;
        trials we offered and nobody accepted yet count (offered in parallel, all could be)."""
        if terms.trial is None or terms.client != listing.did(self.me):
            return
        store, since = self.agent.store, self.now - trials.PENDING_S
        history = repo.trials(store, self.me) + repo.pending_trials(store, self.me, since)
        trials.check_allowed(history, contract.pubkey_of(terms.provider), self.now)

    async def offer(self, terms: ContractTerms) -> Offer:
        """Sign the terms and send them to the other party."""
        if self.me not in (contract.pubkey_of(terms.client), contract.pubkey_of(terms.provider)):
            raise InvalidParams("we must be a party to the contracts we offer")
        self._check_trial(terms)
        signed = Offer(terms=terms, signature=contract.sign_terms(self.agent.keys, terms))
        other = contract.pubkey_of(
            terms.provider if contract.pubkey_of(terms.client) == self.me else terms.client
        )
        with self.agent.store.transaction(self.now) as tx:
            repo.save_offer(tx, signed, self.me, other, "out")
        await self.agent.send_private(
            other, contract.OFFER.rumor(self.me, signed, created_at=self.now)
        )
        return signed

    async def accept(self, terms_hash: str) -> Contract:
        """Countersign an offer we received; both sides end up holding the signed contract."""
        row = repo.offer(self.agent.store, terms_hash)
        if row is None or row["direction"] != "in":
            raise NotFound("no offer to us with these terms")
        offer: Offer = row["offer"]
        self._check_trial(offer.terms)
        acceptance = Accept(
            terms_hash=terms_hash, signature=contract.sign_terms(self.agent.keys, offer.terms)
        )
        signed = contract.assemble(offer, row["offerer"], acceptance, self.me)
        with self.agent.store.transaction(self.now) as tx:
            repo.save_contract(tx, signed, self.me)
        self._moved = True
        await self.agent.send_private(
            row["offerer"], contract.ACCEPT.rumor(self.me, acceptance, created_at=self.now)
        )
        if (changed := self.heartbeats_changed()) is not None:
            await self.agent.subscribe(changed)
        return signed

    # --- heartbeats ----------------------------------------------------------------------

    async def beat(self, contract_id: str, seq: int, uptime_bp: int = 10_000) -> NostrEvent:
        """As the provider, publish a heartbeat for a contract (expires after two intervals)."""
        row = next((c for c in repo.contracts(self.agent.store) if c["id"] == contract_id), None)
        if row is None or row["role"] != "provider":
            raise NotFound("no contract where we are the provider")
        interval = row["contract"].terms.heartbeat_interval_s
        beat = heartbeat.Heartbeat(
            contract=contract_id, seq=seq, sent_at=self.now, uptime_bp=uptime_bp
        )
        event = heartbeat.build(
            self.agent.keys, beat, created_at=self.now, expiration=self.now + 2 * interval
        )
        await self.agent.publish(event)
        return event

    def _term_over(self, row: dict[str, Any]) -> bool:
        """End an active contract whose term is over (True); a provider beating for it forever
        would spam relays until they refuse its key — and its live leases' beats with it."""
        if self.now < row["contract"].terms.ends_at:
            return False
        with self.agent.store.transaction(self.now) as tx:
            repo.set_contract_state(tx, row["id"], "ended", "the term is over")
        self._moved = True
        return True

    async def beat_due(self) -> list[str]:
        """As a provider, send the heartbeat of every active contract whose interval has passed."""
        sent = []
        for row in repo.contracts(self.agent.store, "active"):
            if row["role"] != "provider" or self._term_over(row):
                continue
            interval = row["contract"].terms.heartbeat_interval_s
            last = self.agent.store.kv(f"beat:{row['id']}", {"seq": -1, "at": 0})
            if self.now - last["at"] >= interval:
                await self.beat(row["id"], last["seq"] + 1)
                with self.agent.store.transaction(self.now) as tx:
                    tx.set_kv(f"beat:{row['id']}", {"seq": last["seq"] + 1, "at": self.now})
                sent.append(row["id"])
        return sent

    async def maintain(self, every_s: float = 30.0) -> None:
        """Forever: send due heartbeats, act on missed ones, refresh listings about to expire
        (and, once, our NIP-89 handler event if it changed)."""
        await self.announce_handler()
        while True:
            await self.beat_due()
            self.check_heartbeats()
            if (changed := self.heartbeats_changed()) is not None:  # (no inbound batch lately)
                await self.agent.subscribe(changed)
            await self.refresh()
            await anyio.sleep(every_s)

    def check_heartbeats(self) -> list[tuple[str, str]]:
        """As the client: end leases and flag advisors after three missed beats in a row."""
        actions = []
        for row in repo.contracts(self.agent.store, "active"):
            if row["role"] != "client" or self._term_over(row):
                continue
            terms = row["contract"].terms
            last = repo.last_heartbeat(self.agent.store, row["id"]) or terms.starts_at
            if heartbeats.verdict(last, terms.heartbeat_interval_s, self.now):
                state = "ended" if terms.service == ServiceType.LIQUIDITY else "flagged"
                missed = heartbeats.missed(last, terms.heartbeat_interval_s, self.now)
                with self.agent.store.transaction(self.now) as tx:
                    repo.set_contract_state(
                        tx, row["id"], state, f"{missed} heartbeats missed in a row"
                    )
                self._moved = True
                actions.append((row["id"], state))
        return actions

    # --- reputation ----------------------------------------------------------------------

    async def issue_credential(self, cred: reputation.ReputationCredential) -> NostrEvent:
        """Publish a credential, its NIP-32 label and our NIP-85 rank of its subject."""
        keys, now = self.agent.keys, self.now
        event = reputation.build(keys, cred, created_at=now)
        tag = summaries.label_event(keys, cred, event.id, created_at=now)
        address = reputation.address(self.me, cred.credential_id)
        with self.agent.store.transaction(now) as tx:  # remembered: we may revoke it
            repo.save_credential(tx, address, cred, event.to_json())
            tx.set_kv(f"label:{address}", tag.id)
        subject = cred.credentialSubject.id.removeprefix("did:nostr:")
        rank = summaries.rank_event(keys, self.agent.store, subject, now=now)
        await self.agent.publish(event)
        await self.agent.publish(tag)
        if rank is not None:
            await self._publish_rank(rank)
        return event

    async def _publish_rank(self, rank: NostrEvent) -> None:
        with self.agent.store.transaction(self.now) as tx:
            tx.set_kv(summaries.rank_key(rank.tags[0][1]), rank.created_at)
        await self.agent.publish(rank)

    async def revoke_credential(self, credential_id: str) -> NostrEvent:
        """NIP-09 deletion of one of our credentials; aggregators drop it.

        Raises NotFound unless we issued it (remembered, or found on our relays): a deletion
        of nothing would only confuse whoever reads it."""
        from events.base import sign_event

        address = reputation.address(self.me, credential_id)
        if not self._issued(address):
            await self.agent.fetch_into_store(
                [{"kinds": [Kind.REPUTATION], "authors": [self.me], "#d": [credential_id]}]
            )
            if not self._issued(address):
                raise NotFound(f"we issued no reputation credential {credential_id[:80]!r}")
        store, keys = self.agent.store, self.agent.keys
        subject = repo.credential_subject(store, address)
        with store.transaction(self.now) as tx:
            repo.revoke_credential(tx, address, self.me, self.now)
        rank = summaries.rank_event(keys, store, subject, now=self.now) if subject else None
        tags = summaries.withdrawal_tags(
            self.me, address, store.kv(f"label:{address}"), subject, rank_left=rank is not None
        )
        event = sign_event(keys, Kind.DELETION, "revoked", tags, self.now)
        await self.agent.publish(event)
        if rank is not None:
            await self._publish_rank(rank)  # the rank without the revoked credential
        return event

    async def announce_handler(self) -> NostrEvent | None:
        """Publish our NIP-89 handler event if it changed since it was last published."""
        info = handler_info.HandlerInfo(
            name="Lightning Hive agent",
            about="Nostr-native Lightning fleet agent: advisor and liquidity listings (NIP-99),"
            " RFPs, contracts, heartbeats, reputation credentials, gift-wrapped commands.",
            version=__version__,
        )
        event = summaries.handler_event(self.agent.keys, self.agent.store, info, now=self.now)
        if event is None:
            return None
        await self.agent.publish(event)
        with self.agent.store.transaction(self.now) as tx:
            tx.set_kv(summaries.HANDLER_KEY, handler_info.digest(info))
        return event

    def _issued(self, address: str) -> bool:
        return repo.issued_credential(self.agent.store, address, self.me)

    async def reputation_of(self, pubkey: str, members: frozenset[str] = frozenset()) -> Aggregate:
        creds = (await self.credentials_about([pubkey])).get(pubkey, [])
        return aggregate(pubkey, creds, self.now, set(members))
