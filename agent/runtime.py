"""The agent: one task group running the relay pool, the inbound pipeline, the outbox, the
status writer and the pruner, around one store.

    async with Agent(settings, keys, relays) as agent:
        await agent.send_note(pubkey, "hello")
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

import anyio
import nostr_sdk as sdk
from pydantic import ValidationError

from agent import __version__
from agent.clock import Clock, SystemClock
from agent.handlers import RumorHandler, default_handlers
from agent.inbound import Handler, Inbound
from agent.nostr import dial
from agent.nostr.client import Incoming
from agent.nostr.pool import RelayPool, Subscription
from agent.outbox import Outbox
from agent.ratelimit import FloodLimiter, WrapGuard
from agent.settings import RelaysConfig, Settings
from agent.store import OutboxItem, Store, Tx
from events import nip59, note, relay_lists
from events.base import NostrEvent, Rumor
from events.errors import InvalidParams
from events.kinds import Kind
from events.relay_lists import inbox_relays
from events.types import first_error

log = logging.getLogger("hive.agent")
STATUS_EVERY_S = 1.0
PRUNE_EVERY_S = 3600.0
CHECKPOINT_EVERY_S = 0.5
KNOWN_TTL_S = 1.0
KNOWN_CACHE = 4096


class Agent:
    def __init__(
        self,
        settings: Settings,
        keys: sdk.Keys,
        relays: RelaysConfig,
        *,
        store: Store | None = None,
        clock: Clock | None = None,
        extra_handlers: dict[int, Handler] | None = None,
    ) -> None:
        self.settings = settings
        self.keys = keys
        self.pubkey = keys.public_key().to_hex()
        self.relays = relays
        self.clock = clock or SystemClock()
        self.store = store or Store(settings.store_file)
        self.rumors: dict[int, RumorHandler] = {}
        # keys whose gift wraps are never limited as a stranger's (the operator, approvers);
        # credential holders, contract parties and nodes we advise come from the store
        self.known_keys: set[str] = set()
        self._known: OrderedDict[str, float] = OrderedDict()
        self.guard = WrapGuard(
            failures_per_minute=settings.wrap_failures_per_minute,
            failures_burst=max(1, settings.wrap_failures_per_minute // 2),
            strangers_per_minute=settings.strangers_per_minute,
            strangers_burst=max(1, settings.strangers_per_minute // 2),
            per_stranger_per_minute=settings.per_stranger_per_minute,
            per_stranger_burst=max(1, settings.per_stranger_per_minute // 2),
            max_senders=settings.flood_senders,
            min_pow=settings.giftwrap_min_pow,
            known=self.is_known,
        )
        self.handlers = {
            **default_handlers(keys, self.clock, self.rumors, self.guard),
            **(extra_handlers or {}),
        }
        self.after_batch: list[Callable[[], None]] = []
        self.services: dict[str, Any] = {}  # the services attached to this agent, by name
        limiter = FloodLimiter(
            settings.flood_per_minute, settings.flood_burst, settings.flood_senders
        )
        self.inbound = Inbound(
            self.store,
            self.handlers,
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
        self._stack = AsyncExitStack()
        self._processed = anyio.Event()
        self._watched = 0

    # --- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Agent:
        try:
            await self._start()
        except BaseException:
            # shut the relay client down on every error path: a nostr-sdk client left running
            # crashes the interpreter at exit (SIGSEGV) instead of reporting the error
            await self._stack.aclose()
            raise
        return self

    async def _start(self) -> None:
        await self._stack.enter_async_context(self.pool)
        if not await self.pool.wait_connected(self.relays.connect_timeout_s):
            log.warning("no relay reachable yet; the outbox will deliver once one is")
        tg = await self._stack.enter_async_context(anyio.create_task_group())
        self._stack.callback(tg.cancel_scope.cancel)
        self._stack.callback(self._write_status)
        tg.start_soon(self._consume)
        tg.start_soon(self.outbox.run)
        tg.start_soon(self._status_loop)
        tg.start_soon(self._prune_loop)
        self.store.background_checkpoints()
        tg.start_soon(self._checkpoint_loop)
        with self.store.transaction(self.clock.now()) as tx:
            tx.set_kv("agent", {"pubkey": self.pubkey, "pid": os.getpid(), "version": __version__})
        await self.pool.subscribe(
            Subscription(
                "inbox",
                [{"kinds": [Kind.GIFT_WRAP], "#p": [self.pubkey]}],
                lookback_s=self.settings.giftwrap_lookback_s,
            )
        )
        await self.pool.subscribe(
            Subscription("profiles", [{"kinds": [Kind.AGENT_INFO], "#t": ["hive-agent"]}])
        )
        await self.pool.subscribe(
            Subscription(
                "market",
                [
                    {"kinds": [Kind.RFP], "#t": ["hive-rfp"]},
                    {"kinds": [Kind.REPUTATION], "#p": [self.pubkey]},
                    {"kinds": [Kind.DELETION], "#k": [str(int(Kind.REPUTATION))]},
                ],
            )
        )
        await self.watch_contracts()
        self.announce_relays()

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    def is_known(self, pubkey: str) -> bool:
        """True for a key this agent works with (its gift wraps skip the strangers' limits).

        Asked of the store (indexed) each time for a key not known yet — a credential granted a
        moment ago, by this process or by `hive-agent credential grant` in another, counts at
        once (even for the message right after the one that granted it); a "yes" is kept for
        KNOWN_TTL_S in a bounded map."""
        if pubkey in self.known_keys:
            return True
        now = time.monotonic()
        since = self._known.get(pubkey)
        if since is not None and now - since < KNOWN_TTL_S:
            return True
        if not self.store.is_correspondent(pubkey):
            return False
        self._known[pubkey] = now
        if len(self._known) > KNOWN_CACHE:
            self._known.popitem(last=False)
        return True

    def _relay_back(self, url: str) -> None:
        self.inbound.thaw_cursors(url)  # its REQs were just sent from the cursors as they are
        self.outbox.relay_back(url)

    # --- loops -------------------------------------------------------------------------

    async def _consume(self) -> None:
        """Feed the inbound pipeline in batches.  Normally in arrival order; while a backlog
        builds (a flood), the newest batch goes first, so a legitimate message that arrives
        mid-flood waits for one batch instead of the whole flood, and the oldest beyond
        `inbound_backlog` are shed (counted RATE_LIMITED, not remembered: the next NIP-77
        catch-up or reconnect brings back any that mattered)."""
        backlog: deque[Incoming] = deque()
        batch_size, cap = self.settings.batch_size, self.settings.inbound_backlog
        while True:
            if not backlog:
                try:
                    backlog.append(await self.pool.inbox.receive())
                except (anyio.EndOfStream, anyio.ClosedResourceError):
                    return
            _drain(self.pool.inbox, backlog, cap)
            shed = 0
            while len(backlog) > cap:
                self.inbound.freeze_cursors(backlog.popleft().relay)
                shed += 1
            if len(backlog) <= batch_size:
                batch = list(backlog)
                backlog.clear()
            else:  # the newest batch, in arrival order; older ones wait, so cursors hold
                batch = [backlog.pop() for _ in range(batch_size)][::-1]
                for relay in {item.relay for item in batch}:
                    self.inbound.freeze_cursors(relay)
            self.inbound.process(batch, shed=shed)
            if self.outbox.has_fresh:  # handlers queued replies
                self.outbox.wake()
            for callback in self.after_batch:
                callback()
            done, self._processed = self._processed, anyio.Event()
            done.set()
            if self._contracts_changed():
                await self.watch_contracts()
            await anyio.lowlevel.checkpoint()  # the relay readers and the outbox run between

    def _contracts_changed(self) -> bool:
        row = self.store.conn.execute(
            "SELECT count(*) FROM contracts WHERE state = 'active' AND role = 'client'"
        ).fetchone()
        return int(row[0]) != self._watched

    async def _status_loop(self) -> None:
        while True:
            self._write_status()
            await anyio.sleep(STATUS_EVERY_S)

    def _write_status(self) -> None:
        # not durable: a status snapshot lost to a power cut is simply written again
        with self.store.transaction(self.clock.now(), durable=False) as tx:
            tx.execute("DELETE FROM relay_status")  # relays dropped from the pool go too
            for row in self.pool.status():
                tx.save_relay_status(row)
            tx.set_kv("inbound", dict(self.inbound.totals))
            tx.set_kv("status_at", self.clock.now())

    async def _checkpoint_loop(self) -> None:
        """WAL checkpoints in a worker thread, so no command waits for one."""
        done = self.store.commits
        while True:
            await anyio.sleep(CHECKPOINT_EVERY_S)
            if self.store.commits != done:
                done = self.store.commits
                await anyio.to_thread.run_sync(self.store.checkpoint)

    async def _prune_loop(self) -> None:
        while True:
            now = self.clock.now()
            with self.store.transaction(now) as tx:
                tx.prune(now - self.settings.seen_retention_s, now - self.settings.outbox_ttl_s)
            await anyio.sleep(PRUNE_EVERY_S)

    # --- what an agent does --------------------------------------------------------------

    def announce_relays(self) -> None:
        """Queue this agent's NIP-65 relay list and NIP-17 DM inbox list for publishing."""
        now = self.clock.now()
        cfg = self.relays
        listing = relay_lists.build_relay_list(
            self.keys, cfg.read_urls, cfg.write_urls, created_at=now
        )
        inbox = relay_lists.build_dm_relays(
            self.keys, cfg.inbox_urls, created_at=now, pow_bits=self.settings.giftwrap_min_pow
        )
        with self.store.transaction(now) as tx:
            self.outbox.enqueue(tx, listing, background=True)
            self.outbox.enqueue(tx, inbox, background=True)
        self.outbox.wake()

    async def inbox_of(self, pubkey: str) -> list[str]:
        """Where `pubkey` reads gift wraps (its 10050, else its 10002 read relays, else ours)."""
        dm, listed, _ = self.store.inbox_lists(pubkey)
        if dm is None and listed is None:
            raws = await self.pool.fetch(
                [{"kinds": [Kind.DM_RELAYS, Kind.RELAY_LIST], "authors": [pubkey]}], timeout_s=3
            )
            self.inbound.process([Incoming("fetch", raw) for raw in raws])
            dm, listed, _ = self.store.inbox_lists(pubkey)
        return self._inbox_targets(dm, listed)

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

    async def fetch_into_store(
        self, filters: list[dict[str, Any]], timeout_s: float = 5
    ) -> list[str]:
        """Query the read relays once and run what comes back through the inbound pipeline."""
        raws = await self.pool.fetch(filters, timeout_s=timeout_s)
        self.inbound.process([Incoming("fetch", raw) for raw in raws])
        return raws

    async def watch_contracts(self) -> None:
        """(Re)subscribe to the heartbeats of every active contract where we are the client."""
        ids = [
            row[0]
            for row in self.store.conn.execute(
                "SELECT id FROM contracts WHERE state = 'active' AND role = 'client'"
            )
        ]
        self._watched = len(ids)
        if ids:
            await self.pool.subscribe(
                Subscription("heartbeats", [{"kinds": [Kind.HEARTBEAT], "#d": ids}])
            )

    async def publish(self, event: NostrEvent, *, wait: bool = True) -> OutboxItem:
        """Publish a signed public event to the write relays through the outbox."""
        if not wait:
            return self.outbox.submit(event)
        return await self.outbox.publish(event, timeout_s=self.relays.publish_timeout_s)

    async def wait_processed(self) -> None:
        """Until the inbound pipeline finishes its next batch."""
        await self._processed.wait()

    async def until_idle(self, settle_s: float = 0.5) -> None:
        """Until nothing arrived for `settle_s` and the outbox has nothing due: every item has
        been tried, and what waits does so for a relay that is down or refused it for now
        (such rows never hold this up: they may wait for days)."""
        while True:
            if not self.outbox.busy():
                with anyio.move_on_after(settle_s) as scope:
                    await self.wait_processed()
                if scope.cancelled_caught and not self.outbox.busy():
                    return
            else:
                await anyio.sleep(0.05)

    async def flush(self, timeout_s: float | None = None) -> list[OutboxItem]:
        """Wait until what this process queued is published, for at most `timeout_s` (default
        the relays' publish timeout); return what still waits (delivered later by `run`)."""
        limit = self.relays.publish_timeout_s if timeout_s is None else timeout_s
        return await self.outbox.flush(limit)


def new_note(text: str, reply_to: str | None = None) -> note.Note:
    """A note to send, checked (InvalidParams) before anything connects or is queued."""
    try:
        msg = note.Note(msg_id=uuid.uuid4().hex, text=text, reply_to=reply_to)
    except ValidationError as exc:
        raise InvalidParams(f"the note's {first_error(exc)}") from None
    now = int(time.time())
    note.rumor("00" * 32, msg, created_at=now, expiration=now + 1)  # TooLarge if it cannot fit
    return msg


def status_report(store: Store) -> dict[str, Any]:
    """What `hive-agent status` prints, read from the store (works while the agent runs)."""
    return {
        "agent": store.kv("agent"),
        "status_at": store.kv("status_at"),
        "relays": store.relay_status(),
        "outbox": store.outbox_counts(),
        "errors": store.error_counts(),
        "inbound": store.kv("inbound", {}),
    }


def _drain(inbox: anyio.abc.ObjectReceiveStream[Incoming], into: deque[Incoming], cap: int) -> None:
    """Move what is already waiting in `inbox` into `into` (at most twice `cap` at a time)."""
    for _ in range(2 * cap):
        try:
            into.append(inbox.receive_nowait())
        except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
            return
