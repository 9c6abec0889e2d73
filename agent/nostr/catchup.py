"""NIP-77 (negentropy) catch-up for the relay pool (agent/nostr/pool.py).

At connect and every `every_s` (jittered), each subscription's recent window is reconciled
with the relay (events/negentropy.py) and only the events we lack are fetched, under the
subscription's name so they move its cursor like live events.  A relay without NIP-77 — or one
whose reconciliation does not end — gets the old catch-up instead: REQs whose `since` looks back
the whole window.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from websockets.exceptions import ConnectionClosed

from agent.clock import Clock
from agent.nostr.relay_conn import Connection, Fetch, RelayState, Subscription, why
from agent.settings import RelaysConfig
from events.errors import HiveError
from events.negentropy import Negentropy, Storage

SYNC_EVERY_S = 300.0  # periodic NIP-77 catch-up, for events a live subscription missed
SYNC_WINDOW_S = 86400  # how far back a periodic catch-up looks (gift wraps: their lookback)
NEG_FRAME = 30_000  # bytes of negentropy per message (hex doubles it on the wire)
MAX_SYNC_FETCH = 2_000  # events fetched per subscription per catch-up, newest first
MAX_SYNC_ROUNDS = 50  # a reconciliation of any honest set ends long before this
MAX_SYNC_NEED = 20_000  # ids a relay may claim we lack in one reconciliation

# what we already hold for a filter, as (created_at, id)
LocalItems = Callable[[dict[str, Any]], list[tuple[int, str]]]
Resubscribe = Callable[[str, Subscription], Awaitable[None]]


class Catchup:
    """The pool's NIP-77 catch-up; it shares the pool's relay states, connections, one-shot
    fetches and subscriptions, and calls `resubscribe` to fall back to `since`."""

    def __init__(
        self,
        config: RelaysConfig,
        clock: Clock,
        *,
        states: dict[str, RelayState],
        conns: dict[str, Connection],
        fetches: dict[str, Fetch],
        subscriptions: dict[str, Subscription],
        resubscribe: Resubscribe,
        local_items: LocalItems | None,
        every_s: float = SYNC_EVERY_S,
    ) -> None:
        self.config = config
        self.clock = clock
        self.states = states
        self.conns = conns
        self.fetches = fetches
        self.subscriptions = subscriptions
        self.resubscribe = resubscribe
        # NIP-77 catch-up asks relays only for what `local_items` lacks; None: catch up with
        # `since` alone
        self.local_items = local_items
        self.every_s = every_s

    @property
    def enabled(self) -> bool:
        return self.local_items is not None

    def syncs(self, url: str) -> bool:
        """True if catch-up on `url` goes through NIP-77 (so REQs need not look back)."""
        conn = self.conns.get(url)
        return self.local_items is not None and conn is not None and conn.negentropy is not False

    async def loop(self, url: str, conn: Connection) -> None:
        """At connect and every `every_s` (jittered): reconcile each subscription's recent
        window with the relay and fetch only what we lack.  A relay without NIP-77 gets the
        old catch-up instead (REQs with `since` looking back the whole window)."""
        with contextlib.suppress(ConnectionClosed):
            await self._rounds(url, conn)

    async def _rounds(self, url: str, conn: Connection) -> None:
        first = True
        while conn.ws is not None and conn.negentropy is not False:
            for sub in list(self.subscriptions.values()):
                window = sub.lookback_s if first and sub.lookback_s else SYNC_WINDOW_S
                window = max(window, sub.lookback_s)
                for spec in sub.filters:
                    if not await self.sync(url, sub, spec, window):
                        # NIP-77 unsupported: fall back to `since` for every subscription
                        for again in list(self.subscriptions.values()):
                            await self.resubscribe(url, again)
                        return
            first = False
            await anyio.sleep(self.every_s * (0.8 + 0.4 * random.random()))  # noqa: S311

    async def sync(self, url: str, sub: Subscription, spec: dict[str, Any], window: int) -> bool:
        """Reconcile one filter of `sub` over the last `window` seconds with `url`, and fetch
        the events we lack into the inbox.  False if the relay does not speak NIP-77."""
        conn = self.conns.get(url)
        if conn is None or conn.ws is None or self.local_items is None:
            return True
        now = self.clock.now()
        # never past the local clock: future-dated events are refused, and would otherwise
        # be "missing" (and fetched again) at every catch-up
        spec = {**spec, "since": max(0, now - window), "until": now}
        items = self.local_items(spec)  # an indexed range of the store: milliseconds
        neg = Negentropy(Storage((ts, bytes.fromhex(i)) for ts, i in items), frame_limit=NEG_FRAME)
        neg_id = f"neg.{secrets.token_hex(8)}"
        queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue(maxsize=4)
        conn.neg[neg_id] = queue
        message: bytes | None = neg.initiate()
        rounds = 0
        try:
            await conn.ws.send(json.dumps(["NEG-OPEN", neg_id, spec, message.hex()]))
            while message is not None:
                with anyio.fail_after(self.config.publish_timeout_s):
                    kind, payload = await queue.get()
                if kind == "NEG-ERR":
                    if conn.negentropy is None:
                        conn.negentropy = False
                    self.states[url].last_error = f"no NIP-77 sync: {payload}"[:200]
                    return conn.negentropy is not False
                conn.negentropy = True
                rounds += 1
                if rounds > MAX_SYNC_ROUNDS or len(neg.need) > MAX_SYNC_NEED:
                    # broken or hostile: this connection falls back to `since`
                    conn.negentropy = False
                    self.states[url].last_error = (
                        f"NIP-77 sync failed: the relay's reconciliation does not end "
                        f"({rounds} rounds, {len(neg.need)} ids claimed)"
                    )
                    return False
                message = neg.reconcile(bytes.fromhex(payload))
                if message is not None:
                    await conn.ws.send(json.dumps(["NEG-MSG", neg_id, message.hex()]))
        except (TimeoutError, ValueError, HiveError) as exc:
            if conn.negentropy is None:  # never answered: treat as unsupported
                conn.negentropy = False
                return False
            self.states[url].last_error = f"NIP-77 sync failed: {why(exc)}"[:200]
            return True
        except ConnectionClosed:
            return True
        finally:
            conn.neg.pop(neg_id, None)
            if conn.ws is not None:
                with contextlib.suppress(ConnectionClosed):
                    await conn.ws.send(json.dumps(["NEG-CLOSE", neg_id]))
        await self._fetch_ids(url, conn, sub, [i.hex() for i in neg.need])
        return True

    async def _fetch_ids(
        self, url: str, conn: Connection, sub: Subscription, ids: list[str]
    ) -> None:
        """REQ the events a sync found missing, under the subscription's name (so they move
        its cursor like live events), at most MAX_SYNC_FETCH of them."""
        for start in range(0, min(len(ids), MAX_SYNC_FETCH), 500):
            if conn.ws is None:
                return
            req_id = f"{sub.id}.sync{secrets.token_hex(6)}"
            fetch = self.fetches[req_id] = Fetch(
                waiting={url}, forward=sub.id, asked=frozenset({url})
            )
            try:
                chunk = ids[start : start + 500]
                await conn.ws.send(json.dumps(["REQ", req_id, {"ids": chunk}]))
                with anyio.move_on_after(self.config.publish_timeout_s):
                    await fetch.done.wait()
                with contextlib.suppress(ConnectionClosed):
                    await conn.ws.send(json.dumps(["CLOSE", req_id]))
            finally:
                del self.fetches[req_id]
