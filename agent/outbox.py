"""The durable outbox: nothing published is ever lost.

An event is signed once and committed to the store before the first send; from then on only
the stored JSON is sent, so a retry — in this run or after a crash — carries the same id.
Each target relay's OK is recorded on its own; the event counts as *published* once
`min_acks` relays hold it, and delivery to the remaining targets continues (with backoff and
jitter) until every target has it or the event's time to live runs out.  When a relay comes
back, everything waiting for it is retried at once.
"""

from __future__ import annotations

import logging

import anyio

from agent.backoff import delay
from agent.clock import Clock
from agent.crash import crash_point
from agent.nostr.pool import RelayPool
from agent.settings import Settings
from agent.store import OutboxItem, Store, Tx
from events.base import NostrEvent

log = logging.getLogger("hive.outbox")
# NIP-01 OK prefixes that will not change on a retry (rate-limited:, error:, auth-required:,
# timeouts and offline relays are retried).
PERMANENT = ("invalid:", "blocked:", "pow:", "restricted:")


def classify(reason: str) -> str:
    """'ack' for a relay that already holds the event, 'refused' for good, else 'retry'."""
    text = reason.strip().lower()
    if text.startswith("duplicate:"):
        return "ack"
    return "refused" if text.startswith(PERMANENT) else "retry"


class Outbox:
    def __init__(self, store: Store, pool: RelayPool, clock: Clock, settings: Settings) -> None:
        self.store = store
        self.pool = pool
        self.clock = clock
        self.settings = settings
        self._wake = anyio.Event()
        self._changed = anyio.Event()
        self._fresh: list[int] = []  # kinds enqueued since the last wake (for crash points)

    # --- enqueue -----------------------------------------------------------------------

    def enqueue(
        self,
        tx: Tx,
        event: NostrEvent,
        targets: list[str] | None = None,
        min_acks: int | None = None,
    ) -> None:
        """Add `event` to the outbox inside an open transaction (with the effects it belongs to)."""
        targets = targets or self.pool.config.write_urls
        acks = min(min_acks or self.pool.config.min_acks, len(targets))
        ttl = self.clock.now() + self.settings.outbox_ttl_s
        tx.enqueue(event.id, event.to_json(), event.kind, targets, acks, ttl)
        self._fresh.append(event.kind)

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
            while not item.published and item.state == "pending":
                await self._wait_changed()
                item = self.store.outbox_item(event.id) or item
        return item

    async def _wait_changed(self) -> None:
        await self._changed.wait()

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
            tx.execute(
                "UPDATE outbox SET next_attempt_at = ? WHERE state = 'pending'"
                " AND event_id NOT IN (SELECT event_id FROM outbox_acks WHERE relay = ?)",
                (self.clock.now(), url),
            )
        self.wake()

    # --- delivery ----------------------------------------------------------------------

    async def run(self) -> None:
        """Deliver due items forever; sleeps until the next is due or something wakes it."""
        while True:
            self._wake = anyio.Event()
            for item in self.store.due_outbox(self.clock.now()):
                await self.attempt(item)
            nxt = self.store.next_outbox_time()
            wait = 3600.0 if nxt is None else max(0.05, nxt - self.clock.now())
            with anyio.move_on_after(wait):
                await self._wake.wait()

    async def attempt(self, item: OutboxItem) -> None:
        """One delivery attempt to every target that lacks the event."""
        crash_point("outbox.before_send", str(item.kind))
        if any(url not in self.pool.states for url in item.missing):
            for url in item.missing:
                await self.pool.add_write_relay(url)
        self.store.sync()  # nothing leaves on the strength of a commit that could be lost
        # the stored JSON exactly as signed and committed: never re-signed, never rebuilt (and
        # not re-verified: it is our own, and relays check signatures anyway)
        outcome = await self.pool.publish(item.event_json, item.missing)
        crash_point("outbox.after_send", str(item.kind))
        now = self.clock.now()
        acked = set(item.acked) | set(outcome.accepted)
        refused = dict(item.refused)
        retry = {}
        for url, reason in outcome.refused.items():
            verdict = classify(reason)
            if verdict == "ack":
                acked.add(url)
            elif verdict == "refused":
                refused[url] = reason
            else:
                retry[url] = reason
        with self.store.transaction(now, durable=False) as tx:  # if lost: published again
            tx.record_acks(item.event_id, sorted(acked - item.acked))
            for url in refused.keys() - item.refused.keys():
                tx.record_refusal(item.event_id, url, refused[url])
                log.warning("relay %s refused %s: %s", url, item.event_id, refused[url])
            if all(url in acked or url in refused for url in item.targets):
                tx.finish(item.event_id, "done" if len(acked) >= item.min_acks else "failed")
            elif now >= item.expires_at:
                tx.finish(item.event_id, "expired")
                log.warning("gave up delivering %s to %s", item.event_id, item.missing)
            else:
                wait = delay(
                    item.attempts,
                    self.settings.outbox_retry_base_s,
                    self.settings.outbox_retry_max_s,
                    self.pool.config.jitter,
                )
                reasons = "; ".join(f"{u}: {r}" for u, r in retry.items())
                tx.reschedule(item.event_id, now + max(1, round(wait)), reasons or None)
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    def pending(self) -> int:
        return self.store.outbox_counts().get("pending", 0)
