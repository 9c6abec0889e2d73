"""The relay pool: the agent's own NIP-01 client connections to several relays.

Each relay has one websocket and one supervisor task: connect (with a timeout), send every
subscription with a fresh REQ id and a `since` from the last event seen on that relay (minus a
margin; at least two days back for gift wraps, whose dates are randomised), read until the
connection drops, then reconnect after a backoff with jitter (agent/backoff.py).  Publishing goes
to connected relays only — a down relay is reported at once instead of costing a timeout — and
each relay's `OK` is recorded separately.  NIP-42 AUTH challenges are answered with the agent's
key.  NIP-77 (negentropy) catch-up runs where a relay supports it (agent/nostr/catchup.py).

Every received event is handed on as the relay's raw JSON text (`Incoming`; the reading is
agent/nostr/relay_reader.py): nothing there parses or trusts an event, so `events.parse_event`
stays the one door in, and a relay that sends forged, malformed or oversized events has each
one counted by the inbound pipeline.  (nostr-sdk's client verified and silently dropped such
events, and cost ~200 µs of Python time per event in bindings; reading the websocket here costs
~40 µs.)

Relays that someone else's event names (a recipient's inbox list) are added with
`add_foreign`: never loopback or private addresses (agent/nostr/dial.py), at most
`max_foreign` at once, and dropped by `retain` when nothing waits for them.

What is kept per relay (status row, live connection, one-shot fetches): agent/nostr/relay_conn.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import zlib
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

import anyio
import nostr_sdk as sdk
import websockets
from websockets.client import WebSocketClientProtocol
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from agent.backoff import delay
from agent.clock import Clock
from agent.errors import RelayUnavailable
from agent.nostr import dial
from agent.nostr.catchup import SYNC_EVERY_S, Catchup, LocalItems
from agent.nostr.client import Incoming
from agent.nostr.relay_conn import (
    CONNECTED,
    Connection,
    Fetch,
    PublishOutcome,
    RelayState,
    Subscription,
    clean,
    close_connection,
    why,
)
from agent.nostr.relay_reader import RelayReader, split_event_frame
from agent.settings import RelaysConfig
from events.base import sign_event
from events.errors import HiveError
from events.kinds import Kind

__all__ = [
    "CONNECTED",
    "Busy",
    "PublishOutcome",
    "RelayPool",
    "RelayState",
    "Subscription",
    "clean",
    "split_event_frame",
]

log = logging.getLogger("hive.pool")
MAX_FOREIGN = 16  # relays of other people's lists connected at once
RESOLVE_TIMEOUT_S = 3.0
MAX_FRAME = 256 * 1024  # events are at most 64 KiB; anything far larger is not a relay talking


class Busy(Exception):
    """Raised when a relay cannot be added now (too many in use); try again later."""


class RelayPool:
    """`async with RelayPool(...)` connects and supervises; `inbox` yields `Incoming`."""

    def __init__(
        self,
        config: RelaysConfig,
        keys: sdk.Keys,
        clock: Clock,
        *,
        cursor: Callable[[str, str], int | None] = lambda relay, sub: None,
        catchup_margin_s: int = 600,
        on_connect: Callable[[str], None] = lambda url: None,
        inbox_size: int = 4096,
        allow_private: bool = False,
        max_foreign: int = MAX_FOREIGN,
        local_items: LocalItems | None = None,
        sync_every_s: float = SYNC_EVERY_S,
    ) -> None:
        self.config = config
        self.keys = keys
        self.clock = clock
        self.cursor = cursor
        self.margin = catchup_margin_s
        self.on_connect = on_connect
        self.states = {
            r.url: RelayState(r.url, r.read, r.write, since=clock.now()) for r in config.relays
        }
        self.foreign: set[str] = set()
        self.allow_private = allow_private
        self.max_foreign = max_foreign
        self.subscriptions: dict[str, Subscription] = {}
        self.inbox_size = inbox_size
        self.inbox: anyio.abc.ObjectReceiveStream[Incoming]
        self._send: anyio.abc.ObjectSendStream[Incoming]
        self._conns: dict[str, Connection] = {}
        self._fetches: dict[str, Fetch] = {}
        self._stack = AsyncExitStack()
        self._tg: anyio.abc.TaskGroup | None = None
        self._any_connected = anyio.Event()
        self._status_changed = anyio.Event()
        # what we already hold for a filter, as (created_at, id): NIP-77 catch-up asks relays
        # only for the rest; None: catch up with `since` alone
        self._catchup = Catchup(
            config,
            clock,
            states=self.states,
            conns=self._conns,
            fetches=self._fetches,
            subscriptions=self.subscriptions,
            resubscribe=self._send_req,
            local_items=local_items,
            every_s=sync_every_s,
        )
        self._reader: RelayReader  # needs the inbox stream: made on entering

    # --- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> RelayPool:
        try:
            self._send, self.inbox = anyio.create_memory_object_stream[Incoming](self.inbox_size)
            self._stack.callback(self.inbox.close)
            self._stack.callback(self._send.close)
            self._reader = RelayReader(self._fetches, self._send, self._authenticate)
            self._stack.push_async_callback(self._close_all)
            self._tg = await self._stack.enter_async_context(anyio.create_task_group())
            self._stack.callback(self._tg.cancel_scope.cancel)
            for url in list(self.states):
                self._add(url)
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def _close_all(self) -> None:
        for conn in list(self._conns.values()):
            await close_connection(conn)

    def _add(self, url: str) -> None:
        assert self._tg is not None
        self._conns[url] = Connection()
        self._tg.start_soon(self._supervise, url, self.states[url])

    async def add_foreign(self, url: str) -> str | None:
        """Also publish to `url`, a relay someone else's event named (a recipient's inbox).

        Returns why it cannot be used — a refusal that is final (its address is loopback or
        private) — or None once it is added (or was already there).  Raises `Busy` while
        `max_foreign` such relays are connected; the caller tries again later.
        """
        if url in self.states:
            return None
        if dial.normalized(url) != url:
            return "blocked: not a plain relay URL in the form it would be checked"
        if not self.allow_private:
            reason = await dial.refusal_in_time(url, RESOLVE_TIMEOUT_S)
            if reason is not None:
                return f"blocked: {reason}"
        if len(self.foreign) >= self.max_foreign:
            raise Busy(f"{len(self.foreign)} relays of other people's lists are in use")
        if url in self.states:  # added while we resolved
            return None
        self.states[url] = RelayState(url, read=False, write=True, since=self.clock.now())
        self.foreign.add(url)
        self._add(url)
        return None

    async def retain(self, needed: set[str]) -> None:
        """Disconnect the relays of other people's lists that nothing waits for any more."""
        for url in sorted(self.foreign - needed):
            self.foreign.discard(url)
            self.states.pop(url, None)
            conn = self._conns.pop(url, None)
            if conn is not None:
                await close_connection(conn)

    # --- supervision -------------------------------------------------------------------

    def _set(self, state: RelayState, status: str, error: str | None = None) -> None:
        if state.status != status:
            state.status, state.since = status, self.clock.now()
            changed, self._status_changed = self._status_changed, anyio.Event()
            changed.set()
        if error is not None:
            state.last_error = error[:200]

    async def _supervise(self, url: str, state: RelayState) -> None:
        cfg = self.config
        while self.states.get(url) is state:  # until the relay is removed (retain)
            conn = self._conns[url]
            self._set(state, "connecting")
            try:
                with anyio.fail_after(cfg.connect_timeout_s):
                    conn.ws = await websockets.connect(
                        url,
                        open_timeout=None,
                        close_timeout=1,
                        compression=None,
                        max_size=MAX_FRAME,
                        max_queue=64,
                        ping_interval=30,
                        ping_timeout=30,
                        user_agent_header="hive-agent",
                    )
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI, ValueError) as exc:
                self._set(state, "disconnected", why(exc))
                wait = delay(state.attempts, cfg.reconnect_base_s, cfg.reconnect_max_s, cfg.jitter)
                state.attempts += 1
                await anyio.sleep(wait)
                continue
            state.attempts = 0
            conn.negentropy, conn.authed, conn.challenged = None, False, False
            self._set(state, CONNECTED)
            self._any_connected.set()
            lost = "connection lost"
            try:
                await self._serve(url, state, conn, conn.ws)
            except Exception as exc:  # noqa: BLE001 - one relay's misbehaviour never ends the pool
                lost = f"dropped after an error: {type(exc).__name__}: {clean(str(exc))}"
                log.warning("relay %s: %s", url, lost)
            finally:
                await close_connection(conn)
            if self.states.get(url) is state:
                self._set(state, "disconnected", lost)
                wait = delay(state.attempts, cfg.reconnect_base_s, cfg.reconnect_max_s, cfg.jitter)
                state.attempts += 1
                await anyio.sleep(wait)

    async def _serve(
        self, url: str, state: RelayState, conn: Connection, ws: WebSocketClientProtocol
    ) -> None:
        """One connection's life: subscribe, catch up, read until it closes."""
        if state.read:
            for sub in list(self.subscriptions.values()):
                await self._send_req(url, sub)
        self.on_connect(url)
        async with anyio.create_task_group() as tg:
            if state.read and self._catchup.enabled:
                tg.start_soon(self._catchup.loop, url, conn)
            await self._reader.read(url, state, conn, ws)
            tg.cancel_scope.cancel()

    def _filters_for(self, url: str, sub: Subscription) -> list[dict[str, Any]]:
        now = self.clock.now()
        last = self.cursor(url, sub.id)
        # never past the local clock: a cursor poisoned by a future-dated event (before such
        # events were refused) would otherwise hide everything until that date
        since = None if last is None else min(last, now) - self.margin
        live_only = False
        if sub.lookback_s:
            # gift wraps carry dates up to two days in the past, so even a live subscription
            # must look back that far; where NIP-77 fetches the history, `limit: 0` asks the
            # relay for live events only (no two days of stored wraps at every start)
            floor = now - sub.lookback_s
            since = floor if since is None else min(since, floor)
            live_only = self._catchup.syncs(url)
        out = []
        for spec in sub.filters:
            spec = dict(spec)
            if since is not None:
                spec["since"] = max(0, min(spec.get("since", since), since))
            if live_only:
                spec["limit"] = 0
            out.append(spec)
        return out

    async def _send_req(self, url: str, sub: Subscription) -> None:
        """(Re-)send `sub` to `url` under a fresh REQ id (and close the one it replaces)."""
        state, conn = self.states[url], self._conns.get(url)
        if conn is None or conn.ws is None:
            return
        state.generation += 1
        req_id = f"{sub.id}.{zlib.crc32(url.encode()):08x}.{state.generation}"
        old = state.req_ids.get(sub.id)
        state.req_ids[sub.id] = req_id
        frame = json.dumps(["REQ", req_id, *self._filters_for(url, sub)], separators=(",", ":"))
        try:
            if old is not None:
                await conn.ws.send(json.dumps(["CLOSE", old]))
            await conn.ws.send(frame)
        except ConnectionClosed:
            return

    async def subscribe(self, sub: Subscription) -> None:
        """Register a subscription and send it to every connected read relay."""
        self.subscriptions[sub.id] = sub
        # a copy: awaiting below lets the outbox add relays to `states`
        for url, state in list(self.states.items()):
            if state.read and state.status == CONNECTED:
                await self._send_req(url, sub)

    # --- NIP-42 AUTH ---------------------------------------------------------------------

    async def _authenticate(self, url: str, conn: Connection, challenge: str) -> None:
        """NIP-42: sign the challenge; once the relay accepts, re-send what it may have refused
        for want of it (subscriptions, and the outbox's waiting events through on_connect)."""
        try:
            event = sign_event(
                self.keys,
                Kind.AUTH,
                "",
                [["relay", url], ["challenge", challenge[:200]]],
                self.clock.now(),
            )
        except HiveError as exc:
            self.states[url].last_error = f"AUTH challenge refused: {exc}"[:200]
            return
        if conn.ws is None:
            return
        future: asyncio.Future[tuple[bool, str]] = asyncio.get_running_loop().create_future()
        conn.oks[event.id] = future
        await conn.ws.send(f'["AUTH",{event.to_json()}]')
        assert self._tg is not None
        self._tg.start_soon(self._after_auth, url, conn, future)

    async def _after_auth(self, url: str, conn: Connection, future: asyncio.Future[Any]) -> None:
        with anyio.move_on_after(self.config.publish_timeout_s):
            ok, reason = await future
            conn.authed = ok
            if not ok:
                self.states[url].last_error = f"auth refused: {reason}"[:200]
                return
            if self.states[url].read:
                for sub in list(self.subscriptions.values()):
                    await self._send_req(url, sub)
            self.on_connect(url)

    # --- NIP-77 catch-up (agent/nostr/catchup.py) ----------------------------------------

    async def sync(self, url: str, sub: Subscription, spec: dict[str, Any], window: int) -> bool:
        """Reconcile one filter of `sub` with `url` through NIP-77 (agent/nostr/catchup.py)."""
        return await self._catchup.sync(url, sub, spec, window)

    # --- what the agent asks ------------------------------------------------------------------

    async def wait_connected(self, timeout_s: float) -> bool:
        """Wait until at least one relay is connected (or the timeout passes)."""
        with anyio.move_on_after(timeout_s):
            await self._any_connected.wait()
        return bool(self.connected())

    def connected(self, urls: list[str] | None = None) -> list[str]:
        """Of `urls` (default: all), those connected right now."""
        pool = list(self.states) if urls is None else urls
        return [u for u in pool if u in self.states and self.states[u].status == CONNECTED]

    async def publish(
        self, event_json: str, urls: list[str], event_id: str | None = None
    ) -> PublishOutcome:
        """Send a signed event's JSON text, exactly as it is, to the connected relays among
        `urls`; every relay's answer recorded (`timeout` if none came in time)."""
        outcome = PublishOutcome()
        event_id = event_id or str(json.loads(event_json)["id"])
        frame = f'["EVENT",{event_json}]'
        loop = asyncio.get_running_loop()
        waiting: dict[str, asyncio.Future[tuple[bool, str]]] = {}
        for url in urls:
            conn = self._conns.get(url)
            if url not in self.connected([url]) or conn is None or conn.ws is None:
                outcome.refused[url] = "offline"
                continue
            future: asyncio.Future[tuple[bool, str]] = loop.create_future()
            conn.oks[event_id] = future
            try:
                await conn.ws.send(frame)
            except ConnectionClosed:
                outcome.refused[url] = "offline"
                continue
            waiting[url] = future
        if waiting:  # (returns at the timeout with what has come: no cancel scope needed)
            await asyncio.wait(list(waiting.values()), timeout=self.config.publish_timeout_s)
        for url, future in waiting.items():
            state = self.states.get(url)
            if not future.done():
                future.cancel()
                conn = self._conns.get(url)
                if conn is not None:
                    conn.oks.pop(event_id, None)
                outcome.refused[url] = "timeout"
                continue
            ok, reason = future.result()
            if ok:
                outcome.accepted.append(url)
                if state is not None:
                    state.acks += 1
            else:
                outcome.refused[url] = reason or "error: refused without a reason"
                if state is not None:
                    state.rejections += 1
                    state.last_error = f"publish refused: {reason}"[:200]
        return outcome

    async def fetch(
        self, filters: list[dict[str, Any]], timeout_s: float = 5.0, *, strict: bool = False
    ) -> list[str]:
        """One-shot query of the read relays; raw JSON of every event returned.  Relays still
        connecting (a command run just after start) are waited for, within the timeout.

        `strict`: raises RelayUnavailable (naming the relays) when no read relay answered
        (no event, no EOSE) — an empty answer then means "nobody said", not "nothing there"."""
        reads = [u for u, st in list(self.states.items()) if st.read]
        with anyio.move_on_after(min(timeout_s, self.config.connect_timeout_s)):
            while any(self.states[u].status in ("initial", "connecting") for u in reads):
                await self._status_changed.wait()
        urls = self.connected(reads)
        if not urls:
            if strict:
                raise self._unanswered(reads)
            return []
        req_id = f"fetch.{secrets.token_hex(8)}"  # unguessable: no relay feeds another's
        fetch = self._fetches[req_id] = Fetch(waiting=set(urls), asked=frozenset(urls))
        frame = json.dumps(["REQ", req_id, *filters], separators=(",", ":"))
        try:
            for url in urls:
                conn = self._conns.get(url)
                try:
                    if conn is not None and conn.ws is not None:
                        await conn.ws.send(frame)
                    else:
                        fetch.eose(url)
                except ConnectionClosed:
                    fetch.eose(url)
            with anyio.move_on_after(timeout_s):
                await fetch.done.wait()
        finally:
            del self._fetches[req_id]
            for url in urls:
                conn = self._conns.get(url)
                if conn is not None and conn.ws is not None:
                    with contextlib.suppress(ConnectionClosed):
                        await conn.ws.send(json.dumps(["CLOSE", req_id]))
        if strict and not fetch.answered:
            raise self._unanswered(reads)
        return fetch.events

    def _unanswered(self, urls: list[str]) -> RelayUnavailable:
        def why(url: str) -> str:
            error = self.states[url].last_error if url in self.states else None
            return f"{url} ({error})" if error else url

        named = ", ".join(why(u) for u in urls[:8]) or "none configured"
        return RelayUnavailable(f"no relay answered the query: {named}")

    def status(self) -> list[dict[str, Any]]:
        return [s.row() for s in list(self.states.values())]

    def status_json(self) -> str:
        return json.dumps(self.status())
