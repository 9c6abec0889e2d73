"""The inbound pipeline: raw relay message → parse → dedupe → verify → flood limit → handler →
store, one transaction per batch.

Order matters.  Duplicates are dropped on the claimed id before any crypto (the seen set
only holds ids that match their contents and never one whose signature failed, so a forged
copy cannot shadow a real event; gift wraps have their signatures checked by their handler
once the outer layer opens, which is where junk is cheapest to refuse).  Events
dated more than `future_tolerance_s` ahead are refused (FROM_FUTURE) and move no cursor, and
no cursor ever passes the local clock.  The flood limit comes after the signature check (so
nobody can spend someone else's budget) and before any handler, i.e. before any decryption.
A handler runs inside a savepoint: its writes and the event's `seen` row commit together or
not at all, so a crash between them re-delivers the event instead of losing or doubling its
effect.  Every refusal is a typed error, counted
per code, and never stops the loop.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.clock import Clock
from agent.crash import crash_point
from agent.logs import log_event
from agent.nostr.client import Incoming
from agent.ratelimit import FloodLimiter
from agent.store import Store, Tx
from events.base import FUTURE_TOLERANCE_S, NostrEvent, event_from_data, load_json
from events.errors import (
    BadSignature,
    FromFuture,
    HiveError,
    Internal,
    RateLimited,
    WrongKind,
)
from events.nip59 import Unwrapped

Handler = Callable[[NostrEvent, Tx], None]  # a public event, inside the batch's transaction
RumorHandler = Callable[[Unwrapped, Tx], None]  # an opened gift wrap's rumor, likewise
log = logging.getLogger("hive.inbound")
DUPLICATE = "DUPLICATE"
FORGETTABLE = (RateLimited.code, BadSignature.code)
OK = "ok"


@dataclass
class BatchReport:
    outcomes: list[str] = field(default_factory=list)  # per item: "ok", DUPLICATE or a code
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def processed(self) -> int:
        return self.outcomes.count(OK)


class RecentIds:
    """A bounded LRU of ids already handled, in front of the store's `seen` table."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._ids

    def add(self, event_id: str) -> None:
        self._ids[event_id] = None
        if len(self._ids) > self.size:
            self._ids.popitem(last=False)

    def __len__(self) -> int:
        return len(self._ids)


