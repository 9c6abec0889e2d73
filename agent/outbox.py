"""The durable outbox: nothing published is ever lost.

An event is signed once and committed to the store before the first send; from then on only
the stored JSON is sent, so a retry — in this run or after a crash — carries the same id.
Each target relay's OK is recorded on its own; the event counts as *published* once
`min_acks` relays hold it, and delivery to the remaining targets continues (with backoff and
jitter) until every target has it or the event's time to live runs out.  When a relay comes
back, everything waiting for it is retried at once.

Other processes write to the same outbox (`hive-agent note send --no-wait` while `hive-agent
run` is running): the sender notices their commits within `POLL_S` (SQLite's data_version) and
delivers them.  What this process commits is handed to the sender in memory as well (once
its transaction commits), so delivering it needs no look at the table; the sender still reads
the table at start, when a stored item is due, when another process commits, and when an item
was already stored.  A replaceable event supersedes older versions of itself still waiting,
and a relay that refuses a replaceable event (it holds a newer one: nostr-sdk's relay answers
`error: unknown`, others `duplicate:` or `replaced:`) is not asked again.  Relays that only a
recipient's inbox list names are dialled through `RelayPool.add_foreign` (never loopback or
private addresses) and dropped once nothing waits for them.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable

import anyio

from agent.backoff import delay
from agent.clock import Clock
from agent.crash import crash_point
from agent.logs import log_event
from agent.nostr.pool import Busy, RelayPool
from agent.settings import Settings
from agent.store import OutboxItem, OutboxState, Store, Tx
from events.base import NostrEvent, tag_value
from events.kinds import is_addressable, is_replaceable

log = logging.getLogger("hive.outbox")
# NIP-01 OK prefixes that will not change on a retry (rate-limited:, error:, auth-required:,
# timeouts and offline relays are retried).
PERMANENT = ("invalid:", "blocked:", "pow:", "restricted:")
# what a relay answers about a replaceable event when it holds a newer version of it
SUPERSEDED = ("error:", "replaced:", "mute:")
POLL_S = 0.5  # how often the sender looks for rows other processes committed
RIDE_S = 0.2  # how long the record of a delivery may wait to ride on another transaction
BATCH = 100  # items attempted per pass (then the table and the clock are looked at again)


def classify(reason: str, *, replaceable: bool = False) -> str:
    """'ack' for a relay that already holds the event, 'refused' for good, else 'retry'.

    A replaceable event refused with `error:` is final too: a relay holding a newer version
    answers so (nostr-sdk's relay: `error: unknown`), and retrying cannot change that.
    """
    text = reason.strip().lower()
    if text.startswith("duplicate:"):
        return "ack"
    if "rate-limited:" in text[:40]:  # also behind a policy's `blocked: ` (nostr-sdk's relay)
        return "retry"
    if text.startswith(PERMANENT) or (replaceable and text.startswith(SUPERSEDED)):
        return "refused"
    return "retry"


def address_of(event: NostrEvent) -> str | None:
    """kind:pubkey:d of a replaceable or addressable event (relays keep its newest version)."""
    if is_replaceable(event.kind):
        return f"{event.kind}:{event.pubkey}:"
    if is_addressable(event.kind):
        return f"{event.kind}:{event.pubkey}:{tag_value(event.tags, 'd') or ''}"
    return None


class Outbox:
    def __init__(self, store: Store, pool: RelayPool, clock: Clock, settings: Settings) -> None:
        self.store = store
        self.pool = pool
        self.clock = clock
        self.settings = settings
        self._wake = anyio.Event()
        self._changed = anyio.Event()
        self._fresh: list[int] = []  # kinds enqueued since the last wake (for crash points)
        self._ready: list[OutboxItem] = []  # committed here since the sender last looked
        self._sweep = True  # the sender must read the table (not only `_ready`)
        self._next_at: int | None = None  # when the next stored item is due (last reading)
        self._seen_version = 0  # the store's data_version at the last look
        self._polled_at = 0.0  # (anyio time) when another process's commits were last asked
        self.mine: set[str] = set()  # what this process queued and a command waits for
        self.attempting = False
        # delivered, but the ride carrying the record failed: written the ordinary way next
        self._unrecorded: dict[str, Callable[[], None]] = {}

    # --- enqueue -----------------------------------------------------------------------

    def enqueue(
        self,
        tx: Tx,
        event: NostrEvent,
        targets: list[str] | None = None,
        min_acks: int | None = None,
        *,
        background: bool = False,
    ) -> None:
        """Add `event` to the outbox inside an open transaction (with the effects it belongs to).

        `flush()` waits for it unless it is `background` (relay lists and other announcements
        that no command waits for).
        """
        targets = targets or self.pool.config.write_urls
        acks = min(min_acks or self.pool.config.min_acks, len(targets))
        ttl = self.clock.now() + self.settings.outbox_ttl_s
        event_json = event.to_json()
        address = address_of(event)
        if tx.enqueue(
            event.id, event_json, event.kind, targets, acks, ttl,
            address=address, created_at=event.created_at,
        ) and address is None:  # fmt: skip
            item = OutboxItem.fresh(event.id, event_json, event.kind, targets, acks, tx.now, ttl)
            tx.on_commit(lambda: self._ready.append(item))
        else:  # already stored (perhaps delivered), or a version that may supersede another
            self._sweep = True  # still waiting: the table says what is left to do
        self._fresh.append(event.kind)
        if not background:
            self.mine.add(event.id)

    def submit(
        self, event: NostrEvent, targets: list[str] | None = None, min_acks: int | None = None
    ) -> OutboxItem:
        """Commit `event` to the outbox on its own and wake the sender."""
        with self.store.transaction(self.clock.now()) as tx:
            self.enqueue(tx, event, targets, min_acks)
        self.wake()
        item = self.store.outbox_item(event.id)
        assert item is not None
        return item

    async def publish(
        self,
        event: NostrEvent,
        targets: list[str] | None = None,
        min_acks: int | None = None,
        timeout_s: float | None = None,
    ) -> OutboxItem:
        """Submit and wait until `min_acks` relays hold the event (or the timeout passes).

        The event stays in the outbox either way: a timeout only stops the waiting.
        """
        item = self.submit(event, targets, min_acks)
        with anyio.move_on_after(timeout_s):
            while not item.published and item.state == OutboxState.PENDING:
                await self._wait_changed()
                if event.id in self.store.rides:  # the caller waits: record it now
                    self.store.flush_rides(self.clock.now())
                item = self.store.outbox_item(event.id) or item
        return item

    async def _wait_changed(self) -> None:
        await self._changed.wait()

    async def flush(self, timeout_s: float) -> list[OutboxItem]:
        """Wait until everything this process queued is published (or has given up), for at
        most `timeout_s`; return the items still waiting.  Unrelated rows — another process's,
        or an old one for a relay that is down — are never waited for."""
        waiting = self._waiting()  # (delivered items leave `mine` at once: none rides here)
        with anyio.move_on_after(timeout_s):
            while waiting:
                await self._wait_changed()
                waiting = self._waiting()
        return waiting

    def _waiting(self) -> list[OutboxItem]:
        out = []
        for event_id in sorted(self.mine):
            item = self.store.outbox_item(event_id)
            if item is None or item.published or item.state != OutboxState.PENDING:
                self.mine.discard(event_id)
            else:
                out.append(item)
        return out

    def busy(self) -> bool:
        """True while an attempt is under way or an item is due now."""
        if self.attempting:
            return True
        self.store.flush_rides(self.clock.now())  # (a caller may exit once idle)
        nxt = self.store.next_outbox_time()
        return nxt is not None and nxt <= self.clock.now()

    @property
    def has_fresh(self) -> bool:
        """True if something was enqueued since the last wake()."""
        return bool(self._fresh)

    def wake(self) -> None:
        """Called once what was enqueued is committed: the sender looks for due items."""
        fresh, self._fresh = self._fresh, []
        for kind in fresh:
            crash_point("outbox.after_store", str(kind))
        self._wake.set()

    def relay_back(self, url: str) -> None:
        """A relay reconnected: retry everything still waiting for it now."""
        with self.store.transaction(self.clock.now()) as tx:
            tx.retry_for_relay(url, self.clock.now())
        self._sweep = True
        self.wake()

    # --- delivery ----------------------------------------------------------------------

    async def run(self) -> None:
        """Deliver due items forever; sleeps until the next is due, something wakes it, or
        another process commits to the store."""
        try:
            await self._deliver()
        finally:  # records of deliveries still waiting to ride
            try:
                self.store.flush_rides(self.clock.now())
            except sqlite3.Error:  # (a store already closed: those events are sent again)
                log.warning("could not record the last deliveries; they are sent again")

    async def _deliver(self) -> None:
        self._seen_version = self.store.data_version()
        while True:
            self._wake = anyio.Event()
            for record in list(self._unrecorded.values()):  # (raises as a lost record did)
                record()
            self.attempting = True
            try:
                for item in self._due():
                    await self.attempt(item)
            finally:
                self.attempting = False
            if self.pool.foreign:
                await self.pool.retain(self.store.pending_targets())
            await self._sleep()

    def _others_committed(self) -> bool:
        """True (and the table must be read) if another process committed to the store since
        the last look; asked at most every POLL_S."""
        self._polled_at = anyio.current_time()
        version = self.store.data_version()
        if version == self._seen_version:
            return False
        self._seen_version, self._sweep = version, True
        return True

    def _due(self) -> list[OutboxItem]:
        """What to attempt now: the items committed here since the last look, or — if the
        table may hold more (see the module docstring) — every due item in it."""
        now = self.clock.now()
        if anyio.current_time() - self._polled_at >= POLL_S:  # (woken often: look anyway)
            self._others_committed()
        if self._ready and not self._sweep and (self._next_at is None or self._next_at > now):
            ready, self._ready = self._ready[:BATCH], self._ready[BATCH:]
            return ready
        self._sweep, self._ready = False, []  # (all committed: the table holds them too)
        riding = self.store.rides.keys()
        due = self.store.due_outbox(now, BATCH, skip=riding)
        self._next_at = self.store.next_outbox_time(skip=riding | {i.event_id for i in due})
        return due

    async def _sleep(self) -> None:
        """Until the next stored item is due, something wakes the sender, or another process
        commits to the store."""
        riding = bool(self.store.rides)
        nxt = self._next_at
        wait = 3600.0 if nxt is None else max(0.05, nxt - self.clock.now())
        if self._ready:  # (more than a batch was ready, or more came during the attempts)
            wait = 0.0
        elif riding:  # nothing else wrote since: commit them on their own soon
            wait = min(wait, RIDE_S)
        deadline = anyio.current_time() + wait
        while not self._wake.is_set() and (left := deadline - anyio.current_time()) > 0:
            with anyio.move_on_after(min(POLL_S, left)):
                await self._wake.wait()
            if self._wake.is_set() or self._others_committed():
                break
        if riding and not self._wake.is_set():
            self.store.flush_rides(self.clock.now())

    async def attempt(self, item: OutboxItem) -> None:
        """One delivery attempt to every target that lacks the event."""
        crash_point("outbox.before_send", str(item.kind))
        blocked = await self._dial(item.missing)
        self.store.sync()  # nothing leaves on the strength of a commit that could be lost
        # the stored JSON exactly as signed and committed: never re-signed, never rebuilt (and
        # not re-verified: it is our own, and relays check signatures anyway)
        targets = [url for url in item.missing if url not in blocked]
        outcome = await self.pool.publish(item.event_json, targets, item.event_id)
        outcome.refused.update(blocked)
        crash_point("outbox.after_send", str(item.kind))
        now = self.clock.now()
        acked = set(item.acked) | set(outcome.accepted)
        refused = dict(item.refused)
        retry = {}
        replaceable = address_of_kind(item.kind)
        for url, reason in outcome.refused.items():
            verdict = classify(reason, replaceable=replaceable)
            if verdict == "ack":
                acked.add(url)
            elif verdict == "refused":
                refused[url] = reason
            else:
                retry[url] = reason
        for url in outcome.accepted:
            log_event(log, logging.DEBUG, "published", id=item.event_id, kind=item.kind, relay=url)

        def write(tx: Tx) -> None:
            self._record(tx, item, now, acked, refused, retry)

        if all(url in acked for url in item.targets) and not refused:
            self.mine.discard(item.event_id)  # (flush() never waits on a ride)
            self._ride(item.event_id, write)  # delivered: the record rides on the next commit
        else:
            with self.store.transaction(now, durable=False) as tx:  # if lost: published again
                write(tx)
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    def _ride(self, event_id: str, write: Callable[[Tx], None]) -> None:
        """Let `write` ride; if the ride fails, it is written in a transaction of its own at
        the outbox's next pass (before the event could be sent again)."""
        written: list[bool] = []

        def carried(tx: Tx) -> None:
            written.clear()  # (a host that rolled back hands it on: written again)
            write(tx)
            written.append(True)

        def done() -> None:
            if written:
                self._unrecorded.pop(event_id, None)
            else:  # dropped (logged by the store)
                self._unrecorded[event_id] = lambda: self._write_alone(event_id, write)
                self.wake()

        self.store.ride(carried, done, key=event_id)

    def _write_alone(self, event_id: str, write: Callable[[Tx], None]) -> None:
        with self.store.transaction(self.clock.now(), durable=False) as tx:
            write(tx)
        self._unrecorded.pop(event_id, None)

    def _record(
        self,
        tx: Tx,
        item: OutboxItem,
        now: int,
        acked: set[str],
        refused: dict[str, str],
        retry: dict[str, str],
    ) -> None:
        """What the attempt on `item` came to: acks, refusals, its end or its next try."""
        tx.record_acks(item.event_id, sorted(acked - item.acked))
        for url in refused.keys() - item.refused.keys():
            tx.record_refusal(item.event_id, url, refused[url])
            log.warning("relay %s refused %s: %s", url, item.event_id, refused[url])
        if all(url in acked or url in refused for url in item.targets):
            replaceable = address_of_kind(item.kind)
            tx.finish(item.event_id, _final_state(item, acked, refused, replaceable))
            self.mine.discard(item.event_id)  # (nothing to wait for: no leak in `node`)
        elif now >= item.expires_at:
            tx.finish(item.event_id, OutboxState.EXPIRED)
            self.mine.discard(item.event_id)
            log.warning("gave up delivering %s to %s", item.event_id, item.missing)
        else:
            wait = delay(
                item.attempts,
                self.settings.outbox_retry_base_s,
                self.settings.outbox_retry_max_s,
                self.pool.config.jitter,
            )
            reasons = "; ".join(f"{u}: {r}" for u, r in retry.items())
            at = now + max(1, round(wait))
            tx.reschedule(item.event_id, at, reasons or None)
            self._next_at = at if self._next_at is None else min(self._next_at, at)

    async def _dial(self, urls: list[str]) -> dict[str, str]:
        """Connect the relays among `urls` that are not in the pool yet (a recipient's inbox
        relays); {url: reason} for those that must never be dialled (a final refusal)."""
        blocked = {}
        for url in urls:
            if url in self.pool.states:
                continue
            try:
                reason = await self.pool.add_foreign(url)
            except Busy:
                continue  # offline for this attempt; retried later
            if reason is not None:
                blocked[url] = reason
        return blocked

    def pending(self) -> int:
        self.store.flush_rides(self.clock.now())
        return self.store.outbox_counts().get(OutboxState.PENDING, 0)


def _final_state(
    item: OutboxItem, acked: set[str], refused: dict[str, str], replaceable: bool
) -> OutboxState:
    if len(acked) >= item.min_acks:
        return OutboxState.DONE
    newer = [r for r in refused.values() if r.strip().lower().startswith(SUPERSEDED)]
    if replaceable and len(newer) == len(refused):
        return OutboxState.SUPERSEDED
    return OutboxState.FAILED


def address_of_kind(kind: int) -> bool:
    """True for kinds relays replace (a refusal of an older version is final)."""
    return is_replaceable(kind) or is_addressable(kind)
