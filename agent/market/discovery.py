"""Discovery: raw events from several relays → verified, deduplicated, current listings →
filtered and ranked for a buyer.

Expired, withdrawn (`status` sold) and deleted (NIP-09 by the listing's own author) listings are
dropped; so is anything that fails to parse, counted by error code, and anything dated more than
`FUTURE_TOLERANCE_S` ahead of our clock (FROM_FUTURE, as the inbound path refuses it: a listing
dated years ahead would stay fresh, and unexpired, for years).  Nothing here raises for bad
input: a hostile relay can only waste our time, not stop discovery.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from agent.market.ranking import Breakdown, Need, comparable_price, components, matches
from agent.market.reputation import Aggregate, aggregate
from events import listing, reputation
from events.base import FUTURE_TOLERANCE_S, NostrEvent, parse_event, tag_values
from events.errors import FromFuture, HiveError, Internal
from events.kinds import Kind
from events.listing import Listing, ListingStatus
from events.reputation import ReputationCredential


@dataclass(frozen=True)
class Found:
    listing: Listing
    author: str
    event_id: str
    created_at: int

    @property
    def address(self) -> str:
        return listing.coordinate(self.author, self.listing.listing_id)


@dataclass(frozen=True)
class Ranked:
    found: Found
    breakdown: Breakdown
    reputation: Aggregate


@dataclass
class Deletions:
    """NIP-09 deletion requests, by author: the addresses each author deleted (with the newest
    such deletion's `created_at`) and the event ids."""

    addresses: dict[tuple[str, str], int]
    ids: set[tuple[str, str]]

    @classmethod
    def of(cls, events: Iterable[NostrEvent]) -> Deletions:
        deleted = cls({}, set())
        for ev in events:
            for a in tag_values(ev.tags, "a"):
                key = (ev.pubkey, a)
                deleted.addresses[key] = max(deleted.addresses.get(key, 0), ev.created_at)
            deleted.ids |= {(ev.pubkey, e) for e in tag_values(ev.tags, "e")}
        return deleted

    def covers(self, author: str, address: str, event_id: str, created_at: int) -> bool:
        """Only an author's own deletion counts, and a deleted address only up to the
        deletion's `created_at` (NIP-09): a version published after it — a listing withdrawn
        then listed again, a credential revoked then re-issued — stands."""
        until = self.addresses.get((author, address))
        return (until is not None and created_at <= until) or (author, event_id) in self.ids


def verified_events(raws: Iterable[str], errors: Counter[str], now: int) -> list[NostrEvent]:
    out = []
    for raw in raws:
        try:
            event = parse_event(raw)
            if event.created_at > now + FUTURE_TOLERANCE_S:
                raise FromFuture("the event is dated ahead of our clock")
            out.append(event)
        except HiveError as error:
            errors[error.code] += 1
        except Exception:  # noqa: BLE001 - discovery must survive anything a relay sends
            errors[Internal.code] += 1
    return out


def newer(created_at: int, event_id: str, than_at: int, than_id: str) -> bool:
    """NIP-01 replacement: the later `created_at` wins; in the same second, the lowest id (what
    relays keep — the highest would show a version every relay has dropped)."""
    return created_at > than_at or (created_at == than_at and event_id < than_id)


def collect_listings(
    raws: Iterable[str], now: int, errors: Counter[str] | None = None
) -> list[Found]:
    """Current, valid, undeleted listings; the newest version of each address wins."""
    errors = errors if errors is not None else Counter()
    events = verified_events(raws, errors, now)
    deleted = Deletions.of(e for e in events if e.kind == Kind.DELETION)
    newest: dict[str, Found] = {}
    for ev in events:
        if ev.kind != Kind.CLASSIFIED_LISTING:
            continue
        try:
            item = listing.parse(ev, now=now, include_withdrawn=True).payload
        except HiveError as error:
            errors[error.code] += 1
            continue
        found = Found(item, ev.pubkey, ev.id, ev.created_at)
        known = newest.get(found.address)
        if known is None or newer(ev.created_at, ev.id, known.created_at, known.event_id):
            newest[found.address] = found
    return [
        f
        for f in newest.values()
        if f.listing.status == ListingStatus.ACTIVE
        and not deleted.covers(f.author, f.address, f.event_id, f.created_at)
    ]


def collect_credentials(
    raws: Iterable[str], now: int, errors: Counter[str] | None = None
) -> dict[str, list[ReputationCredential]]:
    """Valid credentials by subject (hex pubkey), minus those their issuer deleted; one per
    address, the newest (the same credential from two relays, or an older version a relay
    still holds, counts once)."""
    errors = errors if errors is not None else Counter()
    events = verified_events(raws, errors, now)
    deleted = Deletions.of(e for e in events if e.kind == Kind.DELETION)
    newest: dict[str, tuple[int, str, ReputationCredential]] = {}
    for ev in events:
        if ev.kind != Kind.REPUTATION:
            continue
        try:
            cred = reputation.parse(ev, now=now).payload
        except HiveError as error:
            errors[error.code] += 1
            continue
        address = reputation.address(ev.pubkey, cred.credential_id)
        if address not in newest or newer(ev.created_at, ev.id, *newest[address][:2]):
            newest[address] = (ev.created_at, ev.id, cred)
    by_subject: dict[str, list[ReputationCredential]] = {}
    for address, (created_at, event_id, cred) in newest.items():
        if deleted.covers(address.split(":")[1], address, event_id, created_at):
            continue
        subject = cred.credentialSubject.id.removeprefix("did:nostr:")
        by_subject.setdefault(subject, []).append(cred)
    return by_subject


def rank(
    found: list[Found],
    need: Need,
    credentials: dict[str, list[ReputationCredential]],
    availability: dict[str, float | None],
    now: int,
    members: frozenset[str] = frozenset(),
) -> list[Ranked]:
    """Listings that match `need`, best first (ties: cheaper, then by author)."""
    rows = []
    for f in found:
        if not matches(f.listing, need):
            continue
        rep = aggregate(f.author, credentials.get(f.author, []), now, set(members))
        breakdown = components(
            f.listing, need, rep.score, availability.get(f.author), now, f.created_at
        )
        rows.append(Ranked(f, breakdown, rep))
    return sorted(
        rows,
        key=lambda r: (-r.breakdown.total, comparable_price(r.found.listing), r.found.author),
    )