class Inbound:
    def __init__(
        self,
        store: Store,
        handlers: dict[int, Handler],
        limiter: FloodLimiter,
        clock: Clock,
        recent_size: int = 100_000,
        future_tolerance_s: int = FUTURE_TOLERANCE_S,
    ) -> None:
        self.store = store
        self.future_s = future_tolerance_s
        self.handlers = handlers
        self.limiter = limiter
        self.clock = clock
        self.recent = RecentIds(recent_size)
        self.totals: Counter[str] = Counter()
        self.frozen: set[str] = set()  # relays whose cursors must not move (see freeze_cursors)
        # the highest cursor this process committed per (relay, subscription): a batch whose
        # newest event is no newer writes nothing (gift wraps are dated up to two days back,
        # so most of them would rewrite the same value)
        self._committed: dict[tuple[str, str], int] = {}

    def process(self, batch: Sequence[Incoming], *, shed: int = 0) -> BatchReport:
        """Handle a batch of raw events in one transaction; never raises for bad input.

        `shed`: events dropped unread before this batch (an overload), counted RATE_LIMITED.
        """
        report = BatchReport()
        if shed:
            report.errors[RateLimited.code] += shed
            self.totals[RateLimited.code] += shed
        now = self.clock.now()
        seen_here: set[str] = set()
        handled: set[str] = set()  # kinds handled in this batch, for named crash points
        cursors = _Cursors(now)
        with self.store.transaction(now, durable=False) as tx:  # refetched if lost
            for item in batch:
                outcome = self._one(item, tx, now, seen_here, handled, cursors)
                report.outcomes.append(outcome)
                if outcome not in (OK, DUPLICATE):
                    report.errors[outcome] += 1
                    log_event(log, logging.DEBUG, "refused", code=outcome, relay=item.relay)
            for key, at in cursors.moves().items():
                if key[0] not in self.frozen and at > self._committed.get(key, -1):
                    tx.advance_cursor(*key, at)
                    tx.on_commit(lambda key=key, at=at: self._cursor_committed(key, at))
            tx.count_errors(report.errors)
            for kind in handled:
                crash_point("inbound.after_handler", kind)
        for kind in handled:
            crash_point("inbound.after_commit", kind)
        for event_id in seen_here:
            self.recent.add(event_id)
        self.totals.update(report.outcomes)
        return report

    def _one(
        self,
        item: Incoming,
        tx: Tx,
        now: int,
        seen_here: set[str],
        handled: set[str],
        cursors: _Cursors,
    ) -> str:
        try:
            data = load_json(item.raw)
            claimed = data.get("id") if isinstance(data, dict) else None
            if isinstance(claimed, str) and self._seen(claimed, seen_here):
                return DUPLICATE
            event = event_from_data(data, verify=not self._verifies_itself(data))
        except HiveError as error:
            return error.code
        if event.created_at > now + self.future_s:
            # not marked seen (it may be fetched again once its date has come), and it moves
            # no cursor: one event dated years ahead would otherwise silence a subscription
            return FromFuture.code
        seen_here.add(event.id)
        if not self.limiter.allow(event.pubkey, time.monotonic()):
            seen_here.discard(event.id)  # not marked seen: it may be fetched again later
            cursors.skipped(item, event.created_at)
            return RateLimited.code
        outcome = self._handle(event, tx)
        if outcome in FORGETTABLE:
            # not remembered: a rate-limited event may be fetched again when calm, and an
            # id whose signature failed must not shadow the genuine event with that id
            seen_here.discard(event.id)
            cursors.skipped(item, event.created_at)
            return outcome
        cursors.done(item, event.created_at)
        tx.mark_seen(event.id, event.kind, outcome, event.created_at)
        if outcome == OK:
            handled.add(str(event.kind))
        return outcome

    def _cursor_committed(self, key: tuple[str, str], at: int) -> None:
        self._committed[key] = max(at, self._committed.get(key, -1))

    def freeze_cursors(self, relay: str) -> None:
        """Events from `relay` were shed unread: its cursors stay where they are until it
        reconnects (so a `since` catch-up asks for them again)."""
        self.frozen.add(relay)

    def thaw_cursors(self, relay: str) -> None:
        self.frozen.discard(relay)

    def _verifies_itself(self, data: Any) -> bool:
        """True if the handler for this kind checks the signature itself, after cheaper
        refusals (the gift-wrap handler: see events.nip59.open_wrap)."""
        kind = data.get("kind") if isinstance(data, dict) else None
        if not isinstance(kind, int):
            return False
        return bool(getattr(self.handlers.get(kind), "verifies_signature", False))

    def _seen(self, event_id: str, seen_here: set[str]) -> bool:
        return event_id in seen_here or event_id in self.recent or self.store.is_seen(event_id)

    def _handle(self, event: NostrEvent, tx: Tx) -> str:
        handler = self.handlers.get(event.kind)
        if handler is None:
            return WrongKind.code
        try:
            with tx.savepoint():
                handler(event, tx)
        except HiveError as error:
            return error.code
        except Exception:
            log.exception("handler for kind %d failed on event %s", event.kind, event.id)
            return Internal.code
        return OK


class _Cursors:
    """Where a batch moves each (relay, subscription) cursor: to the newest event handled, but
    never past an event that was skipped (rate-limited, refused unremembered) — a `since`
    catch-up must be able to ask for it again — and never past the local clock."""

    def __init__(self, now: int) -> None:
        self.now = now
        self._done: dict[tuple[str, str], int] = {}
        self._skipped: dict[tuple[str, str], int] = {}

    def done(self, item: Incoming, created_at: int) -> None:
        if item.sub:
            key = (item.relay, item.sub)
            self._done[key] = max(self._done.get(key, 0), min(created_at, self.now))

    def skipped(self, item: Incoming, created_at: int) -> None:
        if item.sub:
            key = (item.relay, item.sub)
            self._skipped[key] = min(self._skipped.get(key, created_at), created_at)

    def moves(self) -> dict[tuple[str, str], int]:
        return {key: min(at, self._skipped.get(key, at)) for key, at in self._done.items()}
