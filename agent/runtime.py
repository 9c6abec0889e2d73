"""The agent: one task group running a transport (relay pool, inbound pipeline, outbox) and
the components built on it, with the status writer, the pruner and WAL checkpoints, around one
store.  Built by `agent.app`:

    async with app.standalone(settings, keys, relays, policy).agent as agent:
        await agent.send_note(pubkey, "hello")
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from typing import Any

import anyio

from agent import __version__
from agent.component import Component
from agent.logs import log_event
from agent.nostr.client import Incoming
from agent.nostr.pool import Subscription
from agent.store import Store
from agent.transport import Transport
from events.kinds import Kind

log = logging.getLogger("hive.agent")
STATUS_EVERY_S = 1.0
PRUNE_EVERY_S = 3600.0
CHECKPOINT_EVERY_S = 0.5


class Agent:
    """Runs a transport and the components built on it.

    Reads as the transport for callers that only talk (`agent.send_note`, `agent.store`,
    `agent.publish`, …); the components' wiring is gathered here, once."""

    def __init__(self, transport: Transport, components: Sequence[Component] = ()) -> None:
        self.transport = t = transport
        self.settings, self.keys, self.pubkey, self.relays = t.settings, t.keys, t.pubkey, t.relays
        self.clock, self.store, self.pool, self.outbox = t.clock, t.store, t.pool, t.outbox
        self.inbound, self.known_keys, self.is_known = t.inbound, t.known_keys, t.is_known
        self.send_note, self.send_private, self.publish = t.send_note, t.send_private, t.publish
        self.enqueue_private, self.inbox_of, self.flush = t.enqueue_private, t.inbox_of, t.flush
        self.fetch_into_store, self.announce = t.fetch_into_store, t.announce
        self.subscriptions: list[Subscription] = [
            Subscription(
                "inbox",
                [{"kinds": [Kind.GIFT_WRAP], "#p": [self.pubkey]}],
                lookback_s=self.settings.giftwrap_lookback_s,
            ),
            Subscription("profiles", [{"kinds": [Kind.AGENT_INFO], "#t": ["hive-agent"]}]),
        ]
        self.after_batch: list[Callable[[], None]] = []
        self.resubscribe: list[Callable[[], Subscription | None]] = []
        for component in components:
            wiring = component.wiring()
            t.routes.add(wiring)
            t.known_keys.update(wiring.known_keys)
            self.subscriptions.extend(wiring.subscriptions)
            self.after_batch.extend(wiring.after_batch)
            self.resubscribe.extend(wiring.resubscribe)
        self._stack = AsyncExitStack()
        self._processed = anyio.Event()
        self._counted = self.store.error_counts()  # refusals already logged (or from before)

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
        relays = ",".join(r.url for r in self.relays.relays)
        log_event(
            log, logging.INFO, "started", pubkey=self.pubkey, version=__version__, relays=relays
        )
        for subscription in self.subscriptions:
            await self.pool.subscribe(subscription)
        await self._resubscribe()

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

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
            await self._resubscribe()
            await anyio.lowlevel.checkpoint()  # the relay readers and the outbox run between

    async def _resubscribe(self) -> None:
        for ask in self.resubscribe:
            if (changed := ask()) is not None:
                await self.pool.subscribe(changed)

    async def _status_loop(self) -> None:
        while True:
            self._write_status()
            await anyio.sleep(STATUS_EVERY_S)

    def _write_status(self) -> None:
        # not durable: a status snapshot lost to a power cut is simply written again
        with self.store.transaction(self.clock.now(), durable=False) as tx:
            tx.replace_relay_status(self.pool.status())
            tx.set_kv("inbound", dict(self.inbound.totals))
            tx.set_kv("status_at", self.clock.now())
        self._log_refusals()

    def _log_refusals(self) -> None:
        """One info line per error code counted since the last status write (by any part of
        the agent, in this process or another on the same store): bounded under a flood, where
        a line per refusal would flood the log too (those are debug lines, in agent/inbound)."""
        counts = self.store.error_counts()
        for code, total in counts.items():
            if (new := total - self._counted.get(code, 0)) > 0:
                log_event(log, logging.INFO, "refused", code=code, count=new)
        self._counted = counts

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

    # --- waiting ---------------------------------------------------------------------------

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
