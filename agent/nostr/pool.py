"""The relay pool: the agent's own NIP-01 client connections to several relays.

Each relay has one websocket and one supervisor task: connect (with a timeout), send every
subscription with a fresh REQ id and a `since` from the last event seen on that relay (minus a
margin; at least two days back for gift wraps, whose dates are randomised), read until the
connection drops, then reconnect after a backoff with jitter (agent/backoff.py).  Publishing goes
to connected relays only — a down relay is reported at once instead of costing a timeout — and
each relay's `OK` is recorded separately.  NIP-42 AUTH challenges are answered with the agent's
key.  NIP-77 (negentropy) catch-up runs where a relay supports it (agent/nostr/sync.py).

Every received event is handed on as the relay's raw JSON text (`Incoming`): nothing here
parses or trusts an event, so `events.parse_event` stays the one door in, and a relay that
sends forged, malformed or oversized events has each one counted by the inbound pipeline.
(nostr-sdk's client verified and silently dropped such events, and cost ~200 µs of Python time
per event in bindings; reading the websocket here costs ~40 µs.)

Relays that someone else's event names (a recipient's inbox list) are added with
`add_foreign`: never loopback or private addresses (agent/nostr/dial.py), at most
`max_foreign` at once, and dropped by `retain` when nothing waits for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import random
import secrets
import zlib
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field
from typing import Any

import anyio
import nostr_sdk as sdk
import websockets
from websockets.client import WebSocketClientProtocol
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from agent.backoff import delay
from agent.clock import Clock
from agent.nostr import dial
from agent.nostr.client import Incoming
from agent.settings import RelaysConfig
from events.base import sign_event
from events.errors import HiveError
from events.kinds import Kind
from events.negentropy import Negentropy, Storage

log = logging.getLogger("hive.pool")
CONNECTED = "connected"
MAX_FOREIGN = 16  # relays of other people's lists connected at once
RESOLVE_TIMEOUT_S = 3.0
MAX_FRAME = 256 * 1024  # events are at most 64 KiB; anything far larger is not a relay talking
SYNC_EVERY_S = 300.0  # periodic NIP-77 catch-up, for events a live subscription missed
SYNC_WINDOW_S = 86400  # how far back a periodic catch-up looks (gift wraps: their lookback)
NEG_FRAME = 30_000  # bytes of negentropy per message (hex doubles it on the wire)
MAX_SYNC_FETCH = 2_000  # events fetched per subscription per catch-up, newest first
MAX_SYNC_ROUNDS = 50  # a reconciliation of any honest set ends long before this
MAX_SYNC_NEED = 20_000  # ids a relay may claim we lack in one reconciliation
_decoder = json.JSONDecoder()


class Busy(Exception):
    """Raised when a relay cannot be added now (too many in use); try again later."""


@dataclass(frozen=True)
class Subscription:
    """A logical subscription, sent to every read relay under the same id."""

    id: str
    filters: list[dict[str, Any]]
    lookback_s: int = 0  # always look at least this far back (gift wraps: two days and more)


@dataclass
class RelayState:
    """What `hive-agent status` shows about one relay."""

    url: str
    read: bool
    write: bool
    status: str = "initial"
    since: int = 0
    attempts: int = 0
    acks: int = 0
    rejections: int = 0
    received: int = 0
    last_error: str | None = None
    generation: int = field(default=0, repr=False)
    req_ids: dict[str, str] = field(default_factory=dict, repr=False)

    def row(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in ("generation", "req_ids")}


@dataclass
class PublishOutcome:
    accepted: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # url -> reason (offline, rejected…)


@dataclass
class _Fetch:
    """A one-shot query: events collected until every relay asked said EOSE."""

    waiting: set[str]
    events: list[str] = field(default_factory=list)
    asked: frozenset[str] = frozenset()
    done: anyio.Event = field(default_factory=anyio.Event)
    forward: str | None = None  # a sync's fetch: into the inbox under this subscription

    def eose(self, url: str) -> None:
        self.waiting.discard(url)
        if not self.waiting:
            self.done.set()


@dataclass
class _Conn:
    """One relay's live websocket and what waits on it."""

    ws: WebSocketClientProtocol | None = None
    oks: dict[str, asyncio.Future[tuple[bool, str]]] = field(default_factory=dict)
    authed: bool = False
    neg: dict[str, asyncio.Queue[tuple[str, str]]] = field(default_factory=dict)
    negentropy: bool | None = None  # does the relay speak NIP-77 (None: not tried yet)
    challenged: bool = False  # an AUTH challenge answered on this connection


