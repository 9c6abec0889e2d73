"""The relay pool: several relays behind one nostr-sdk `Client`, supervised by us.

nostr-sdk's own reconnection is switched off so that reconnects follow our backoff with jitter
(agent/backoff.py) and every reconnect re-sends each subscription with a fresh `since` (the
last event seen on that relay, minus a margin; at least two days back for gift wraps, whose
dates are randomised).  Publishing goes to connected relays only — a down relay is reported at
once instead of costing a timeout — with each relay's OK recorded separately.  NIP-42 AUTH
challenges are answered with the agent's key.  Everything received is handed on as raw JSON
(`Incoming`) for the inbound pipeline to parse and verify.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import zlib
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

import anyio
import nostr_sdk as sdk

from agent.backoff import delay
from agent.clock import Clock
from agent.nostr.client import Incoming, to_filter
from agent.settings import RelaysConfig

POLL_S = 0.2
CONNECTED = "connected"


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
        self.subscriptions: dict[str, Subscription] = {}
        self.inbox_size = inbox_size
        self.inbox: anyio.abc.ObjectReceiveStream[Incoming]
        self._client: sdk.Client | None = None
        self._stack = AsyncExitStack()
        self._tg: anyio.abc.TaskGroup | None = None
        self._any_connected: anyio.Event

    # --- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> RelayPool:
        sdk.uniffi_set_event_loop(asyncio.get_running_loop())
        self._any_connected = anyio.Event()
        self._client = (
            sdk.ClientBuilder()
            .authenticator(sdk.SignerAuthenticator(self.keys))
            .notification_channel_size(65536)
            .build()
        )
        notes = self._client.notifications()  # before any subscription (nostr-sdk quirk)
        send, self.inbox = anyio.create_memory_object_stream[Incoming](self.inbox_size)
        self._stack.callback(self.inbox.close)
        self._tg = await self._stack.enter_async_context(anyio.create_task_group())
        self._stack.push_async_callback(self._client.shutdown)
        self._stack.callback(self._tg.cancel_scope.cancel)
        self._tg.start_soon(self._pump, notes, send)
        for url in self.states:
            await self._add(url)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def _add(self, url: str) -> None:
        assert self._client is not None
        assert self._tg is not None
        opts = sdk.RelayOptions().reconnect(False)
        await self._client.add_relay(sdk.RelayUrl.parse(url), opts=opts)
        self._tg.start_soon(self._supervise, url)

    async def add_write_relay(self, url: str) -> None:
        """Also publish to `url` (e.g. a recipient's inbox relay), supervised like the rest."""
        if url not in self.states:
            self.states[url] = RelayState(url, read=False, write=True, since=self.clock.now())
            await self._add(url)

    # --- supervision -------------------------------------------------------------------

    def _set(self, state: RelayState, status: str, error: str | None = None) -> None:
        if state.status != status:
            state.status, state.since = status, self.clock.now()
        if error is not None:
            state.last_error = error[:200]

    async def _supervise(self, url: str) -> None:
        assert self._client is not None
        state = self.states[url]
        relay = await self._client.relay(sdk.RelayUrl.parse(url))
        cfg = self.config
        while True:
            if relay.status() == sdk.RelayStatus.CONNECTED:
                await anyio.sleep(POLL_S)
                continue
            if state.status == CONNECTED:
                self._set(state, "disconnected", "connection lost")
            self._set(state, "connecting")
            try:
                await relay.try_connect(timedelta(seconds=cfg.connect_timeout_s))
            except sdk.NostrSdkError as exc:
                self._set(state, "disconnected", str(exc))
                wait = delay(state.attempts, cfg.reconnect_base_s, cfg.reconnect_max_s, cfg.jitter)
                state.attempts += 1
                await anyio.sleep(wait)
                continue
            state.attempts = 0
            self._set(state, CONNECTED)
            self._any_connected.set()
            if state.read:
                for sub in list(self.subscriptions.values()):
                    await self._send_req(url, sub)
            self.on_connect(url)

    def _filters_for(self, url: str, sub: Subscription) -> list[sdk.Filter]:
        now = self.clock.now()
        last = self.cursor(url, sub.id)
        since = None if last is None else last - self.margin
        if sub.lookback_s:
            floor = now - sub.lookback_s
            since = floor if since is None else min(since, floor)
        out = []
        for spec in sub.filters:
            spec = dict(spec)
            if since is not None:
                spec["since"] = max(0, min(spec.get("since", since), since))
            out.append(to_filter(spec))
        return out

    async def _send_req(self, url: str, sub: Subscription) -> None:
        """(Re-)send `sub` to `url` under a fresh REQ id.

        A fresh id per connection forces a new REQ with the new `since` (re-using an id let
        nostr-sdk skip the REQ after some reconnects, so stored events were never asked for).
        """
        assert self._client is not None
        state = self.states[url]
        state.generation += 1
        req_id = f"{sub.id}.{zlib.crc32(url.encode()):08x}.{state.generation}"
        target = sdk.ReqTarget.single(sdk.RelayUrl.parse(url), self._filters_for(url, sub))
        try:
            await self._client.subscribe(target, id=req_id)
        except sdk.NostrSdkError as exc:
            self._set(state, state.status, f"subscribe failed: {exc}")
            return
        old = state.req_ids.get(sub.id)
        state.req_ids[sub.id] = req_id
        if old is not None:
            with contextlib.suppress(sdk.NostrSdkError):
                await self._client.unsubscribe(old)

    async def subscribe(self, sub: Subscription) -> None:
        """Register a subscription and send it to every connected read relay."""
        self.subscriptions[sub.id] = sub
        for url, state in self.states.items():
            if state.read and state.status == CONNECTED:
                await self._send_req(url, sub)

    # --- traffic -----------------------------------------------------------------------

    async def _pump(
        self, notes: sdk.ClientNotificationStream, send: anyio.abc.ObjectSendStream[Incoming]
    ) -> None:
        async with send:
            while (note := await notes.next()) is not None:
                if note.is_shutdown():
                    return
                if note.is_new_event():
                    url = str(note.relay_url)
                    if url in self.states:
                        self.states[url].received += 1
                    sub = note.subscription_id.split(".", 1)[0]
                    await send.send(Incoming(url, note.event.as_json(), sub))

    async def wait_connected(self, timeout_s: float) -> bool:
        """Wait until at least one relay is connected (or the timeout passes)."""
        with anyio.move_on_after(timeout_s):
            await self._any_connected.wait()
        return bool(self.connected())

    def connected(self, urls: list[str] | None = None) -> list[str]:
        """Of `urls` (default: all), those connected right now."""
        pool = self.states if urls is None else urls
        return [u for u in pool if u in self.states and self.states[u].status == CONNECTED]

    async def publish(self, event_json: str, urls: list[str]) -> PublishOutcome:
        """Send a signed event's JSON text, exactly as it is, to the connected relays among
        `urls`; every relay's answer recorded."""
        assert self._client is not None
        outcome = PublishOutcome()
        online = self.connected(urls)
        for url in urls:
            if url not in online:
                outcome.refused[url] = "offline"
        if not online:
            return outcome
        out = await self._client.send_event(
            sdk.Event.from_json(event_json),
            target=sdk.SendEventTarget.to([sdk.RelayUrl.parse(u) for u in online]),
            ok_timeout=timedelta(seconds=self.config.publish_timeout_s),
        )
        for url in (str(u) for u in out.success):
            outcome.accepted.append(url)
            if url in self.states:
                self.states[url].acks += 1
        for relay_url, reason in out.failed.items():
            url = str(relay_url)
            outcome.refused[url] = reason
            if url in self.states:
                self.states[url].rejections += 1
                self.states[url].last_error = f"publish refused: {reason}"[:200]
        return outcome

    async def fetch(self, filters: list[dict[str, Any]], timeout_s: float = 5.0) -> list[str]:
        """One-shot query of the read relays; raw JSON of every event returned."""
        assert self._client is not None
        target = sdk.ReqTarget.auto([to_filter(f) for f in filters])
        try:
            events = await self._client.fetch_events(target, timeout=timedelta(seconds=timeout_s))
        except sdk.NostrSdkError:
            return []
        return [e.as_json() for e in events]

    def status(self) -> list[dict[str, Any]]:
        return [s.row() for s in self.states.values()]

    def status_json(self) -> str:
        return json.dumps(self.status())
