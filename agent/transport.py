"""The agent's transport: keys, store, relay pool, outbox and the inbound pipeline, and the ways
to reach someone (gift-wrapped private messages, public events, relay queries).

Components are built on it (it implements `agent.component.Messaging`); `agent.runtime.Agent`
runs it.  It knows no component: the kinds it dispatches come from the components' wiring.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
import uuid
from collections import OrderedDict
from typing import Any

import nostr_sdk as sdk
from pydantic import ValidationError

from agent.clock import Clock, SystemClock
from agent.component import Routes
from agent.errors import RelayUnavailable
from agent.handlers import core_wiring
from agent.inbound import Inbound
from agent.logs import log_event
from agent.nostr import dial
from agent.nostr.client import Incoming
from agent.nostr.pool import RelayPool, Subscription
from agent.outbox import Outbox
from agent.ratelimit import STRANGER, TRUSTED, FloodLimiter, WrapGuard
from agent.settings import RelaysConfig, Settings
from agent.store import OutboxItem, Store, Tx
from events import nip59, note, relay_lists
from events import profile as profile_event
from events.base import NostrEvent, Rumor, parse_event
from events.errors import HiveError, InvalidParams
from events.kinds import Kind
from events.relay_lists import inbox_relays
from events.types import first_error

log = logging.getLogger("hive.transport")
ANNOUNCED_KV = "announced"  # {kind: digest} of the lists and profile we last published
KNOWN_TTL_S = 1.0
KNOWN_CACHE = 4096
LISTLESS_TTL_S = 600.0  # a key the relays had no relay list for is asked again after this


class Transport:
    def __init__(
        self,
        settings: Settings,
        keys: sdk.Keys,
        relays: RelaysConfig,
        *,
        store: Store | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings
        self.keys = keys
        self.pubkey = keys.public_key().to_hex()
        self.relays = relays
        self.clock = clock or SystemClock()
        self.store = store or Store(settings.store_file)
        # keys whose gift wraps are never limited as a stranger's (the operator, approvers);
        # credential holders, contract parties and nodes we advise come from the store
        self.known_keys: set[str] = set()
        self._known: OrderedDict[str, float] = OrderedDict()
        self._listless: OrderedDict[str, float] = OrderedDict()  # looked up, no lists found
        self.guard = WrapGuard(
            failures_per_minute=settings.wrap_failures_per_minute,
            failures_burst=max(1, settings.wrap_failures_per_minute // 2),
            strangers_per_minute=settings.strangers_per_minute,
            strangers_burst=max(1, settings.strangers_per_minute // 2),
            per_stranger_per_minute=settings.per_stranger_per_minute,
            per_stranger_burst=max(1, settings.per_stranger_per_minute // 2),
            per_known_per_minute=settings.per_known_per_minute,
            known_per_minute=settings.known_per_minute,
            max_senders=settings.flood_senders,
            min_pow=settings.giftwrap_min_pow,
            standing=self.standing,
        )
        self.routes = Routes()
        self.routes.add(core_wiring(keys, self.clock, self.routes.rumors, self.guard))
        limiter = FloodLimiter(
            settings.flood_per_minute, settings.flood_burst, settings.flood_senders
        )
        self.inbound = Inbound(
            self.store,
            self.routes.handlers,
            limiter,
            self.clock,
            future_tolerance_s=settings.future_tolerance_s,
        )
        self.pool = RelayPool(
            relays,
            keys,
            self.clock,
            cursor=self.store.cursor,
            catchup_margin_s=settings.catchup_margin_s,
            on_connect=self._relay_back,
            inbox_size=settings.inbound_queue,
            allow_private=settings.allow_private_relays,
            local_items=self.store.seen_items,
        )
        self.outbox = Outbox(self.store, self.pool, self.clock, settings)

    def standing(self, pubkey: str) -> int:
        """TRUSTED for a key this agent chose to work with (configured keys, advisors it
        granted, nodes it commands, contract parties: their gift wraps are never limited),
        KNOWN for one it merely heard from (a node that granted it a credential, an offer's
        party: a bucket of its own), else STRANGER (see agent/ratelimit.py WrapGuard).

        Asked of the store (indexed) each time for a key not trusted yet — a credential
        granted a moment ago, by this process or by `hive-agent credential grant` in another,
        counts at once (even for the message right after the one that granted it); a
        "trusted" is kept for KNOWN_TTL_S in a bounded map."""
        if pubkey in self.known_keys:
            return TRUSTED
        now = time.monotonic()
        since = self._known.get(pubkey)
        if since is not None and now - since < KNOWN_TTL_S:
            return TRUSTED
        standing = self.store.standing(pubkey)
        if standing == TRUSTED:
            self._known[pubkey] = now
            if len(self._known) > KNOWN_CACHE:
                self._known.popitem(last=False)
        return standing

    def is_known(self, pubkey: str) -> bool:
        """True for a key this agent works with or has heard from (not a stranger)."""
        return self.standing(pubkey) != STRANGER

    def _relay_back(self, url: str) -> None:
        log_event(log, logging.INFO, "relay_connected", relay=url)
        self.inbound.thaw_cursors(url)  # its REQs were just sent from the cursors as they are
        self.outbox.relay_back(url)

    # --- reaching people -------------------------------------------------------------------

    async def announce(self, profile: profile_event.Profile) -> list[int]:
        """Queue this agent's NIP-65 relay list, NIP-17 inbox list and kind-0 profile, each
        only when it differs from what the read relays hold (when none answers: from what we
        last published, kept in the store).  Daemons only (`run`, `node`, the plugin): they
        announce the relays they read, and a one-off command never replaces the user's lists.
        Returns the kinds queued."""
        now, cfg = self.clock.now(), self.relays
        wanted = [
            relay_lists.build_relay_list(self.keys, cfg.read_urls, cfg.write_urls, created_at=now),
            relay_lists.build_dm_relays(
                self.keys, cfg.inbox_urls, created_at=now, pow_bits=self.settings.giftwrap_min_pow
            ),
            profile_event.build(self.keys, profile, created_at=now),
        ]
        held = await self._held({ev.kind for ev in wanted})
        last = {str(k): v for k, v in dict(self.store.kv(ANNOUNCED_KV, {})).items()}
        due, kept = [], []
        for ev in wanted:
            state = _announce_state(ev, held, last.get(str(ev.kind)))
            (due if state == "published" else kept if state == "kept" else []).append(ev)
        with self.store.transaction(now) as tx:
            for ev in due:
                self.outbox.enqueue(tx, ev, background=True)
            tx.set_kv(
                ANNOUNCED_KV,
                {**last, **{str(ev.kind): _digest(ev) for ev in wanted if ev not in kept}},
            )
        for ev in wanted:
            state = "published" if ev in due else "kept" if ev in kept else "unchanged"
            log_event(log, logging.INFO, "announce", kind=ev.kind, state=state)
            if state == "kept":
                log.warning(
                    "your kind-%d event on the relays was written by another client: left as "
                    "it is (add this agent's relays to it yourself so others reach the agent)",
                    ev.kind,
                )
        if due:
            self.outbox.wake()
        return [ev.kind for ev in due]

    async def _held(self, kinds: set[int]) -> dict[int, NostrEvent] | None:
        """The newest event of each of `kinds` by us on the read relays; None if no relay
        answered (then only the store decides)."""
        query = [{"kinds": sorted(kinds), "authors": [self.pubkey]}]
        try:
            raws = await self.pool.fetch(query, timeout_s=3, strict=True)
        except RelayUnavailable:
            return None
        newest: dict[int, NostrEvent] = {}
        for raw in raws:
            with contextlib.suppress(HiveError):
                ev = parse_event(raw)
                older = newest.get(ev.kind)
                mine = ev.pubkey == self.pubkey and ev.kind in kinds
                if mine and (older is None or ev.created_at > older.created_at):
                    newest[ev.kind] = ev
        return newest

    async def inbox_of(self, pubkey: str) -> list[str]:
        """Where `pubkey` reads gift wraps (its 10050, else its 10002 read relays, else ours)."""
        dm, listed, _ = self.store.inbox_lists(pubkey)
        if dm is None and listed is None and not self._looked_up(pubkey):
            query = [{"kinds": [Kind.DM_RELAYS, Kind.RELAY_LIST], "authors": [pubkey]}]
            try:
                raws = await self.pool.fetch(query, timeout_s=3, strict=True)
            except RelayUnavailable:  # nobody answered: no news, asked again next time
                return self._inbox_targets(None, None)
            self.inbound.process([Incoming("fetch", raw) for raw in raws])
            dm, listed, _ = self.store.inbox_lists(pubkey)
            if dm is None and listed is None:
                self._listless[pubkey] = time.monotonic()
                if len(self._listless) > KNOWN_CACHE:
                    self._listless.popitem(last=False)
        return self._inbox_targets(dm, listed)

    def _looked_up(self, pubkey: str) -> bool:
        """True if the relays had no relay list of `pubkey` less than LISTLESS_TTL_S ago: a
        key without lists is not asked for them again with every message (a relay round trip
        each); a list it publishes later is found by the first lookup after that."""
        since = self._listless.get(pubkey)
        if since is not None and time.monotonic() - since < LISTLESS_TTL_S:
            return True
        self._listless.pop(pubkey, None)
        return False

    def _inbox_targets(
        self, dm: list[list[str]] | None, listed: list[list[str]] | None
    ) -> list[str]:
        """Where to deliver a gift wrap, from the recipient's lists: at most three relays,
        none of them loopback or private (unless allowed, or ours); else our write relays."""
        own = {r.url for r in self.relays.relays}
        named = inbox_relays(dm, listed)
        found = dial.usable(named, own, allow_private=self.settings.allow_private_relays)
        return found or self.relays.write_urls

    def enqueue_private(
        self, tx: Tx, recipient: str, rumor: Rumor, targets: list[str] | None = None
    ) -> NostrEvent:
        """Gift-wrap `rumor` and queue it inside an open transaction (from a handler).

        Without `targets`, uses the recipient's relay lists already in the store (no network
        here); falls back to our own write relays.
        """
        dm, listed, bits = self.store.inbox_lists(recipient)
        wrap = nip59.wrap(self.keys, recipient, rumor, now=self.clock.now(), pow_bits=bits)
        if targets is None:
            targets = self._inbox_targets(dm, listed)
        self.outbox.enqueue(tx, wrap, targets)
        return wrap

    def _wrap(self, recipient: str, rumor: Rumor) -> NostrEvent:
        """Seal and gift-wrap `rumor`, with the proof of work the recipient asks for."""
        bits = self.store.inbox_pow(recipient)
        return nip59.wrap(self.keys, recipient, rumor, now=self.clock.now(), pow_bits=bits)

    async def send_private(self, recipient: str, rumor: Rumor, *, wait: bool = True) -> OutboxItem:
        """Seal and gift-wrap `rumor` to `recipient` and deliver it to their inbox relays."""
        targets = await self.inbox_of(recipient)  # also learns the proof of work it asks
        wrap = self._wrap(recipient, rumor)
        if not wait:
            return self.outbox.submit(wrap, targets)
        return await self.outbox.publish(wrap, targets, timeout_s=self.relays.publish_timeout_s)

    async def send_note(
        self, recipient: str, text: str, reply_to: str | None = None, *, wait: bool = True
    ) -> OutboxItem:
        """Gift-wrap a note to `recipient` and deliver it through the outbox."""
        now = self.clock.now()
        msg = new_note(text, reply_to)
        rumor = note.rumor(self.pubkey, msg, created_at=now, expiration=now + 30 * 86400)
        return await self.send_private(recipient, rumor, wait=wait)

    async def publish(self, event: NostrEvent, *, wait: bool = True) -> OutboxItem:
        """Publish a signed public event to the write relays through the outbox."""
        if not wait:
            return self.outbox.submit(event)
        return await self.outbox.publish(event, timeout_s=self.relays.publish_timeout_s)

    def wake_outbox(self) -> None:
        """Rows were queued inside a transaction: deliver them now, not at the next poll."""
        self.outbox.wake()

    async def flush(self, timeout_s: float | None = None) -> list[OutboxItem]:
        """Wait until what this process queued is published, for at most `timeout_s` (default
        the relays' publish timeout); return what still waits (delivered later by `run`)."""
        limit = self.relays.publish_timeout_s if timeout_s is None else timeout_s
        return await self.outbox.flush(limit)

    # --- asking relays ---------------------------------------------------------------------

    async def fetch(self, filters: list[dict[str, Any]], timeout_s: float = 5) -> list[str]:
        """Query the read relays once; the raw events, unchecked (the caller verifies).

        Raises RelayUnavailable when no read relay answered (every read command: an empty
        answer from nobody is not "nothing found")."""
        return await self.pool.fetch(filters, timeout_s=timeout_s, strict=True)

    async def fetch_into_store(
        self, filters: list[dict[str, Any]], timeout_s: float = 5
    ) -> list[str]:
        """Query the read relays once and run what comes back through the inbound pipeline
        (RelayUnavailable when no read relay answered)."""
        raws = await self.pool.fetch(filters, timeout_s=timeout_s, strict=True)
        self.inbound.process([Incoming("fetch", raw) for raw in raws])
        return raws

    async def subscribe(self, subscription: Subscription) -> None:
        """Open (or replace, by name) a subscription on every read relay."""
        await self.pool.subscribe(subscription)


def _announce_state(
    wanted: NostrEvent, held: dict[int, NostrEvent] | None, last: str | None
) -> str:
    """Whether to publish one of our lists or our profile: "published" when the relays hold
    none, or one that this agent wrote (what it last published, or a hive-agent profile) and
    that differs; "kept" when they hold one another client wrote (the user's own: never
    replaced); "unchanged" otherwise.  With no relay answering, what we last published
    decides."""
    digest = _digest(wanted)
    if held is None:
        return "unchanged" if last == digest else "published"
    have = held.get(wanted.kind)
    if have is None:
        return "published"
    if _digest(have) == digest:
        return "unchanged"
    return "published" if _digest(have) == last or _ours(have) else "kept"


def _ours(event: NostrEvent) -> bool:
    """A kind-0 profile this agent wrote (name hive-agent, a bot)."""
    if event.kind != 0:
        return False
    try:
        content = json.loads(event.content)
    except ValueError:
        return False
    return (
        isinstance(content, dict)
        and content.get("name") == "hive-agent"
        and content.get("bot") is True
    )


def _digest(event: NostrEvent) -> str:
    """What makes two of our replaceable events the same: kind, tags and content."""
    body = json.dumps([event.kind, event.tags, event.content], separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def new_note(text: str, reply_to: str | None = None) -> note.Note:
    """A note to send, checked (InvalidParams) before anything connects or is queued."""
    try:
        msg = note.Note(msg_id=uuid.uuid4().hex, text=text, reply_to=reply_to)
    except ValidationError as exc:
        raise InvalidParams(f"the note's {first_error(exc)}") from None
    now = int(time.time())
    note.rumor("00" * 32, msg, created_at=now, expiration=now + 1)  # TooLarge if it cannot fit
    return msg