def split_event_frame(frame: str) -> tuple[str, str] | None:
    """(subscription id, the event's JSON text exactly as sent) from an `EVENT` frame that
    starts with `["EVENT"`, or None if it is not shaped like one; the event text itself is
    not checked here (the inbound pipeline does that, and counts what fails)."""
    i = _skip_space(frame, 8)  # after '["EVENT"'
    if i >= len(frame) or frame[i] != ",":
        return None
    try:
        sub, end = _decoder.raw_decode(frame, _skip_space(frame, i + 1))
    except (json.JSONDecodeError, ValueError):
        return None
    if not isinstance(sub, str):
        return None
    start = _skip_space(frame, end)
    stop = frame.rfind("]")
    if start >= len(frame) or frame[start] != "," or stop <= start:
        return None
    return sub, frame[start + 1 : stop].strip()


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


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
        local_items: Callable[[dict[str, Any]], list[tuple[int, str]]] | None = None,
        sync_every_s: float = SYNC_EVERY_S,
    ) -> None:
        self.config = config
        # what we already hold for a filter, as (created_at, id): NIP-77 catch-up asks relays
        # only for the rest; None: catch up with `since` alone
        self.local_items = local_items
        self.sync_every_s = sync_every_s
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
        self._conns: dict[str, _Conn] = {}
        self._fetches: dict[str, _Fetch] = {}
        self._stack = AsyncExitStack()
        self._tg: anyio.abc.TaskGroup | None = None
        self._any_connected = anyio.Event()
        self._status_changed = anyio.Event()

    # --- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> RelayPool:
        try:
            self._send, self.inbox = anyio.create_memory_object_stream[Incoming](self.inbox_size)
            self._stack.callback(self.inbox.close)
            self._stack.callback(self._send.close)
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
            await _close(conn)

    def _add(self, url: str) -> None:
        assert self._tg is not None
        self._conns[url] = _Conn()
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
            reason: str | None = "its name did not resolve in time"
            with anyio.move_on_after(RESOLVE_TIMEOUT_S):
                reason = await anyio.to_thread.run_sync(
                    dial.resolve_refusal, url, abandon_on_cancel=True
                )
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
                await _close(conn)

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
                self._set(state, "disconnected", _why(exc))
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
                await _close(conn)
            if self.states.get(url) is state:
                self._set(state, "disconnected", lost)
                wait = delay(state.attempts, cfg.reconnect_base_s, cfg.reconnect_max_s, cfg.jitter)
                state.attempts += 1
                await anyio.sleep(wait)

    async def _serve(
        self, url: str, state: RelayState, conn: _Conn, ws: WebSocketClientProtocol
    ) -> None:
        """One connection's life: subscribe, catch up, read until it closes."""
        if state.read:
            for sub in list(self.subscriptions.values()):
                await self._send_req(url, sub)
        self.on_connect(url)
        async with anyio.create_task_group() as tg:
            if state.read and self.local_items is not None:
                tg.start_soon(self._sync_loop, url, conn)
            await self._read(url, state, conn, ws)
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
            live_only = self._syncs(url)
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

    # --- reading -------------------------------------------------------------------------

    async def _read(
        self, url: str, state: RelayState, conn: _Conn, ws: WebSocketClientProtocol
    ) -> None:
        """Handle the relay's messages until the connection closes."""
        with contextlib.suppress(ConnectionClosed):
            await self._read_frames(url, state, conn, ws)

    async def _read_frames(
        self, url: str, state: RelayState, conn: _Conn, ws: WebSocketClientProtocol
    ) -> None:
        async for frame in ws:
            if not isinstance(frame, str):  # relays speak text; counted like any junk
                frame = frame[:200].decode("utf-8", "replace")
            if frame.startswith('["EVENT"'):
                await self._on_event(url, state, frame)
                continue
            try:
                message = json.loads(frame)
            except (json.JSONDecodeError, RecursionError):
                state.last_error = "the relay sent a message that is not JSON"
                await self._junk(url, frame)
                continue
            if not (
                isinstance(message, list)
                and message
                and isinstance(message[0], str)
                and await self._on_message(url, state, conn, message)
            ):
                state.last_error = "the relay sent a message that makes no sense"
                await self._junk(url, frame)

    async def _on_event(self, url: str, state: RelayState, frame: str) -> None:
        found = split_event_frame(frame)
        if found is None:
            state.last_error = "the relay sent a malformed EVENT message"
            await self._junk(url, frame)
            return
        req_id, raw = found
        state.received += 1
        fetch = self._fetches.get(req_id)
        if fetch is not None and url not in fetch.asked:
            return  # an answer to a query this relay was never sent
        if fetch is not None and fetch.forward is None:
            fetch.events.append(raw)
            return
        await self._send.send(Incoming(url, raw, req_id.split(".", 1)[0]))

    async def _junk(self, url: str, frame: str) -> None:
        """A frame that is not a relay message: through the inbound pipeline, which refuses
        it with a code and counts it like every other refusal."""
        await self._send.send(Incoming(url, frame[:70_000], ""))

    async def _on_message(
        self, url: str, state: RelayState, conn: _Conn, message: list[Any]
    ) -> bool:
        """Act on one relay message; False if it is not a well-formed NIP-01/42/77 message."""
        kind = message[0]
        if kind == "EVENT" and len(message) >= 3 and isinstance(message[1], str):
            # an EVENT frame not starting `["EVENT"` (whitespace): the event re-serialised
            frame = json.dumps(["EVENT", message[1], message[2]], separators=(",", ":"))
            await self._on_event(url, state, frame)
        elif kind == "OK" and len(message) >= 3 and isinstance(message[1], str):
            future = conn.oks.pop(message[1], None)
            if future is not None and not future.done():
                reason = clean(str(message[3])) if len(message) > 3 else ""
                future.set_result((message[2] is True, reason))
        elif kind == "EOSE" and len(message) >= 2 and isinstance(message[1], str):
            fetch = self._fetches.get(message[1])
            if fetch is not None:
                fetch.eose(url)
        elif kind == "CLOSED" and len(message) >= 2 and isinstance(message[1], str):
            reason = clean(str(message[2])) if len(message) > 2 else ""
            fetch = self._fetches.get(message[1])
            if fetch is not None:
                fetch.eose(url)
            elif reason:  # (some relays answer our own CLOSE with an empty CLOSED)
                state.last_error = f"subscription closed: {reason}"[:200]
        elif kind == "NOTICE" and len(message) >= 2:
            notice = clean(str(message[1]))
            state.last_error = f"notice: {notice}"[:200]
            if "neg" in notice.lower():  # relays without NIP-77 often answer NEG-OPEN so
                for queue in conn.neg.values():
                    _offer(queue, ("NEG-ERR", f"notice: {notice}"))
        elif kind in ("NEG-MSG", "NEG-ERR") and len(message) >= 3 and isinstance(message[1], str):
            queue = conn.neg.get(message[1])
            if queue is not None:  # NEG-MSG carries hex (checked by bytes.fromhex), NEG-ERR text
                payload = str(message[2]) if kind == "NEG-MSG" else clean(str(message[2]))
                _offer(queue, (kind, payload))
        elif kind == "AUTH" and len(message) >= 2 and isinstance(message[1], str):
            if not conn.challenged:  # one per connection: a relay cannot make us sign on demand
                conn.challenged = True
                await self._authenticate(url, conn, clean(message[1]))
        else:
            return False
        return True

    async def _authenticate(self, url: str, conn: _Conn, challenge: str) -> None:
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

    async def _after_auth(self, url: str, conn: _Conn, future: asyncio.Future[Any]) -> None:
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

    # --- NIP-77 catch-up ----------------------------------------------------------------------

    def _syncs(self, url: str) -> bool:
        """True if catch-up on `url` goes through NIP-77 (so REQs need not look back)."""
        conn = self._conns.get(url)
        return self.local_items is not None and conn is not None and conn.negentropy is not False

    async def _sync_loop(self, url: str, conn: _Conn) -> None:
        """At connect and every `sync_every_s` (jittered): reconcile each subscription's recent
        window with the relay and fetch only what we lack.  A relay without NIP-77 gets the
        old catch-up instead (REQs with `since` looking back the whole window)."""
        with contextlib.suppress(ConnectionClosed):
            await self._sync_rounds(url, conn)

    async def _sync_rounds(self, url: str, conn: _Conn) -> None:
        first = True
        while conn.ws is not None and conn.negentropy is not False:
            for sub in list(self.subscriptions.values()):
                window = sub.lookback_s if first and sub.lookback_s else SYNC_WINDOW_S
                window = max(window, sub.lookback_s)
                for spec in sub.filters:
                    if not await self.sync(url, sub, spec, window):
                        # NIP-77 unsupported: fall back to `since` for every subscription
                        for again in list(self.subscriptions.values()):
                            await self._send_req(url, again)
                        return
            first = False
            await anyio.sleep(self.sync_every_s * (0.8 + 0.4 * random.random()))  # noqa: S311

    async def sync(self, url: str, sub: Subscription, spec: dict[str, Any], window: int) -> bool:
        """Reconcile one filter of `sub` over the last `window` seconds with `url`, and fetch
        the events we lack into the inbox.  False if the relay does not speak NIP-77."""
        conn = self._conns.get(url)
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
            self.states[url].last_error = f"NIP-77 sync failed: {_why(exc)}"[:200]
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

    async def _fetch_ids(self, url: str, conn: _Conn, sub: Subscription, ids: list[str]) -> None:
        """REQ the events a sync found missing, under the subscription's name (so they move
        its cursor like live events), at most MAX_SYNC_FETCH of them."""
        for start in range(0, min(len(ids), MAX_SYNC_FETCH), 500):
            if conn.ws is None:
                return
            req_id = f"{sub.id}.sync{secrets.token_hex(6)}"
            fetch = self._fetches[req_id] = _Fetch(
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
                del self._fetches[req_id]

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
        if waiting:
            with anyio.move_on_after(self.config.publish_timeout_s):
                await asyncio.wait(list(waiting.values()))
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

    async def fetch(self, filters: list[dict[str, Any]], timeout_s: float = 5.0) -> list[str]:
        """One-shot query of the read relays; raw JSON of every event returned.  Relays still
        connecting (a command run just after start) are waited for, within the timeout."""
        reads = [u for u, st in list(self.states.items()) if st.read]
        with anyio.move_on_after(min(timeout_s, self.config.connect_timeout_s)):
            while any(self.states[u].status in ("initial", "connecting") for u in reads):
                await self._status_changed.wait()
        urls = self.connected(reads)
        if not urls:
            return []
        req_id = f"fetch.{secrets.token_hex(8)}"  # unguessable: no relay feeds another's
        fetch = self._fetches[req_id] = _Fetch(waiting=set(urls), asked=frozenset(urls))
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
        return fetch.events

    def status(self) -> list[dict[str, Any]]:
        return [s.row() for s in list(self.states.values())]

    def status_json(self) -> str:
        return json.dumps(self.status())


def clean(text: str) -> str:
    """A relay's text as valid UTF-8 (JSON lets it send lone surrogates, which SQLite and
    every encoder refuse), at most 300 characters."""
    return text[:300].encode("utf-8", "replace").decode("utf-8")


def _offer(queue: asyncio.Queue[tuple[str, str]], item: tuple[str, str]) -> None:
    """Queue a negentropy answer; a relay answering faster than we ask loses the extras."""
    with contextlib.suppress(asyncio.QueueFull):
        queue.put_nowait(item)


async def _close(conn: _Conn) -> None:
    """Close a relay's websocket (quickly) and fail what waited on it."""
    ws, conn.ws = conn.ws, None
    for future in conn.oks.values():
        if not future.done():
            future.set_result((False, "offline: connection lost"))
    conn.oks.clear()
    conn.authed = False
    if ws is None:
        return
    # shielded: this also runs while the pool is being cancelled, and a websocket left open
    # keeps its tasks and transport alive past the event loop
    with anyio.CancelScope(shield=True), anyio.move_on_after(0.5), contextlib.suppress(Exception):
        await ws.close()
    if not ws.closed and ws.transport is not None:
        ws.transport.abort()


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "connection timed out"
    if isinstance(exc, ConnectionRefusedError) or (
        isinstance(exc, OSError) and exc.errno == errno.ECONNREFUSED
    ):
        return "connection refused"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"
